/**
 * A small mutex on one Int32 word of a SharedArrayBuffer, usable from the main thread
 * and from workers (Node allows Atomics.wait on the main thread), whose word names its holder
 * so that a lock left by a thread that ended is taken over (participants.ts).
 *
 * Shared word layout (Int32): 0 = unlocked; otherwise bits 0-1 are 1 (locked) or 2 (locked
 * and someone may be sleeping in Atomics.wait: Drepper's "futexes are tricky" mutex #2), and
 * bits 2-31 are the holder's participants.ts holderBits (participant id and generation).
 *
 * Dead holders: a waiter that finds the word held by a participant that is no longer the live
 * thread it was (participants.ts holderWordDead: the slot is DEAD, or claimed again with
 * another generation) takes the lock over with one compareExchange of that exact word (one
 * taker wins), runs the lock's `onSteal` repair (whatever the dead holder may have left
 * half-changed in what the lock protects; it receives the dead holder's word) and returns
 * holding it. Sleeps are bounded
 * (SLEEP_MS) because a native store does not wake Atomics.wait (V8's own futex emulation):
 * a waiter notices a death at its next slice at the latest.
 *
 * Concurrency: compareExchange/exchange are sequentially consistent, so everything
 * written inside the critical section is visible to the next holder (and to a taker, after
 * the holder's death: the participant's DEAD store comes after everything it wrote).
 * Critical sections are short (bitmap updates), so a waiter spins briefly before sleeping (a
 * wake-up costs two orders of magnitude more than a spin: docs/PERFORMANCE.md).
 */
import { holderBits, holderWordDead } from './participants.js';

const SPINS_BEFORE_SLEEP = 200;
const SLEEP_MS = 10;
const STATE_MASK = 3;
const CONTENDED = 2;

/** Locks taken over from dead holders in this process (tests and stats read it). */
export const spinLockStats = { stolen: 0 };

export function lockWord(words: Int32Array, index: number, onSteal?: (deadWord: number) => void): void {
  const me = holderBits();
  for (let i = 0; i < SPINS_BEFORE_SLEEP; i++) {
    if (Atomics.compareExchange(words, index, 0, me | 1) === 0) return;
  }
  lockWordSlow(words, index, me, onSteal);
}

function lockWordSlow(
  words: Int32Array,
  index: number,
  me: number,
  onSteal: ((deadWord: number) => void) | undefined,
): void {
  for (;;) {
    const w = Atomics.load(words, index);
    if (w === 0) {
      // Taken after contention: keep the word marked contended (the unlock notifies).
      if (Atomics.compareExchange(words, index, 0, me | CONTENDED) === 0) return;
      continue;
    }
    if (holderWordDead(w)) {
      if (Atomics.compareExchange(words, index, w, me | CONTENDED) !== w) continue;
      spinLockStats.stolen++;
      onSteal?.(w);
      return;
    }
    if ((w & STATE_MASK) !== CONTENDED) {
      if (Atomics.compareExchange(words, index, w, (w & ~STATE_MASK) | CONTENDED) !== w) continue;
    }
    Atomics.wait(words, index, (w & ~STATE_MASK) | CONTENDED, SLEEP_MS);
  }
}

export function unlockWord(words: Int32Array, index: number): void {
  if ((Atomics.exchange(words, index, 0) & STATE_MASK) === CONTENDED) Atomics.notify(words, index, 1);
}

/**
 * Takes the lock when it is free, or held by a dead holder (taken over as lockWord does,
 * `onSteal` included); false, changing nothing, while a live thread holds it.
 */
export function tryLockWord(words: Int32Array, index: number, onSteal?: (deadWord: number) => void): boolean {
  const me = holderBits();
  for (;;) {
    const w = Atomics.load(words, index);
    if (w === 0) {
      if (Atomics.compareExchange(words, index, 0, me | 1) === 0) return true;
      continue;
    }
    if (!holderWordDead(w)) return false;
    if (Atomics.compareExchange(words, index, w, me | CONTENDED) !== w) continue;
    spinLockStats.stolen++;
    onSteal?.(w);
    return true;
  }
}

/** Runs fn with the lock held; releases it on throw too. */
export function withLock<T>(words: Int32Array, index: number, fn: () => T, onSteal?: (deadWord: number) => void): T {
  lockWord(words, index, onSteal);
  try {
    return fn();
  } finally {
    unlockWord(words, index);
  }
}

/** True when the word is held by this thread (assertions). */
export function heldByMe(words: Int32Array, index: number): boolean {
  return (Atomics.load(words, index) & ~STATE_MASK) === holderBits();
}
