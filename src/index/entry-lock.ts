/**
 * Entry locks: the per-entry lock bit in each leaf's entry word (entry-word.ts for the bit
 * layout), with sleeping through the shared WaitTable. Every path that must be exclusive
 * about one index entry (fault, truncate, writeback, invalidate, rmap) serializes here.
 *
 * Invariants
 *   - LOCKED is set only by a compareExchange that saw it clear (except under the test
 *     switch DAXSTORE_TEST_BREAK=entry-lock, which makes grab not exclusive so tests can
 *     prove they go red); owner is the holder's EpochDomain.threadId while LOCKED.
 *   - A leaf is removed only by its lock holder (deleteLocked, or unlock of an EMPTY
 *     placeholder), which sets DELETED and clears LOCKED in one step; nobody locks a
 *     DELETED leaf.
 *   - An unlocked EMPTY placeholder never exists: unlock removes it, so a failed fault
 *     leaves nothing behind.
 *   - A huge (order 9) entry is never split. grab(order 9) over smaller entries returns
 *     undefined ("fall back to small"). A ZERO or EMPTY huge entry is replaced by small ones
 *     by grabbing it (any covered index finds it), deleteLocked(), then grabbing the small
 *     indices.
 *
 * Concurrency (the wake-up protocol; docs/ARCHITECTURE.md "Entry locks and the wait table")
 *   - Waiter: register in the wait table (prepare), then set WAITERS by CAS while re-checking
 *     that the entry is still locked and not deleted; only then sleep. An unlock after the
 *     CAS sees WAITERS and wakes; an unlock before it makes the CAS fail and the waiter
 *     cancels and retries. No wake-up is lost.
 *   - Unlock clears LOCKED and WAITERS together and wakes ONE exclusive waiter (the baton).
 *     A thread that ever slept in this grab sets WAITERS again when it acquires, so the
 *     next unlock passes the baton on to the rest of the queue (a spurious wakeOne costs
 *     one wait-table probe). deleteLocked and placeholder removal wake ALL waiters: they
 *     must look the key up again.
 *   - An unlock or delete that finds WAITERS set clears LOCKED (sets DELETED) and dequeues
 *     the waiter(s) in one hold of the wait-table slot mutex (releaseEntry -> wakeWhen).
 *   - Sleeps are bounded (WAIT_SLICE_MS) and re-check. A timed-out sleep checks the entry
 *     under that slot mutex right after dequeuing itself (noteTimeoutLocked); if the entry is
 *     free or gone and no baton of its slot is out (a woken exclusive waiter that has not yet
 *     taken the lock, re-armed WAITERS or passed the wake on: grab returns it), a wake-up was
 *     lost and tree.stats().lostWakeups counts it; tests assert it stays 0.
 *   - The uncontended grab and unlock of keys up to 24 bytes run as WebAssembly over the same
 *     arena (wasm-grab.ts): the same loads and the same single CAS as grabFreeJs / releaseEntry,
 *     declining (to the JS paths here) everything that needs a decision: held, DELETED, WAITERS,
 *     an EMPTY placeholder, a node past this thread's view, a dead node.
 *   - The epoch pin covers only the lookup and the CAS; nobody sleeps pinned. A held lock
 *     keeps its leaf alive without a pin (only the holder can remove it).
 *   - Lock order: entry lock, then treeLock. Self-deadlock: a blocking grab of an entry whose
 *     owner is this thread throws DaxError('EDEADLK') at once (R4), whether this thread took
 *     it from sync code or from an async task; grabAsync waits instead.
 *
 * Thread death (participants.ts; docs/ARCHITECTURE.md "Thread death")
 *   - The owner field names a participant id. A grab, tryGrab, grabAsync or waitUnlocked that
 *     finds the entry held by a participant that has died has its domain reap it
 *     (EpochDomain.reap: the layers above finish or undo its operation, which releases what it
 *     locked for it), then releases whatever entry of it is still held (releaseDeadEntry), and
 *     tries again. Sleeps are bounded, so a waiter notices a death at its next slice.
 *   - releaseDeadEntry is unlock on the dead holder's behalf, made safe against a concurrent
 *     release of the same entry: every change is a compareExchange that still sees LOCKED and
 *     the dead owner. A placeholder is removed (as its unlock would); a leaf the holder had
 *     already unlinked is left alone (it may be in limbo: garbage, never touched again).
 *   - replace() writes a record (tree token, leaf, new value and state) into this thread's
 *     participant slot BEFORE the odd sequence bump; a holder that died between its two bumps
 *     leaves the record, and finishDeadReplace stores that value and makes the sequence even
 *     (lock-free: readers that spin on an odd sequence call it, as does the release). A new
 *     key's placeholder fill publishes with ONE compareExchange, so it needs no record.
 *   - holdForDead .. releaseForDead: a reaper finishes a dead holder's operation on its
 *     behalf; the entry word keeps naming the dead holder throughout, so a reaper that dies
 *     in the middle leaves the entry to the next run of the same reap, not to its own.
 *   - A woken exclusive waiter's baton is recorded in its participant slot until returned, so
 *     a reap hands it on (wait-table.ts reapParticipant).
 *
 * Persistence ordering: none (volatile index).
 */
import { assert } from '../assert.js';
import { DaxError } from '../errors.js';
import { waitKey, type Waiter } from './wait-table.js';
import type { RadixTree } from './radix-tree.js';
import { H_STAT_LOST_WAKEUPS, H_STAT_WAITS } from './arena.js';
import { checkIndex, checkKey, checkValue, indexKey } from './keys.js';
import {
  Ew,
  STATE_NAMES,
  type EntryState,
  type EntryTag,
  orderOf,
  ownerOf,
  stateCode,
  stateOf,
  tagBit,
} from './entry-word.js';
import { Lay } from './nodes.js';
import { H_TREE_LOCK } from './arena.js';
import { forEachLeafLocked } from './tree-repair.js';
import {
  P_BATON_KEY_HI,
  P_BATON_KEY_LO,
  P_BATON_TABLE,
  P_REPLACE_HI,
  P_REPLACE_LEAF,
  P_REPLACE_LO,
  P_REPLACE_TREE,
  holderIdOf,
  isParticipantDead,
  slotBase,
} from '../device/participants.js';
import { loadWord, storeRelease } from './word-load.js';
import { WASM_KEY_BYTES, WasmGrab, keyWords, packKeyWords, packTouchWords, touchWords } from './wasm-grab.js';
import { brokenAtLoad } from '../test-break.js';

export type { EntryState, EntryTag } from './entry-word.js';

export interface EntryRef {
  /** The entry's own key (for a covering huge entry: its aligned start key). May alias the caller's key: do not mutate it while holding. */
  readonly key: Uint8Array;
  /** Arena offset of the leaf (stable while locked). */
  readonly leaf: number;
  value: number;
  state: EntryState;
  order: number;
}

export interface GrabOptions {
  order?: 0 | 9;
}

/** DAXSTORE_TEST_BREAK=entry-lock: grab ignores LOCKED (not exclusive), so tests can go red. */
export const ENTRY_LOCK_BROKEN = brokenAtLoad('entry-lock');
/** DAXSTORE_TEST_BREAK=entry-wake: waiters never set WAITERS, so unlock and delete wake nobody (wake-up tests go red). */
export const ENTRY_WAKE_BROKEN = brokenAtLoad('entry-wake');
/** DAXSTORE_TEST_BREAK=baton-uncounted: the lost-wake-up check ignores batons out (counts a wake-up still in flight as lost). */
export const BATON_UNCOUNTED = brokenAtLoad('baton-uncounted');
/**
 * DAXSTORE_TEST_BREAK=seqlock: replace() stores the value words without the two sequence bumps
 * around them (and spins between the two halves, standing in for a preemption there), so a
 * lock-free reader can take the low word of one value and the high word of another
 * (entry-lock-seqlock.test.ts must go red).
 */
export const SEQLOCK_BROKEN = brokenAtLoad('seqlock');
export const WAIT_SLICE_MS = 250;

