/**
 * What a key-value writer leaves behind when its thread dies, and how it is finished or undone
 * (EpochDomain.onDeath, rank 10: before the DAX layer and the index release the rest). The
 * running store ends up where recovery would put it after a crash at that moment, and nothing
 * stays held (docs/ARCHITECTURE.md "Thread death").
 *
 * Per writer slot of the dead participant (segment-writer.ts: W_OWNER names it):
 *   1. Its open segment is made durable up to the end of what it wrote ([DURABLE, END) flushed,
 *      one fence): every record it published is then as durable as recovery will find it, so a
 *      'group' or 'none' write that readers have seen is not lost by a later crash either.
 *   2. The record in flight (W_INFLIGHT), if any. A record that validates in memory (sealed:
 *      checksum and nonce) is also durable now (step 1), so recovery would apply it: it is
 *      ROLLED FORWARD — every entry whose key the dead thread still holds is held on its
 *      behalf (entry-lock.ts holdForDead: no one can slip in between, and the lock word goes on
 *      naming the dead thread, so a reaper that dies here leaves them for the next run of this
 *      reap) and published as the dead thread would have, all of them as one change for
 *      readers (rollForward), with the store's counters. Keys it had
 *      already published and unlocked are left alone: a later writer may own them now. A record
 *      that does not validate is ROLLED BACK: its bytes are zeroed and persisted; the keys it
 *      locked are released by the index's reap (a placeholder disappears, a value stays).
 *   3. Large-value objects written for the operation (W_OBJECTS_*): kept when its record
 *      validated (they are referenced), removed otherwise. The writer clears the objects
 *      record before the record in flight at the end of an operation, so a completed
 *      operation's objects are never taken for an abandoned one's.
 *   4. A segment its compaction was moving to staging (W_RETIRE_*): retired, if it is staging
 *      with that nonce and not already in limbo (the compaction died between the two).
 *   5. The slot is released: the segment becomes a closed one that compaction reclaims (the
 *      segment table learns what it holds, as when a writer leaves a segment).
 *      The store's priority slot (store.ts PRIORITY_SLOT) is not released: it belongs to
 *      whoever holds the compaction mutex, which names itself in W_OWNER for as long as it
 *      holds it, and its segment outlives its holders (it takes the reserve's extents). Its
 *      segment is cut back to the end of its valid records instead (reapPriority) and the
 *      store's shared hand-over words say so, so the next holder appends right after them.
 * Every step checks what is there before acting, so a reap cut short by the reaper's own death
 * is simply run again by the next one.
 */
import type { DaxSpace } from '../dax/space.js';
import type { Device } from '../device/device.js';
import { HUGE_BLOCKS } from '../device/layout.js';
import { OWNER_STAGING } from '../dax/layout.js';
import { RETIRE_DEVICE_BLOCK } from '../index/epoch.js';
import {
  adoptDeadEntry,
  beginReplace,
  beginReplaceForDead,
  finishReplace,
  finishReplaceForDead,
  holdForDead,
  isOpened,
  releaseForDead,
  unlock,
  type EntryRef,
  type EntryState,
} from '../index/entry-lock.js';
import type { RadixTree } from '../index/radix-tree.js';
import {
  ENTRY_DEL,
  ENTRY_PUT,
  ENTRY_HEADER_BYTES,
  KV_KEY_PREFIX,
  RECORD_HEADER_BYTES,
  OWNER_KV_SEGMENT,
  SEAL_BYTES,
  SEGMENT_BYTES,
  SEGMENT_ORDER,
  entryBytes,
} from './layout.js';
import { checkRecord, entryKeyLength, entryOp, entryValueLength, type MediaViews } from './records.js';
import {
  DURABLE,
  END,
  PROGRESS_WORDS,
  ALLOCATING,
  W_ALLOC_NONCE_HI,
  W_ALLOC_NONCE_LO,
  W_INFLIGHT,
  W_OBJECTS_COUNT,
  W_OBJECTS_FIRST,
  W_OWNER,
  W_RETIRE_BLOCK,
  W_RETIRE_NONCE_HI,
  W_RETIRE_NONCE_LO,
} from './segment-writer.js';
import { KV_OBJECT_ID_BASE, removeQuietly } from './large-values.js';
import { isBroken, testHooks } from '../test-break.js';

