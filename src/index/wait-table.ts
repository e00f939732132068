/**
 * The wait table: where threads sleep until an entry lock is released (the kernel's
 * hashed wait queues with key-matched exclusive wake-ups, as fs/dax.c uses them).
 * Waiters hash their 53-bit key into a fixed number of slots; each slot holds a FIFO queue
 * of waiter records, and every waiter sleeps on its own 32-bit word, so a wake-up reaches
 * exactly the waiter chosen, never one of another key that merely shares the slot.
 *
 * Invariants
 * - A record is in exactly one place: never taken yet (at or past H_FRESH), the free list, or
 *   one slot's queue (word ARMED), or owned by its waiter after being dequeued (word WOKEN, or
 *   dequeued by its own timeout or cancel). Only the waiter frees its record, onto the list.
 * - A record's word turns WOKEN only while the waker holds the slot mutex and dequeues it,
 *   so a waiter that takes the mutex and still sees ARMED may dequeue itself.
 * - Every queued record's slot is slotOf(its key).
 *
 * Concurrency
 * - Each slot's queue is guarded by the slot's mutex word; the free list by its own mutex.
 *   No thread holds two of these at once (free-list operations happen outside slot mutexes).
 * - prepare() queues the record (word ARMED) before the caller re-checks its condition: a
 *   wake-up after that re-check finds the record and flips its word, and Atomics.wait on a
 *   word that is no longer ARMED returns at once, so no wake-up between check and sleep is lost.
 * - A waker notifies after dropping the mutex; by then the waiter may have freed and someone
 *   reused the record, so a notify can wake a stranger: waits loop until their word is WOKEN.
 * - wakeWhen(key, all, release) runs `release` (the entry-lock layer clears LOCKED there) and
 *   the dequeue under one hold of the slot mutex, and a wait that times out runs its
 *   onTimeout check under the same mutex right after dequeuing itself. So a timed-out waiter
 *   sees either the entry still held (the release comes later and wakes someone else) or a
 *   release that already dequeued it (then it was woken, not timed out): never a release
 *   that has not yet woken anyone (a false lost wake-up).
 * - Batons (Q_BATONS, per slot): each exclusive waiter a wakeWhen dequeues is counted until its
 *   entry-lock caller calls returnBaton (it took the lock, or re-armed WAITERS, or passed the
 *   wake on). While a baton is out the entry may be free with others still queued, legitimately;
 *   the lost-wake-up check counts only when no baton of the slot is out.
 *
 * Test-build switches (DAXSTORE_TEST_BREAK, read once at load): wait-arm queues a waiter only
 * when it goes to sleep (the classic lost wake-up), wait-key matches wake-ups by slot only,
 * timeout-unordered runs a timed-out wait's onTimeout after dropping the slot mutex (the old
 * order, which let a concurrent unlock be counted as a lost wake-up).
 *
 * Thread death (participants.ts). Every record names the participant that registered it
 * (R_OWNER, R_OWNER_GEN, stored right after it leaves the free list, under the free-list
 * mutex). reapParticipant(id) frees the records of a dead participant: a queued one is
 * dequeued first; one a waker had already dequeued and flipped to WOKEN carried an exclusive
 * wake-up (a baton), which is handed on (wakeWhen) and returned. The slot and free-list
 * mutexes are holder-naming spin locks; a slot mutex taken over from a dead holder has its
 * queue tail recomputed (repairSlotLocked: an enqueue or unlink stores its link first, then the
 * tail), and a waiter whose ARMED record a dead waker unlinked but never flipped finds it
 * missing from the queue and counts itself woken (that waker counted its baton already).
 *
 * Persistence ordering: none (process lifetime only).
 */
import { randomFillSync } from 'node:crypto';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { lockWord, unlockWord } from '../device/spin-lock.js';
import { brokenAtLoad, testHooks } from '../test-break.js';
import { participantGeneration, participantId } from '../device/participants.js';

export interface WaitTableHandle {
  readonly buffer: SharedArrayBuffer;
}

export type WaitMode = 'exclusive' | 'shared';
export type WaitResult = 'woken' | 'timed-out';