const TWO_32 = 2 ** 32;
const BUSY = 1;
const RETRY = 2;
const FALLBACK = 3;
type Attempt = EntryRef | typeof BUSY | typeof RETRY | typeof FALLBACK;

/** What the last BUSY attempt saw (per thread; attempts are synchronous). */
let busyLeaf = 0;
let busyWord = 0;
let busyKey: Uint8Array = new Uint8Array(0);

function checkOrder(key: Uint8Array, order: number, op: string): void {
  if (order === 0) return;
  if (order !== 9) throw new DaxError('EINVAL', `${op}: order ${order} must be 0 or 9`);
  if (key.length !== 8 || key[7] !== 0 || (key[6] & 1) !== 0) {
    throw new DaxError('EINVAL', `${op}: an order-9 entry needs an 8-byte index key aligned to 512`);
  }
}

/** e: the entry word as the CAS that locked it left it (state and order are ours to read now). */
function makeRef(tree: RadixTree, key: Uint8Array, leaf: number, exact: boolean, e: number): EntryRef {
  return refAt(tree.arena.i32, exact ? key : tree.leafKey(leaf), leaf, e);
}

/** The EntryRef of a held leaf (grabFree writes the same out: see there). */
function refAt(i32: Int32Array, key: Uint8Array, leaf: number, e: number): EntryRef {
  const hi = i32[leaf + Lay.W_VALUE_HI] & 0xffff;
  const lo = i32[leaf + Lay.W_VALUE_LO];
  return {
    key,
    leaf,
    // A value below 2^31 stays a small integer: the double form made TurboFan box it in a
    // heap number of its own at every grab (perf: vmovsd into a fresh box).
    value: hi === 0 && lo >= 0 ? lo : hi * 4294967296 + (lo >>> 0),
    state: stateName(e),
    order: (e & Ew.ORDER_MASK) >>> Ew.ORDER_SHIFT,
  };
}

/**
 * value as a small integer (Smi) when it fits in 31 bits, as refAt makes it: a caller's value
 * computed as a double (a heap number, though whole) stored as is would move the `value` field
 * of every EntryRef from Smi to double representation, deprecating the map the literals in
 * refAt and grabFree allocate from; every ref made after that was migrated at its first
 * property load, and the IC changes kept TurboFan from ever optimizing the callers (a kv
 * transaction's commit ran in baseline code).
 */
function smallIfInt32(value: number): number {
  return value <= 0x7fffffff ? value | 0 : value;
}

/** STATE_NAMES[stateOf(e)] without the module-cell loads (literals: nodes.ts `Lay` says why). */
function stateName(e: number): EntryState {
  const s = (e & Ew.STATE_MASK) >>> Ew.STATE_SHIFT;
  return s === Ew.STATE_VALUE ? 'value' : s === Ew.STATE_EMPTY ? 'empty' : s === Ew.STATE_ZERO ? 'zero' : 'poisoned';
}

/** Create a locked EMPTY placeholder for an absent key, unless something appeared or covers it. Caller pinned. */
function createPinned(tree: RadixTree, key: Uint8Array, order: number, waited: boolean, hinted = false): Attempt {
  tree.lockTree();
  try {
    // Only an 8-byte key can be covered by a huge entry, which getOrCreateLocked (exact keys)
    // would not see; any other key that appeared since the lock-free lookup is found by
    // getOrCreateLocked's own descent (this.created false), so it needs no lookup first.
    const mayBeCovered = key.length === 8;
    if (mayBeCovered && tree.findLeafPinned(key) !== 0) return RETRY;
    if (order === 9) {
      const last = key.slice();
      last[6] |= 1;
      last[7] = 0xff;
      if (tree.anyKeyInPinned(key, last)) return FALLBACK;
    }
    // A woken waiter keeps the baton even when the entry vanished meanwhile: others may
    // still sleep on this key, and only WAITERS makes the next unlock wake them.
    const entry =
      Ew.LOCKED |
      (waited ? Ew.WAITERS : 0) |
      (Ew.STATE_EMPTY << Ew.STATE_SHIFT) |
      (order << Ew.ORDER_SHIFT) |
      (tree.threadId << Ew.OWNER_SHIFT);
    const leaf = tree.getOrCreateLocked(key, entry, hinted);
    if (!tree.created) {
      assert(!mayBeCovered, 'entry lock: placeholder leaf already present under treeLock');
      return RETRY;
    }
    return { key, leaf, value: 0, state: 'empty', order };
  } finally {
    tree.unlockTree();
  }
}

/**
 * One try: lock the entry of `key` (creating a placeholder), or say why not. Caller pinned.
 * absent: grabFree's descent just found no leaf of exactly `key` (and key is not 8 bytes, so
 * no huge entry covers it): go straight to createPinned, which re-checks under treeLock.
 */
function attemptPinned(tree: RadixTree, key: Uint8Array, order: number, waited: boolean, absent: boolean): Attempt {
  if (ENTRY_LOCK_BROKEN) return attemptIgnoringLockPinned(tree, key, order, waited, absent);
  if (absent) return createPinned(tree, key, order, waited, freeHinted);
  const leaf = tree.findLeafPinned(key);
  if (leaf === 0) return createPinned(tree, key, order, waited);
  const exact = tree.foundExact;
  const i32 = tree.arena.i32;
  const e = loadWord(i32, leaf + Lay.W_ENTRY);
  if (order === 9 && orderOf(e) !== 9) return FALLBACK;
  if ((e & Ew.DELETED) !== 0) return RETRY;
  if ((e & Ew.LOCKED) === 0) {
    const next = (e & ~Ew.OWNER_MASK) | Ew.LOCKED | (tree.threadId << Ew.OWNER_SHIFT) | (waited ? Ew.WAITERS : 0);
    if (Atomics.compareExchange(i32, leaf + Lay.W_ENTRY, e, next) !== e) return RETRY;
    return makeRef(tree, key, leaf, exact, next);
  }
  busyLeaf = leaf;
  busyWord = e;
  busyKey = exact ? key : tree.leafKey(leaf);
  return BUSY;
}

/** attemptPinned under DAXSTORE_TEST_BREAK=entry-lock: a held entry is handed out as if free (grab not exclusive). */
function attemptIgnoringLockPinned(
  tree: RadixTree,
  key: Uint8Array,
  order: number,
  waited: boolean,
  absent: boolean,
): Attempt {
  if (absent) return createPinned(tree, key, order, waited, freeHinted);
  const leaf = tree.findLeafPinned(key);
  if (leaf === 0) return createPinned(tree, key, order, waited);
  const exact = tree.foundExact;
  const i32 = tree.arena.i32;
  const e = loadWord(i32, leaf + Lay.W_ENTRY);
  if (order === 9 && orderOf(e) !== 9) return FALLBACK;
  if ((e & Ew.DELETED) !== 0) return RETRY;
  if ((e & Ew.LOCKED) !== 0) return makeRef(tree, key, leaf, exact, e);
  const next = (e & ~Ew.OWNER_MASK) | Ew.LOCKED | (tree.threadId << Ew.OWNER_SHIFT) | (waited ? Ew.WAITERS : 0);
  if (Atomics.compareExchange(i32, leaf + Lay.W_ENTRY, e, next) !== e) return RETRY;
  return makeRef(tree, key, leaf, exact, next);
}

/**
 * The uncontended first try of grab (order 0): pin, one descent, one CAS of a free entry word.
 * undefined sends the caller down the general path (absent, held, deleted, CAS lost), which
 * repeats the lookup: this only skips the general path's bookkeeping when nothing is in the way.
 * Keys of at most WASM_KEY_BYTES (24) take the WebAssembly descent + CAS (wasm-grab.ts: the
 * same loads, the same CAS; it declines whatever grabFreeJs would decline, and a node past this
 * thread's view, which the general path refreshes past).
 */
