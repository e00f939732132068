/**
 * Compaction: reclaims log segments whose entries are mostly dead.
 *
 * Invariants
 *   - A live entry is moved by copying its bytes unchanged (sequence included) into a new
 *     record of the priority writer's segment (store.ts); the index then points at the copy. Equal
 *     sequences make the two copies interchangeable at recovery, so a crash at any point
 *     recovers the same value.
 *   - A DEL entry whose key's index entry is another (newer) entry is dead and dropped. A DEL
 *     the index points at is a tombstone kept for snapshots (snapshots.ts): moved like a PUT.
 *   - Tombstone rule: a DEL entry (key k, sequence s) whose key is absent from the index is
 *     copied forward only while recovery could resurrect an older record of k without it,
 *     i.e. while some OTHER key-value segment (closed or open: every one recovery would scan)
 *     holds a PUT of k with a sequence below s. Otherwise it is dropped. Why that is safe:
 *     recovery keeps, per key, the entry with the highest sequence over every segment it
 *     scans. Removing the DEL (with its segment) can change k's winner only if the DEL was
 *     the winner, and then the new winner is the highest of k's remaining entries, all of
 *     sequence < s: with no PUT among them, k stays absent. No PUT of k with a sequence below
 *     s can appear later: new records take new (higher) sequences, and compaction copies
 *     only entries the index points at (k is absent) with their own sequence. The PUTs that
 *     count are read in memory, which holds every record recovery could find (a durable
 *     record is also in memory; memory may hold more, which only keeps more tombstones).
 *     PUTs in the DEL's own segment do not count: the two leave together (one owner change).
 *   - Compactions run one at a time (COMPACTION mutex, shared by every handle): a segment
 *     another compaction is unpublishing (owner KV -> staging, not yet durable) could be
 *     skipped by the tombstone scan above and still be recovered after a crash (its PUT
 *     back, the DEL that shadowed it dropped: test kv-compaction-mutex).
 *   - A segment is retired only after every copy made from it is durable (one commit), and
 *     freed only through the epoch, once no pinned reader can hold a view into it (R6).
 *   - Superseders first: an entry dropped as dead (a PUT or DEL the index no longer
 *     points at) is dead because of a NEWER record, which recovery must find once the dropped
 *     entry is gone. In 'sync' that record was durable before it was published. In 'group'/
 *     'none' it may still be un-flushed in ANOTHER writer's open segment (another thread or
 *     handle; our own writer's is covered by our commit, closed segments were committed when
 *     their writer left them): retiring the segment first would let a crash lose an
 *     acknowledged-durable PUT (neither it nor its superseder recovered), bring back the PUT
 *     a durable DEL had shadowed, or keep another writer's DEL without its earlier records.
 *     So after the decisions about a segment's entries and before its owner change, every
 *     other open segment is flushed from its durable point to its current end
 *     (segment-writer.ts flushOpenSegments: a cache flush from any CPU writes the line back)
 *     and fenced with our commit. That makes every record published before the flush
 *     durable together with all records before it in its segment, so recovery's scan (from
 *     the segment start to the first record that does not validate) reaches it; a record
 *     being written meanwhile may be caught torn and then ends that scan after them, as any
 *     torn tail does. Chosen over a store-wide group commit (a 'none' or idle writer may
 *     never commit: compaction would wait forever) and over copying dead entries forward
 *     until their superseder is durable (needs the superseder's place, unknown for a
 *     deleted key, and leaves dead bytes to move again). Cost: the un-durable tail of each
 *     other writer, flushed once per compacted segment; nothing on the write path but one
 *     plain store per reserve and one Atomics store per commit.
 *   - Segments listed in the open-segment table (some writer appends there) are never chosen.
 *
 * Concurrency (R3: the entry lock is the only lock about a key)
 *   - Lock order: the compaction mutex (taken by the caller: store.ts withPriorityWriter, which
 *     also reaps a holder that died), then entry locks; puts never take the mutex.
 *   - The candidates are the entries the index pointed at when the segment was measured (a
 *     lock-free lookup each) and its DEL entries. A PUT the index did not point at is dead for
 *     good: a key's index entry only ever moves to a newer record or a copy (writes publish
 *     records after sealing them, the reaper rolls a sealed record forward and leaves published
 *     entries alone, compaction points at its copies), never back to an entry it left.
 *   - For each candidate entry: grab the key's entry lock, re-check that the index still points
 *     at this entry (a concurrent put/delete may have moved on: then skip), copy, publish with
 *     replace(), unlock. Readers never block: they see the old or the new copy, both intact.
 *
 * Persistence ordering, per chosen segment: copies sealed and flushed; the other writers'
 * open segments flushed [durable point, end) (superseders first, above); ONE drain
 * (writer.commit(alsoDrain): a fence even when we copied nothing, because flushes before one
 * fence reach the media in any order and the owner change must not overtake those lines);
 * then the segment's owner record moves KV -> staging (transferOwner, persisted: recovery
 * stops reading it, and frees it); then retireBlock -> epoch -> device.free when the grace ends.
 */
