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

export const MAX_OWNER = 0xfff;

export type EntryState = 'value' | 'empty' | 'zero' | 'poisoned';
export type EntryTag = 'dirty' | 'towrite';

export const STATE_NAMES: readonly EntryState[] = ['value', 'empty', 'zero', 'poisoned'];

export function stateCode(state: EntryState): number {
  switch (state) {
    case 'value':
      return Ew.STATE_VALUE;
    case 'empty':
      return Ew.STATE_EMPTY;
    case 'zero':
      return Ew.STATE_ZERO;
    case 'poisoned':
      return Ew.STATE_POISONED;
  }
}

export function tagBit(tag: EntryTag): number {
  return tag === 'dirty' ? Ew.DIRTY : Ew.TOWRITE;
}

export function stateOf(word: number): number {
  return (word & Ew.STATE_MASK) >>> Ew.STATE_SHIFT;
}

export function orderOf(word: number): number {
  return (word & Ew.ORDER_MASK) >>> Ew.ORDER_SHIFT;
}

export function ownerOf(word: number): number {
  return (word & Ew.OWNER_MASK) >>> Ew.OWNER_SHIFT;
}

/** Largest value an entry holds (values are integers below 2^48). */
export const MAX_VALUE = 2 ** 48 - 1;
