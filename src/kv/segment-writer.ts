/**
 * SegmentWriter: one open log segment per store handle (so per thread: workers never contend
 * on appends), reservation of record space, and the flush/drain that makes records durable.
 *
 * Invariants
 *   - Records of a segment are contiguous from its start; [base, base + used) holds sealed
 *     records or the one reservation in flight. The END MARKER, the 16 bytes at base + used
 *     (when a record header still fits after it), is zero: a scan stops there. It is written
 *     by reserve() and flushed with the record before it, so the durable image always ends
 *     its valid records with a zero marker or a record that does not validate.
 *   - Beyond the marker: bytes of an earlier life of the extent (a fresh segment is NOT
 *     zeroed: its records carried another nonce and never validate), or zeros (rollback,
 *     and cleanTail for an adopted segment, whose unacknowledged records of the SAME nonce
 *     must never be reached again: they are zeroed before the first append).
 *   - flushedTo <= used: bytes below flushedTo were flushed (drained if !pendingDrain).
 *   - Progress words of this writer's slot (shared, see the constructor), for the segment its
 *     openTable word names: DURABLE <= every byte offset below which the segment is durable;
 *     END >= the flush end (records + end marker) of every record this writer has published
 *     in the index. Reset (0, 0) before a new segment is announced (adopt: set to the
 *     recovered end right after the slot is claimed; until then the words may be an earlier
 *     user's, harmless: the adopted prefix was durable at open and nothing is published there yet).
 *   - A slot that names no segment (free or ALLOCATING) has nothing that is not durable:
 *     switching segments commits the old one BEFORE the slot leaves it (ALLOCATING), and
 *     close() commits before release().
 *
 * Concurrency: a SegmentWriter belongs to one thread (one store handle). Shared words: its
 * openTable slot (Atomics) and the slot's two progress words, which only it writes and only
 * flushOpenSegments (compaction, any thread) reads:
 *   - END is a plain store in reserve(), the hot path. A reader needs it only to cover records
 *     it has SEEN published: the record's reserve() precedes, in this thread's program order,
 *     the Atomics store in the index that published it, and the reader's Atomics load of that
 *     index word precedes its read of END, so it reads this END or a later one (never smaller
 *     within one segment).
 *   - DURABLE is a release store (word-load.ts storeRelease) after the fence of commit(): a
 *     reader that sees it (Atomics load) sees the fence done.
 *
 * Persistence ordering
 *   - Open: the owner record (OWNED, index = nonce) is durable inside device.allocate; then the
 *     first end marker (16 zero bytes at the start) is persisted before any record is written,
 *     so the scan of a fresh segment ends there, and stale records of an earlier life fail the
 *     nonce check. (Zeroing the whole 2 MiB extent instead would put a 2 MiB memset on some put's path.)
 *   - commit(): flush every line written since the last commit, then ONE drain: a record is
 *     durable when commit() returns, and record i is always durable before record i+1 is
 *     acknowledged ('sync'), so recovery's stop-at-first-invalid loses nothing acknowledged.
 *   - Switching segments commits the old one first.
 */
import { assert } from '../assert.js';
import type { Device } from '../device/device.js';
import {
  KIND_SEAL,
  MAX_NONCE,
  MAX_RECORD_BYTES,
  RECORD_MAGIC,
  OWNER_KV_SEGMENT,
  RECORD_HEADER_BYTES,
  SEAL_BYTES,
  SEGMENT_BYTES,
  SEGMENT_ORDER,
} from './layout.js';

/** Zero bytes after the last record that end a scan (records.ts checkRecord reads 16 bytes for 'end'). */
const END_MARKER_BYTES = 16;
import { HUGE_BLOCKS } from '../device/layout.js';
import { sealStagedRecord, writeSealRecord, type MediaViews } from './records.js';
import type { SegmentTable } from './segment-table.js';
import { isBroken, testHooks } from '../test-break.js';
import { storeRelease } from '../index/word-load.js';
import { participantId } from '../device/participants.js';
import { DaxError } from '../errors.js';