import type { DaxSpace } from '../dax/space.js';
import { DaxError } from '../errors.js';
import { OWNER_STAGING } from '../dax/layout.js';
import { transferOwner } from '../device/transfer-owner.js';
import { grab, replace, unlock } from '../index/entry-lock.js';
import { LOOKUP_MANY_MAX } from '../index/radix-tree.js';
import {
  ENTRY_DEL,
  ENTRY_HEADER_BYTES,
  ENTRY_PUT,
  KIND_BATCH,
  KIND_PUT,
  KV_KEY_PREFIX,
  MAX_KEY_BYTES,
  OWNER_KV_SEGMENT,
  RECORD_HEADER_BYTES,
  RETIRED_HEAD_WORD,
  SEGMENT_BYTES,
  SEGMENT_ORDER,
  entryBytes,
} from './layout.js';
import { entryKeyLength, entryOp, entrySequence, entryValueLength, forEachRecord, type MediaViews } from './records.js';
import { ALLOCATING, PROGRESS_WORDS, W_OWNER, flushOpenSegments, type SegmentWriter } from './segment-writer.js';
import { isParticipantDead } from '../device/participants.js';
import { isBroken, testHooks } from '../test-break.js';
import { ensureStageBytes, stageViews } from './record-stage.js';
import { entryCost, type SegmentInfo, type SegmentTable } from './segment-table.js';
import { HUGE_BLOCKS } from '../device/layout.js';

export interface CompactionReport {
  segmentsScanned: number;
  segmentsFreed: number;
  entriesMoved: number;
  /** DEL entries copied forward: an older PUT of their key is still in another segment */
  tombstonesKept: number;
  /** DEL entries dropped by the tombstone rule (nothing older of their key left to shadow) */
  tombstonesDropped: number;
  bytesReclaimed: number;
}

interface Segment {
  block: number;
  base: number;
  nonce: number;
  /** what may have to move: the entries live when measured, and every DEL entry (the invariants above) */
  entries: number[];
  /** bytes (as copies: a record header each) of the entries the index points at, tombstones among them */
  liveBytes: number;
  /** of liveBytes, the tombstones' (DEL entries the index points at: moved like live PUTs) */
  liveTombstoneBytes: number;
  usedBytes: number;
  /** the largest live entry's copy (record header included) */
  maxEntryBytes: number;
}

/** Stores RETIRED_HEAD_WORD over the segment's bytes [8, 16) (its SEAL's magic word), persisted. */
function markRetired(space: DaxSpace, v: MediaViews, seg: Segment): void {
  if (isBroken('kv-compact-no-retired-mark')) return; // the SEAL stays: salvage may take the segment for a live one
  v = v.at(seg.base);
  Atomics.store(v.u64, (seg.base - v.base + 8) / 8, RETIRED_HEAD_WORD);
  space.device.media.persist(seg.base + 8, 8);
}

export interface CompactOptions {
  /** segments whose live entries fill at most this fraction are compacted */
  maxLiveRatio: number;
  /** at most this many segments per call (the emptiest first); default: every one that qualifies */
  maxSegments?: number;
  /**
   * Bytes the copies may still take (the writer's room and the free extents it may allocate):
   * a segment whose live entries do not fit is not started, so compaction never strands a
   * half-moved segment for lack of space. Asked before each segment; default: unbounded.
   */
  roomBytes?: () => number;
  /** Called after each segment is retired (the caller collects the epoch, so the segment can take the next copies). */
  afterSegment?: () => void;
  /**
   * Frees a segment compaction has unpublished: through the epoch, once no snapshot can read
   * it (store.ts retireOrDefer). Default: space.retireBlock at once (salvage at open, before
   * any snapshot exists).
   */
  retireSegment?: (block: number) => void;
  /** Asked before each segment: true stops compaction there (default: never). */
  enough?: () => boolean;
  /**
   * Choose by the segment table's numbers (segment-table.ts), measuring only the segments
   * chosen, instead of measuring every closed segment (a lookup per entry of the store).
   */
  fromTable?: boolean;
}