function grabFree(tree: RadixTree, key: Uint8Array): EntryRef | undefined {
  const len = key.length;
  const wasm = tree.wasmGrab;
  if (wasm === undefined || len > WASM_KEY_BYTES) return grabFreeJs(tree, key);
  packKeyWords(key, len);
  const epoch = tree.epoch;
  // No try/catch: below wasmLimitWords the call cannot trap (wasm-grab.ts "Traps"), and nothing
  // else in it throws, so the unpin needs no finally either.
  epoch.pin();
  const leaf = wasm.grab24(
    keyWords[0],
    keyWords[1],
    keyWords[2],
    keyWords[3],
    keyWords[4],
    keyWords[5],
    len,
    tree.wasmLimitWords,
    tree.lockBits,
  );
  epoch.unpin();
  if (leaf <= 0) {
    freeFoundAbsent = leaf === WasmGrab.ABSENT && len !== 8;
    freeHinted = false;
    if (leaf === WasmGrab.SLOW) tree.raiseWasmLimit(); // a node past the limit after a growth, perhaps
    return undefined;
  }
  const i32 = tree.arena.i32;
  // refAt written out: V8 inlines a call only when its call count is at least 0.15 of this
  // function's, counted since the first call, so after a million inserts (every grabFree
  // absent) a refAt call here stayed a call for good (perf: 7% of grab+unlock).
  const e = i32[leaf + Lay.W_ENTRY]; // held: state and order are ours to read
  const hi = i32[leaf + Lay.W_VALUE_HI] & 0xffff;
  const lo = i32[leaf + Lay.W_VALUE_LO];
  const s = (e & Ew.STATE_MASK) >>> Ew.STATE_SHIFT;
  return {
    key,
    leaf,
    value: hi === 0 && lo >= 0 ? lo : hi * 4294967296 + (lo >>> 0),
    state: s === Ew.STATE_VALUE ? 'value' : s === Ew.STATE_EMPTY ? 'empty' : s === Ew.STATE_ZERO ? 'zero' : 'poisoned',
    order: (e & Ew.ORDER_MASK) >>> Ew.ORDER_SHIFT,
  };
}

/**
 * Walks the index paths of keys[at[i]] for every i together, four keys per wasm call (touch4):
 * their cache misses overlap, where grabs one after another each wait for their own. A warm-up
 * for a caller about to grab those keys (a transaction's commit: the keys it writes were not
 * read, so nothing has walked their paths yet); it locks nothing and changes nothing. Keys
 * longer than WASM_KEY_BYTES, and trees without the wasm path, are left to the grabs.
 */
export function touchPaths(tree: RadixTree, keys: readonly Uint8Array[], at: readonly number[]): void {
  const wasm = tree.wasmGrab;
  if (wasm === undefined) return;
  const n = at.length;
  const w = touchWords;
  const epoch = tree.epoch;
  for (let i = 0; i < n; i += 4) {
    let l0 = 0;
    let l1 = 0;
    let l2 = 0;
    let l3 = 0;
    for (let j = 0; j < 4 && i + j < n; j++) {
      const key = keys[at[i + j]];
      const len = key.length;
      if (len > WASM_KEY_BYTES) continue;
      packTouchWords(key, len, j);
      if (j === 0) l0 = len;
      else if (j === 1) l1 = len;
      else if (j === 2) l2 = len;
      else l3 = len;
    }
    // No try/catch and no finally, as in grabFree: below wasmLimitWords the call cannot trap.
    epoch.pin();
    wasm.touch4(
      w[0],
      w[1],
      w[2],
      w[3],
      w[4],
      w[5],
      w[6],
      w[7],
      w[8],
      w[9],
      w[10],
      w[11],
      w[12],
      w[13],
      w[14],
      w[15],
      w[16],
      w[17],
      w[18],
      w[19],
      w[20],
      w[21],
      w[22],
      w[23],
      l0,
      l1,
      l2,
      l3,
      tree.wasmLimitWords,
    );
    epoch.unpin();
  }
}

/** grabFree for keys longer than WASM_KEY_BYTES (and hosts without the wasm path): the same in JS. */
function grabFreeJs(tree: RadixTree, key: Uint8Array): EntryRef | undefined {
  const epoch = tree.epoch;
  epoch.pin();
  try {
    const leaf = tree.findExactHintPinned(key);
    freeFoundAbsent = leaf === 0 && key.length !== 8;
    freeHinted = freeFoundAbsent;
    if (leaf === 0) return undefined;
    const i32 = tree.arena.i32;
    const e = loadWord(i32, leaf + Lay.W_ENTRY);
    if ((e & (Ew.LOCKED | Ew.DELETED)) !== 0) return undefined;
    const next = (e & ~Ew.OWNER_MASK) | Ew.LOCKED | (tree.threadId << Ew.OWNER_SHIFT);
    if (Atomics.compareExchange(i32, leaf + Lay.W_ENTRY, e, next) !== e) return undefined;
    return makeRef(tree, key, leaf, true, next);
  } finally {
    epoch.unpin();
  }
}

/** Set by grabFree: its descent found no leaf for a key no huge entry can cover (per thread). */
let freeFoundAbsent = false;
/** Set with freeFoundAbsent by the JS descent, which left the tree a hint for creating the key (findExactHintPinned). */
let freeHinted = false;

/** Wait key whose wake-up a cancelled registration had already received (it holds that baton), or -1. Per thread. */
let cancelWokenKey = -1;

/** Register as a waiter for the busy entry, then set WAITERS if it is still locked. Caller pinned. */
function prepareWaitPinned(tree: RadixTree, mode: 'exclusive' | 'shared'): Waiter | undefined {
  if (ENTRY_WAKE_BROKEN) return prepareWaitUnflaggedPinned(tree, mode);
  const leaf = busyLeaf;
  const wk = waitKey(tree.treeId, busyKey);
  const waiter = tree.waitTable.prepare(wk, mode);
  const i32 = tree.arena.i32;
  let e = Atomics.load(i32, leaf + Lay.W_ENTRY);
  for (;;) {
    if ((e & Ew.DELETED) !== 0 || (e & Ew.LOCKED) === 0) {
      // A wake-up that reached us meanwhile is a baton (exclusive): the caller must take it on.
      if (tree.waitTable.cancel(waiter) && mode === 'exclusive') cancelWokenKey = wk;
      return undefined;
    }
    if ((e & Ew.WAITERS) !== 0) return waiter;
    const seen = Atomics.compareExchange(i32, leaf + Lay.W_ENTRY, e, e | Ew.WAITERS);
    if (seen === e) return waiter;
    e = seen;
  }
}

/** prepareWaitPinned under DAXSTORE_TEST_BREAK=entry-wake: WAITERS is never set, so no unlock or delete wakes this waiter. */
function prepareWaitUnflaggedPinned(tree: RadixTree, mode: 'exclusive' | 'shared'): Waiter | undefined {
  const wk = waitKey(tree.treeId, busyKey);
  const waiter = tree.waitTable.prepare(wk, mode);
  const e = Atomics.load(tree.arena.i32, busyLeaf + Lay.W_ENTRY);
  if ((e & Ew.DELETED) !== 0 || (e & Ew.LOCKED) === 0) {
    if (tree.waitTable.cancel(waiter) && mode === 'exclusive') cancelWokenKey = wk;
    return undefined;
  }
  return waiter;
}

/** A woken waiter that will not take the entry (order-9 fall back) hands the wake-up on. */
function passBaton(tree: RadixTree, key: Uint8Array, waited: boolean): undefined {
  if (waited) tree.waitTable.wakeWhen(waitKey(tree.treeId, key), false, () => true);
  return undefined;
}

/**
 * A sleep timed out: runs under the wait-table slot mutex (WaitTable.wait's onTimeout), so an
 * unlock is either wholly before (it would have dequeued and woken a waiter: this one, or one
 * holding a baton) or wholly after. The entry free (or gone) with no baton out means a wake-up
 * was lost.
 */
