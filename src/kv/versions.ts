/**
 * Versions of a key: the chain from the entry the index points at (the newest) through each
 * entry's back pointer to the entry it superseded (layout.ts). snapshots.ts says who may
 * follow it and why the entries on it stay readable.
 *
 * Invariants
 *   - Along a chain sequences strictly decrease: a back pointer is stamped under the key's
 *     entry lock with the entry the index pointed at then, whose sequence was taken earlier
 *     under the same lock.
 *   - A chain is followed from an entry only while that entry's sequence is above the
 *     snapshot's S; the snapshot is registered, so every entry reached that way is a version
 *     superseded after S, whose memory is kept (snapshots.ts, deferred table).
 *
 * Concurrency: callers are pinned (the epoch keeps the newest entry's segment readable while
 * compaction moves it) and hold a registered snapshot. Entries are immutable once published.
 *
 * Persistence ordering: none (reads only).
 */
import { assert } from '../assert.js';
import { ENTRY_HEADER_BYTES } from './layout.js';
import type { MediaViews } from './records.js';

/** Bits of an entry's first word: op in bits 16..23 (layout.ts). Literals in the hot paths: nodes.ts `Lay` says why. */
export const enum Op {
  MASK = 0xff << 16,
  DEL = 2 << 16,
}

/** Whether the entry at `at` is a DEL (a tombstone when the index points at it). */
export function isDeletion(v: MediaViews, at: number): boolean {
  v = v.at(at);
  return (v.u32[(at - v.base) / 4] & Op.MASK) === Op.DEL;
}

/**
 * The entry of the version visible at snapshot S, starting from the newest entry `at` of its
 * key: the first entry along the chain whose sequence is <= S. -1 when the key is absent at S
 * (that entry is a DEL, or the chain ends first). `checkPoison` is called on each entry header
 * before it is read when the device has poisoned blocks (it throws EIO).
 */
export function versionAtPinned(
  v: MediaViews,
  at: number,
  S: number,
  checkPoison: ((from: number, to: number) => void) | undefined,
): number {
  let e = at;
  let above = Infinity;
  for (;;) {
    v = v.at(e); // an older version may lie in another window
    const u32 = v.u32;
    const w = (e - v.base) / 4;
    const hi = u32[w + 3];
    const sequence = hi === 0 ? u32[w + 2] : hi * 4294967296 + u32[w + 2];
    // Sequences strictly decrease along a chain (header): anything else is memory that no
    // longer holds the version (a broken hold), reported instead of followed.
    if (!(sequence < above)) brokenChain(e, `sequence ${sequence} after ${above}`);
    if (sequence <= S) return (u32[w] & Op.MASK) === Op.DEL ? -1 : e;
    above = sequence;
    e = u32[w + 5] * 4294967296 + u32[w + 4];
    if (e === 0) return -1;
    // The media's size read only here, where a chain is followed (rare): not at every read.
    if (e % 8 !== 0 || e + ENTRY_HEADER_BYTES > v.u8.buffer.byteLength) brokenChain(e, 'offset out of the media');
    if (checkPoison !== undefined) checkPoison(e, e + ENTRY_HEADER_BYTES);
  }
}

/** A broken chain is a broken invariant (the hold of snapshots.ts failed): an assertion, never followed. */
function brokenChain(at: number, what: string): never {
  assert(false, `version chain broken at offset ${at}: ${what}`);
}

/** The sequence (version) of the entry at `at`. */
export function sequenceAt(v: MediaViews, at: number): number {
  v = v.at(at);
  const w = (at - v.base) / 4;
  const hi = v.u32[w + 3];
  return hi === 0 ? v.u32[w + 2] : hi * 4294967296 + v.u32[w + 2];
}