export interface WriterReapContext {
  readonly space: DaxSpace;
  readonly views: MediaViews;
  readonly openTable: Int32Array;
  readonly progress: Int32Array;
  /** Adds delta to counter `word` (store.ts LIVE_KEYS..BATCHES) of writer slot `slot`. */
  count(slot: number, word: number, delta: number): void;
  /** The entry at `oldAt` was superseded under its key's lock: retire its large value, if any. */
  retireLarge(oldAt: number): void;
  /** Whether a deleted key's leaf stays as a tombstone (a snapshot is held: store.ts, snapshots.ts). */
  keepTombstones(): boolean;
  /** Whether the entry at `at` is a DEL (a tombstone when the index points at it). */
  isDeletion(at: number): boolean;
  /** Adds delta to the store's count of tombstones. */
  addTombstones(delta: number): void;
  /** The store's priority slot (file header, step 5). */
  readonly prioritySlot: number;
  /** The priority writer's hand-over words as last parked: [block + 1, used, nonce] (store.ts PRIORITY_STATE). */
  priorityParked(): [word: number, used: number, nonce: number];
  /** Its holder died: the priority writer goes on at `used` in the segment `word` names (0: no segment). */
  priorityReaped(word: number, used: number, nonce: number): void;
  /** The segment (head `block`, -1: none) of a slot released here is closed from now on, `used` bytes written. */
  segmentLeft(slot: number, block: number, used: number): void;
  /** Extent e, which a writer was given and died before naming, was freed: no longer a segment if the table listed it. */
  unnamedSegmentFreed(e: number): void;
  /** store.ts counter words */
  readonly liveKeys: number;
  readonly dead: number;
}

/**
 * Writer slots reaped in this thread (tests). unknownInflight: a slot's in-flight word named no
 * record offset of a segment; oldNotEntry: a key the roll-forward published pointed at bytes
 * that are no entry of that key (isEntryOf), so nothing was retired or counted for them.
 */
export const writerReapStats = {
  slots: 0,
  rolledForward: 0,
  rolledBack: 0,
  priority: 0,
  unknownInflight: 0,
  oldNotEntry: 0,
  /** extents a writer that died ALLOCATING had been given and not named (freeUnnamedSegment) */
  unnamedSegments: 0,
};

/** Whether a W_INFLIGHT word (1 + the record's offset in its segment) can name a record: 8-aligned, after the head SEAL, inside the segment. */
function inflightInSegment(inflight: number): boolean {
  const offset = inflight - 1;
  return offset >= SEAL_BYTES && offset % 8 === 0 && offset + RECORD_HEADER_BYTES <= SEGMENT_BYTES;
}

/**
 * Whether device offset `at` holds an entry of index key `key` (KV_KEY_PREFIX, then the key):
 * 8-aligned inside the data area, the entry whole inside its 2 MiB segment, a PUT or DEL, its
 * key bytes `key`'s. What a held entry's value words name is checked so before the roll-forward
 * reads the entry there (tombstone or not, large or not) and retires it: a value that is no
 * entry of its key is left alone (counted in writerReapStats) rather than read as one.
 */
export function isEntryOf(v: MediaViews, device: Device, at: number, key: Uint8Array): boolean {
  if (isBroken('kv-reap-trust-index')) return entryTrusted();
  const first = device.dataOffset;
  const limit = first + Math.floor(device.capacityBlocks / HUGE_BLOCKS) * SEGMENT_BYTES;
  if (!Number.isSafeInteger(at) || at % 8 !== 0 || at < first || at + ENTRY_HEADER_BYTES > limit) return false;
  const segmentEnd = at - ((at - first) % SEGMENT_BYTES) + SEGMENT_BYTES;
  const keyLength = entryKeyLength(v, at);
  const op = entryOp(v, at);
  if (keyLength !== key.length - 1 || (op !== ENTRY_PUT && op !== ENTRY_DEL)) return false;
  if (at + entryBytes(keyLength, entryValueLength(v, at)) > segmentEnd) return false;
  const w = v.at(at);
  const k = at - w.base + ENTRY_HEADER_BYTES;
  for (let i = 0; i < keyLength; i++) if (w.u8[k + i] !== key[i + 1]) return false;
  return true;
}

/** Finishes or undoes everything dead participant `id` left in the writer slots it held. */
export function reapKvWriters(ctx: WriterReapContext, id: number): void {
  for (let slot = 0; slot < ctx.openTable.length; slot++) {
    if (Atomics.load(ctx.progress, slot * PROGRESS_WORDS + W_OWNER) === id) reapSlot(ctx, slot, id);
  }
}

