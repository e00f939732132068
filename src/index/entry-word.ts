/**
 * The 32-bit entry word every leaf carries (an Int32Array element, so Atomics.wait and
 * compareExchange work on it), and the two value words beside it.
 *
 * Bit layout (bit 0 = least significant):
 *   bit  0      LOCKED    the entry lock is held (by `owner`)
 *   bit  1      WAITERS   someone may sleep in the wait table for this entry: unlock must wake
 *   bit  2      DELETED   the leaf left the tree; whoever still sees it must look the key up again
 *   bits 3-4    state     0 VALUE, 1 EMPTY (placeholder), 2 ZERO, 3 POISONED
 *   bits 5-8    order     size order: 0 = one index, 9 = 512 indices (huge entry)
 *   bit  9      DIRTY     tag
 *   bit  10     TOWRITE   tag
 *   bits 11-19  seq       value seqlock: odd while the value words are being rewritten
 *   bits 20-31  owner     EpochDomain.threadId of the holder (valid only while LOCKED)
 *
 * Value: an integer < 2^48 in two words after the entry word: low 32 bits, then high 16.
 *
 * Concurrency: every change of the entry word is a compareExchange loop (waiters set
 * WAITERS, the holder changes the rest, tagRange sets TOWRITE under treeLock only);
 * readers read value words inside the seqlock (entry word before and after, same seq).
 */
/** The bits as a const enum (literals in the hot paths: nodes.ts `Lay` says why). */
export const enum Ew {
  LOCKED = 1 << 0,
  WAITERS = 1 << 1,
  DELETED = 1 << 2,
  STATE_SHIFT = 3,
  STATE_MASK = 3 << 3,
  ORDER_SHIFT = 5,
  ORDER_MASK = 15 << 5,
  DIRTY = 1 << 9,
  TOWRITE = 1 << 10,
  SEQ_SHIFT = 11,
  SEQ_ONE = 1 << 11,
  SEQ_MASK = 0x1ff << 11,
  OWNER_SHIFT = 20,
  OWNER_MASK = 0xfff << 20, // includes the sign bit: extract with >>>
  STATE_VALUE = 0,
  STATE_EMPTY = 1,
  STATE_ZERO = 2,
  STATE_POISONED = 3,
}

export const LOCKED = Ew.LOCKED;
export const WAITERS = Ew.WAITERS;
export const DELETED = Ew.DELETED;
export const STATE_SHIFT = Ew.STATE_SHIFT;
export const STATE_MASK = Ew.STATE_MASK;
export const ORDER_SHIFT = Ew.ORDER_SHIFT;
export const ORDER_MASK = Ew.ORDER_MASK;
export const DIRTY = Ew.DIRTY;
export const TOWRITE = Ew.TOWRITE;
export const SEQ_SHIFT = Ew.SEQ_SHIFT;
export const SEQ_ONE = Ew.SEQ_ONE;
export const SEQ_MASK = Ew.SEQ_MASK;
export const OWNER_SHIFT = Ew.OWNER_SHIFT;
export const OWNER_MASK = Ew.OWNER_MASK;
export const MAX_OWNER = 0xfff;

export const STATE_VALUE = Ew.STATE_VALUE;
export const STATE_EMPTY = Ew.STATE_EMPTY;
export const STATE_ZERO = Ew.STATE_ZERO;
export const STATE_POISONED = Ew.STATE_POISONED;

export type EntryState = 'value' | 'empty' | 'zero' | 'poisoned';
export type EntryTag = 'dirty' | 'towrite';

export const STATE_NAMES: readonly EntryState[] = ['value', 'empty', 'zero', 'poisoned'];

export function stateCode(state: EntryState): number {
  switch (state) {
    case 'value':
      return STATE_VALUE;
    case 'empty':
      return STATE_EMPTY;
    case 'zero':
      return STATE_ZERO;
    case 'poisoned':
      return STATE_POISONED;
  }
}

export function tagBit(tag: EntryTag): number {
  return tag === 'dirty' ? DIRTY : TOWRITE;
}

export function stateOf(word: number): number {
  return (word & STATE_MASK) >>> STATE_SHIFT;
}

export function orderOf(word: number): number {
  return (word & ORDER_MASK) >>> ORDER_SHIFT;
}

export function ownerOf(word: number): number {
  return (word & OWNER_MASK) >>> OWNER_SHIFT;
}

/** Largest value an entry holds (values are integers below 2^48). */
export const MAX_VALUE = 2 ** 48 - 1;