function noteTimeoutLocked(tree: RadixTree, key: Uint8Array, wk: number): void {
  tree.epoch.pin();
  try {
    const leaf = tree.findLeafPinned(key);
    const e = leaf === 0 ? Ew.DELETED : Atomics.load(tree.arena.i32, leaf + Lay.W_ENTRY);
    if (((e & Ew.DELETED) !== 0 || (e & Ew.LOCKED) === 0) && noBatonOut(tree, wk)) {
      Atomics.add(tree.arena.i32, H_STAT_LOST_WAKEUPS, 1);
    }
  } finally {
    tree.epoch.unpin();
  }
}

/** No exclusive waiter of wait key `wk` holds a wake-up it has not yet acted on (caller holds the slot mutex). */
function noBatonOut(tree: RadixTree, wk: number): boolean {
  if (BATON_UNCOUNTED) return true; // a wake-up still in flight then counts as lost
  return tree.waitTable.batonsInFlight(wk) === 0;
}

/** The waiter roundPinned prepared on its last BUSY result (per thread; rounds are synchronous). */
let preparedWaiter: Waiter | undefined;

/** Pinned part of one round: attempt, and on BUSY prepare the wait (or throw EDEADLK). */
function roundPinned(
  tree: RadixTree,
  key: Uint8Array,
  order: number,
  waited: boolean,
  blocking: 'async' | 'none',
): Attempt {
  preparedWaiter = undefined;
  roundDead = 0;
  tree.epoch.pin();
  try {
    const attempt = attemptPinned(tree, key, order, waited, false);
    if (attempt !== BUSY) return attempt;
    if (isParticipantDead(ownerOf(busyWord))) {
      roundDead = ownerOf(busyWord);
      return RETRY;
    }
    if (blocking === 'none') return attempt;
    preparedWaiter = prepareWaitPinned(tree, 'exclusive');
    return attempt;
  } finally {
    tree.epoch.unpin();
    if (roundDead !== 0) handleDeadHolder(tree, roundDead, busyLeaf, busyKey);
  }
}

/** Set by roundPinned: the busy entry's holder has died (it was released before the RETRY). */
let roundDead = 0;

/**
 * Lock the entry of `key`, creating a locked EMPTY placeholder when absent. Blocks (Atomics.wait)
 * while another thread holds it; EDEADLK when this thread holds it. With order 9: returns
 * undefined when smaller entries exist in the 512-index range (fall back to small).
 * A small key covered by a huge entry returns the huge entry (ref.order 9, ref.key its start).
 */
export function grab(tree: RadixTree, key: Uint8Array, opts?: { order?: 0 }): EntryRef;
export function grab(tree: RadixTree, key: Uint8Array, opts: GrabOptions): EntryRef | undefined;
export function grab(tree: RadixTree, key: Uint8Array, opts?: GrabOptions): EntryRef | undefined {
  // Small on purpose, so TurboFan inlines it into the caller: the uncontended path is
  // checkKey and grabFree; everything else (order 9, waiting, placeholders) is grabSlow.
  checkKey(key, 'grab');
  if (opts === undefined || opts.order === undefined || opts.order === 0) {
    const ref = grabFree(tree, key);
    if (ref !== undefined) return ref;
    return grabSlow(tree, key, 0, freeFoundAbsent);
  }
  return grabSlow(tree, key, opts.order, false);
}

/**
 * grab() past the uncontended first try: order 9, a held, absent or deleted entry, a lost CAS.
 * Its pinned round is written out here (roundPinned serves the async and non-blocking grabs),
 * with the EDEADLK check only a blocking sync grab makes. That also keeps this function above
 * V8's inlining limit (460 bytecodes): inlined into grab, it would take the inlining budget
 * that grab's fast path needs whenever grab is compiled while inserts are hot, and grab's speed
 * would depend on which compile came first.
 */
function grabSlow(tree: RadixTree, key: Uint8Array, order: number, absent: boolean): EntryRef | undefined {
  if (order !== 0) checkOrder(key, order, 'grab');
  let waited = false;
  let baton = -1; // wait key of the baton this thread holds (it was woken), or -1
  try {
    for (;;) {
      cancelWokenKey = -1;
      preparedWaiter = undefined;
      let attempt: Attempt;
      let dead = 0;
      tree.epoch.pin();
      try {
        attempt = attemptPinned(tree, key, order, waited, absent);
        if (attempt === BUSY) {
          if (ownerOf(busyWord) === tree.threadId) {
            throw new DaxError(
              'EDEADLK',
              `grab: entry ${hex(busyKey)} of tree ${tree.treeId} is already held by this thread (thread ${tree.threadId})`,
            );
          }
          if (isParticipantDead(ownerOf(busyWord))) dead = ownerOf(busyWord);
          else preparedWaiter = prepareWaitPinned(tree, 'exclusive');
        }
      } finally {
        tree.epoch.unpin();
      }
      absent = false; // a retry looks the key up again
      if (dead !== 0) {
        handleDeadHolder(tree, dead, busyLeaf, busyKey);
        continue;
      }
      const waiter = preparedWaiter;
      if (cancelWokenKey >= 0) {
        if (baton >= 0) tree.waitTable.returnBaton(baton);
        baton = cancelWokenKey;
        recordBaton(tree, baton);
        waited = true;
      }
      if (attempt === FALLBACK) return passBaton(tree, key, waited);
      if (attempt === RETRY || (attempt === BUSY && waiter === undefined)) continue;
      if (attempt !== BUSY) return attempt;
      // WAITERS is set on the busy entry: its unlock wakes the queue, so the baton is back.
      if (baton >= 0) tree.waitTable.returnBaton(baton);
      baton = -1;
      recordBaton(tree, -1);
      const keyOfEntry = busyKey;
      const wk = waiter!.key;
      Atomics.add(tree.arena.i32, H_STAT_WAITS, 1);
      waited = true;
      if (tree.waitTable.wait(waiter!, WAIT_SLICE_MS, () => noteTimeoutLocked(tree, keyOfEntry, wk)) === 'woken') {
        baton = wk;
        recordBaton(tree, baton);
      }
    }
  } finally {
    if (baton >= 0) {
      tree.waitTable.returnBaton(baton);
      recordBaton(tree, -1);
    }
  }
}

/** grab() that sleeps with Atomics.waitAsync (main-thread async paths); waits even on this thread's own locks. */
export async function grabAsync(tree: RadixTree, key: Uint8Array, opts?: GrabOptions): Promise<EntryRef | undefined> {
  const order = opts?.order ?? 0;
  checkKey(key, 'grabAsync');
  checkOrder(key, order, 'grabAsync');
  let waited = false;
  let baton = -1;
  try {
    for (;;) {
      cancelWokenKey = -1;
      const attempt = roundPinned(tree, key, order, waited, 'async');
      const waiter = preparedWaiter;
      if (cancelWokenKey >= 0) {
        if (baton >= 0) tree.waitTable.returnBaton(baton);
        baton = cancelWokenKey;
        recordBaton(tree, baton);
        waited = true;
      }
      if (attempt === FALLBACK) return passBaton(tree, key, waited);
      if (attempt === RETRY || (attempt === BUSY && waiter === undefined)) continue;
      if (attempt !== BUSY) return attempt;
      if (baton >= 0) tree.waitTable.returnBaton(baton);
      baton = -1;
      recordBaton(tree, -1);
      const keyOfEntry = busyKey;
      const wk = waiter!.key;
      Atomics.add(tree.arena.i32, H_STAT_WAITS, 1);
      waited = true;
      if (
        (await tree.waitTable.waitAsync(waiter!, WAIT_SLICE_MS, () => noteTimeoutLocked(tree, keyOfEntry, wk))) ===
        'woken'
      ) {
        baton = wk;
        recordBaton(tree, baton);
      }
    }
  } finally {
    if (baton >= 0) {
      tree.waitTable.returnBaton(baton);
      recordBaton(tree, -1);
    }
  }
}

