/**
 * The fault path: a view of one page (or 2 MiB extent) of an object, allocating on a write
 * to a hole. R1 (mkwrite atomic with the dirty tag) and R2 (no fault resurrects truncated
 * space) live here.
 *
 * Invariants
 *   - A block becomes reachable (owner record -> object, tree entry value) only after it is
 *     durably zero (alloc.ts), and only while the fault holds the entry lock and the
 *     object's invalidate lock shared with index < size checked under it (R2).
 *   - A write fault runs mkwrite, tags DIRTY and sets MAPPED with the entry locked the whole
 *     time (R1). If mkwrite throws, nothing became reachable, dirty or mapped.
 *   - A read fault of a hole allocates nothing: it returns the shared zero page.
 *   - Huge entries (value bit HUGE, at aligned keys) are never split; a huge fault that
 *     meets any other key in its 512-index range falls back to a small fault.
 *
 * Concurrency (huge coverage, done here because the tree's multi-order is for 8-byte keys)
 *   - Small fault at unaligned j: lock j (placeholder), THEN look at the aligned key a. Huge
 *     fault: lock a (placeholder), THEN check (a, a+511] is empty. Both orders publish their
 *     placeholder before looking at the other's key (Atomics are sequentially consistent),
 *     so at least one of two racing faults sees the other and backs off: the small one
 *     unlocks j and waits on a; the huge one falls back to small.
 *   - Lock order: invalidate lock (shared) -> entry lock -> tree/allocator/device locks.
 *   - Views are valid while the caller is pinned (space.read): freed blocks go through the
 *     epoch (R6).
 *
 * Persistence ordering: allocate zeroed under staging -> mkwrite -> publish (owner record
 * durable) -> tree entry. A poisoned page rewritten by a write fault: old block unpublished
 * (durable) before the new one is published, so recovery never sees two owners of a page.
 */
import { DaxError } from '../errors.js';
import { grab, replace, setTagLocked, unlock, type EntryRef } from '../index/entry-lock.js';
import { HUGE_BYTES } from '../device/layout.js';
import { allocateZeroed, clearStage, publishBlock, unpublishBlock } from './alloc.js';
import { lockShared, unlockShared } from './invalidate-lock.js';
import { HUGE_PAGES, PAGE_BYTES, blockOfValue, encodeValue, isHuge, isMapped, pageKey } from './layout.js';
import { isBroken, testHooks } from '../test-break.js';
import { ST_ALLOCS, ST_FAULTS, ST_MKWRITE, type DaxSpace } from './space.js';

export interface FaultTarget {
  readonly space: DaxSpace;
  readonly id: number;
  readonly slot: number;
  readonly mkwrite: ((index: number) => void) | undefined;
}

const ZERO_PAGE = new Uint8Array(PAGE_BYTES);
let zeroHuge: Uint8Array | undefined;

/** The shared zero page handed to read faults of holes. Read-only by contract: never write to it. */
export function zeroView(huge: boolean): Uint8Array {
  if (!huge) return ZERO_PAGE;
  zeroHuge ??= new Uint8Array(HUGE_BYTES);
  return zeroHuge;
}

export function fault(t: FaultTarget, index: number, write: boolean, huge: boolean): Uint8Array {
  const { space } = t;
  Atomics.add(space.counters, ST_FAULTS, 1);
  if (!write) {
    const fast = space.epoch.guard(() => readFastPinned(t, index, huge));
    if (fast !== undefined) return fast;
  }
  return slowFault(t, index, write, huge);
}