/** Whether the valid records [base, base + used) end with a SEAL (the last close wrote it and nothing followed). */
function endsWithSeal(v: MediaViews, base: number, used: number, nonce: number): boolean {
  v = v.at(base);
  if (used < SEAL_BYTES) return false;
  const w = (base - v.base + used - SEAL_BYTES) / 4;
  return (
    v.u32[w + 3] === (RECORD_MAGIC | (KIND_SEAL << 16)) &&
    v.u32[w + 4] === SEAL_BYTES &&
    v.u32[w + 6] === nonce >>> 0 &&
    (v.u32[w + 7] & 0xff) === Math.floor(nonce / 2 ** 32)
  );
}

/** openTable word of a writer between owning a new segment and naming it. */
export const ALLOCATING = -1;
/** openTable word of a writer that holds its slot and no segment yet (it records an operation before its first reservation). */
export const IDLE = -2;

export interface SegmentWriterOptions {
  /** allocate segments with the device's priority (the reserve kept for deletes and compaction) */
  priority?: boolean;
  /** where the writer records each segment it takes and leaves (segment-table.ts) */
  table?: SegmentTable;
  /** always this slot (the last of the open table), never one claimed from the others */
  fixedSlot?: number;
  /** the store's count of segments (words[at]): one more for each segment this writer names */
  segmentCount?: { words: Int32Array; at: number };
}

export class SegmentWriter {
  private base = -1;
  /** base - views.base: the segment's offset in its window (views index by it) */
  private rel = -1;
  /** the window holding the current segment (media-views.ts) */
  private views: MediaViews;
  private used = 0;
  private flushedTo = 0;
  private nonce = 0;
  private pendingDrain = false;
  /** Offset in the segment below which every byte is durable (drained): the watermark each record carries. */
  private durable = 0;
  /** The last record written to the segment is a SEAL (nothing to seal at close). */
  private sealed = false;

  /** Slot of this writer in the shared open-segment table (-1 until it first opens or adopts one). */
  private slot = -1;

  /**
   * openTable: Int32 per writer slot: 0 = free, ALLOCATING (-1) = allocating a new segment,
   * else 1 + head block of the segment that writer appends to. Compaction never touches a
   * segment listed there, and re-lists the owned segments while any slot is ALLOCATING (a
   * block can be owned a moment before its writer can announce it).
   * progress: PROGRESS_WORDS per slot (one cache line): [DURABLE, END] byte offsets inside the
   * segment the slot names (invariants above); flushOpenSegments reads them.
   */
  constructor(
    private readonly device: Device,
    /** the media's views (any window: at() finds the others) */
    private readonly windows: MediaViews,
    private readonly onSegmentOpened: () => void,
    private readonly openTable: Int32Array,
    private readonly progress: Int32Array,
    opts: SegmentWriterOptions = {},
  ) {
    assert(progress.length === PROGRESS_WORDS * openTable.length, 'progress: PROGRESS_WORDS per open-table slot');
    this.views = windows;
    this.priority = opts.priority === true;
    this.table = opts.table;
    this.segmentCount = opts.segmentCount;
    this.claimableSlots = opts.fixedSlot === undefined ? openTable.length - 1 : 0;
    if (opts.fixedSlot !== undefined) {
      assert(opts.fixedSlot === openTable.length - 1, 'the fixed slot is the last of the open-segment table');
      this.slot = opts.fixedSlot;
    }
  }

  /** Allocations of this writer may take the device's reserve (the priority writer, store.ts). */
  private readonly priority: boolean;
  /**
   * The priority writer's allocation grows a full store that can grow before it takes the
   * reserve (a delete's record), unless this is false: compaction's copies take the reserve
   * instead, as in a store that cannot grow (what it frees gives the reserve back), so
   * reclaiming garbage never grows the store (store.ts compactNow).
   */
  growsWhenFull = true;
  /** An ordinary writer's allocation grows a full store that can grow during a write's last try (store.ts growingLastTry). */
  growsOnLastTry = false;
  private readonly table: SegmentTable | undefined;
  private readonly segmentCount: { words: Int32Array; at: number } | undefined;
  /** Slots claim() may take: all but the last, which belongs to the priority writer. */
  private readonly claimableSlots: number;

