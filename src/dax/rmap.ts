/**
 * Reverse map and memory failure (R3): from a device offset to the object page that holds
 * it, under entry locks — no per-page lock array, no lock-everything-and-revalidate.
 *
 * Protocol: under an epoch guard read the owner table record of the block (the extent head
 * for a block inside a huge page); look the owner's entry up; lock it (waiting SHARED first,
 * since a reverse-map caller may never unlock in the baton sense, then taking it without
 * blocking); re-check the locked entry still points at that block; if not, unlock and retry
 * (the block moved: truncated, rewritten) — null once the block is no object's page.
 *
 * memoryFailure: poison the device block first (quarantined, never reused; readers check
 * it), then with the entry locked mark it POISONED (DIRTY/TOWRITE cleared: the data is
 * gone), unlock (waiters wake and see POISONED: EIO). Later reads of the page fail with EIO until a write fault rewrites it.
 * A block inside a 2 MiB extent: the huge entry is NOT marked (its other 511 pages are
 * intact and may be dirty: tags kept); the quarantined block alone fails every read, fault
 * and view that covers it (fault.ts poisonedUnder), writes to that page included, until the
 * extent is punched or truncated away (its free skips the bad block: never reused).
 */
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { clearTagLocked, replace, tryGrab, unlock, waitUnlocked, type EntryRef } from '../index/entry-lock.js';
import { Ew } from '../index/entry-word.js';
import { Lay } from '../index/nodes.js';
import { MIN_OBJECT_ID, blockOfValue, isHuge, pageKey, sameKey } from './layout.js';
import { isBroken } from '../test-break.js';
import { ST_POISONED, type DaxSpace, type MemoryFailureEvent } from './space.js';

export interface RmapResult {
  readonly objectId: number;
  /** page index of the entry (its start index for a huge page) */
  readonly index: number;
  readonly block: number;
  /** the locked entry (internal) */
  readonly ref: EntryRef;
  release(): void;
}

const MAX_RETRIES = 1000;

/** The R3 re-check: the locked entry is still `key` and still points at block `head`. */
function stillMapsBlock(ref: EntryRef, key: Uint8Array, head: number): boolean {
  if (isBroken('dax-rmap-no-recheck')) return true; // trusts the owner table read before the lock
  return (
    sameKey(ref.key, key) && (ref.state === 'value' || ref.state === 'poisoned') && blockOfValue(ref.value) === head
  );
}

export function rmap(space: DaxSpace, deviceOffset: number): RmapResult | null {
  const { device, tree } = space;
  const block = device.blockAt(deviceOffset);
  for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
    const owner = space.epoch.guard(() => device.ownerOf(block));
    if (
      (owner.state !== 'owned' && owner.state !== 'covered' && owner.state !== 'poisoned') ||
      owner.ownerId < MIN_OBJECT_ID
    )
      return null;
    const head = owner.head;
    const key = pageKey(owner.ownerId, owner.index);
    waitUnlocked(tree, key);
    const ref = tryGrab(tree, key);
    if (ref === undefined) continue; // taken again meanwhile: wait again
    if (stillMapsBlock(ref, key, head)) {
      let released = false;
      return {
        objectId: owner.ownerId,
        index: owner.index,
        block: head,
        ref,
        release: () => {
          if (released) return;
          released = true;
          unlock(tree, ref);
        },
      };
    }
    // Re-read the record while still holding the entry: a record names (object, index) only
    // while that entry's lock holder publishes or unpublishes it, so under our lock it is
    // stable. Read after unlocking, a block freed and re-published to the same
    // page in between gave a stale null for an owned block.
    const now = space.epoch.guard(() => device.ownerOf(block));
    unlock(tree, ref);
    const moved = now.ownerId !== owner.ownerId || now.index !== owner.index || now.head !== owner.head;
    assert(
      moved || !sameKey(ref.key, key) || ref.state === 'empty',
      () =>
        `rmap(${deviceOffset}): block ${head} is owned by object ${owner.ownerId} page ${owner.index} but its locked entry maps block ${blockOfValue(ref.value)}`,
    );
    if (!moved) return null; // owned by (object, index) but no entry maps it yet: recovery-time only
  }
  throw new DaxError('EBUSY', `rmap(${deviceOffset}): block ${block} kept moving after ${MAX_RETRIES} attempts`);
}

export function memoryFailure(space: DaxSpace, deviceOffset: number): MemoryFailureEvent {
  const { device, tree } = space;
  const block = device.blockAt(deviceOffset);
  // Quarantine first: from here on no allocation hands the block out, and read()/fault()
  // see it poisoned (EIO) even before the entry is marked. Poisoning after a null rmap
  // instead let a fault allocate the then-free block in between: a live page on a bad
  // block whose entry was never marked.
  if (!device.isPoisoned(block)) Atomics.add(space.counters, ST_POISONED, 1); // a count for stats only
  device.poison(block);
  const r = rmap(space, deviceOffset);
  if (r === null) return { deviceOffset, block, objectId: null, index: null };
  const index = r.index + (block - r.block); // the poisoned page itself, also inside an extent
  try {
    if (isHuge(r.ref.value)) return { deviceOffset, block, objectId: r.objectId, index };
    const e = Atomics.load(tree.arena.i32, r.ref.leaf + Lay.W_ENTRY);
    if ((e & Ew.DIRTY) !== 0) clearTagLocked(tree, r.ref, 'dirty');
    if ((e & Ew.TOWRITE) !== 0) clearTagLocked(tree, r.ref, 'towrite');
    if (r.ref.state !== 'poisoned') replace(tree, r.ref, r.ref.value - (r.ref.value & 1), 'poisoned');
  } finally {
    r.release();
  }
  return { deviceOffset, block, objectId: r.objectId, index };
}