/** The locked fault (R2): the invalidate lock shared, the size re-checked under it, then the entry lock. */
function slowFault(t: FaultTarget, index: number, write: boolean, huge: boolean): Uint8Array {
  if (isBroken('dax-fault-no-recheck')) return slowFaultUnchecked(t, index, write, huge);
  const words = t.space.objects.words;
  const rw = t.space.objects.rwIndex(t.slot);
  const what = `fault(object ${t.id}, page ${index})`;
  lockShared(words, rw, what);
  try {
    if (!t.space.objects.isLive(t.slot)) throw new DaxError('ENOENT', `${what}: object was removed`);
    checkSize(t, index, what);
    testHooks.faultWindow?.('before-install', t.id, index);
    return faultLocked(t, index, write, huge);
  } finally {
    unlockShared(words, rw);
  }
}

/** slowFault under DAXSTORE_TEST_BREAK=dax-fault-no-recheck: the size checked once, with no invalidate lock (R2 open). */
function slowFaultUnchecked(t: FaultTarget, index: number, write: boolean, huge: boolean): Uint8Array {
  const what = `fault(object ${t.id}, page ${index})`;
  checkSize(t, index, what);
  if (!t.space.objects.isLive(t.slot)) throw new DaxError('ENOENT', `${what}: object was removed`);
  testHooks.faultWindow?.('before-install', t.id, index);
  return faultLocked(t, index, write, huge);
}

/** A 2 MiB fault where one can map, else a 4 KiB one. Caller holds what slowFault takes. */
function faultLocked(t: FaultTarget, index: number, write: boolean, huge: boolean): Uint8Array {
  if (huge) {
    const view = hugeFaultLocked(t, index, write);
    if (view !== undefined) return view;
  }
  return smallFaultLocked(t, index, write);
}

function checkSize(t: FaultTarget, index: number, what: string): void {
  const size = t.space.objects.size(t.slot);
  if (index * PAGE_BYTES >= size)
    throw new DaxError(
      'ERANGE',
      `${what}: page starts at offset ${index * PAGE_BYTES}, beyond the object size ${size}`,
    );
}

/** Lock-free read of a MAPPED page (or of the huge entry covering it); undefined -> slow path. Caller pinned. */
function readFastPinned(t: FaultTarget, index: number, huge: boolean): Uint8Array | undefined {
  const { tree } = t.space;
  const found = lookupCoveringPinned(t, index);
  if (found === undefined) return undefined;
  const e = tree.lastEntry;
  const state = (e >>> 3) & 3;
  if (state !== 0 || !isMapped(found.value)) return undefined; // not VALUE, or not mapped: lock
  if (huge !== isHuge(found.value) && huge) return undefined;
  if (index * PAGE_BYTES >= t.space.objects.size(t.slot)) return undefined; // slow path reports ERANGE
  if (poisonedUnder(t.space, found.value, found.start, index, huge) >= 0) return undefined; // slow path says EIO
  return viewOf(t.space, found.value, found.start, index, huge);
}

/** Value and start index of the entry mapping `index` (exact or huge cover). Caller pinned; sets tree.lastEntry. */
export function lookupCoveringPinned(
  t: { space: DaxSpace; id: number },
  index: number,
): { value: number; start: number } | undefined {
  const { tree } = t.space;
  const key = pageKey(t.id, index);
  const leaf = tree.findLeafPinned(key);
  if (leaf !== 0) {
    const v = tree.readValuePinned(leaf);
    if (v >= 0) return { value: v, start: index };
    // An EMPTY placeholder is not a hole: a small fault grabs the page's own key before it
    // looks for a huge entry covering it, so the page may still be mapped by that entry.
  }
  const a = index - (index % HUGE_PAGES);
  if (a === index) return undefined;
  const hugeLeaf = tree.findLeafPinned(pageKey(t.id, a));
  if (hugeLeaf === 0) return undefined;
  const v = tree.readValuePinned(hugeLeaf);
  return v >= 0 && isHuge(v) ? { value: v, start: a } : undefined;
}

/** True if the aligned key of `index` holds a huge entry or a placeholder whose kind is not known yet. */
function alignedMayCover(t: FaultTarget, index: number): boolean {
  const { tree, epoch } = t.space;
  return epoch.guard(() => {
    const leaf = tree.findLeafPinned(pageKey(t.id, index - (index % HUGE_PAGES)));
    if (leaf === 0) return false;
    const v = tree.readValuePinned(leaf);
    return v < 0 || isHuge(v);
  });
}