  /** Slot of this writer in the open-segment table, or -1. */
  get slotIndex(): number {
    return this.slot;
  }

  /** Head block of the segment this writer appends to, or -1. */
  get currentBlock(): number {
    return this.base < 0 ? -1 : this.device.blockAt(this.base);
  }

  /** Stores `word` in this writer's slot (claiming one first). Seq-cst: ordered before the allocation that follows, and after the progress words of the segment it names. */
  private announce(word: number): void {
    this.claim();
    Atomics.store(this.openTable, this.slot, word);
  }

  /**
   * Claims a slot if this writer has none: its owner word first (compareExchange 0 -> this
   * thread's participant id: a reaper finds the slots of a dead thread by it), then its
   * openTable word (IDLE until a segment is named).
   */
  claim(): number {
    if (this.slot >= 0) return this.slot;
    const me = participantId();
    for (let i = 0; i < this.claimableSlots && this.slot < 0; i++) {
      if (Atomics.load(this.openTable, i) !== 0) continue;
      if (Atomics.compareExchange(this.progress, i * PROGRESS_WORDS + W_OWNER, 0, me) !== 0) continue;
      if (Atomics.compareExchange(this.openTable, i, 0, IDLE) === 0) this.slot = i;
      else Atomics.store(this.progress, i * PROGRESS_WORDS + W_OWNER, 0);
    }
    if (this.slot < 0) throw new DaxError('EBUSY', `more than ${this.claimableSlots} key-value writers at once`);
    return this.slot;
  }

  /** Leaves the open-segment table (close): the segment may then be compacted. */
  release(): void {
    if (isBroken('kv-close-keeps-segment')) return this.releaseKeepingSegment();
    this.leaveSegment();
    this.base = -1;
    if (this.slot >= 0) {
      Atomics.store(this.openTable, this.slot, 0);
      Atomics.store(this.progress, this.slot * PROGRESS_WORDS + W_OWNER, 0);
    }
    this.slot = -1;
  }

  /**
   * release() under DAXSTORE_TEST_BREAK=kv-close-keeps-segment: the slot stays announced (and
   * names no owner, so no reaper frees it either): its segment is never closed.
   */
  private releaseKeepingSegment(): void {
    if (this.slot >= 0) Atomics.store(this.progress, this.slot * PROGRESS_WORDS + W_OWNER, 0);
    this.base = -1;
    this.slot = -1;
  }

  /**
   * `bytes` of entries were published into the current segment (segment-table.ts BORN): a
   * plain add to this writer's own progress line (one writer per slot), copied into the table
   * when the writer leaves the segment.
   */
  noteBorn(bytes: number): void {
    const i = this.slot * PROGRESS_WORDS + BORN;
    this.progress[i] = (this.progress[i] + bytes) | 0;
  }

  /** `bytes` of tombstones (DEL entries) went into the current segment (segment-table.ts DELS). */
  noteDels(bytes: number): void {
    const i = this.slot * PROGRESS_WORDS + DELS;
    this.progress[i] = (this.progress[i] + bytes) | 0;
  }

  /** The segment table learns what this writer leaves behind in its current segment (closed from now on). */
  private leaveSegment(): void {
    if (this.base < 0 || this.slot < 0) return;
    const i = this.slot * PROGRESS_WORDS;
    this.table?.left(this.table.extentOf(this.base), this.used, this.progress[i + BORN], this.progress[i + DELS]);
    this.progress[i + BORN] = 0;
    this.progress[i + DELS] = 0;
  }

  // ---- the operation in flight (thread death: store.ts "Thread death") ----

  /**
   * The operation in flight is over (its record published, or given back): its objects record
   * first, then its record (writer-reaper.ts step 3). Plain stores, read only after this thread
   * died.
   */
  endOperation(): void {
    const slot = this.slot;
    if (slot < 0) return;
    const line = slot * PROGRESS_WORDS;
    this.progress[line + W_OBJECTS_COUNT] = 0;
    this.progress[line + W_INFLIGHT] = 0;
  }

