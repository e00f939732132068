/**
 * Truncate and hole punching (R2): with the object's invalidate lock held EXCLUSIVE (no
 * fault is between its size check and its install), publish the new size durably first,
 * then lock, unpublish and remove every entry in the range — dirty ones too, their data is
 * deleted — and retire its block through the epoch (R6: pinned readers keep their views).
 *
 * Persistence ordering
 *   1. truncate: size record (one 8-byte store + persist). A crash after it frees every
 *      block beyond the size at recovery.
 *   2. each removed block: owner -> staging (flushed), then ONE drain before the invalidate
 *      lock is released: a later extend + crash can never resurrect old data.
 *   3. partial pages at the edges: the bytes past the new size (or inside the hole) are
 *      zeroed and persisted under the entry lock, so extending again reads zeros.
 *   A huge entry only partly inside the range is kept and zeroed over that part (never split).
 */
import { deleteLocked, grab, unlock, type EntryRef } from '../index/entry-lock.js';
import { lockExclusive, unlockExclusive } from './invalidate-lock.js';
import { HUGE_PAGES, PAGE_BYTES, blockOfValue, isHuge, keyPageIndex, pageKey, sameKey } from './layout.js';
import { unpublishBlock } from './alloc.js';
import { lookupCoveringPinned } from './fault.js';
import type { DaxSpace } from './space.js';

export function withInvalidateExclusive<T>(space: DaxSpace, slot: number, what: string, fn: () => T): T {
  const words = space.objects.words;
  const rw = space.objects.rwIndex(slot);
  lockExclusive(words, rw, what);
  try {
    return fn();
  } finally {
    unlockExclusive(words, rw);
  }
}

/** Zero [fromByte, toByte) of the object where pages exist, and remove whole pages inside it. Caller holds invalidate exclusive. */
export function clearRangeLocked(space: DaxSpace, id: number, fromByte: number, toByte: number): number {
  if (toByte <= fromByte) return 0;
  const firstWhole = Math.ceil(fromByte / PAGE_BYTES);
  const endWhole = Math.floor(toByte / PAGE_BYTES); // exclusive
  let removed = 0;
  // Edges and huge entries partly inside: zero bytes, keep the entry.
  zeroBytesLocked(space, id, fromByte, Math.min(toByte, firstWhole * PAGE_BYTES));
  if (endWhole >= firstWhole) zeroBytesLocked(space, id, Math.max(fromByte, endWhole * PAGE_BYTES), toByte);
  if (endWhole > firstWhole) {
    // A huge entry starting before firstWhole but covering it: zero its covered part.
    const a = firstWhole - (firstWhole % HUGE_PAGES);
    if (a !== firstWhole) zeroHugePartLocked(space, id, a, firstWhole, endWhole);
    const range = { gte: pageKey(id, firstWhole), lt: pageKey(id, endWhole) };
    for (const [key, value] of space.tree.range(range)) {
      const start = keyPageIndex(key);
      if (isHuge(value) && start + HUGE_PAGES > endWhole) {
        zeroHugePartLocked(space, id, start, start, endWhole);
        continue;
      }
      const ref = grab(space.tree, key);
      if (!sameKey(ref.key, key) || ref.state === 'empty') {
        unlock(space.tree, ref);
        continue;
      }
      removeEntryLocked(space, id, ref);
      removed++;
    }
  }
  space.device.media.drain(); // every unpublish above durable before the lock is released
  return removed;
}

/** Unpublish (flushed, not drained), delete and retire. Caller holds the entry lock; it is gone after. */
function removeEntryLocked(space: DaxSpace, id: number, ref: EntryRef): void {
  const block = blockOfValue(ref.value);
  unpublishBlock(space.device, block, id, false);
  deleteLocked(space.tree, ref);
  space.retireBlock(block);
}

function zeroHugePartLocked(space: DaxSpace, id: number, start: number, fromPage: number, toPage: number): void {
  const ref = grab(space.tree, pageKey(id, start));
  try {
    if (ref.state !== 'value' || !isHuge(ref.value) || !sameKey(ref.key, pageKey(id, start))) return;
    const from = fromPage - start;
    const to = Math.min(toPage - start, HUGE_PAGES);
    if (to <= from) return;
    const head = blockOfValue(ref.value);
    if (space.device.firstPoisoned(head + from, to - from) >= 0) {
      // Never store into a quarantined block (its page reads EIO whatever it holds): zero page by page around it.
      for (let p = from; p < to; p++)
        if (!space.device.isPoisoned(head + p)) zeroFlush(space, space.device.blockOffset(head + p), PAGE_BYTES);
      return;
    }
    zeroFlush(space, space.device.blockOffset(head) + from * PAGE_BYTES, (to - from) * PAGE_BYTES);
  } finally {
    unlock(space.tree, ref);
  }
}

function zeroFlush(space: DaxSpace, offset: number, length: number): void {
  new Uint8Array(space.device.media.buffer, offset, length).fill(0);
  space.device.media.flush(offset, length);
}

/** Zero [from, to) inside one page (or huge extent) when it is mapped; holes are zero already. */
function zeroBytesLocked(space: DaxSpace, id: number, from: number, to: number): void {
  if (to <= from) return;
  const index = Math.floor(from / PAGE_BYTES);
  const found = space.epoch.guard(() => lookupCoveringPinned({ space, id }, index));
  if (found === undefined) return;
  const ref = grab(space.tree, pageKey(id, found.start));
  try {
    if (ref.state !== 'value' || space.device.isPoisoned(blockOfValue(ref.value) + index - found.start)) return; // quarantined: reads EIO anyway
    const off = space.device.blockOffset(blockOfValue(ref.value)) + from - found.start * PAGE_BYTES;
    new Uint8Array(space.device.media.buffer, off, to - from).fill(0);
    space.device.media.flush(off, to - from);
  } finally {
    unlock(space.tree, ref);
  }
}