const KEY_LIMIT = 2 ** 53;
/** DAXSTORE_TEST_BREAK=wait-arm: prepare() only queues at wait() time, so wake-ups between re-check and sleep are lost. */
export const WAIT_ARM_BROKEN = brokenAtLoad('wait-arm');
/** DAXSTORE_TEST_BREAK=wait-key: wakes match the slot only, not the key, so waiters of colliding keys are mis-woken. */
export const WAIT_KEY_BROKEN = brokenAtLoad('wait-key');
/** DAXSTORE_TEST_BREAK=timeout-unordered: onTimeout runs after the slot mutex is dropped (false lost wake-ups). */
export const TIMEOUT_UNORDERED = brokenAtLoad('timeout-unordered');

// ---- buffer: Int32 words ----------------------------------------------------------------
const MAGIC = 0x57414954; // 'WAIT'
const H_MAGIC = 0;
const H_SLOTS = 1;
const H_MAX_WAITERS = 2;
const H_FREE_MUTEX = 3; // device/spin-lock word: 0 free, 1 locked, 2 locked with sleepers
const H_FREE_HEAD = 4; // free record list: record number + 1, 0 = empty
const H_WAITING = 5; // records queued right now
const H_WOKEN = 6; // wake-ups delivered, total (wraps at 2^32; stats read it unsigned)
const H_TIMED_OUT = 7; // waits that ended by timeout, total
const H_TOKEN = 8; // random nonzero id, written once at create: participant records name the table by it
const H_FRESH = 9; // records [H_FRESH, maxWaiters) were never taken: free, not on the list (taken after it)
const HEADER_WORDS = 16;
// Slot s at HEADER_WORDS + s * SLOT_WORDS.
const SLOT_WORDS = 4;
const Q_MUTEX = 0; // device/spin-lock word
const Q_HEAD = 1; // first queued record number + 1, 0 = empty
const Q_TAIL = 2; // last queued record number + 1
const Q_BATONS = 3; // exclusive waiters woken and not yet returned (returnBaton); changed by Atomics
// Record r at recordBase + r * RECORD_WORDS.
const RECORD_WORDS = 8;
const R_WORD = 0; // the word its waiter sleeps on: ARMED while queued, WOKEN once a waker dequeued it
const R_KEY_LO = 1; // key bits 31..0
const R_KEY_HI = 2; // key bits 52..32
const R_MODE = 3; // MODE_EXCLUSIVE or MODE_SHARED
const R_NEXT = 4; // next record number + 1 in the slot queue or the free list, 0 = none
const R_OWNER = 5; // participants.ts id of the thread that registered it (0 while free)
const R_OWNER_GEN = 6; // and its generation
const ARMED = 0;
const WOKEN = 1;
const MODE_EXCLUSIVE = 1;
const MODE_SHARED = 2;

/** One registration in the wait table; consumed by exactly one wait/waitAsync/cancel. */
export class Waiter {
  /** @internal set once its wait or cancel has finished; the record is back on the free list. */
  done = false;
  /** @internal false only under DAXSTORE_TEST_BREAK=wait-arm until wait() queues it */
  queued = true;
  constructor(
    readonly key: number,
    readonly mode: WaitMode,
    /** @internal record number */
    readonly record: number,
    /** @internal the table's buffer, so a waiter is never used on another table */
    readonly table: SharedArrayBuffer,
  ) {}
}

/**
 * 53-bit identity of (tree, key) for the wait table; a huge entry waits on its aligned start key.
 *
 * Collision argument: two lanes of 32-bit multiply-xor mixing over the tree id, the length and
 * every byte, cross-mixed at the end, keeping 53 bits. Waiters compare full 53-bit keys, so
 * only two *different* keys with equal hashes, both contended at the same moment, can
 * mis-wake (roughly 2^-53 per pair for unrelated keys). Even then the entry-lock layer's
 * bounded-timeout re-check recovers: a wrongly woken waiter re-checks and waits again, and
 * the waiter that missed its wake-up wakes at its timeout and finds the entry free.
 */
export function waitKey(treeId: number, key: Uint8Array): number {
  if (!Number.isInteger(treeId) || treeId < 0 || treeId >= 2 ** 32) {
    throw new DaxError('EINVAL', `waitKey: tree id ${treeId} is not an integer in [0, 2^32)`);
  }
  if (!(key instanceof Uint8Array)) throw new DaxError('EINVAL', `waitKey: tree ${treeId}: key is not a Uint8Array`);
  let a = 0x811c9dc5 ^ treeId;
  let b = Math.imul(0x9747b28c ^ key.length, 0x85ebca6b) ^ treeId;
  for (let i = 0; i < key.length; i++) {
    a = Math.imul(a ^ key[i], 0x01000193);
    b = Math.imul(b + key[i], 0x5bd1e995);
    b ^= b >>> 13;
  }
  const lo = fmix32((a + Math.imul(b, 0x27d4eb2f)) | 0);
  const hi = fmix32(b ^ lo ^ key.length);
  return (hi & 0x1fffff) * 2 ** 32 + (lo >>> 0);
}