  /** Records large-value objects [first, first + count) (ids minus the kv base) as written for the operation in flight. */
  beginObjects(first: number, count: number): void {
    const at = this.claim() * PROGRESS_WORDS;
    this.progress[at + W_OBJECTS_FIRST] = first;
    this.progress[at + W_OBJECTS_COUNT] = count;
  }

  endObjects(): void {
    if (this.slot >= 0) this.progress[this.slot * PROGRESS_WORDS + W_OBJECTS_COUNT] = 0;
  }

  /** Records segment `block` (nonce) as being moved to staging and retired by this thread's compaction (-1: done). */
  recordRetire(block: number, nonce: number): void {
    const at = this.claim() * PROGRESS_WORDS;
    this.progress[at + W_RETIRE_NONCE_LO] = nonce % 2 ** 32;
    this.progress[at + W_RETIRE_NONCE_HI] = Math.floor(nonce / 2 ** 32);
    this.progress[at + W_RETIRE_BLOCK] = block + 1;
  }

  /**
   * Device offset of `bytes` (multiple of 8) of fresh record space; allocates a segment when
   * needed (ENOSPC changes nothing). `inFlight`: the reservation is also recorded as this
   * writer's operation in flight (W_INFLIGHT, for the reaper should this thread die; cleared by
   * endOperation), in the same step, so no point between the two can be interrupted.
   */
  reserve(bytes: number, inFlight: boolean): number {
    if (isBroken('kv-no-end-marker')) return this.reserveWithoutEndMarker(bytes, inFlight);
    assert(bytes % 8 === 0 && bytes > 0 && bytes <= MAX_RECORD_BYTES, () => `reserve(${bytes})`);
    // SEAL_BYTES stay free after every record: room for the SEAL of close (sealForClose).
    if (this.base < 0 || this.used + bytes > SEGMENT_BYTES - SEAL_BYTES) this.openSegment();
    else if (this.tailDirty) this.cleanTail();
    const at = this.base + this.used;
    this.used += bytes;
    this.sealed = false;
    if (this.used + RECORD_HEADER_BYTES <= SEGMENT_BYTES) {
      const w = (this.rel + this.used) / 4; // the end marker after this reservation
      const u32 = this.views.u32;
      u32[w] = 0;
      u32[w + 1] = 0;
      u32[w + 2] = 0;
      u32[w + 3] = 0;
    }
    const line = this.slot * PROGRESS_WORDS;
    this.progress[line + END] = this.flushEnd; // plain: ordered by the index publish that follows (header)
    if (inFlight) this.progress[line + W_INFLIGHT] = at - this.base + 1;
    return at;
  }

  /** reserve() under DAXSTORE_TEST_BREAK=kv-no-end-marker: the 16 bytes after the reservation keep whatever they held. */
  private reserveWithoutEndMarker(bytes: number, inFlight: boolean): number {
    if (this.base < 0 || this.used + bytes > SEGMENT_BYTES - SEAL_BYTES) this.openSegment();
    else if (this.tailDirty) this.cleanTail();
    const at = this.base + this.used;
    this.used += bytes;
    this.sealed = false;
    const line = this.slot * PROGRESS_WORDS;
    this.progress[line + END] = this.flushEnd;
    if (inFlight) this.progress[line + W_INFLIGHT] = at - this.base + 1;
    return at;
  }

  /** End of what a flush must cover: the records written and the end marker after them. */
  private get flushEnd(): number {
    return this.used + RECORD_HEADER_BYTES <= SEGMENT_BYTES ? this.used + END_MARKER_BYTES : this.used;
  }

  /** Gives back the last reservation (an operation that failed before its record was sealed and committed). */
  rollback(at: number, bytes: number): void {
    assert(at + bytes === this.base + this.used, 'rollback of a reservation that is not the last one');
    this.views.u8.fill(0, at - this.views.base, at - this.views.base + bytes);
    this.used -= bytes;
    if (this.flushedTo > this.used) this.flushedTo = this.used;
    if (this.durable > this.used) this.durable = this.used;
    this.progress[this.slot * PROGRESS_WORDS + END] = this.flushEnd;
  }