function reapSlot(ctx: WriterReapContext, slot: number, id: number): void {
  const { space, views: v, progress } = ctx;
  const device = space.device;
  const line = slot * PROGRESS_WORDS;
  const word = Atomics.load(ctx.openTable, slot);
  if (word === ALLOCATING) freeUnnamedSegment(ctx, line, id);
  const base = word > 0 ? device.blockOffset(word - 1) : -1;
  const nonce = word > 0 ? device.ownerOf(word - 1).index : 0;
  const end = Math.min(SEGMENT_BYTES, progress[line + END]);
  if (base >= 0) {
    const durable = Atomics.load(progress, line + DURABLE);
    if (end > durable) device.media.persist(base + durable, end - durable);
  }
  const inflight = progress[line + W_INFLIGHT];
  let recordValid = false;
  if (inflight !== 0 && base >= 0 && !inflightInSegment(inflight)) {
    // Not an offset this store writes there: no record is known to be in flight. Nothing is
    // zeroed or published on its word; the records themselves are recovery's to judge.
    writerReapStats.unknownInflight++;
  } else if (inflight !== 0 && base >= 0) {
    const at = base + inflight - 1;
    const check = checkRecord(v, at, base + SEGMENT_BYTES, nonce);
    if (check.status === 'ok') {
      recordValid = true;
      rollForward(ctx, slot, at, check.count, id);
      writerReapStats.rolledForward++;
    } else {
      const stop = Math.max(at, base + end);
      const w = v.at(at);
      w.u8.fill(0, at - w.base, stop - w.base);
      if (stop > at) device.media.persist(at, stop - at);
      writerReapStats.rolledBack++;
    }
  }
  progress[line + W_INFLIGHT] = 0;
  const objects = progress[line + W_OBJECTS_COUNT];
  if (objects > 0 && !recordValid) {
    const first = progress[line + W_OBJECTS_FIRST];
    for (let k = 0; k < objects; k++) removeQuietly(space, KV_OBJECT_ID_BASE + first + k);
  }
  progress[line + W_OBJECTS_COUNT] = 0;
  const retiring = progress[line + W_RETIRE_BLOCK];
  if (retiring !== 0) {
    const block = retiring - 1;
    const retireNonce =
      (progress[line + W_RETIRE_NONCE_HI] >>> 0) * 2 ** 32 + (progress[line + W_RETIRE_NONCE_LO] >>> 0);
    const info = device.ownerOf(block);
    if (
      info.state === 'owned' &&
      info.ownerId === OWNER_STAGING &&
      info.index === retireNonce &&
      !space.epoch.inLimbo(RETIRE_DEVICE_BLOCK, block)
    )
      space.retireBlock(block);
    progress[line + W_RETIRE_BLOCK] = 0;
  }
  if (slot === ctx.prioritySlot) reapPriority(ctx, slot, word, base, nonce, end);
  else {
    ctx.segmentLeft(slot, base >= 0 ? word - 1 : -1, end);
    Atomics.store(ctx.openTable, slot, 0);
  }
  Atomics.store(progress, line + W_OWNER, 0);
  writerReapStats.slots++;
}

/**
 * A writer that died ALLOCATING (segment-writer.ts openSegment) may already own the extent it
 * was given: between the allocator's return and the open-segment table naming it, nothing else
 * records it, and an extent named nowhere would stay owned until the next open (a small store
 * then runs out of room for its deletes). It is found by the nonce the writer recorded before
 * it said ALLOCATING, and freed: no record was ever written in it, no reader can know it, and
 * compaction does not list owned segments while the slot says ALLOCATING. An allocation the
 * dead thread was still inside is the allocator's record's: the DAX layer's reap (rank 5, before
 * this one) has undone it, and it is left alone here in any case.
 */
function freeUnnamedSegment(ctx: WriterReapContext, line: number, id: number): void {
  if (isBroken('kv-reap-unnamed-segment-kept')) return;
  const { progress } = ctx;
  const device = ctx.space.device;
  const nonce = (progress[line + W_ALLOC_NONCE_HI] >>> 0) * 2 ** 32 + (progress[line + W_ALLOC_NONCE_LO] >>> 0);
  if (nonce !== 0 && !device.allocationInFlight(id)) {
    for (let block = 0; block + HUGE_BLOCKS <= device.dataBlocks; block += HUGE_BLOCKS) {
      const owner = device.ownerOf(block);
      if (owner.state !== 'owned' || owner.ownerId !== OWNER_KV_SEGMENT || owner.index !== nonce) continue;
      if (owner.order !== SEGMENT_ORDER || isNamed(ctx.openTable, block)) continue;
      device.free(block);
      ctx.unnamedSegmentFreed(block / HUGE_BLOCKS);
      writerReapStats.unnamedSegments++;
      break;
    }
  }
  progress[line + W_ALLOC_NONCE_LO] = 0;
  progress[line + W_ALLOC_NONCE_HI] = 0;
}

