/**
 * Invalidate (R5, non-destructive): drop the cached state of clean pages so later access
 * faults again; never drop data that is not written back.
 *
 * "Cached state" in userspace: the MAPPED bit of an entry's value (layout.ts), which the
 * lock-free read fast path requires — the stand-in for a present PTE. Dropping it sends
 * the next read or write through the locked fault path (size re-check, poison check,
 * mkwrite). Views handed out before cannot be revoked (no MMU here); they stay valid
 * memory under the epoch rules.
 *
 * Protocol: per entry in range: wait for its lock (grab), skip entries tagged DIRTY or
 * TOWRITE and report them busy, else clear MAPPED; unlock. The data and the block stay.
 */
import { clearTagLocked, grab, replace, unlock } from '../index/entry-lock.js';
import { Ew } from '../index/entry-word.js';
import { Lay } from '../index/nodes.js';
import { isMapped, pageKey, sameKey } from './layout.js';
import { isBroken } from '../test-break.js';
import type { DaxSpace } from './space.js';

export interface InvalidateResult {
  dropped: number;
  busy: number;
}

export function invalidate(space: DaxSpace, id: number, firstPage: number, lastPage: number): InvalidateResult {
  if (isBroken('dax-invalidate-dirty')) return invalidateDirtyToo(space, id, firstPage, lastPage);
  const { tree } = space;
  let dropped = 0;
  let busy = 0;
  for (const [key] of tree.range({ gte: pageKey(id, firstPage), lte: pageKey(id, lastPage) })) {
    const ref = grab(tree, key);
    try {
      if (!sameKey(ref.key, key) || ref.state !== 'value') continue;
      const e = Atomics.load(tree.arena.i32, ref.leaf + Lay.W_ENTRY);
      if ((e & (Ew.DIRTY | Ew.TOWRITE)) !== 0) {
        busy++; // not written back yet: kept (R5)
        continue;
      }
      if (isMapped(ref.value)) replace(tree, ref, ref.value - 1);
      dropped++;
    } finally {
      unlock(tree, ref);
    }
  }
  return { dropped, busy };
}

/** invalidate under DAXSTORE_TEST_BREAK=dax-invalidate-dirty: dirty pages are dropped too, their tags cleared (R5 broken). */
function invalidateDirtyToo(space: DaxSpace, id: number, firstPage: number, lastPage: number): InvalidateResult {
  const { tree } = space;
  let dropped = 0;
  for (const [key] of tree.range({ gte: pageKey(id, firstPage), lte: pageKey(id, lastPage) })) {
    const ref = grab(tree, key);
    try {
      if (!sameKey(ref.key, key) || ref.state !== 'value') continue;
      const e = Atomics.load(tree.arena.i32, ref.leaf + Lay.W_ENTRY);
      if ((e & Ew.DIRTY) !== 0) clearTagLocked(tree, ref, 'dirty');
      if ((e & Ew.TOWRITE) !== 0) clearTagLocked(tree, ref, 'towrite');
      if (isMapped(ref.value)) replace(tree, ref, ref.value - 1);
      dropped++;
    } finally {
      unlock(tree, ref);
    }
  }
  return { dropped, busy: 0 };
}