  /** Seals the record composed in the stage (record-stage.ts: the one way records are written) and copies it into the reservation at `at`. */
  sealStaged(at: number, kind: number, count: number, totalBytes: number): void {
    sealStagedRecord(this.views, at, kind, count, totalBytes, this.nonce, this.durable);
  }

  /** Flushes the lines written since the last flush; durable only after drain (commit). */
  flushPending(): void {
    if (this.base < 0 || this.used <= this.flushedTo) return;
    this.device.media.flush(this.base + this.flushedTo, this.flushEnd - this.flushedTo);
    this.flushedTo = this.used;
    this.pendingDrain = true;
  }

  /**
   * Everything written so far is durable when this returns: one fence. With unflushed lines
   * this is ONE native call (persist = flush of the new lines + the fence, which also
   * covers lines flushed earlier by flushPending): a 'sync' put pays one call, not two.
   */
  commit(alsoDrain = false): void {
    if (isBroken('kv-skip-drain')) return this.flushPending();
    if (this.base >= 0 && this.used > this.flushedTo) {
      this.device.media.persist(this.base + this.flushedTo, this.flushEnd - this.flushedTo);
      this.flushedTo = this.used;
    } else if (this.pendingDrain || alsoDrain) this.device.media.drain();
    this.pendingDrain = false;
    this.durable = this.flushedTo; // drained: the watermark of the records sealed from now on
    // After the fence (header). A release store is enough: a reader that sees it must see the
    // fence done, and nothing here reads after it; a seq-cst Atomics.store would add a builtin
    // call and a second full fence to every 'sync' put.
    if (this.base >= 0) storeRelease(this.progress, this.slot * PROGRESS_WORDS + DURABLE, this.flushedTo);
  }

  get hasPending(): boolean {
    return this.pendingDrain || (this.base >= 0 && this.used > this.flushedTo);
  }

  /**
   * Continue appending to a recovered segment after its last valid record. Before the first
   * append there (reserve), whatever follows in the segment (a torn or dropped tail) is
   * zeroed and persisted, so the next scan cannot stop at the old tail and lose what is
   * appended after it. Lazy, so an open that only reads writes nothing.
   */
  adopt(base: number, used: number, nonce: number): void {
    assert(this.base < 0 && used % 8 === 0 && used <= SEGMENT_BYTES, 'adopt: writer already has a segment');
    this.base = base;
    this.views = this.windows.at(base);
    this.rel = base - this.views.base;
    this.used = used;
    this.flushedTo = used;
    this.durable = used; // recovery read this prefix back from the media: it is durable
    this.sealed = endsWithSeal(this.views, base, used, nonce); // a close sealed it: nothing to seal again
    this.nonce = nonce;
    this.tailDirty = true;
    this.announce(this.device.blockAt(base) + 1);
    this.setProgress(used, used);
    if (this.table !== undefined)
      this.progress[this.slot * PROGRESS_WORDS + BORN] = this.table.liveBytes(this.table.extentOf(base));
  }

  /**
   * The priority writer's hand-over (store.ts): the state of the segment it appends to lives
   * in shared words, and whoever holds the compaction mutex writes through its own instance.
   * resumeShared() loads it (the previous holder committed everything: flushedTo = used; or
   * the reaper of a holder that died set `used` to the end of its valid records and zeroed
   * what followed); parkShared() commits and stores it back. Both with the mutex held.
   */
  resumeShared(words: Float64Array): void {
    const block = words[0] - 1;
    this.base = block < 0 ? -1 : this.device.blockOffset(block);
    if (this.base >= 0) {
      this.views = this.windows.at(this.base);
      this.rel = this.base - this.views.base;
    }
    this.used = words[1];
    this.flushedTo = this.used;
    this.durable = this.used;
    this.sealed = false; // unknown: a SEAL of close written twice costs 48 bytes, nothing else
    this.nonce = words[2];
    this.pendingDrain = false;
    this.tailDirty = words[3] === 1;
  }