export class WaitTable {
  private readonly words: Int32Array;
  private readonly slots: number;
  private readonly recordBase: number;

  private constructor(private readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
    this.slots = this.words[H_SLOTS];
    this.recordBase = HEADER_WORDS + this.slots * SLOT_WORDS;
  }

  static create(opts: { slots?: number; maxWaiters?: number } = {}): WaitTable {
    const slots = opts.slots ?? 4096;
    const maxWaiters = opts.maxWaiters ?? 8192;
    if (!Number.isInteger(slots) || slots < 1 || slots > 2 ** 20) {
      throw new DaxError('EINVAL', `WaitTable.create: slots ${slots} is not an integer in [1, 2^20]`);
    }
    if (!Number.isInteger(maxWaiters) || maxWaiters < 1 || maxWaiters > 2 ** 20) {
      throw new DaxError('EINVAL', `WaitTable.create: maxWaiters ${maxWaiters} is not an integer in [1, 2^20]`);
    }
    const buffer = new SharedArrayBuffer((HEADER_WORDS + slots * SLOT_WORDS + maxWaiters * RECORD_WORDS) * 4);
    const w = new Int32Array(buffer);
    w[H_SLOTS] = slots;
    w[H_MAX_WAITERS] = maxWaiters;
    // Every record is fresh (H_FRESH 0) and the list empty: nothing is written to the records,
    // whose memory stays untouched until a waiter takes one.
    w[H_TOKEN] = randomFillSync(new Int32Array(1))[0] | 1;
    Atomics.store(w, H_MAGIC, MAGIC); // last: publishes the initialized table
    return new WaitTable(buffer);
  }

  static attach(handle: WaitTableHandle): WaitTable {
    const ok =
      handle !== null &&
      typeof handle === 'object' &&
      handle.buffer instanceof SharedArrayBuffer &&
      handle.buffer.byteLength >= HEADER_WORDS * 4 &&
      Atomics.load(new Int32Array(handle.buffer, 0, HEADER_WORDS), H_MAGIC) === MAGIC;
    if (!ok) throw new DaxError('EINVAL', 'WaitTable.attach: not a wait table handle');
    return new WaitTable(handle.buffer);
  }

  handle(): WaitTableHandle {
    return { buffer: this.buffer };
  }

  /** Random id of this table (participant baton records name the table by it). */
  get token(): number {
    return this.words[H_TOKEN];
  }

  /**
   * Frees every record of dead participant `id` (generation `gen`): dequeued if still queued;
   * an exclusive one already woken held a baton, which is handed on (the next waiter of its key
   * is woken) and returned. Also returns the baton of `batonKey` (>= 0: the one its baton
   * record names). Returns the records freed.
   */
  reapParticipant(id: number, gen: number, batonKey: number): number {
    const w = this.words;
    const max = w[H_MAX_WAITERS];
    let freed = 0;
    for (let r = 0; r < max; r++) {
      const at = this.recordWord(r, 0);
      if (Atomics.load(w, at + R_OWNER) !== id || Atomics.load(w, at + R_OWNER_GEN) !== gen) continue;
      const key = (w[at + R_KEY_HI] >>> 0) * 2 ** 32 + (w[at + R_KEY_LO] >>> 0);
      const waiter = new Waiter(key, w[at + R_MODE] === MODE_EXCLUSIVE ? 'exclusive' : 'shared', r, this.buffer);
      let woken = Atomics.load(w, at + R_WORD) !== ARMED;
      if (!woken && this.onFreeList(r)) {
        Atomics.store(w, at + R_OWNER, 0); // popped back (a claim cut short): nothing to undo
        continue;
      }
      if (!woken) woken = !this.dequeueSelf(waiter);
      this.release(waiter);
      freed++;
      if (woken && waiter.mode === 'exclusive') this.handOnBaton(key);
    }
    if (batonKey >= 0) this.handOnBaton(batonKey);
    return freed;
  }

