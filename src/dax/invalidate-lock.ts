/**
 * The per-object invalidate lock (the kernel's mapping->invalidate_lock): a reader-writer
 * lock on one Int32 word of the object slot table, shared by every thread.
 *
 * Shared word layout (Int32):
 *   bits 0..28  number of shared holders (faults, writes)
 *   bit  29     WRITER_PENDING: an exclusive locker is waiting; new shared lockers wait too,
 *               so truncate is not starved by a stream of faults
 *   bit  30     WRITER: held exclusive (truncate, punch, remove)
 *
 * Concurrency: every change is a compareExchange; waiters Atomics.wait on the word with a
 * bounded timeout and re-check, and every release notifies all. Lock order: invalidate lock
 * before any entry lock. A thread that would wait on a lock it holds itself (a mkwrite hook
 * truncating its own object) gets DaxError('EDEADLK'): held counts are tracked per thread.
 */
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';

const READERS_MASK = (1 << 29) - 1;
const WRITER_PENDING = 1 << 29;
const WRITER = 1 << 30;
const WAIT_MS = 50;
const SPINS = 100;

/** Per thread: (words identity, index) -> how this thread holds it (>0 shared count, -1 exclusive). */
const held = new WeakMap<Int32Array, Map<number, number>>();

function heldMap(words: Int32Array): Map<number, number> {
  let m = held.get(words);
  if (m === undefined) {
    m = new Map();
    held.set(words, m);
  }
  return m;
}

function sleep(words: Int32Array, index: number, seen: number, spin: number): void {
  if (spin < SPINS) return;
  Atomics.wait(words, index, seen, WAIT_MS);
}

export function lockShared(words: Int32Array, index: number, what: string): void {
  const mine = heldMap(words).get(index) ?? 0;
  if (mine < 0) throw new DaxError('EDEADLK', `${what}: invalidate lock is held exclusively by this thread`);
  if (mine > 0) {
    // Already shared here: a writer may be pending, but it waits for us; do not queue behind it.
    Atomics.add(words, index, 1);
    heldMap(words).set(index, mine + 1);
    return;
  }
  for (let spin = 0; ; spin++) {
    const w = Atomics.load(words, index);
    if ((w & (WRITER | WRITER_PENDING)) === 0) {
      if (Atomics.compareExchange(words, index, w, w + 1) === w) break;
      continue;
    }
    sleep(words, index, w, spin);
  }
  heldMap(words).set(index, 1);
}

export function unlockShared(words: Int32Array, index: number): void {
  const m = heldMap(words);
  const mine = m.get(index) ?? 0;
  assert(mine > 0, 'unlockShared of an invalidate lock this thread does not hold shared');
  const after = Atomics.sub(words, index, 1) - 1;
  assert((after & READERS_MASK) >= 0, 'invalidate lock reader count underflow');
  if (mine === 1) m.delete(index);
  else m.set(index, mine - 1);
  if ((after & READERS_MASK) === 0) Atomics.notify(words, index);
}

export function lockExclusive(words: Int32Array, index: number, what: string): void {
  const mine = heldMap(words).get(index) ?? 0;
  if (mine !== 0)
    throw new DaxError(
      'EDEADLK',
      `${what}: invalidate lock is already held by this thread (${mine < 0 ? 'exclusive' : 'shared'})`,
    );
  let pendingSet = false;
  for (let spin = 0; ; spin++) {
    const w = Atomics.load(words, index);
    if ((w & (WRITER | READERS_MASK)) === 0) {
      if (Atomics.compareExchange(words, index, w, (w & ~WRITER_PENDING) | WRITER) === w) break;
      continue;
    }
    if ((w & WRITER_PENDING) === 0) {
      if (Atomics.compareExchange(words, index, w, w | WRITER_PENDING) !== w) continue;
      pendingSet = true;
      continue;
    }
    sleep(words, index, w, spin);
  }
  void pendingSet;
  heldMap(words).set(index, -1);
}

export function unlockExclusive(words: Int32Array, index: number): void {
  const m = heldMap(words);
  assert(m.get(index) === -1, 'unlockExclusive of an invalidate lock this thread does not hold exclusive');
  m.delete(index);
  for (;;) {
    const w = Atomics.load(words, index);
    assert((w & WRITER) !== 0, 'invalidate lock lost its WRITER bit');
    if (Atomics.compareExchange(words, index, w, w & ~WRITER) === w) break;
  }
  Atomics.notify(words, index);
}

export function heldByThisThread(words: Int32Array, index: number): number {
  return heldMap(words).get(index) ?? 0;
}