  /** words[3] (tail dirty) is cleared only here, after cleanTail made the tail zero durably: a holder that dies before leaves it set. */
  parkShared(words: Float64Array): void {
    this.commit();
    words[0] = this.base < 0 ? 0 : this.currentBlock + 1;
    words[1] = this.used;
    words[2] = this.nonce;
    words[3] = this.base >= 0 && this.tailDirty ? 1 : 0;
  }

  /**
   * The priority writer takes a recovered segment at open (store.ts), before any other thread
   * can use the store: the hand-over words name it with its tail dirty (the first holder zeroes
   * what follows `used` before appending, as adopt() does), its slot names it, its progress
   * words say `used`.
   */
  adoptShared(base: number, used: number, nonce: number, words: Float64Array): void {
    assert(used % 8 === 0 && used <= SEGMENT_BYTES, 'adoptShared: used');
    words[0] = this.device.blockAt(base) + 1;
    words[1] = used;
    words[2] = nonce;
    words[3] = 1;
    this.announce(words[0]);
    this.setProgress(used, used);
    if (this.table !== undefined)
      this.progress[this.slot * PROGRESS_WORDS + BORN] = this.table.liveBytes(this.table.extentOf(base));
    this.resumeShared(words);
  }

  /**
   * Stops appending to the current segment (committed first): it becomes a closed segment
   * that compaction may take, and the next reserve() opens a new one. The slot stays ours.
   */
  leave(): void {
    if (this.base < 0) return;
    this.sealForClose(); // committed, and its last records below a watermark: nothing follows them
    this.leaveSegment();
    this.base = -1;
    this.announce(IDLE);
  }

  /** Whether a reservation of `bytes` fits in the current segment (no new segment needed). */
  fits(bytes: number): boolean {
    return this.base >= 0 && this.used + bytes <= SEGMENT_BYTES - SEAL_BYTES;
  }

  /** Bytes still free in the current segment (0 without one). */
  get room(): number {
    return this.base < 0 ? 0 : SEGMENT_BYTES - SEAL_BYTES - this.used;
  }

  private setProgress(durable: number, end: number): void {
    Atomics.store(this.progress, this.slot * PROGRESS_WORDS + DURABLE, durable);
    this.progress[this.slot * PROGRESS_WORDS + END] = end;
  }

  private tailDirty = false;

  private cleanTail(): void {
    this.tailDirty = false;
    const u32 = this.views.u32;
    const from = (this.rel + this.used) / 4;
    let last = (this.rel + SEGMENT_BYTES) / 4 - 1;
    while (last >= from && u32[last] === 0) last--;
    if (last < from) return;
    const bytes = (last + 1 - from) * 4;
    this.views.u8.fill(0, this.rel + this.used, this.rel + this.used + bytes);
    this.device.media.persist(this.base + this.used, bytes);
  }