/** Lock without waiting: undefined when the entry is held (or, order 9, when it must fall back). */
export function tryGrab(tree: RadixTree, key: Uint8Array, opts?: GrabOptions): EntryRef | undefined {
  const order = opts?.order ?? 0;
  checkKey(key, 'tryGrab');
  checkOrder(key, order, 'tryGrab');
  for (;;) {
    const attempt = roundPinned(tree, key, order, false, 'none');
    if (attempt === RETRY) continue;
    if (attempt === FALLBACK || attempt === BUSY) return undefined;
    return attempt;
  }
}

/** grab() of the 8-byte big-endian key of index n. */
export function grabIndex(tree: RadixTree, n: number, opts?: GrabOptions): EntryRef | undefined {
  checkIndex(n, 'grabIndex');
  return grab(tree, indexKey(n), opts ?? {});
}

function checkHeld(tree: RadixTree, ref: EntryRef, op: string): number {
  // Under DAXSTORE_TEST_BREAK=entry-lock several threads "hold" one entry: the check would fire first.
  if (ENTRY_LOCK_BROKEN) return loadWord(tree.arena.i32, ref.leaf + Lay.W_ENTRY);
  const e = loadWord(tree.arena.i32, ref.leaf + Lay.W_ENTRY);
  if ((e & (Ew.LOCKED | Ew.DELETED)) !== Ew.LOCKED || (e & Ew.OWNER_MASK) >>> Ew.OWNER_SHIFT !== tree.threadId) {
    throw new DaxError('EINVAL', `${op}: entry ${hex(ref.key)} of tree ${tree.treeId} is not held by this thread`);
  }
  return e;
}

/**
 * Unlock; wakes one exclusive waiter (and the shared ones) if WAITERS was set. An EMPTY
 * placeholder is removed instead. Uncontended: one wasm call (a load, the checks of checkHeld,
 * one CAS); anything else goes through checkHeld and releaseEntry.
 */
export function unlock(tree: RadixTree, ref: EntryRef): void {
  // The common case in one wasm call (wasm-grab.ts unlock: held by us, no WAITERS, not a placeholder).
  const wasm = tree.wasmGrab;
  if (wasm !== undefined) {
    if (wasm.unlock(ref.leaf + Lay.W_ENTRY, tree.lockBits, tree.wasmLimitWords) === 1) return;
    // A leaf past the wasm limit (the arena grew, and only a declined wasm grab raises the
    // limit: keys over 24 bytes never take that path, so their new leaves would stay on the JS
    // path below): raise it and try once more.
    if (ref.leaf + Lay.W_ENTRY >= tree.wasmLimitWords) {
      tree.raiseWasmLimit();
      if (wasm.unlock(ref.leaf + Lay.W_ENTRY, tree.lockBits, tree.wasmLimitWords) === 1) return;
    }
  }
  const e0 = checkHeld(tree, ref, 'unlock');
  if ((e0 & Ew.STATE_MASK) === Ew.STATE_EMPTY << Ew.STATE_SHIFT) return deleteLocked(tree, ref);
  releaseEntry(tree, ref, e0, 0, false);
}

/**
 * Clear LOCKED (and OWNER, WAITERS; set `extra`: DELETED for a delete) in a held entry word
 * seen as `e`. Without WAITERS this is one CAS. With WAITERS (or when the CAS fails: a waiter
 * may just have set it) the change is made inside waitTable.wakeWhen, under the slot mutex,
 * and wakes one waiter (all waiters when `all`): a waiter timing out at that moment is
 * ordered before or after it (wait-table.ts), so it is never counted as a lost wake-up.
 */
function releaseEntry(tree: RadixTree, ref: EntryRef, e: number, extra: number, all: boolean): void {
  const i32 = tree.arena.i32;
  const at = ref.leaf + Lay.W_ENTRY;
  if ((e & Ew.WAITERS) === 0) {
    // One CAS: the wasm release's is an inline lock cmpxchg, Atomics.compareExchange a builtin call.
    const wasm = tree.wasmGrab;
    if (
      wasm !== undefined && at < tree.wasmLimitWords
        ? wasm.release(at, e, extra) === 1
        : Atomics.compareExchange(i32, at, e, (e & ~(Ew.LOCKED | Ew.OWNER_MASK)) | extra) === e
    )
      return;
  }
  tree.waitTable.wakeWhen(waitKey(tree.treeId, ref.key), all, () => {
    let seen = Atomics.load(i32, at);
    for (;;) {
      const was = Atomics.compareExchange(i32, at, seen, (seen & ~(Ew.LOCKED | Ew.WAITERS | Ew.OWNER_MASK)) | extra);
      if (was === seen) return (seen & Ew.WAITERS) !== 0;
      seen = was;
    }
  });
}

// Value words: the low one is `value >>> 0` (value is an integer in [0, 2^48): checkValue), which
// compiles to a truncation, where `value % TWO_32` takes a floating-point remainder.
/**
 * Store a new value (and state) while holding the lock; lock-free readers see old or new, never a
 * mix (seqlock). `note`: 16 bits the caller keeps beside this value (valueNote), 0 for none;
 * every other store of a value leaves 0 there, so a note always describes the value it sits with.
 */
export function replace(tree: RadixTree, ref: EntryRef, value: number, state: EntryState = 'value', note = 0): void {
  checkValue(value, 'replace');
  const code = stateCode(state);
  checkHeld(tree, ref, 'replace');
  const i32 = tree.arena.i32;
  const at = ref.leaf + Lay.W_ENTRY;
  if (SEQLOCK_BROKEN) return replaceUnsequenced(i32, ref, value, code, state);
  // Held by us, so only waiters change the word meanwhile (setting WAITERS): a CAS loop, whose
  // first guess is an acquire load (the CAS re-validates it). Between the two CAS the value
  // words are release stores: the odd CAS (a full fence) is ordered before them and they before
  // the even CAS, which is all a seqlock reader (radix-tree.ts readValuePinned: entry, value,
  // entry, all acquire loads) needs. Atomics.load/store here were four builtin calls (Node 20
  // does not inline them) on every put.
  let e = loadWord(i32, at);
  if (ref.state === 'empty') {
    // Filling a placeholder (a new key): nobody reads the value words of an EMPTY entry
    // (readValuePinned and scans skip it; anyKeyInPinned, the one scan that includes
    // placeholders, reads keys only), so they are stored first (release stores) and ONE CAS
    // publishes them: the new state, and the sequence moved by two (even, yet different, so a
    // reader that loaded the entry word while EMPTY and a value word before these stores sees
    // the sequence change and retries). One CAS less on every new key.
    storeRelease(i32, ref.leaf + Lay.W_VALUE_LO, value >>> 0);
    storeRelease(i32, ref.leaf + Lay.W_VALUE_HI, Math.floor(value / TWO_32) | (note << 16));
    for (;;) {
      const next =
        (e & ~(Ew.SEQ_MASK | Ew.STATE_MASK)) |
        (((e & Ew.SEQ_MASK) + 2 * Ew.SEQ_ONE) & Ew.SEQ_MASK) |
        (code << Ew.STATE_SHIFT);
      const seen = Atomics.compareExchange(i32, at, e, next);
      if (seen === e) break;
      e = seen;
    }
    ref.value = smallIfInt32(value);
    ref.state = state;
    return;
  }
  // The record a reaper finishes this replace from if this thread dies between the two bumps
  // (file header): plain stores into this thread's own participant slot, before the odd bump.
  const pt = tree.participants;
  const rb = tree.mySlot;
  pt[rb + P_REPLACE_TREE] = tree.token;
  pt[rb + P_REPLACE_LEAF] = ref.leaf;
  pt[rb + P_REPLACE_LO] = value >>> 0;
  pt[rb + P_REPLACE_HI] = Math.floor(value / TWO_32) | (code << 16);
  for (;;) {
    const odd = (e & ~Ew.SEQ_MASK) | (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK);
    const seen = Atomics.compareExchange(i32, at, e, odd);
    if (seen === e) break;
    e = seen;
  }
  storeRelease(i32, ref.leaf + Lay.W_VALUE_LO, value >>> 0);
  storeRelease(i32, ref.leaf + Lay.W_VALUE_HI, Math.floor(value / TWO_32) | (note << 16));
  e = loadWord(i32, at);
  for (;;) {
    const even =
      (e & ~(Ew.SEQ_MASK | Ew.STATE_MASK)) |
      (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK) |
      (code << Ew.STATE_SHIFT);
    const seen = Atomics.compareExchange(i32, at, e, even);
    if (seen === e) break;
    e = seen;
  }
  pt[rb + P_REPLACE_LEAF] = 0; // done: a stale record must never finish a later, merely opened entry
  ref.value = smallIfInt32(value);
  ref.state = state;
}