  /** A baton a dead waiter held: wake the next waiter of key in its place, then return it. */
  private handOnBaton(key: number): void {
    this.wake(key, false, () => true, true);
    const left = Atomics.sub(this.words, this.slotWord(key, Q_BATONS), 1) - 1;
    if (left < 0) Atomics.add(this.words, this.slotWord(key, Q_BATONS), 1); // it had been returned after all
  }

  private onFreeList(record: number): boolean {
    const w = this.words;
    let found = false;
    lockWord(w, H_FREE_MUTEX);
    if (record >= w[H_FRESH]) found = true; // a claim of a fresh record cut short
    for (
      let r = w[H_FREE_HEAD], steps = 0;
      r !== 0 && steps <= w[H_MAX_WAITERS] && !found;
      r = w[this.recordWord(r - 1, R_NEXT)], steps++
    ) {
      if (r - 1 === record) {
        found = true;
        break;
      }
    }
    unlockWord(w, H_FREE_MUTEX);
    return found;
  }

  /** Takes slot's mutex (slot: its first word); a dead holder's is taken over and its queue repaired. */
  private lockSlot(slot: number): void {
    this.lockingSlot = slot;
    lockWord(this.words, slot + Q_MUTEX, this.repairLockingSlot);
  }

  private lockingSlot = 0;
  private readonly repairLockingSlot = (): void => this.repairSlotLocked(this.lockingSlot);

  /** A slot mutex was taken over from a dead holder: recompute the tail from the links (file header). */
  private repairSlotLocked(slot: number): void {
    const w = this.words;
    let last = 0;
    let n = 0;
    for (let r = w[slot + Q_HEAD]; r !== 0 && n <= w[H_MAX_WAITERS]; r = w[this.recordWord(r - 1, R_NEXT)], n++)
      last = r;
    w[slot + Q_TAIL] = last;
  }

  /** Register BEFORE re-checking the condition, so no wake-up between the check and the sleep is lost. */
  prepare(key: number, mode: WaitMode): Waiter {
    checkKey(key, 'prepare');
    if (mode !== 'exclusive' && mode !== 'shared')
      throw new DaxError('EINVAL', `prepare: key ${key}: mode ${String(mode)}`);
    const record = this.allocRecord(key);
    const w = this.words;
    const at = this.recordWord(record, 0);
    w[at + R_WORD] = ARMED;
    w[at + R_KEY_LO] = (key % 2 ** 32) | 0;
    w[at + R_KEY_HI] = Math.floor(key / 2 ** 32);
    w[at + R_MODE] = mode === 'exclusive' ? MODE_EXCLUSIVE : MODE_SHARED;
    w[at + R_NEXT] = 0;
    const waiter = new Waiter(key, mode, record, this.buffer);
    this.arm(waiter);
    return waiter;
  }