  private openSegment(): void {
    const nonce = 1 + Math.floor(Math.random() * MAX_NONCE);
    // The old segment's tail first: a thread's records become durable in order, and the slot
    // leaves a segment only once it is all durable (flushOpenSegments skips ALLOCATING slots).
    this.commit();
    const left = this.base < 0 ? undefined : { nonce: this.nonce, end: this.used };
    this.leaveSegment();
    // The nonce the new segment's owner record will carry, before ALLOCATING: a reaper finds by
    // it an extent this thread was given and died before naming (writer-reaper.ts).
    const line = this.claim() * PROGRESS_WORDS;
    this.progress[line + W_ALLOC_NONCE_LO] = nonce % 2 ** 32;
    this.progress[line + W_ALLOC_NONCE_HI] = Math.floor(nonce / 2 ** 32);
    this.announce(ALLOCATING); // before the block is owned: compaction waits until we name it
    let block: number;
    try {
      // An ordinary writer's full store does not grow here (but in a write's last try,
      // growsOnLastTry): the store's reclaim decides between releasing dead space, growing and
      // compacting (store.ts reclaim). The priority writer's allocation grows the store before
      // it takes the reserve (Device.allocate), unless it holds compaction's copies (growsWhenFull).
      const grows = this.priority ? this.growsWhenFull || isBroken('kv-compaction-grows') : this.growsOnLastTry;
      block = this.device.allocate(OWNER_KV_SEGMENT, nonce, SEGMENT_ORDER, {
        priority: this.priority,
        grow: grows,
      });
    } catch (e) {
      // No new segment: leave the old one too (committed above), so compaction may take it
      // (a full segment kept open would pin its dead bytes while the store is out of space).
      // The slot stays ours (IDLE, never 0: a free slot could be claimed by another writer).
      // Its SEAL of close first: nothing will follow its last records in it.
      if (this.base >= 0) this.sealForClose();
      this.base = -1;
      this.announce(IDLE);
      throw e;
    }
    testHooks.segmentOpening?.('allocated');
    this.setProgress(0, 0); // before the announce: a reader that sees the new block sees these or later words
    this.table?.opened(block / HUGE_BLOCKS);
    testHooks.segmentOpening?.('listed');
    const count = this.segmentCount;
    const countLate = isBroken('kv-segment-counted-late');
    // Named (before anything is written: compaction must never pick it) and counted with no call
    // in between: a death lands before both or after both, so a segment a reaper finds named
    // was counted, and one it frees from ALLOCATING (writer-reaper.ts) never was.
    Atomics.store(this.openTable, this.slot, block + 1);
    if (count !== undefined && !countLate) Atomics.add(count.words, count.at, 1);
    testHooks.segmentOpening?.('named');
    const offset = this.device.blockOffset(block);
    // The segment's pages are faulted in on another thread while we start filling it, so the
    // put path does not take a fault per 4 KiB (tmpfs allocates pages, fs-DAX blocks).
    this.device.media.prefault?.(offset, SEGMENT_BYTES);
    // On tmpfs that thread first makes the segment one huge page (region.ts), which locks all
    // of it while it runs: our next fault would sleep until it ends (milliseconds when the kernel
    // compacts memory for the page). So the extent the next segment will likely take is made
    // huge now, while nothing uses it; the next open's collapse then finds it done. A wrong
    // guess only costs the collapse of a free extent.
    if (!isBroken('kv-segment-not-collapsed-ahead')) {
      const next = this.device.nextFreeExtent();
      if (next >= 0) this.device.media.collapse?.(this.device.blockOffset(next), SEGMENT_BYTES);
    }
    // The first record is a SEAL naming the segment left (durable through `left.end` since the
    // commit above: recovery's watermark for it), then the end marker; both durable before
    // any other record is written.
    const views = this.windows.at(offset);
    writeSealRecord(views, offset, offset, nonce, left);
    views.u8.fill(0, offset - views.base + SEAL_BYTES, offset - views.base + SEAL_BYTES + END_MARKER_BYTES);
    this.device.media.persist(offset, SEAL_BYTES + END_MARKER_BYTES);
    this.base = offset;
    this.views = views;
    this.rel = offset - views.base;
    this.tailDirty = false;
    this.used = SEAL_BYTES;
    this.flushedTo = SEAL_BYTES;
    this.durable = SEAL_BYTES;
    this.sealed = true;
    this.nonce = nonce;
    if (count !== undefined && countLate) Atomics.add(count.words, count.at, 1);
    this.onSegmentOpened();
  }

  /**
   * Before close: everything durable (commit), then a SEAL after the last record, durable, so
   * the last records are below a watermark (layout.ts) even if no record ever follows them.
   * Nothing when the segment's last record is already a SEAL (nothing written since).
   */
  sealForClose(): void {
    this.commit();
    if (this.base < 0 || this.sealed) return;
    if (this.tailDirty) this.cleanTail(); // adopted, nothing appended: the old tail goes first
    assert(this.used + SEAL_BYTES <= SEGMENT_BYTES, 'no room for the SEAL of close (reserve keeps it)');
    const at = this.base + this.used;
    writeSealRecord(this.views, at, this.base, this.nonce, undefined);
    const end = this.used + SEAL_BYTES + END_MARKER_BYTES <= SEGMENT_BYTES ? END_MARKER_BYTES : 0;
    this.views.u8.fill(0, this.rel + this.used + SEAL_BYTES, this.rel + this.used + SEAL_BYTES + end);
    this.device.media.persist(at, SEAL_BYTES + end);
    this.used += SEAL_BYTES;
    this.flushedTo = this.used;
    this.durable = this.used;
    this.sealed = true;
    this.progress[this.slot * PROGRESS_WORDS + END] = this.flushEnd;
    storeRelease(this.progress, this.slot * PROGRESS_WORDS + DURABLE, this.used);
  }
}