/**
 * The note stored with the held entry's value by replace(), 0 when it was stored without one
 * (leaf word W_VALUE_HI, bits 16-31: value readers mask them off). The holder's own leaf: no
 * seqlock needed.
 */
export function valueNote(tree: RadixTree, ref: EntryRef): number {
  return tree.arena.i32[ref.leaf + Lay.W_VALUE_HI] >>> 16;
}

/**
 * replace() in two steps, for a caller that publishes several held entries as ONE change (a
 * key-value batch): beginReplace opens the value seqlock of each entry (sequence odd, value and
 * state unchanged), so lock-free readers of it wait (they retry while the sequence is odd);
 * finishReplace then stores each new value and state and closes it. Opening every entry before
 * finishing any means a reader that has seen one new value can no longer read the old value of
 * another: none is readable between the opens and the finishes. The window is a few stores
 * per entry, made with the locks held and nothing else in between.
 */
export function beginReplace(tree: RadixTree, ref: EntryRef): void {
  checkHeld(tree, ref, 'beginReplace');
  const i32 = tree.arena.i32;
  const at = ref.leaf + Lay.W_ENTRY;
  let e = loadWord(i32, at);
  assert((e & Ew.SEQ_ONE) === 0, 'beginReplace: the entry is already open');
  for (;;) {
    const odd = (e & ~Ew.SEQ_MASK) | (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK);
    const seen = Atomics.compareExchange(i32, at, e, odd);
    if (seen === e) return;
    e = seen;
  }
}

/** Stores value and state into an entry beginReplace opened, and closes its seqlock. 'empty' makes it a placeholder that unlock removes. */
export function finishReplace(
  tree: RadixTree,
  ref: EntryRef,
  value: number,
  state: EntryState = 'value',
  note = 0,
): void {
  checkValue(value, 'finishReplace');
  const code = stateCode(state);
  checkHeld(tree, ref, 'finishReplace');
  const i32 = tree.arena.i32;
  const at = ref.leaf + Lay.W_ENTRY;
  // The record a reaper finishes this entry from if this thread dies here (file header).
  const pt = tree.participants;
  const rb = tree.mySlot;
  pt[rb + P_REPLACE_TREE] = tree.token;
  pt[rb + P_REPLACE_LEAF] = ref.leaf;
  pt[rb + P_REPLACE_LO] = value >>> 0;
  pt[rb + P_REPLACE_HI] = Math.floor(value / TWO_32) | (code << 16);
  storeRelease(i32, ref.leaf + Lay.W_VALUE_LO, value >>> 0);
  storeRelease(i32, ref.leaf + Lay.W_VALUE_HI, Math.floor(value / TWO_32) | (note << 16));
  let e = loadWord(i32, at);
  assert((e & Ew.SEQ_ONE) !== 0, 'finishReplace: the entry was not opened by beginReplace');
  for (;;) {
    const even =
      (e & ~(Ew.SEQ_MASK | Ew.STATE_MASK)) |
      (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK) |
      (code << Ew.STATE_SHIFT);
    const seen = Atomics.compareExchange(i32, at, e, even);
    if (seen === e) break;
    e = seen;
  }
  pt[rb + P_REPLACE_LEAF] = 0;
  ref.value = smallIfInt32(value);
  ref.state = state;
}

/** True while `ref`'s entry is opened by beginReplace (its seqlock odd): a dead batch's entry the reaper adopted. */
export function isOpened(tree: RadixTree, ref: EntryRef): boolean {
  return (Atomics.load(tree.arena.i32, ref.leaf + Lay.W_ENTRY) & Ew.SEQ_ONE) !== 0;
}

/**
 * replace() under DAXSTORE_TEST_BREAK=seqlock: the value words change with no sequence bump
 * around them; a placeholder's state is set BEFORE its value words are stored.
 */
function replaceUnsequenced(i32: Int32Array, ref: EntryRef, value: number, code: number, state: EntryState): void {
  const setState = (): void => {
    let e = loadWord(i32, ref.leaf + Lay.W_ENTRY);
    for (;;) {
      const seen = Atomics.compareExchange(
        i32,
        ref.leaf + Lay.W_ENTRY,
        e,
        (e & ~Ew.STATE_MASK) | (code << Ew.STATE_SHIFT),
      );
      if (seen === e) break;
      e = seen;
    }
  };
  if (ref.state === 'empty') setState();
  storeRelease(i32, ref.leaf + Lay.W_VALUE_LO, value >>> 0);
  for (let i = 0, end = performance.now() + 0.002 * Math.random(); performance.now() < end; i++);
  storeRelease(i32, ref.leaf + Lay.W_VALUE_HI, Math.floor(value / TWO_32));
  if (ref.state !== 'empty') setState();
  ref.value = smallIfInt32(value);
  ref.state = state;
}

/** Remove the held entry from the tree (retired through the epoch) and wake ALL its waiters. */
export function deleteLocked(tree: RadixTree, ref: EntryRef): void {
  checkHeld(tree, ref, 'deleteLocked');
  tree.lockTree();
  try {
    tree.removeLeafLocked(ref.leaf, ref.key);
    releaseEntry(tree, ref, Atomics.load(tree.arena.i32, ref.leaf + Lay.W_ENTRY), Ew.DELETED, true);
  } finally {
    tree.unlockTree();
  }
}

export function setTagLocked(tree: RadixTree, ref: EntryRef, tag: EntryTag): void {
  checkHeld(tree, ref, 'setTagLocked');
  tree.lockTree();
  try {
    tree.setTagBitLocked(ref.leaf, ref.key, tagBit(tag), true);
  } finally {
    tree.unlockTree();
  }
}

export function clearTagLocked(tree: RadixTree, ref: EntryRef, tag: EntryTag): void {
  checkHeld(tree, ref, 'clearTagLocked');
  tree.lockTree();
  try {
    tree.setTagBitLocked(ref.leaf, ref.key, tagBit(tag), false);
  } finally {
    tree.unlockTree();
  }
}

/**
 * Shared (reverse-map) wait: return once the entry of `key` is unlocked or gone, without
 * taking it. Such waiters never hold the baton, so they wait non-exclusively.
 */
export function waitUnlocked(tree: RadixTree, key: Uint8Array): void {
  checkKey(key, 'waitUnlocked');
  for (;;) {
    let waiter: Waiter | undefined;
    let dead = 0;
    tree.epoch.pin();
    try {
      const leaf = tree.findLeafPinned(key);
      if (leaf === 0) return;
      const e = Atomics.load(tree.arena.i32, leaf + Lay.W_ENTRY);
      if ((e & Ew.LOCKED) === 0 || (e & Ew.DELETED) !== 0) return;
      if (ownerOf(e) === tree.threadId) {
        throw new DaxError('EDEADLK', `waitUnlocked: entry ${hex(key)} of tree ${tree.treeId} is held by this thread`);
      }
      busyLeaf = leaf;
      busyKey = tree.foundExact ? key : tree.leafKey(leaf);
      if (isParticipantDead(ownerOf(e))) dead = ownerOf(e);
      else waiter = prepareWaitPinned(tree, 'shared');
    } finally {
      tree.epoch.unpin();
    }
    if (dead !== 0) {
      handleDeadHolder(tree, dead, busyLeaf, busyKey);
      continue;
    }
    if (waiter !== undefined) tree.waitTable.wait(waiter, WAIT_SLICE_MS);
  }
}