  /**
   * Sleep (Atomics.wait) until woken or timeoutMs passes. Worker threads, or the main thread
   * where blocking is allowed. On a timeout, onTimeout runs under the slot mutex right after
   * the waiter dequeued itself (ordered against wakeWhen: see the file header).
   */
  wait(waiter: Waiter, timeoutMs = Infinity, onTimeout?: () => void): WaitResult {
    this.checkLive(waiter, 'wait');
    if (!waiter.queued) this.enqueue(waiter);
    const word = this.recordWord(waiter.record, R_WORD);
    const deadline = performance.now() + checkTimeout(timeoutMs);
    while (Atomics.load(this.words, word) === ARMED) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      Atomics.wait(this.words, word, ARMED, remaining === Infinity ? undefined : remaining);
    }
    return this.finish(waiter, onTimeout);
  }

  /** Wait without blocking the thread (Atomics.waitAsync): for the main thread's async paths. */
  async waitAsync(waiter: Waiter, timeoutMs = Infinity, onTimeout?: () => void): Promise<WaitResult> {
    this.checkLive(waiter, 'waitAsync');
    if (!waiter.queued) this.enqueue(waiter);
    const word = this.recordWord(waiter.record, R_WORD);
    const deadline = performance.now() + checkTimeout(timeoutMs);
    while (Atomics.load(this.words, word) === ARMED) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      const r = Atomics.waitAsync(this.words, word, ARMED, remaining === Infinity ? undefined : remaining);
      if (r.async) await r.value;
    }
    return this.finish(waiter, onTimeout);
  }

  /**
   * The re-check found the condition already true: deregister without sleeping. Returns true
   * when a wake-up had already been delivered to this waiter (an exclusive one then holds the
   * baton: it must take the lock and later unlock, or pass the wake-up on).
   */
  cancel(waiter: Waiter): boolean {
    this.checkLive(waiter, 'cancel');
    if (!waiter.queued) {
      this.release(waiter);
      return false;
    }
    const woken = !this.dequeueSelf(waiter);
    this.release(waiter);
    return woken;
  }

  /** Wake the first exclusive waiter registered for key (exact key match) and every shared waiter for it. */
  wakeOne(key: number): number {
    checkKey(key, 'wakeOne');
    return this.wake(key, false);
  }

  /** Wake every waiter for key (entry deleted, or its order changed). */
  wakeAll(key: number): number {
    checkKey(key, 'wakeAll');
    return this.wake(key, true);
  }

  /**
   * Under the slot mutex: run release(); if it returns true, wake as wakeOne (all false) or
   * wakeAll (all true) would, in the same mutex hold, and count each exclusive waiter woken
   * as a baton out (its caller must returnBaton; wakeOne/wakeAll count none). The entry-lock layer clears LOCKED (or
   * sets DELETED) inside release, which orders it against timed-out waiters (file header).
   * release must be short and must not take another lock.
   * @internal
   */
  wakeWhen(key: number, all: boolean, release: () => boolean): number {
    checkKey(key, 'wakeWhen');
    return this.wake(key, all, release, true);
  }

  /** @internal The caller, an exclusive waiter that was woken, took the lock, re-armed WAITERS or passed the wake on. */
  returnBaton(key: number): void {
    checkKey(key, 'returnBaton');
    const left = Atomics.sub(this.words, this.slotWord(key, Q_BATONS), 1) - 1;
    assert(left >= 0, () => `wait table: baton returned for key ${key} that nobody held`);
  }

  /** @internal Woken exclusive waiters of key's slot that have not returned their baton (may include other keys of the slot). */
  batonsInFlight(key: number): number {
    checkKey(key, 'batonsInFlight');
    return Atomics.load(this.words, this.slotWord(key, Q_BATONS));
  }

  /** True when some waiter is queued for key right now (lets an unlocker keep a WAITERS bit honest). */
  hasWaiters(key: number): boolean {
    checkKey(key, 'hasWaiters');
    const w = this.words;
    const slot = this.slotWord(key, 0);
    this.lockSlot(slot);
    let found = false;
    for (let r = w[slot + Q_HEAD]; r !== 0 && !found; r = w[this.recordWord(r - 1, R_NEXT)]) {
      found = this.recordHasKey(r - 1, key);
    }
    unlockWord(w, slot + Q_MUTEX);
    return found;
  }

  /** @internal Batons out over all slots (tests check it is back to 0). */
  batonsTotal(): number {
    let batons = 0;
    for (let slot = 0; slot < this.slots; slot++)
      batons += Atomics.load(this.words, HEADER_WORDS + slot * SLOT_WORDS + Q_BATONS);
    return batons;
  }

  stats(): { waiting: number; woken: number; timedOut: number } {
    return {
      waiting: Atomics.load(this.words, H_WAITING),
      woken: Atomics.load(this.words, H_WOKEN) >>> 0,
      timedOut: Atomics.load(this.words, H_TIMED_OUT) >>> 0,
    };
  }

  // ---- internals ------------------------------------------------------------------------

  private enqueue(waiter: Waiter): void {
    const w = this.words;
    const record = waiter.record + 1;
    const slot = this.slotWord(waiter.key, 0);
    Atomics.add(w, H_WAITING, 1); // before it is visible to wakers, so the count never dips below 0
    this.lockSlot(slot);
    const tail = w[slot + Q_TAIL];
    if (tail === 0) w[slot + Q_HEAD] = record;
    else w[this.recordWord(tail - 1, R_NEXT)] = record;
    w[slot + Q_TAIL] = record;
    unlockWord(w, slot + Q_MUTEX);
    waiter.queued = true;
  }

  private wake(key: number, all: boolean, release?: () => boolean, batons = false): number {
    const w = this.words;
    const slot = this.slotWord(key, 0);
    const woken: number[] = [];
    let exclusiveWoken = 0;
    this.lockSlot(slot);
    let prev = 0;
    let go = true;
    try {
      if (release !== undefined) go = release();
    } catch (err) {
      unlockWord(w, slot + Q_MUTEX);
      throw err;
    }
    for (let r = go ? w[slot + Q_HEAD] : 0; r !== 0;) {
      const at = this.recordWord(r - 1, 0);
      const next = w[at + R_NEXT];
      const exclusive = w[at + R_MODE] === MODE_EXCLUSIVE;
      if (this.wakesRecord(r - 1, key) && (all || !exclusive || exclusiveWoken === 0)) {
        if (exclusive) exclusiveWoken++;
        // Count the baton before the word turns WOKEN: the waiter may see it at once (its wait
        // polls the word) and return the baton before this wake even drops the mutex.
        if (exclusive && batons) Atomics.add(w, slot + Q_BATONS, 1);
        this.unlinkLocked(slot, prev, r);
        Atomics.store(w, at + R_WORD, WOKEN); // under the mutex: see the invariant on R_WORD
        woken.push(at + R_WORD);
      } else {
        prev = r;
      }
      r = next;
    }
    unlockWord(w, slot + Q_MUTEX);
    // After the mutex: the record may already be reused; a stray notify is a spurious wake-up.
    for (const word of woken) Atomics.notify(w, word, 1);
    if (woken.length > 0) {
      Atomics.sub(w, H_WAITING, woken.length);
      Atomics.add(w, H_WOKEN, woken.length);
    }
    return woken.length;
  }

  /** A wait ended: if still queued it timed out (dequeue under the mutex decides the race with a waker). */
  private finish(waiter: Waiter, onTimeout?: () => void): WaitResult {
    if (TIMEOUT_UNORDERED) return this.finishUnordered(waiter, onTimeout);
    const hook = testHooks.waitTimeout;
    const armed = Atomics.load(this.words, this.recordWord(waiter.record, R_WORD)) === ARMED;
    if (armed && hook !== undefined) hook('before-dequeue');
    const stillQueued = armed && this.dequeueSelf(waiter, onTimeout);
    if (stillQueued) {
      Atomics.add(this.words, H_TIMED_OUT, 1);
      if (hook !== undefined) hook('after-dequeue');
    }
    this.release(waiter);
    return stillQueued ? 'timed-out' : 'woken';
  }

  /** finish under DAXSTORE_TEST_BREAK=timeout-unordered: onTimeout runs after the slot mutex is dropped. */
  private finishUnordered(waiter: Waiter, onTimeout?: () => void): WaitResult {
    const hook = testHooks.waitTimeout;
    const armed = Atomics.load(this.words, this.recordWord(waiter.record, R_WORD)) === ARMED;
    if (armed && hook !== undefined) hook('before-dequeue');
    const stillQueued = armed && this.dequeueSelf(waiter, undefined);
    if (stillQueued) {
      Atomics.add(this.words, H_TIMED_OUT, 1);
      if (hook !== undefined) hook('after-dequeue');
      if (onTimeout !== undefined) onTimeout();
    }
    this.release(waiter);
    return stillQueued ? 'timed-out' : 'woken';
  }

  /** Queues a prepared waiter, so a wake-up after the caller's re-check finds it. */
  private arm(waiter: Waiter): void {
    if (WAIT_ARM_BROKEN) return this.armAtSleep(waiter);
    this.enqueue(waiter);
  }

  /** arm under DAXSTORE_TEST_BREAK=wait-arm: queued only when wait() goes to sleep (a wake-up before then is lost). */
  private armAtSleep(waiter: Waiter): void {
    waiter.queued = false;
  }

  /** Whether a wake-up of `key` takes record r (its key matches; slot collisions are not woken). */
  private wakesRecord(r: number, key: number): boolean {
    if (WAIT_KEY_BROKEN) return true; // every waiter of the slot, whatever its key
    return this.recordHasKey(r, key);
  }

  /**
   * Remove the waiter's record from its queue if no waker took it first. True when this call
   * dequeued it; then onTimeout runs before the slot mutex is dropped.
   */
  private dequeueSelf(waiter: Waiter, onTimeout?: () => void): boolean {
    const w = this.words;
    const slot = this.slotWord(waiter.key, 0);
    const target = waiter.record + 1;
    this.lockSlot(slot);
    if (w[this.recordWord(waiter.record, R_WORD)] !== ARMED) {
      unlockWord(w, slot + Q_MUTEX);
      return false;
    }
    let prev = 0;
    let r = w[slot + Q_HEAD];
    while (r !== 0 && r !== target) {
      prev = r;
      r = w[this.recordWord(r - 1, R_NEXT)];
    }
    if (r !== target) {
      // Unlinked by a waker that died before flipping the word (file header): it counted
      // the baton and meant to wake us, so this is a wake-up.
      Atomics.store(w, this.recordWord(waiter.record, R_WORD), WOKEN);
      unlockWord(w, slot + Q_MUTEX);
      return false;
    }
    this.unlinkLocked(slot, prev, r);
    try {
      if (onTimeout !== undefined) onTimeout();
    } finally {
      unlockWord(w, slot + Q_MUTEX);
    }
    Atomics.sub(w, H_WAITING, 1);
    return true;
  }

  /** Unlink record number r (+1 form) whose predecessor is prev (0 = head). Needs the slot mutex. */
  private unlinkLocked(slot: number, prev: number, r: number): void {
    const w = this.words;
    const next = w[this.recordWord(r - 1, R_NEXT)];
    if (prev === 0) w[slot + Q_HEAD] = next;
    else w[this.recordWord(prev - 1, R_NEXT)] = next;
    if (w[slot + Q_TAIL] === r) w[slot + Q_TAIL] = prev;
    w[this.recordWord(r - 1, R_NEXT)] = 0;
  }

  private allocRecord(key: number): number {
    const w = this.words;
    lockWord(w, H_FREE_MUTEX);
    const head = w[H_FREE_HEAD];
    const fresh = w[H_FRESH];
    // The list first; a fresh record only when it is empty.
    const record = head !== 0 ? head - 1 : fresh < w[H_MAX_WAITERS] ? fresh : -1;
    if (record >= 0) {
      // Owner first: a claim cut short by a death leaves a record that names the dead thread
      // and is still free, on the list or fresh (reapParticipant leaves it there).
      Atomics.store(w, this.recordWord(record, R_OWNER), participantId());
      Atomics.store(w, this.recordWord(record, R_OWNER_GEN), participantGeneration());
      if (head !== 0) w[H_FREE_HEAD] = w[this.recordWord(record, R_NEXT)];
      else w[H_FRESH] = fresh + 1;
    }
    unlockWord(w, H_FREE_MUTEX);
    if (record < 0) {
      throw new DaxError('EBUSY', `wait table: all ${w[H_MAX_WAITERS]} waiter records are in use (key ${key})`);
    }
    return record;
  }

  private release(waiter: Waiter): void {
    waiter.done = true;
    const w = this.words;
    lockWord(w, H_FREE_MUTEX);
    Atomics.store(w, this.recordWord(waiter.record, R_OWNER), 0);
    w[this.recordWord(waiter.record, R_NEXT)] = w[H_FREE_HEAD];
    w[H_FREE_HEAD] = waiter.record + 1;
    unlockWord(w, H_FREE_MUTEX);
  }

  private recordHasKey(record: number, key: number): boolean {
    const at = this.recordWord(record, 0);
    return (
      this.words[at + R_KEY_LO] === ((key % 2 ** 32) | 0) && this.words[at + R_KEY_HI] === Math.floor(key / 2 ** 32)
    );
  }

  private checkLive(waiter: Waiter, op: string): void {
    if (!(waiter instanceof Waiter) || waiter.table !== this.buffer)
      throw new DaxError('EINVAL', `${op}: not a waiter of this table`);
    if (waiter.done)
      throw new DaxError('EINVAL', `${op}: waiter for key ${waiter.key} was already waited on or cancelled`);
  }

  private slotWord(key: number, field: number): number {
    const mixed = fmix32((key % 2 ** 32) ^ Math.imul(Math.floor(key / 2 ** 32), 0x9e3779b1));
    return HEADER_WORDS + ((mixed >>> 0) % this.slots) * SLOT_WORDS + field;
  }

  private recordWord(record: number, field: number): number {
    return this.recordBase + record * RECORD_WORDS + field;
  }
}

function checkKey(key: number, op: string): void {
  if (!Number.isInteger(key) || key < 0 || key >= KEY_LIMIT) {
    throw new DaxError('EINVAL', `${op}: wait key ${key} is not an integer in [0, 2^53)`);
  }
}

function checkTimeout(timeoutMs: number): number {
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new DaxError('EINVAL', `wait: timeout ${timeoutMs} ms is not a non-negative number`);
  }
  return timeoutMs;
}

/** murmur3's 32-bit finalizer: every input bit affects every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}