function smallFaultLocked(t: FaultTarget, index: number, write: boolean): Uint8Array {
  const { tree } = t.space;
  for (;;) {
    const ref = grab(tree, pageKey(t.id, index));
    let viaAligned = false;
    try {
      if (ref.order === 0 && ref.state === 'empty' && index % HUGE_PAGES !== 0 && alignedMayCover(t, index))
        viaAligned = true;
      else return installLocked(t, ref, index, index, write, false);
    } finally {
      unlock(tree, ref); // an EMPTY placeholder is removed
    }
    if (!viaAligned) continue;
    const a = index - (index % HUGE_PAGES);
    const refA = grab(tree, pageKey(t.id, a));
    try {
      if (refA.state !== 'empty' && isHuge(refA.value)) return installLocked(t, refA, a, index, write, false);
    } finally {
      unlock(tree, refA);
    }
  }
}

/** undefined: fall back to small pages. */
function hugeFaultLocked(t: FaultTarget, index: number, write: boolean): Uint8Array | undefined {
  const { tree, epoch } = t.space;
  const a = index - (index % HUGE_PAGES);
  if ((a + HUGE_PAGES) * PAGE_BYTES > t.space.objects.size(t.slot)) return undefined; // extent would pass the end
  const ref = grab(tree, pageKey(t.id, a));
  try {
    if (ref.state === 'empty') {
      const others = epoch.guard(() => tree.anyKeyInPinned(pageKey(t.id, a + 1), pageKey(t.id, a + HUGE_PAGES - 1)));
      if (others) return undefined;
      return installLocked(t, ref, a, index, write, true);
    }
    if (!isHuge(ref.value)) return undefined;
    return installLocked(t, ref, a, index, write, true);
  } finally {
    unlock(tree, ref);
  }
}

/** The locked part of a fault: entry `ref` starts at page `start` (huge: aligned start). */
function installLocked(
  t: FaultTarget,
  ref: EntryRef,
  start: number,
  index: number,
  write: boolean,
  hugeView: boolean,
): Uint8Array {
  const { space } = t;
  const { tree, device } = space;
  const what = `fault(object ${t.id}, page ${index})`;
  if (ref.state === 'poisoned' && !write)
    throw new DaxError('EIO', `${what}: page is poisoned (memory failure); rewrite it to recover`);
  if (ref.state === 'empty' && !write) return zeroView(hugeView);
  if (ref.state === 'value') {
    // The block is quarantined before its entry is marked (rmap.ts): the bytes are already
    // gone. A huge entry is never marked: its poisoned blocks fail only the views over them.
    const bad = poisonedUnder(space, ref.value, start, index, hugeView);
    if (bad >= 0 && (!write || isHuge(ref.value))) {
      const cure = isHuge(ref.value)
        ? 'punch or truncate away its 2 MiB extent to recover'
        : 'rewrite the page to recover';
      throw new DaxError(
        'EIO',
        `${what}: block ${bad} under the ${hugeView && isHuge(ref.value) ? '2 MiB' : '4 KiB'} view is poisoned (memory failure); ${cure}`,
      );
    }
  }
  if (ref.state === 'value' && !write) {
    if (!isMapped(ref.value)) replace(tree, ref, ref.value + 1);
    return viewOf(space, ref.value, start, index, hugeView);
  }
  if (ref.state === 'value') return dirtyMappedLocked(t, ref, start, index, hugeView);
  // Write fault of a hole or a poisoned page: a fresh zeroed block.
  const huge = ref.state === 'empty' ? hugeView : isHuge(ref.value);
  const fresh = allocateZeroed(device, start, huge ? 9 : 0, t.id);
  Atomics.add(space.counters, ST_ALLOCS, 1);
  try {
    mkwrite(t, index);
  } catch (e) {
    clearStage();
    device.free(fresh); // never reachable: free at once
    throw e;
  }
  if (ref.state === 'poisoned') {
    const old = blockOfValue(ref.value);
    unpublishBlock(device, old, t.id);
    publishBlock(device, fresh, t.id);
    replace(tree, ref, encodeValue(fresh, true, huge));
    clearStage();
    space.retireBlock(old);
  } else {
    publishBlock(device, fresh, t.id);
    testHooks.faultWindow?.('published', t.id, index);
    replace(tree, ref, encodeValue(fresh, true, huge));
    clearStage();
  }
  setTagLocked(tree, ref, 'dirty');
  testHooks.faultWindow?.('mkwrite-window', t.id, index);
  return viewOf(space, ref.value, start, index, hugeView);
}