// ---- thread death (file header) ---------------------------------------------------------

/** Records (or, key -1, clears) the baton this thread holds in its participant slot. */
function recordBaton(tree: RadixTree, key: number): void {
  const pt = tree.participants;
  const rb = tree.mySlot;
  if (key < 0) {
    pt[rb + P_BATON_KEY_HI] = -1;
    return;
  }
  pt[rb + P_BATON_TABLE] = tree.waitTable.token;
  pt[rb + P_BATON_KEY_LO] = key % TWO_32;
  pt[rb + P_BATON_KEY_HI] = Math.floor(key / TWO_32);
}

/**
 * The entry at `leaf` (own key `key`) is held by `dead`, a participant that died: its domain
 * reaps it (which finishes or undoes the operation it held the entry for), then the entry is
 * released if it is still held. A handler that failed is reported after the release.
 */
function handleDeadHolder(tree: RadixTree, dead: number, leaf: number, key: Uint8Array): void {
  if (heldForDead.has(leaf))
    throw new DaxError(
      'EDEADLK',
      `grab: entry ${hex(key)} of tree ${tree.treeId} is held by this thread for dead participant ${dead}`,
    );
  const keyCopy = key.slice(); // busyKey may be the caller's key, or change in a nested grab
  let failure: unknown;
  try {
    tree.epoch.reap(dead);
  } catch (e) {
    failure = e;
  }
  releaseDeadEntry(tree, leaf, keyCopy, dead);
  if (failure !== undefined) throw failure;
}

/**
 * Finishes the replace() or finishReplace() a dead holder of `leaf` was in, between storing
 * the value words and closing the seqlock, from the record in its participant slot (file
 * header). Lock-free. False (nothing done) unless the entry is held by a dead participant with
 * an odd sequence and the record names this leaf: an entry a dead batch merely opened
 * (beginReplace) holds its old value intact and stays open for the batch's roll-forward.
 * Caller pinned (the leaf is live).
 */
export function finishDeadReplace(tree: RadixTree, leaf: number): boolean {
  const i32 = tree.arena.i32;
  const at = leaf + Lay.W_ENTRY;
  const e = Atomics.load(i32, at);
  if ((e & Ew.SEQ_ONE) === 0 || (e & Ew.LOCKED) === 0) return false;
  const owner = ownerOf(e);
  if (!isParticipantDead(owner)) return false;
  const pt = tree.participants;
  const base = slotBase(owner);
  if (pt[base + P_REPLACE_TREE] !== tree.token || pt[base + P_REPLACE_LEAF] !== leaf) return false;
  const hi = pt[base + P_REPLACE_HI];
  storeRelease(i32, leaf + Lay.W_VALUE_LO, pt[base + P_REPLACE_LO]);
  storeRelease(i32, leaf + Lay.W_VALUE_HI, hi & 0xffff);
  const next =
    (e & ~(Ew.SEQ_MASK | Ew.STATE_MASK)) |
    (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK) |
    (((hi >>> 16) & 3) << Ew.STATE_SHIFT);
  return Atomics.compareExchange(i32, at, e, next) === e;
}

/** Closes the seqlock of an entry a dead holder opened, on the old value it still holds. Caller pinned. */
function closeDeadOpened(tree: RadixTree, leaf: number, dead: number): void {
  const i32 = tree.arena.i32;
  const at = leaf + Lay.W_ENTRY;
  const e = Atomics.load(i32, at);
  if ((e & Ew.SEQ_ONE) === 0 || (e & Ew.LOCKED) === 0 || ownerOf(e) !== dead) return;
  Atomics.compareExchange(i32, at, e, (e & ~Ew.SEQ_MASK) | (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK));
}

/**
 * A reader has spun long on the open seqlock of `leaf` (radix-tree.ts readValuePinned): if its
 * holder is dead, finish its replace from the record, else have its domain reap it (a dead
 * batch is rolled forward), else close it on the old value. Caller pinned.
 */
export function settleDeadWriter(tree: RadixTree, leaf: number): void {
  const e = Atomics.load(tree.arena.i32, leaf + Lay.W_ENTRY);
  if ((e & Ew.SEQ_ONE) === 0 || (e & Ew.LOCKED) === 0) return;
  const owner = ownerOf(e);
  if (!isParticipantDead(owner) || heldForDead.has(leaf) || finishDeadReplace(tree, leaf)) return;
  try {
    tree.epoch.reap(owner);
  } catch {
    // closed below all the same: a reader must not spin for ever
  }
  closeDeadOpened(tree, leaf, owner);
}

/**
 * Takes over the entry of exactly `key` from dead participant `dead` as if this thread had
 * grabbed it, with no moment in between when it is free (the key-value store's roll-forward:
 * no other writer may slip in before the dead thread's operation is completed). undefined when
 * `dead` does not hold it. A half-done replace is finished first.
 */
export function adoptDeadEntry(tree: RadixTree, key: Uint8Array, dead: number): EntryRef | undefined {
  const i32 = tree.arena.i32;
  tree.epoch.pin();
  try {
    for (;;) {
      const leaf = tree.findExactPinned(key);
      if (leaf === 0) return undefined;
      finishDeadReplace(tree, leaf);
      const e = Atomics.load(i32, leaf + Lay.W_ENTRY);
      if ((e & (Ew.LOCKED | Ew.DELETED)) !== Ew.LOCKED || ownerOf(e) !== dead) return undefined;
      const next = (e & ~Ew.OWNER_MASK) | (tree.threadId << Ew.OWNER_SHIFT);
      if (Atomics.compareExchange(i32, leaf + Lay.W_ENTRY, e, next) === e) return refAt(i32, key, leaf, next);
    }
  } finally {
    tree.epoch.unpin();
  }
}

/**
 * Leaves held on behalf of a dead participant in this thread (holdForDead .. releaseForDead):
 * a grab of one of them from this thread is a self-deadlock (EDEADLK), not a dead holder to
 * release, and a lock-free read of one that is open does not close it on its old value.
 */
const heldForDead = new Set<number>();

/**
 * The entry of exactly `key` when dead participant `dead` holds it, to be finished ON ITS BEHALF
 * (the key-value store's roll-forward, writer-reaper.ts): unlike adoptDeadEntry, the entry word
 * goes on naming `dead` until releaseForDead. So a reaper that dies in the middle leaves every
 * entry it had not released still named by `dead`, whose reap (not finished: the domain forgets
 * a participant only after its handlers return) the next reaper runs again from the start and
 * finds them all; the reaper's own reap never touches them. While held so, nothing else takes
 * them: they stay LOCKED, and a waiter that meets the dead owner reaps it, which waits for the
 * reap mutex this reaper holds. A half-done replace is finished first. undefined when `dead`
 * does not hold it.
 */
export function holdForDead(tree: RadixTree, key: Uint8Array, dead: number): EntryRef | undefined {
  const i32 = tree.arena.i32;
  tree.epoch.pin();
  try {
    const leaf = tree.findExactPinned(key);
    if (leaf === 0) return undefined;
    finishDeadReplace(tree, leaf);
    const e = Atomics.load(i32, leaf + Lay.W_ENTRY);
    if ((e & (Ew.LOCKED | Ew.DELETED)) !== Ew.LOCKED || ownerOf(e) !== dead) return undefined;
    heldForDead.add(leaf);
    return refAt(i32, key, leaf, e);
  } finally {
    tree.epoch.unpin();
  }
}

function checkHeldForDead(tree: RadixTree, ref: EntryRef, dead: number, op: string): number {
  const e = loadWord(tree.arena.i32, ref.leaf + Lay.W_ENTRY);
  if ((e & (Ew.LOCKED | Ew.DELETED)) !== Ew.LOCKED || ownerOf(e) !== dead || !heldForDead.has(ref.leaf))
    throw new DaxError(
      'EINVAL',
      `${op}: entry ${hex(ref.key)} of tree ${tree.treeId} is not held for dead participant ${dead} by this thread`,
    );
  return e;
}