/**
 * Compacts into `writer` (the store's priority writer, or with kv-compact-no-mutex the handle's
 * own), with the compaction mutex held by the caller (store.ts withPriorityWriter). The
 * segments whose live bytes are at most maxLiveRatio are taken emptiest first. Never fails for
 * space: when the writer cannot get a segment for a copy (ENOSPC), compaction stops there,
 * makes what it copied durable and returns what it freed so far; the segment it was moving
 * stays whole (every entry the index points at is a valid record, original or copy).
 * `exceptSlot`: the open-table slot of `writer` (committed here, not flushed as another's).
 */
export function compactSegmentsLocked(
  space: DaxSpace,
  v: MediaViews,
  writer: SegmentWriter,
  openTable: Int32Array,
  progress: Int32Array,
  table: SegmentTable,
  opts: CompactOptions,
): CompactionReport {
  const report = emptyReport();
  const limit = opts.maxLiveRatio * SEGMENT_BYTES;
  const candidates: Segment[] = [];
  if (opts.fromTable === true) {
    for (const info of closedSegmentsListed(space, table, openTable, progress)) {
      if (candidates.length >= (opts.maxSegments ?? Infinity)) break;
      if (info.liveBytes > limit) continue;
      const seg = segmentAt(space, info.extent * HUGE_BLOCKS);
      if (seg === undefined) continue;
      measure(space, v, table, seg);
      report.segmentsScanned++;
      if (seg.liveBytes <= limit) candidates.push(seg);
    }
  } else {
    for (const seg of listClosedSegments(space, openTable, progress)) {
      report.segmentsScanned++;
      measure(space, v, table, seg);
      if (seg.liveBytes <= limit) candidates.push(seg);
    }
  }
  candidates.sort((a, b) => a.liveBytes - b.liveBytes);
  const chosen = candidates.slice(0, opts.maxSegments ?? candidates.length);
  retireChosen(space, v, writer, openTable, progress, table, chosen, report, opts);
  return report;
}

function emptyReport(): CompactionReport {
  return {
    segmentsScanned: 0,
    segmentsFreed: 0,
    entriesMoved: 0,
    tombstonesKept: 0,
    tombstonesDropped: 0,
    bytesReclaimed: 0,
  };
}

/**
 * Moves the live entries (and the tombstones the rule keeps) of each chosen segment, then
 * retires it; stops early as `opts` says (enough, roomBytes, ENOSPC: see compactSegmentsLocked).
 */
function retireChosen(
  space: DaxSpace,
  v: MediaViews,
  writer: SegmentWriter,
  openTable: Int32Array,
  progress: Int32Array,
  table: SegmentTable,
  chosen: Segment[],
  report: CompactionReport,
  opts: Pick<CompactOptions, 'roomBytes' | 'afterSegment' | 'enough' | 'retireSegment'>,
): void {
  const rule = tombstonesToKeep(space, v, chosen);
  testHooks.tombstonesWeighed?.();
  for (const seg of chosen) {
    // The tombstones kept are copied too.
    for (const e of seg.entries) if (rule.keep.has(e)) seg.liveBytes += entryCost(entryKeyLength(v, e), 0);
  }
  for (const seg of chosen) {
    if (opts.enough?.() === true) break;
    // The copies fill the writer's segment and go on in the next: the one that does not fit at
    // the end of a segment leaves that much unused (at most the largest entry).
    if (opts.roomBytes !== undefined && seg.liveBytes + seg.maxEntryBytes > opts.roomBytes()) continue;
    let full = false;
    try {
      for (const e of seg.entries) moveEntry(space, v, writer, table, e, rule, report);
    } catch (e) {
      if (!(e instanceof DaxError && e.code === 'ENOSPC')) throw e;
      full = true; // no segment for the next copy: keep seg, make the copies so far durable
    }
    commitBeforeRetire(space, openTable, progress, writer);
    if (full) break;
    writer.recordRetire(seg.block, seg.nonce); // a death from here to the retire: writer-reaper.ts step 4
    // The head SEAL is marked retired before the owner record changes: a segment whose owner
    // record is damaged is rebuilt from its SEAL (recovery.ts restoreSegments), so a retired one
    // must not have one. One aligned 8-byte store (no torn state); no reader reads it (it is not
    // an entry); a crash before the owner change leaves a segment recovery reads as empty:
    // everything in it is dead or copied, durably.
    markRetired(space, v, seg);
    if (!unpublish(space, seg.block)) {
      writer.recordRetire(-1, 0);
      continue; // another thread's compaction retired it
    }
    table.freed(seg.block / HUGE_BLOCKS);
    if (opts.retireSegment !== undefined) opts.retireSegment(seg.block);
    else space.retireBlock(seg.block);
    writer.recordRetire(-1, 0);
    report.segmentsFreed++;
    report.bytesReclaimed += SEGMENT_BYTES - seg.liveBytes;
    opts.afterSegment?.();
  }
}