/** The object's mkwrite hook (page_mkwrite), counted. */
function mkwrite(t: FaultTarget, index: number): void {
  if (t.mkwrite === undefined) return;
  Atomics.add(t.space.counters, ST_MKWRITE, 1);
  t.mkwrite(index);
}

/** Write fault of a mapped page (R1): mkwrite, MAPPED and the DIRTY tag with the entry locked throughout. */
function dirtyMappedLocked(t: FaultTarget, ref: EntryRef, start: number, index: number, hugeView: boolean): Uint8Array {
  if (isBroken('dax-mkwrite-unlocked')) return brokenMkwrite(t, ref, start, index, hugeView);
  const { tree } = t.space;
  mkwrite(t, index);
  if (!isMapped(ref.value)) replace(tree, ref, ref.value + 1);
  setTagLocked(tree, ref, 'dirty');
  testHooks.faultWindow?.('mkwrite-window', t.id, index);
  return viewOf(t.space, ref.value, start, index, hugeView);
}

/** dirtyMappedLocked under DAXSTORE_TEST_BREAK=dax-mkwrite-unlocked: dirty tag, UNLOCK, then mkwrite (writeback can clean in between). */
function brokenMkwrite(t: FaultTarget, ref: EntryRef, start: number, index: number, hugeView: boolean): Uint8Array {
  const { tree } = t.space;
  setTagLocked(tree, ref, 'dirty');
  unlock(tree, ref);
  testHooks.faultWindow?.('mkwrite-window', t.id, index);
  const again = grab(tree, pageKey(t.id, start)); // the caller's finally unlocks this one
  Object.assign(ref, again);
  t.mkwrite?.(index);
  return viewOf(t.space, ref.value, start, index, hugeView);
}

/**
 * First poisoned block under the view viewOf() would return, or -1: the page's own block,
 * or for a 2 MiB view every block of the extent (one bad 4 KiB block inside makes the
 * whole huge view unreadable, while small views of its other pages stay good).
 */
export function poisonedUnder(space: DaxSpace, value: number, start: number, index: number, hugeView: boolean): number {
  if (isBroken('dax-poison-page-only')) return poisonedInPage(space, value, start, index);
  if (hugeView && isHuge(value)) return space.device.firstPoisoned(blockOfValue(value), HUGE_PAGES);
  return poisonedInPage(space, value, start, index);
}

/** The page's own block if poisoned, or -1 (also poisonedUnder under DAXSTORE_TEST_BREAK=dax-poison-page-only). */
function poisonedInPage(space: DaxSpace, value: number, start: number, index: number): number {
  const block = blockOfValue(value) + (index - start);
  return space.device.isPoisoned(block) ? block : -1;
}

export function viewOf(space: DaxSpace, value: number, start: number, index: number, hugeView: boolean): Uint8Array {
  const base = space.device.blockOffset(blockOfValue(value));
  if (hugeView && isHuge(value)) return new Uint8Array(space.device.media.buffer, base, HUGE_BYTES);
  return new Uint8Array(space.device.media.buffer, base + (index - start) * PAGE_BYTES, PAGE_BYTES);
}
