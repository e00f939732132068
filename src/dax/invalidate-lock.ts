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
 *
 * Thread death (participants.ts). A count cannot name its holders, so each holder keeps a
 * record in its participant slot (P_SHARED_LOCKS: two of [table token, word index, count],
 * count -1 for exclusive), updated by the statements right after the compareExchange that
 * took or dropped its share, with no call or loop in between: a thread is only ever
 * terminated at a call or a loop's back edge (V8 checks for termination there), so the word
 * and the record change together. The table token is word TOKEN_WORD of the same array
 * (object-table.ts H_TOKEN). A waiter whose sleep times out looks for holders that died
 * (releaseDeadHolders) and takes their shares or WRITER back, claiming each record by a
 * compareExchange of its count so two waiters never give one back twice; the DAX layer's
 * reap does the same for all of a dead thread's records. A pending bit left by a dead
 * exclusive waiter is cleared by a sleeper that finds no live exclusive waiter's record for
 * the lock; a live one sets it again at its next look (fairness only). A thread holding more
 * than two objects' locks at once keeps no record of the third (then not recoverable).
 */
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import {
  P_SHARED_LOCKS,
  SHARED_LOCK_RECORDS,
  highestParticipant,
  isParticipantDead,
  mySlotBase,
  participantTable,
  slotBase,
} from '../device/participants.js';

const READERS_MASK = (1 << 29) - 1;
const WRITER_PENDING = 1 << 29;
const WRITER = 1 << 30;
const WAIT_MS = 50;
const SPINS = 100;
/** Word of the lock's array holding its table's token (object-table.ts H_TOKEN). */
export const TOKEN_WORD = 4;
const EXCLUSIVE = -1;
const PENDING = -2; // an exclusive waiter that set WRITER_PENDING (no hold)

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
  if (Atomics.wait(words, index, seen, WAIT_MS) === 'timed-out') releaseDeadHolders(words, index);
}

/** The record of (token, index) in this thread's slot: record index 0/1, a free one, or -1. */
function recordFor(pt: Int32Array, base: number, token: number, index: number): number {
  for (let r = 0; r < SHARED_LOCK_RECORDS; r++) {
    const at = base + P_SHARED_LOCKS + 3 * r;
    if (pt[at + 2] !== 0 && pt[at] === token && pt[at + 1] === index) return at;
  }
  for (let r = 0; r < SHARED_LOCK_RECORDS; r++) {
    const at = base + P_SHARED_LOCKS + 3 * r;
    if (pt[at + 2] === 0) return at;
  }
  return -1;
}

export function lockShared(words: Int32Array, index: number, what: string): void {
  const mine = heldMap(words).get(index) ?? 0;
  if (mine < 0) throw new DaxError('EDEADLK', `${what}: invalidate lock is held exclusively by this thread`);
  const pt = participantTable();
  const token = words[TOKEN_WORD];
  const rec = recordFor(pt, mySlotBase(), token, index);
  if (mine > 0) {
    // Already shared here: a writer may be pending, but it waits for us; do not queue behind it.
    Atomics.add(words, index, 1);
    if (rec >= 0) pt[rec + 2]++; // with the add: no call in between (file header)
    heldMap(words).set(index, mine + 1);
    return;
  }
  for (let spin = 0; ; spin++) {
    const w = Atomics.load(words, index);
    if ((w & (WRITER | WRITER_PENDING)) === 0) {
      if (Atomics.compareExchange(words, index, w, w + 1) === w) {
        if (rec >= 0) {
          pt[rec] = token;
          pt[rec + 1] = index;
          pt[rec + 2] = 1;
        }
        break;
      }
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
  const pt = participantTable();
  const rec = recordFor(pt, mySlotBase(), words[TOKEN_WORD], index);
  const tracked = rec >= 0 && pt[rec + 2] > 0 && pt[rec + 1] === index;
  const after = Atomics.sub(words, index, 1) - 1;
  if (tracked) pt[rec + 2]--; // with the sub: no call in between
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
  const pt = participantTable();
  const token = words[TOKEN_WORD];
  const rec = recordFor(pt, mySlotBase(), token, index);
  if (rec >= 0) {
    pt[rec] = token;
    pt[rec + 1] = index;
    pt[rec + 2] = PENDING; // before it can set WRITER_PENDING
  }
  for (let spin = 0; ; spin++) {
    const w = Atomics.load(words, index);
    if ((w & (WRITER | READERS_MASK)) === 0) {
      if (Atomics.compareExchange(words, index, w, (w & ~WRITER_PENDING) | WRITER) === w) {
        if (rec >= 0) pt[rec + 2] = EXCLUSIVE; // with the exchange: no call in between
        break;
      }
      continue;
    }
    if ((w & WRITER_PENDING) === 0) {
      Atomics.compareExchange(words, index, w, w | WRITER_PENDING);
      continue;
    }
    sleep(words, index, w, spin);
  }
  heldMap(words).set(index, -1);
}

export function unlockExclusive(words: Int32Array, index: number): void {
  const m = heldMap(words);
  assert(m.get(index) === -1, 'unlockExclusive of an invalidate lock this thread does not hold exclusive');
  m.delete(index);
  const pt = participantTable();
  const rec = recordFor(pt, mySlotBase(), words[TOKEN_WORD], index);
  for (;;) {
    const w = Atomics.load(words, index);
    assert((w & WRITER) !== 0, 'invalidate lock lost its WRITER bit');
    if (Atomics.compareExchange(words, index, w, w & ~WRITER) === w) {
      if (rec >= 0 && pt[rec + 2] === EXCLUSIVE) pt[rec + 2] = 0; // with the exchange
      break;
    }
  }
  Atomics.notify(words, index);
}

export function heldByThisThread(words: Int32Array, index: number): number {
  return heldMap(words).get(index) ?? 0;
}

/**
 * Gives back what dead participants hold of lock `index` of `words` (file header); with
 * `only`, just that participant's, for every lock of the table. Returns the shares and
 * exclusive holds given back.
 */
export function releaseDeadHolders(words: Int32Array, index: number, only = 0): number {
  const pt = participantTable();
  const token = words[TOKEN_WORD];
  let released = 0;
  let livePending = false;
  const first = only !== 0 ? only : 1;
  const last = only !== 0 ? only : highestParticipant();
  for (let id = first; id <= last; id++) {
    const base = slotBase(id);
    for (let r = 0; r < SHARED_LOCK_RECORDS; r++) {
      const at = base + P_SHARED_LOCKS + 3 * r;
      const count = Atomics.load(pt, at + 2);
      if (count === 0 || pt[at] !== token || (only === 0 && pt[at + 1] !== index)) continue;
      if (!isParticipantDead(id)) {
        if (count === PENDING) livePending = true;
        continue;
      }
      if (Atomics.compareExchange(pt, at + 2, count, 0) !== count) continue; // another waiter took it
      const lock = pt[at + 1];
      if (count > 0) Atomics.sub(words, lock, count);
      else if (count === EXCLUSIVE) Atomics.and(words, lock, ~WRITER);
      released++;
      Atomics.notify(words, lock);
    }
  }
  if (only === 0 && !livePending) {
    const w = Atomics.load(words, index);
    if ((w & WRITER_PENDING) !== 0 && (w & WRITER) === 0) {
      Atomics.and(words, index, ~WRITER_PENDING);
      Atomics.notify(words, index);
    }
  }
  return released;
}