/** Whether some slot of the open-segment table names `block`. */
function isNamed(openTable: Int32Array, block: number): boolean {
  for (let i = 0; i < openTable.length; i++) if (Atomics.load(openTable, i) === block + 1) return true;
  return false;
}

/**
 * Step 5 for the priority slot (file header): the segment it names is cut back to the end of
 * its valid records and the hand-over words point there. The records below the parked end (same
 * block, same nonce: the same life of the extent) were written and committed by holders that
 * parked them; from there on the walk takes each record
 * that validates (a copy or delete the dead holder sealed: durable since step 1; one that does
 * not validate was zeroed in step 2), and zeroes what follows up to where the dead holder may
 * have written (its END), so the next holder's first record is the next one recovery reads. A
 * segment whose head SEAL never validated (the holder died opening it) is left as a closed
 * segment, as is nothing at all: the next holder opens a new one.
 */
function reapPriority(
  ctx: WriterReapContext,
  slot: number,
  word: number,
  base: number,
  nonce: number,
  end: number,
): void {
  const { views: v, progress } = ctx;
  const line = slot * PROGRESS_WORDS;
  writerReapStats.priority++;
  if (base < 0) {
    Atomics.store(ctx.openTable, slot, 0); // ALLOCATING or IDLE: the allocator's reap has the extent
    ctx.priorityReaped(0, 0, 0);
    return;
  }
  const [parkedWord, parkedUsed, parkedNonce] = ctx.priorityParked();
  let used = parkedWord === word && parkedNonce === nonce ? parkedUsed : 0;
  const stop = base + SEGMENT_BYTES;
  for (;;) {
    const check = checkRecord(v, base + used, stop, nonce);
    if (check.status !== 'ok') break;
    used += check.totalBytes;
  }
  if (used < SEAL_BYTES) {
    ctx.segmentLeft(slot, word - 1, 0);
    Atomics.store(ctx.openTable, slot, 0);
    ctx.priorityReaped(0, 0, 0);
    return;
  }
  const zeroTo = Math.min(SEGMENT_BYTES, Math.max(end, used + END_MARKER_BYTES));
  if (zeroTo > used) {
    v.u8.fill(0, base + used, base + zeroTo);
    ctx.space.device.media.persist(base + used, zeroTo - used);
  }
  Atomics.store(progress, line + DURABLE, used);
  progress[line + END] = used;
  ctx.priorityReaped(word, used, nonce);
}

/** isEntryOf under DAXSTORE_TEST_BREAK=kv-reap-trust-index: whatever the value words name is taken for an entry of the key. */
function entryTrusted(): boolean {
  return true;
}

/** Zero bytes that end a scan after the last record (segment-writer.ts). */
const END_MARKER_BYTES = 16;

/**
 * Publishes the entries of the record at `at` whose keys dead participant `id` still holds (file
 * header, step 2), as the store publishes a batch (store.ts publishBatchLocked): every entry not
 * yet published is opened before any is finished, so a reader sees all of the record or none of
 * it. An entry the dead thread had already finished (its new value, or EMPTY for a delete) is
 * left as it is; one it had opened stays open until finished here.
 */