/**
 * Salvage (recovery-salvage.ts): moves every live entry of the given segments (their readable
 * records: a poisoned block is skipped) into `writer` (the priority writer) and retires them,
 * whatever their live ratio. With the compaction mutex held by the caller (store.ts
 * withPriorityWriter), as any compaction; a segment whose copies find no room stays.
 */
export function evacuateSegments(
  space: DaxSpace,
  v: MediaViews,
  writer: SegmentWriter,
  openTable: Int32Array,
  progress: Int32Array,
  table: SegmentTable,
  blocks: readonly number[],
): CompactionReport {
  const report = emptyReport();
  const chosen = blocks.map((block) => newSegment(space, block));
  for (const seg of chosen) {
    report.segmentsScanned++;
    measure(space, v, table, seg);
  }
  retireChosen(space, v, writer, openTable, progress, table, chosen, report, {});
  return report;
}

function newSegment(space: DaxSpace, block: number): Segment {
  const owner = space.device.ownerOf(block);
  if (owner.state !== 'owned' && owner.state !== 'poisoned')
    throw new DaxError('EINVAL', `segment at block ${block} is not owned`);
  return unmeasured(space, block, owner.index);
}

/** The segment headed by `block` (its records sealed with `nonce`), before measure() reads it. */
function unmeasured(space: DaxSpace, block: number, nonce: number): Segment {
  return {
    block,
    base: space.device.blockOffset(block),
    nonce,
    entries: [],
    liveBytes: 0,
    liveTombstoneBytes: 0,
    usedBytes: 0,
    maxEntryBytes: 0,
  };
}

/** `readable` of forEachRecord for the segment at `block`: undefined (everything) when no block of it is poisoned. */
function readableOf(space: DaxSpace, block: number): ((from: number, to: number) => boolean) | undefined {
  const device = space.device;
  if (device.poisonedBlocks === 0 || device.firstPoisoned(block, SEGMENT_BYTES / 4096) < 0) return undefined;
  return (from, to) => {
    const first = device.blockAt(from);
    return device.firstPoisoned(first, device.blockAt(to - 1) - first + 1) < 0;
  };
}

/**
 * Extents named in the open table. A writer that is ALLOCATING may own a segment it has not
 * named yet (the table lists it as a segment a moment before): wait until none is.
 */
/**
 * The table's closed segments, the table read BEFORE the open-segment table. A writer names a
 * new segment in the open table (ALLOCATING before it owns the block, the block before it
 * writes a record there) and owns the block before the table lists it, so a segment the table
 * lists is named in the open table read after it unless its writer has left it. Read the other
 * way round, a segment opened between the two reads is listed and not named: compaction would
 * retire a segment its writer goes on appending to, and the index would point into a freed block.
 */
function closedSegmentsListed(
  space: DaxSpace,
  table: SegmentTable,
  openTable: Int32Array,
  progress: Int32Array,
): SegmentInfo[] {
  if (isBroken('kv-compact-open-set-first')) {
    const open = openSegments(space, openTable, progress);
    testHooks.compactionListing?.();
    return table.closedSegments(open);
  }
  const listed = table.closedSegments(NONE_OPEN);
  testHooks.compactionListing?.();
  const open = openSegments(space, openTable, progress);
  return listed.filter((info) => !open.has(info.extent));
}

const NONE_OPEN: ReadonlySet<number> = new Set();

function openSegments(space: DaxSpace, openTable: Int32Array, progress: Int32Array): Set<number> {
  for (;;) {
    const open = new Set<number>();
    let allocating = -1;
    for (let i = 0; i < openTable.length; i++) {
      const w = Atomics.load(openTable, i);
      if (w === ALLOCATING) allocating = i;
      else if (w > 0) open.add((w - 1) / HUGE_BLOCKS);
    }
    if (allocating < 0) return open;
    waitAllocating(space, progress, allocating);
  }
}

/**
 * Slot `slot` says ALLOCATING: its writer may own a segment it has not named yet. Waits a moment
 * for it to name one; a writer that died there is reaped instead (writer-reaper.ts frees the
 * extent it may own and releases the slot): nothing else ends the wait while this thread is
 * the only one left, and it reaps nobody while it compacts.
 */
