/**
 * treeLock: the short tree-wide lock for structural changes (the kernel's xa_lock), one
 * word in the arena header (H_TREE_LOCK).
 *
 * Word layout: a device/spin-lock.ts word: 0 free; else bits 0-1 held (1) or held with
 * sleepers (2, Drepper's "Futexes are tricky" mutex 2) and bits 2-31 the holder's
 * participants.ts holderBits. Spin briefly first: a wake-up costs far more than a critical
 * section (docs/PERFORMANCE.md, "Costs to plan with").
 *
 * A holder that died (participants.ts) is replaced by the first waiter that notices, which
 * then runs `repair` (radix-tree.ts repairLocked: recounts and clears whatever a structural
 * step cut short can leave) before it relies on the tree.
 *
 * Concurrency: held only for a bounded structural step (no waits, no user code, no entry
 * lock acquisition inside), so sleeping on it cannot deadlock. Lock order: an entry lock
 * may be held while taking treeLock, never the other way round.
 */
import { H_TREE_LOCK, H_VERSION } from './arena.js';
import { loadWord, storeRelease } from './word-load.js';
import { lockWord, unlockWord } from '../device/spin-lock.js';

/** Takes treeLock; `holderBits` is this thread's participants.ts holderBits (never 0). */
export function lockTree(i32: Int32Array, holderBits: number, repair: (deadWord: number) => void): void {
  if (Atomics.compareExchange(i32, H_TREE_LOCK, 0, holderBits | 1) === 0) return;
  lockWord(i32, H_TREE_LOCK, repair);
}

export function unlockTree(i32: Int32Array): void {
  // Bump the structure version (arena.ts H_VERSION) inside the lock: a release store, ordered
  // after this holder's changes; the release below orders it before the next holder.
  storeRelease(i32, H_VERSION, (loadWord(i32, H_VERSION) + 1) | 0);
  unlockWord(i32, H_TREE_LOCK);
}