/** beginReplace of an entry held by holdForDead. */
export function beginReplaceForDead(tree: RadixTree, ref: EntryRef, dead: number): void {
  checkHeldForDead(tree, ref, dead, 'beginReplaceForDead');
  const i32 = tree.arena.i32;
  const at = ref.leaf + Lay.W_ENTRY;
  let e = loadWord(i32, at);
  assert((e & Ew.SEQ_ONE) === 0, 'beginReplaceForDead: the entry is already open');
  for (;;) {
    const odd = (e & ~Ew.SEQ_MASK) | (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK);
    const seen = Atomics.compareExchange(i32, at, e, odd);
    if (seen === e) return;
    e = seen;
  }
}

/**
 * finishReplace of an entry held by holdForDead. It writes no replace record: the entry names
 * the dead participant, whose slot holds its own record, which is stable (the dead write
 * nothing) and never names an entry the roll-forward opens (holdForDead finished that one).
 * A reaper that dies between storing the value words and closing the seqlock leaves the entry
 * open, its value words possibly torn; readers wait on the odd sequence, and the next run of
 * the dead participant's reap (its owner is still the dead participant) stores the whole value
 * again and closes it.
 */
export function finishReplaceForDead(
  tree: RadixTree,
  ref: EntryRef,
  value: number,
  state: EntryState,
  dead: number,
): void {
  checkValue(value, 'finishReplaceForDead');
  const code = stateCode(state);
  checkHeldForDead(tree, ref, dead, 'finishReplaceForDead');
  const i32 = tree.arena.i32;
  const at = ref.leaf + Lay.W_ENTRY;
  let e = loadWord(i32, at);
  // Closed meanwhile by a thread that could not wait for this reap (settleDeadWriter in a
  // thread lacking a layer): opened again before the value words change.
  while ((e & Ew.SEQ_ONE) === 0) {
    const odd = (e & ~Ew.SEQ_MASK) | (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK);
    const seen = Atomics.compareExchange(i32, at, e, odd);
    e = seen === e ? odd : seen;
  }
  storeRelease(i32, ref.leaf + Lay.W_VALUE_LO, value >>> 0);
  storeRelease(i32, ref.leaf + Lay.W_VALUE_HI, Math.floor(value / TWO_32));
  e = loadWord(i32, at);
  for (;;) {
    const even =
      (e & ~(Ew.SEQ_MASK | Ew.STATE_MASK)) |
      (((e & Ew.SEQ_MASK) + Ew.SEQ_ONE) & Ew.SEQ_MASK) |
      (code << Ew.STATE_SHIFT);
    const seen = Atomics.compareExchange(i32, at, e, even);
    if (seen === e) break;
    e = seen;
  }
  ref.value = smallIfInt32(value);
  ref.state = state;
}

/** setTagLocked of an entry held by holdForDead (idempotent: a reaper that dies here leaves it for the next run). */
export function setTagForDead(tree: RadixTree, ref: EntryRef, tag: EntryTag, dead: number): void {
  checkHeldForDead(tree, ref, dead, 'setTagForDead');
  tree.lockTree();
  try {
    tree.setTagBitLocked(ref.leaf, ref.key, tagBit(tag), true);
  } finally {
    tree.unlockTree();
  }
}

/** Ends holdForDead: the entry is released on the dead holder's behalf (releaseDeadEntry: a placeholder is removed, waiters are woken). */
export function releaseForDead(tree: RadixTree, ref: EntryRef, dead: number): void {
  try {
    releaseDeadEntry(tree, ref.leaf, ref.key, dead);
  } finally {
    heldForDead.delete(ref.leaf);
  }
}

/**
 * Unlock on behalf of `dead` (file header): the entry at `leaf`, whose own key is `key`, if it
 * is still reachable and held by `dead`. A placeholder is removed; a half-done replace is
 * finished first.
 */
export function releaseDeadEntry(tree: RadixTree, leaf: number, key: Uint8Array, dead: number): void {
  const i32 = tree.arena.i32;
  let empty = false;
  tree.epoch.pin();
  try {
    if (tree.findExactPinned(key) !== leaf) return; // gone, or unlinked by the dead holder
    if (!finishDeadReplace(tree, leaf)) closeDeadOpened(tree, leaf, dead);
    const e = Atomics.load(i32, leaf + Lay.W_ENTRY);
    if ((e & (Ew.LOCKED | Ew.DELETED)) !== Ew.LOCKED || ownerOf(e) !== dead) return;
    empty = (e & Ew.STATE_MASK) === Ew.STATE_EMPTY << Ew.STATE_SHIFT;
    if (!empty) return releaseDeadLocked(tree, leaf, key, dead, 0, false);
  } finally {
    tree.epoch.unpin();
  }
  tree.lockTree();
  try {
    if (tree.findExactPinned(key) !== leaf) return; // lockTree pins
    const e = Atomics.load(i32, leaf + Lay.W_ENTRY);
    if ((e & (Ew.LOCKED | Ew.DELETED)) !== Ew.LOCKED || ownerOf(e) !== dead) return;
    tree.removeLeafLocked(leaf, key);
    releaseDeadLocked(tree, leaf, key, dead, Ew.DELETED, true);
  } finally {
    tree.unlockTree();
  }
}

/** Clears Ew.LOCKED/OWNER/Ew.WAITERS (sets extra) while the word still shows `dead` holding it, and wakes. */
function releaseDeadLocked(
  tree: RadixTree,
  leaf: number,
  key: Uint8Array,
  dead: number,
  extra: number,
  all: boolean,
): void {
  const i32 = tree.arena.i32;
  const at = leaf + Lay.W_ENTRY;
  tree.waitTable.wakeWhen(waitKey(tree.treeId, key), all, () => {
    let seen = Atomics.load(i32, at);
    for (;;) {
      if ((seen & (Ew.LOCKED | Ew.DELETED)) !== Ew.LOCKED || ownerOf(seen) !== dead) return false;
      const was = Atomics.compareExchange(i32, at, seen, (seen & ~(Ew.LOCKED | Ew.WAITERS | Ew.OWNER_MASK)) | extra);
      if (was === seen) return true; // wake: waiters may sleep without Ew.WAITERS having been seen by us
      seen = was;
    }
  });
}

/**
 * The index's part of reaping dead participant `id` (EpochDomain.onDeath, rank 40): treeLock
 * taken over if it holds it (the tree is repaired), every entry it holds released, its
 * wait-table records freed and its baton handed on. Idempotent.
 */
export function reapTreeParticipant(tree: RadixTree, id: number, gen: number): void {
  const w = Atomics.load(tree.arena.i32, H_TREE_LOCK);
  if (w !== 0 && holderIdOf(w) === id) {
    tree.lockTree(); // takes it over and repairs the tree (tree-lock.ts)
    tree.unlockTree();
  }
  const held: Array<[number, Uint8Array]> = [];
  tree.lockTree();
  try {
    forEachLeafLocked(tree, (leaf, e) => {
      if ((e & (Ew.LOCKED | Ew.DELETED)) === Ew.LOCKED && ownerOf(e) === id) held.push([leaf, tree.leafKey(leaf)]);
    });
  } finally {
    tree.unlockTree();
  }
  for (const [leaf, key] of held) releaseDeadEntry(tree, leaf, key, id);
  const pt = tree.participants;
  const base = slotBase(id);
  const hi = pt[base + P_BATON_KEY_HI];
  const batonKey =
    hi >= 0 && pt[base + P_BATON_TABLE] === tree.waitTable.token ? hi * TWO_32 + (pt[base + P_BATON_KEY_LO] >>> 0) : -1;
  pt[base + P_BATON_KEY_HI] = -1;
  tree.waitTable.reapParticipant(id, gen, batonKey);
}

function hex(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex') || '(empty key)';
}