function waitAllocating(space: DaxSpace, progress: Int32Array, slot: number): void {
  const owner = Atomics.load(progress, slot * PROGRESS_WORDS + W_OWNER);
  const dead = owner !== 0 && isParticipantDead(owner) && !isBroken('kv-compact-waits-on-dead');
  if (!dead || !space.epoch.reap(owner)) Atomics.wait(ALLOCATING_SLEEP, 0, 0, 1);
}

const ALLOCATING_SLEEP = new Int32Array(new SharedArrayBuffer(4));

/** The key-value segment headed by `block`, unmeasured; undefined when the block is no longer one. */
function segmentAt(space: DaxSpace, block: number): Segment | undefined {
  const owner = space.device.ownerOf(block);
  if (owner.state !== 'owned' || owner.ownerId !== OWNER_KV_SEGMENT || owner.order !== SEGMENT_ORDER) return undefined;
  return unmeasured(space, block, owner.index);
}

/**
 * After every decision about a segment's entries, before it stops being scanned: the records
 * that made its dropped entries dead (in other writers' open segments) are flushed, and ONE
 * fence makes them durable together with our copies (a fence even with no copies of our own:
 * the owner change must not overtake those lines).
 */
function commitBeforeRetire(space: DaxSpace, openTable: Int32Array, progress: Int32Array, writer: SegmentWriter): void {
  if (isBroken('kv-compact-no-commit')) return flushOthersWithoutCommit(space, openTable, progress, writer);
  if (isBroken('kv-compact-skip-open-flush')) return writer.commit(false);
  if (isBroken('kv-compact-open-flush-unfenced')) return commitWithoutOwnFence(space, openTable, progress, writer);
  writer.commit(flushOpenSegments(space.device, openTable, progress, writer.slotIndex));
}

/** commitBeforeRetire under DAXSTORE_TEST_BREAK=kv-compact-no-commit: the others' lines flushed, nothing fenced. */
function flushOthersWithoutCommit(
  space: DaxSpace,
  openTable: Int32Array,
  progress: Int32Array,
  writer: SegmentWriter,
): void {
  flushOpenSegments(space.device, openTable, progress, writer.slotIndex);
}

/** commitBeforeRetire under DAXSTORE_TEST_BREAK=kv-compact-open-flush-unfenced: no fence unless we have copies of our own. */
function commitWithoutOwnFence(
  space: DaxSpace,
  openTable: Int32Array,
  progress: Int32Array,
  writer: SegmentWriter,
): void {
  flushOpenSegments(space.device, openTable, progress, writer.slotIndex);
  writer.commit(false);
}

/**
 * Owned segments no writer appends to. List the owned ones FIRST, then read the open table:
 * a writer announces ALLOCATING before its allocation, so a segment owned at listing time is
 * either announced by now or its writer is still ALLOCATING (then list again).
 */
function listClosedSegments(space: DaxSpace, openTable: Int32Array, progress: Int32Array): Segment[] {
  for (;;) {
    const owned: Segment[] = [];
    space.device.forEachOwned((block, owner, index) => {
      if (owner === OWNER_KV_SEGMENT)
        owned.push({
          block,
          base: space.device.blockOffset(block),
          nonce: index,
          entries: [],
          liveBytes: 0,
          liveTombstoneBytes: 0,
          usedBytes: 0,
          maxEntryBytes: 0,
        });
    });
    const open = new Set<number>();
    let allocating = -1;
    for (let i = 0; i < openTable.length; i++) {
      const w = Atomics.load(openTable, i);
      if (w === ALLOCATING) allocating = i;
      else if (w > 0) open.add(w - 1);
    }
    if (allocating < 0) return owned.filter((seg) => !open.has(seg.block));
    waitAllocating(space, progress, allocating);
  }
}

/**
 * Owner KV -> staging, durably: recovery no longer scans it (DaxSpace recovery frees staging
 * blocks), and no later compaction lists it while it waits in epoch limbo. False when another
 * compaction got there first.
 */
function unpublish(space: DaxSpace, block: number): boolean {
  try {
    transferOwner(space.device, block, OWNER_KV_SEGMENT, OWNER_STAGING);
    return true;
  } catch (e) {
    if (e instanceof DaxError && e.code === 'EINVAL' && /owned by|not owned/.test(e.message)) return false;
    throw e;
  }
}