/**
 * Progress words per open-table slot: [DURABLE, END] (SegmentWriter invariants), then the
 * store's per-writer stats counters (store.ts: words SLOT_COUNTER_FIRST on, written only by
 * the slot's holder), the thread-death words and the segment-table words, padded to 128 bytes
 * (two cache lines): each writer stores END at every reserve, and two writers' words in one
 * cache line would bounce it between their CPUs at every put.
 */
export const PROGRESS_WORDS = 32;
export const DURABLE = 0;
export const END = 1;
/** First word of a slot's line that store.ts uses for its counters (not reset when the slot changes hands). */
export const SLOT_COUNTER_FIRST = 2;
/**
 * Words 8.. of a slot's line: who writes through the slot and what it is in the middle of, so
 * that a reaper can finish or undo it when the thread dies (store.ts "Thread death"). Written
 * with plain stores by the slot's holder; read by a reaper after the holder died.
 *   W_OWNER          participants.ts id of the holder (claimed by compareExchange before the slot)
 *   W_INFLIGHT       1 + offset in the slot's segment of the record being written, 0: none
 *   W_OBJECTS_*      large-value objects written for the operation in flight (first id - base, count)
 *   W_RETIRE_*       1 + block of a segment its compaction is moving to staging and retiring, and its nonce
 *   W_ALLOC_NONCE_*  the nonce of the segment the holder is allocating (written before the slot says
 *                    ALLOCATING; meaningful only while it does)
 */
export const W_OWNER = 8;
export const W_INFLIGHT = 9;
export const W_OBJECTS_FIRST = 10;
export const W_OBJECTS_COUNT = 11;
export const W_RETIRE_BLOCK = 12;
export const W_RETIRE_NONCE_LO = 13;
export const W_RETIRE_NONCE_HI = 14;
/** Bytes of entries published into the slot's current segment (noteBorn), in the line's first cache line with END. */
export const BORN = 15;
/** Bytes of tombstones written into the slot's current segment (noteDels). */
export const DELS = 16;
export const W_ALLOC_NONCE_LO = 17;
export const W_ALLOC_NONCE_HI = 18;

/**
 * Flushes (no drain: the caller's next fence covers them) the part of every other writer's
 * open segment that may not be durable, [DURABLE, END), from this thread. A CPU cache flush
 * (clwb/clflushopt) writes a line back from whichever cache holds it, so after the caller's
 * fence every record those writers had published before this call is durable, with all the
 * records before it in its segment (recovery reaches it). A record another writer is writing
 * meanwhile may be caught half-written: it fails its checksum and ends the scan AFTER every
 * published record, as a torn tail does. Returns whether anything was flushed. Skips slot
 * `exceptSlot` (the caller's own writer, committed by the caller).
 *
 * Per slot: read the block word (Atomics), then the progress words, then the block word
 * again: when it changed, the writer left that segment meanwhile, which it does only after
 * committing it all (commit, then the ALLOCATING store this load synchronizes with).
 */
export function flushOpenSegments(
  device: Device,
  openTable: Int32Array,
  progress: Int32Array,
  exceptSlot: number,
): boolean {
  let flushed = false;
  for (let i = 0; i < openTable.length; i++) {
    if (i === exceptSlot) continue;
    const word = Atomics.load(openTable, i);
    if (word <= 0) continue; // free, or ALLOCATING: its last segment is committed (invariants)
    const durable = Atomics.load(progress, i * PROGRESS_WORDS + DURABLE);
    const end = Math.min(SEGMENT_BYTES, Atomics.load(progress, i * PROGRESS_WORDS + END));
    if (Atomics.load(openTable, i) !== word || end <= durable) continue;
    device.media.flush(device.blockOffset(word - 1) + durable, end - durable);
    flushed = true;
  }
  return flushed;
}