function rollForward(ctx: WriterReapContext, slot: number, at: number, count: number, id: number): void {
  const { space, views: v } = ctx;
  const tree = space.tree;
  const on = isBroken('kv-reap-adopt-own') ? IN_OWN_NAME : FOR_DEAD;
  const held: Array<{ ref: EntryRef; e: number; put: boolean }> = [];
  let published = false;
  try {
    let e = at + RECORD_HEADER_BYTES;
    for (let i = 0; i < count; i++) {
      const keyLength = entryKeyLength(v, e);
      const key = new Uint8Array(keyLength + 1);
      key[0] = KV_KEY_PREFIX;
      const w = v.at(e);
      w.buf.copy(key, 1, e - w.base + ENTRY_HEADER_BYTES, e - w.base + ENTRY_HEADER_BYTES + keyLength);
      const ref = on.hold(tree, key, id);
      if (ref !== undefined) held.push({ ref, e, put: entryOp(v, e) === ENTRY_PUT });
      e += entryBytes(keyLength, entryValueLength(v, e));
      testHooks.reapRollForward?.('held', i + 1);
    }
    // Done already: the entry published (a PUT, or a DEL left as a tombstone), or a DEL's key absent.
    const todo = held.filter(({ ref, e: entryAt, put }) =>
      put ? !(ref.state === 'value' && ref.value === entryAt) : ref.state === 'value' && ref.value !== entryAt,
    );
    for (const { ref } of todo) if (!isOpened(tree, ref)) on.begin(tree, ref, id);
    testHooks.reapRollForward?.('opened', todo.length);
    const superseded: number[] = [];
    const keepTombstones = ctx.keepTombstones();
    // As the store publishes a batch (store.ts finishBatchEntryLocked): a tombstone the index
    // points at is no live value; a DEL stays a tombstone while a snapshot is held.
    let finished = 0;
    for (const { ref, e: entryAt, put } of todo) {
      // What the entry held is read only if it is an entry of this key (isEntryOf): anything
      // else is neither superseded nor a tombstone here (no object retired, no count moved).
      const wasEntry = ref.state === 'value' && isEntryOf(v, space.device, ref.value, ref.key);
      if (ref.state === 'value' && !wasEntry) writerReapStats.oldNotEntry++;
      const wasTombstone = wasEntry && ctx.isDeletion(ref.value);
      const wasLive = wasEntry && !wasTombstone;
      if (wasLive) superseded.push(ref.value);
      if (put) {
        ctx.count(slot, wasLive ? ctx.dead : ctx.liveKeys, 1);
        if (wasTombstone) ctx.addTombstones(-1);
        on.finish(tree, ref, entryAt, 'value', id);
      } else {
        if (wasLive) {
          ctx.count(slot, ctx.liveKeys, -1);
          ctx.count(slot, ctx.dead, 1);
        }
        if (keepTombstones) {
          if (wasLive) ctx.addTombstones(1);
          on.finish(tree, ref, entryAt, 'value', id); // a tombstone: absent, older versions behind it
        } else {
          if (wasTombstone) ctx.addTombstones(-1);
          on.finish(tree, ref, 0, 'empty', id); // absent from here on; the release below removes it
        }
      }
      testHooks.reapRollForward?.('finished', ++finished);
    }
    for (const old of superseded) ctx.retireLarge(old);
    published = true;
  } finally {
    // Every entry is released even if one fails here (the first failure is rethrown after): an
    // entry left held for the dead would make this thread's later grabs of its leaf EDEADLK.
    let failure: unknown;
    for (const { ref } of held) {
      try {
        if (isOpened(tree, ref)) on.finish(tree, ref, ref.value, ref.state, id); // left open by a failure above: close on the old value
      } catch (e) {
        failure ??= e;
      }
      try {
        on.release(tree, ref, id);
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== undefined && published) throw failure; // else the body's own error goes on
  }
}

/** How the roll-forward holds, publishes and releases a dead thread's entries. */
interface HoldFor {
  hold(tree: RadixTree, key: Uint8Array, dead: number): EntryRef | undefined;
  begin(tree: RadixTree, ref: EntryRef, dead: number): void;
  finish(tree: RadixTree, ref: EntryRef, value: number, state: EntryState, dead: number): void;
  release(tree: RadixTree, ref: EntryRef, dead: number): void;
}

/** On the dead thread's behalf: its entries go on naming it until released (entry-lock.ts holdForDead). */
const FOR_DEAD: HoldFor = {
  hold: holdForDead,
  begin: beginReplaceForDead,
  finish: finishReplaceForDead,
  release: releaseForDead,
};

/**
 * DAXSTORE_TEST_BREAK=kv-reap-adopt-own: the entries are taken over in the reaper's own name
 * (adoptDeadEntry). A reaper that dies in the middle leaves them named by itself: the next
 * reaper of the first dead thread no longer finds them, and the reap of the reaper releases
 * them on whatever they held, so part of the record stays unpublished.
 */
const IN_OWN_NAME: HoldFor = {
  hold: adoptDeadEntry,
  begin: (tree, ref) => beginReplace(tree, ref),
  finish: (tree, ref, value, state) => finishReplace(tree, ref, value, state),
  release: (tree, ref) => unlock(tree, ref),
};