/**
 * The live bytes (PUT entries the index points at) and tombstone bytes (DEL entries, each as a
 * copy would cost) of the closed segment headed by `block`, by reading it: what the segment
 * table holds (BORN - DIED, DELS) counted afresh. A tombstone the index points at is among the
 * tombstones only, as the table counts it (never born): measure() counts it live too, since
 * compaction moves it like a live PUT. Undefined when the block is no longer a segment. With
 * the compaction mutex held (no compaction retires the segment meanwhile).
 */
export function measureSegment(
  space: DaxSpace,
  v: MediaViews,
  table: SegmentTable,
  block: number,
): { liveBytes: number; delBytes: number } | undefined {
  const seg = segmentAt(space, block);
  if (seg === undefined) return undefined;
  measure(space, v, table, seg);
  let delBytes = 0;
  for (const e of seg.entries) if (entryOp(v, e) === ENTRY_DEL) delBytes += entryCost(entryKeyLength(v, e), 0);
  const live = isBroken('kv-measure-tombstones-live') ? seg.liveBytes : seg.liveBytes - seg.liveTombstoneBytes;
  return { liveBytes: live, delBytes };
}

/**
 * Counts the bytes of the segment's entries the index still points at and lists them with its
 * DEL entries (Segment.entries): a dead PUT is never looked at again. A PUT the segment table
 * marks dead (segment-table.ts, dead marks) is dead without a lookup; the others are looked up
 * in batches of LOOKUP_MANY_MAX, whose descents walk together (radix-tree.ts
 * lookupManyPinned), one pin each.
 */
function measure(space: DaxSpace, v: MediaViews, table: SegmentTable, seg: Segment): void {
  let last = seg.base;
  // Sabotaged (kv-compact-no-recheck): every entry listed, dead ones too, and none re-checked.
  const all = isBroken('kv-compact-no-recheck');
  const batch = measureBatch;
  const tree = space.tree;
  let n = 0;
  const decide = (): void => {
    tree.epoch.pin();
    try {
      tree.lookupManyPinned(batch.keys, n, batch.found);
    } finally {
      tree.epoch.unpin();
    }
    for (let j = 0; j < n; j++) {
      const e = batch.entries[j];
      const bytes = batch.bytes[j];
      if (batch.found[j] === e) {
        seg.entries.push(e);
        seg.liveBytes += bytes + RECORD_HEADER_BYTES;
        if (batch.dels[j] === 1) seg.liveTombstoneBytes += bytes + RECORD_HEADER_BYTES;
        seg.maxEntryBytes = Math.max(seg.maxEntryBytes, bytes + RECORD_HEADER_BYTES);
      } else if (all || entryOp(v, e) === ENTRY_DEL) seg.entries.push(e);
    }
    n = 0;
  };
  forEachRecord(v, seg.base, SEGMENT_BYTES, seg.nonce, readableOf(space, seg.block), (at, check) => {
    let e = at + RECORD_HEADER_BYTES;
    for (let i = 0; i < (check.kind === KIND_PUT || check.kind === KIND_BATCH ? check.count : 0); i++) {
      const bytes = entryBytes(entryKeyLength(v, e), entryValueLength(v, e));
      const del = entryOp(v, e) === ENTRY_DEL; // the header just read for the lengths
      if (!del && !all && table.markedDead(e)) {
        e += bytes;
        continue;
      }
      batch.entries[n] = e;
      batch.bytes[n] = bytes;
      batch.dels[n] = del ? 1 : 0;
      batch.keys[n] = batchKey(v, e, n);
      if (++n === LOOKUP_MANY_MAX) decide();
      e += bytes;
    }
    last = at + check.totalBytes;
  });
  if (n > 0) decide();
  seg.usedBytes = last - seg.base;
}

/** The longest index key of the store: the prefix byte and MAX_KEY_BYTES key bytes. */
const MAX_INDEX_KEY_BYTES = MAX_KEY_BYTES + 1;

/** measure()'s batch (one per thread, as modules are): entry offsets, their sizes, their index keys (in keySlab, MAX_INDEX_KEY_BYTES of room each) and the lookups' answers. */
const measureBatch = {
  entries: new Float64Array(LOOKUP_MANY_MAX),
  bytes: new Float64Array(LOOKUP_MANY_MAX),
  /** 1 where the entry is a DEL */
  dels: new Uint8Array(LOOKUP_MANY_MAX),
  keys: new Array<Uint8Array>(LOOKUP_MANY_MAX).fill(new Uint8Array(0)),
  found: new Float64Array(LOOKUP_MANY_MAX),
  keySlab: new Uint8Array(LOOKUP_MANY_MAX * MAX_INDEX_KEY_BYTES),
  /** keyViews[slot][keyLength]: keySlab's view of room `slot` holding an index key of keyLength + 1 bytes, made at its first use */
  keyViews: Array.from({ length: LOOKUP_MANY_MAX }, (): Array<Uint8Array | undefined> => []),
};

