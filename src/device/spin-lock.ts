/**
 * A small mutex on one Int32 word of a SharedArrayBuffer, usable from the main thread
 * and from workers (Node allows Atomics.wait on the main thread).
 *
 * Shared word layout (Int32): 0 = unlocked, 1 = locked, 2 = locked and someone may be
 * sleeping in Atomics.wait (Drepper's "futexes are tricky" mutex #2).
 *
 * Concurrency: compareExchange/exchange are sequentially consistent, so everything
 * written inside the critical section is visible to the next holder. Critical sections
 * are short (bitmap updates), so a waiter spins briefly before sleeping (a wake-up
 * costs two orders of magnitude more than a spin: docs/PERFORMANCE.md).
 */
const SPINS_BEFORE_SLEEP = 200;

export function lockWord(words: Int32Array, index: number): void {
  for (let i = 0; i < SPINS_BEFORE_SLEEP; i++) {
    if (Atomics.compareExchange(words, index, 0, 1) === 0) return;
  }
  // Mark contended (2) so the unlocker knows to notify; sleep until it changes.
  let c = Atomics.exchange(words, index, 2);
  while (c !== 0) {
    Atomics.wait(words, index, 2, 10);
    c = Atomics.exchange(words, index, 2);
  }
}

export function unlockWord(words: Int32Array, index: number): void {
  if (Atomics.exchange(words, index, 0) === 2) Atomics.notify(words, index, 1);
}

/** Runs fn with the lock held; releases it on throw too. */
export function withLock<T>(words: Int32Array, index: number, fn: () => T): T {
  lockWord(words, index);
  try {
    return fn();
  } finally {
    unlockWord(words, index);
  }
}
