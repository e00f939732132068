/**
 * treeLock: the short tree-wide lock for structural changes (the kernel's xa_lock), one
 * word in the arena header (H_TREE_LOCK).
 *
 * Word layout: 0 free · 1 held · 2 held and someone may sleep on it (Drepper, "Futexes
 * are tricky", mutex 2). Spin briefly first: a wake-up costs far more than a critical section
 * (docs/PERFORMANCE.md, "Costs to plan with").
 *
 * Concurrency: held only for a bounded structural step (no waits, no user code, no entry
 * lock acquisition inside), so sleeping on it cannot deadlock. Lock order: an entry lock
 * may be held while taking treeLock, never the other way round.
 */
import { H_TREE_LOCK, H_VERSION } from './arena.js';
import { loadWord, storeRelease } from './word-load.js';

const SPINS = 200;

export function lockTree(i32: Int32Array): void {
  if (Atomics.compareExchange(i32, H_TREE_LOCK, 0, 1) === 0) return;
  for (let i = 0; i < SPINS; i++) {
    if (Atomics.load(i32, H_TREE_LOCK) === 0 && Atomics.compareExchange(i32, H_TREE_LOCK, 0, 1) === 0) return;
  }
  let c = Atomics.exchange(i32, H_TREE_LOCK, 2);
  while (c !== 0) {
    Atomics.wait(i32, H_TREE_LOCK, 2, 100);
    c = Atomics.exchange(i32, H_TREE_LOCK, 2);
  }
}

export function unlockTree(i32: Int32Array): void {
  // Bump the structure version (arena.ts H_VERSION) inside the lock: a release store, ordered
  // after this holder's changes; the release below orders it before the next holder.
  storeRelease(i32, H_VERSION, (loadWord(i32, H_VERSION) + 1) | 0);
  if (Atomics.sub(i32, H_TREE_LOCK, 1) !== 1) {
    Atomics.store(i32, H_TREE_LOCK, 0);
    Atomics.notify(i32, H_TREE_LOCK, 1);
  }
}