/** The index key of entry e (the prefix byte, then its key) in room `slot` of measureBatch.keySlab. */
function batchKey(v: MediaViews, e: number, slot: number): Uint8Array {
  const keyLength = entryKeyLength(v, e);
  const slab = measureBatch.keySlab;
  const to = slot * MAX_INDEX_KEY_BYTES;
  slab[to] = KV_KEY_PREFIX;
  v = v.at(e);
  const from = e - v.base + ENTRY_HEADER_BYTES;
  for (let i = 0; i < keyLength; i++) slab[to + 1 + i] = v.u8[from + i];
  // A view per (room, length), kept: not a subarray (an allocation and a builtin call) per entry.
  return (measureBatch.keyViews[slot][keyLength] ??= slab.subarray(to, to + keyLength + 1));
}

function indexKey(v: MediaViews, e: number): Uint8Array {
  const keyLength = entryKeyLength(v, e);
  const key = new Uint8Array(keyLength + 1);
  key[0] = KV_KEY_PREFIX;
  v = v.at(e);
  key.set(v.u8.subarray(e - v.base + ENTRY_HEADER_BYTES, e - v.base + ENTRY_HEADER_BYTES + keyLength), 1);
  return key;
}

/** What the tombstone rule decided about the chosen segments' DEL entries, before any was moved. */
interface TombstoneRule {
  /** the DELs it keeps (copied forward) */
  keep: Set<number>;
  /** the DELs it weighed: those of a key absent from the index when it ran */
  weighed: Set<number>;
}

/**
 * The DEL entries of the chosen segments that the tombstone rule (top of file) keeps: those
 * of a key absent from the index with a PUT of a lower sequence in another owned segment.
 * One pass over every record of every key-value segment, only when there are candidates.
 * A DEL whose key was present (a newer entry, or the tombstone itself kept for a snapshot) is
 * not weighed: moveEntry copies it forward if its key is absent by the time it is moved (a
 * tombstone sweep runs under entry locks only, not the compaction mutex).
 */
function tombstonesToKeep(space: DaxSpace, v: MediaViews, chosen: Segment[]): TombstoneRule {
  const keep = new Set<number>();
  const weighed = new Set<number>();
  const candidates = new Map<string, Array<{ e: number; sequence: number; block: number }>>();
  for (const seg of chosen) {
    for (const e of seg.entries) {
      if (entryOp(v, e) !== ENTRY_DEL || space.tree.lookup(indexKey(v, e)) !== undefined) continue; // present: not weighed
      weighed.add(e);
      const name = keyName(v, e);
      let list = candidates.get(name);
      if (list === undefined) candidates.set(name, (list = []));
      list.push({ e, sequence: entrySequence(v, e), block: seg.block });
    }
  }
  // Sabotaged: keeps none, whatever the rule says.
  if (candidates.size === 0 || isBroken('kv-compact-drop-tombstones')) return { keep, weighed };
  space.device.forEachOwned((block, owner, nonce) => {
    if (owner !== OWNER_KV_SEGMENT) return;
    forEachEntry(space, v, block, nonce, (e) => {
      if (entryOp(v, e) !== ENTRY_PUT) return;
      const list = candidates.get(keyName(v, e));
      if (list === undefined) return;
      const sequence = entrySequence(v, e);
      for (const t of list) if (t.block !== block && sequence < t.sequence) keep.add(t.e);
    });
  });
  return { keep, weighed };
}

/** Calls fn for each entry of each record recovery reads in the segment (records.ts forEachRecord). */
function forEachEntry(space: DaxSpace, v: MediaViews, block: number, nonce: number, fn: (e: number) => void): void {
  forEachRecord(v, space.device.blockOffset(block), SEGMENT_BYTES, nonce, readableOf(space, block), (at, check) => {
    if (check.kind !== KIND_PUT && check.kind !== KIND_BATCH) return;
    let e = at + RECORD_HEADER_BYTES;
    for (let i = 0; i < check.count; i++) {
      fn(e);
      e += entryBytes(entryKeyLength(v, e), entryValueLength(v, e));
    }
  });
}

/** The key bytes of entry e as a latin1 string (a Map key). */
function keyName(v: MediaViews, e: number): string {
  v = v.at(e);
  return v.buf.toString(
    'latin1',
    e - v.base + ENTRY_HEADER_BYTES,
    e - v.base + ENTRY_HEADER_BYTES + entryKeyLength(v, e),
  );
}

function moveEntry(
  space: DaxSpace,
  v: MediaViews,
  writer: SegmentWriter,
  table: SegmentTable,
  e: number,
  rule: TombstoneRule,
  report: CompactionReport,
): void {
  if (isBroken('kv-compact-no-recheck')) return moveEntryUnchecked(space, v, writer, e, rule.keep, report);
  const key = indexKey(v, e);
  const del = entryOp(v, e) === ENTRY_DEL;
  if (del) {
    // Lock-free: a concurrent put of this key gets a higher sequence than this old DEL anyway.
    const at = space.tree.lookup(key);
    if (at !== e) {
      if (at !== undefined) return; // dead: a newer entry of its key wins
      // Absent now. Kept by the rule, or not weighed by it (its key was present then: a sweep
      // removed the tombstone since, and an older PUT may remain): copied forward, always safe.
      if (rule.keep.has(e) || (!rule.weighed.has(e) && !isBroken('kv-compact-swept-tombstone-dropped'))) {
        copyEntry(v, writer, e);
        report.tombstonesKept++;
      } else report.tombstonesDropped++;
      return;
    }
    // A tombstone the index points at (kept for snapshots, snapshots.ts): moved like a live PUT.
  }
  const ref = grab(space.tree, key);
  try {
    if (ref.state !== 'value' || ref.value !== e) {
      // Moved on meanwhile (R3 re-check). A tombstone swept meanwhile left its key absent, and
      // the tombstone rule above did not weigh it (its key was present): copied forward, which
      // is always safe.
      if (del && ref.state === 'empty') {
        copyEntry(v, writer, e);
        report.tombstonesKept++;
      }
      return;
    }
    const copy = copyEntry(v, writer, e);
    replace(space.tree, ref, copy);
    if (!del) {
      // A tombstone's bytes are counted as tombstones (copyEntryStaged noteDels), not live.
      const cost = entryCost(entryKeyLength(v, e), entryValueLength(v, e));
      writer.noteBorn(cost);
      table.died(e, cost);
      table.markDeadPinned(e); // this compaction retires e's segment after the mark
    }
    report.entriesMoved++;
  } finally {
    unlock(space.tree, ref); // an EMPTY placeholder (key gone) is removed by unlock
  }
}

/** moveEntry under DAXSTORE_TEST_BREAK=kv-compact-no-recheck: a PUT is moved without the R3 re-check under its lock. */
function moveEntryUnchecked(
  space: DaxSpace,
  v: MediaViews,
  writer: SegmentWriter,
  e: number,
  keep: Set<number>,
  report: CompactionReport,
): void {
  if (entryOp(v, e) === ENTRY_DEL) {
    if (space.tree.lookup(indexKey(v, e)) !== undefined) return;
    if (keep.has(e)) {
      copyEntry(v, writer, e);
      report.tombstonesKept++;
    } else report.tombstonesDropped++;
    return;
  }
  const ref = grab(space.tree, indexKey(v, e));
  try {
    replace(space.tree, ref, copyEntry(v, writer, e));
    report.entriesMoved++;
  } finally {
    unlock(space.tree, ref);
  }
}

/** Appends a one-entry record holding an exact copy of entry e (composed in the stage, as every record); returns the copy's offset. */
function copyEntry(v: MediaViews, writer: SegmentWriter, e: number): number {
  if (isBroken('kv-compact-no-commit')) return copyEntryUnflushed(v, writer, e);
  const at = copyEntryStaged(v, writer, e);
  writer.flushPending();
  return at;
}

/** copyEntry under DAXSTORE_TEST_BREAK=kv-compact-no-commit: the copy is never flushed. */
function copyEntryUnflushed(v: MediaViews, writer: SegmentWriter, e: number): number {
  return copyEntryStaged(v, writer, e);
}

/** The copy of entry e sealed in a reservation of `writer`, not flushed; the copy's offset. */
function copyEntryStaged(v: MediaViews, writer: SegmentWriter, e: number): number {
  const bytes = entryBytes(entryKeyLength(v, e), entryValueLength(v, e));
  const total = RECORD_HEADER_BYTES + bytes;
  ensureStageBytes(total);
  v = v.at(e);
  v.buf.copy(stageViews.u8, RECORD_HEADER_BYTES, e - v.base, e - v.base + bytes);
  const at = writer.reserve(total, false);
  if (entryOp(v, e) === ENTRY_DEL) writer.noteDels(total);
  writer.sealStaged(at, KIND_PUT, 1, total);
  return at + RECORD_HEADER_BYTES;
}
