/**
 * Recovery's two native loops (addon/kv-recovery.cc): the segment scan and the winner pick.
 * This file owns their calling convention: the io slots, status and reason codes (mirrored
 * in the .cc), and the sort-record buffer the scan fills. recovery.ts owns the algorithm.
 *
 * Why native: in JavaScript the scan (every record checksummed, one sort record per entry)
 * and the sort were most of an open, much of it code not yet optimized when it runs once per
 * open; in C++ they are a small part of it (docs/PERFORMANCE.md).
 *
 * The scan's checks mirror records.ts checkRecordInto (the JS check compaction and
 * `daxstore check` use), in the same order with the same reasons; test
 * kv-recovery-native.test.ts holds the two to agreement on corrupted records.
 *
 * Invariants
 *   - The scan reads nothing of a block the poison bitmap names: a record that claims poisoned
 *     bytes is bad before it is hashed, and resync skips the block; an unreported poisoned
 *     page (SIGBUS) ends the segment's scan as EIO.
 *   - Bad regions come back in offset order; at most the last is a torn tail (REGION_CUT),
 *     and then no entry at or after its start is in `found` (addon/kv-recovery.h).
 *   - Sort records (8 u32 words an entry, layout in addon/kv-recovery.h) live in a
 *     SharedArrayBuffer (sortScratch): V8 does not count shared backing stores as this
 *     isolate's external memory, which past a limit starts a full mark-compact mid-open.
 *
 * Concurrency: runs on the opener before the store can be shared. Persistence: none.
 */
import { assert } from '../assert.js';
import { DaxError } from '../errors.js';
import { native, returnCodeError } from '../native/addon.js';
import { isBroken } from '../test-break.js';
import type { MediaViews } from './records.js';

export const SORT_RECORD_WORDS = 8;

/** io slots of scanKvSegment (addon/kv-recovery.cc IoSlot). */
const IO_BASE = 0;
const IO_END = 1;
const IO_NONCE = 2;
const IO_FLAGS = 3;
const IO_AT = 4;
const IO_COUNT = 5;
const IO_REASON = 6;
const IO_REASON_VALUE = 7;
const IO_RECORDS = 8;
const IO_MAX_SEQUENCE = 9;
const IO_KEY_BYTES = 10;
const IO_VOUCHED = 11;
const IO_WATERMARK = 12;
const IO_SEGMENT_SEQUENCE = 13;
const IO_IN_REGION = 14;
const IO_REGION_COUNT = 15;
const IO_LAST_AT = 16;
const IO_SLOTS = 17;
const FLAG_SKIP_CHECKSUM = 1;
const FLAG_PAST_POISON = 2;
const FLAG_NO_RESYNC = 4;
const FLAG_NO_WATERMARK = 8;

export const SCAN_END = 0;
/** kv-no-resync only: the scan ended at a bad record (taken for a torn tail) */
export const SCAN_INVALID = 1;
/** kv-no-resync only: the scan ended at a record running into a poisoned block */
export const SCAN_POISON = 2;
const SCAN_FULL = 3;
/** a media error (SIGBUS) nobody had reported ended the scan at `at` */
export const SCAN_EIO = 4;
const SCAN_REGIONS_FULL = 5;
/** the last region is a torn tail (REGION_CUT): `at` is its start, nothing of it or after it counted */
export const SCAN_CUT = 6;
/** the last region runs to the segment's end and lies below its watermark (or is poison): no place to resume */
export const SCAN_DAMAGED_TAIL = 7;

/** Words of one bad region (addon/kv-recovery.cc RegionWord). */
const REGION_WORDS = 10;
const R_START = 0;
const R_END = 1;
const R_FLAGS = 2;
const R_SEQUENCE_BEFORE = 7;
const R_SEQUENCE_AFTER = 8;
const R_REASON = 9;
export const REGION_POISON = 1;
export const REGION_CUT = 4;

/** A run of bytes of a segment holding no valid record, as the scan found it. */
export interface BadRegion {
  /** device offsets: [start, end) */
  start: number;
  end: number;
  /** REGION_POISON | REGION_CUT */
  flags: number;
  /** why the record at `start` did not validate */
  reason: string;
  /** the highest sequence of a valid record before it in its segment (0: none) */
  sequenceBefore: number;
  /** the sequence of the first valid record with entries after it (0: none) */
  sequenceAfter: number;
}

/** The reasons records.ts checkRecordInto gives, by the scan's reason code. */
function reasonText(code: number, value: number): string {
  switch (code) {
    case 1:
      return 'bad magic';
    case 2:
      return `unknown kind ${value}`;
    case 3:
      return `length ${value}`;
    case 4:
      return 'nonce of another segment life';
    case 5:
      return 'checksum mismatch';
    case 6:
      return 'entries overrun the record';
    case 7:
      return 'runs into a poisoned block';
    default:
      return assert(false, `scan reason code ${code}`) as never;
  }
}

/** `bytes` zeroed bytes over a SharedArrayBuffer advised into huge pages (sortScratch), e.g. a checkpoint read at open. */
export function scratchBytes(bytes: number): Uint8Array {
  return new Uint8Array(sortScratch(Math.ceil(bytes / 4)).buffer, 0, bytes);
}

/** A zeroed Uint32Array over a SharedArrayBuffer (see the invariant above); freed with the array, at a GC something else starts. */
function sortScratch(words: number): Uint32Array {
  const sab = new SharedArrayBuffer(words * 4);
  native().adviseHugePages(sab); // advice: one fault per 2 MiB, not per 4 KiB, for tens of megabytes written once
  return new Uint32Array(sab);
}

/**
 * Every valid entry the scan has seen, as sort records in scan order, and the running sums
 * the scan keeps: index key bytes (user key + prefix byte, for the winners' key column) and
 * the highest sequence.
 */
export class FoundEntries {
  count = 0;
  records: Uint32Array;
  indexKeyBytes = 0;
  maxSequence = 0;
  validRecords = 0;

  /** Sized for `segments` full of small records (~16k 128-byte records a segment); untouched pages cost nothing. */
  constructor(segments: number, segmentBytes: number) {
    this.records = sortScratch(Math.max(1 << 14, segments * (segmentBytes >> 7)) * SORT_RECORD_WORDS);
  }

  grow(): void {
    const b = sortScratch(this.records.length * 2);
    b.set(this.records);
    this.records = b;
  }
}

export interface SegmentScan {
  status: number;
  /** where appending may resume (SCAN_END, SCAN_CUT), or where the scan stopped (SCAN_EIO, and the kv-no-resync statuses) */
  at: number;
  /** why the record at `at` was dropped (kv-no-resync's SCAN_INVALID) */
  reason: string;
  /** the highest watermark a valid record of the segment carries (device offset) */
  watermark: number;
  /** where the last valid record the scan took begins (device offset), -1 when none */
  lastAt: number;
  /** its bad regions in offset order; a torn tail, when there is one, is the last (REGION_CUT) */
  regions: BadRegion[];
}

const io = new Float64Array(IO_SLOTS);
let regionWords = new Float64Array(16 * REGION_WORDS);
const NO_POISON = new Uint32Array(0);

/** The device's bytes [base, base + bytes.length), read into memory of our own (recovery.ts readSegment). */
export interface SegmentCopy {
  readonly bytes: Uint8Array;
  readonly base: number;
}

/**
 * Scans the segment [base, end) whose records carry `nonce` and appends the entries of its
 * valid records to `found`, resyncing past bad records (addon/kv-recovery.cc RunScan).
 * `poison`: one bit per 4 KiB block of the segment that must not be read (empty: none).
 * `vouched`: a device offset below which the segment is known durable (another segment's
 * SEAL said so), or 0. `copy`: the segment's bytes already read into memory (scanned there
 * instead of through the mapping; offsets stay device offsets). `from`: where the scan
 * starts (a checkpoint's tail: the records before it were durable, so it is the first
 * watermark too). Grows found's buffer as needed.
 */
export function scanSegment(
  v: MediaViews,
  base: number,
  end: number,
  nonce: number,
  found: FoundEntries,
  poison: Uint32Array = NO_POISON,
  vouched = 0,
  copy?: SegmentCopy,
  from = base,
): SegmentScan {
  io[IO_BASE] = base;
  io[IO_END] = end;
  io[IO_NONCE] = nonce;
  io[IO_FLAGS] =
    (isBroken('kv-skip-checksum') ? FLAG_SKIP_CHECKSUM : 0) |
    (isBroken('kv-scan-past-poison') ? FLAG_PAST_POISON : 0) |
    (isBroken('kv-no-resync') ? FLAG_NO_RESYNC : 0) |
    (isBroken('kv-no-watermark') ? FLAG_NO_WATERMARK : 0);
  io[IO_AT] = from;
  io[IO_COUNT] = found.count;
  io[IO_RECORDS] = found.validRecords;
  io[IO_MAX_SEQUENCE] = found.maxSequence;
  io[IO_KEY_BYTES] = found.indexKeyBytes;
  io[IO_VOUCHED] = vouched;
  io[IO_WATERMARK] = from; // a checkpoint's tail: what it covers was durable
  io[IO_SEGMENT_SEQUENCE] = 0;
  io[IO_IN_REGION] = 0;
  io[IO_REGION_COUNT] = 0;
  io[IO_LAST_AT] = -1;
  const window = v.at(base); // the segment lies inside one window
  let status: number;
  // FULL: nothing of the record at io[IO_AT] was written; room doubles, the scan resumes there.
  for (;;) {
    status =
      copy === undefined
        ? native().scanKvSegment(window.u8, io, found.records, poison, regionWords, window.base)
        : native().scanKvSegment(copy.bytes, io, found.records, poison, regionWords, copy.base);
    if (status === SCAN_FULL) found.grow();
    else if (status === SCAN_REGIONS_FULL) {
      const more = new Float64Array(regionWords.length * 2);
      more.set(regionWords);
      regionWords = more;
    } else break;
  }
  assert(status >= 0, () => `scanKvSegment of the segment at ${base}: ${status}`);
  found.count = io[IO_COUNT];
  found.validRecords = io[IO_RECORDS];
  found.maxSequence = io[IO_MAX_SEQUENCE];
  found.indexKeyBytes = io[IO_KEY_BYTES];
  const regions: BadRegion[] = [];
  for (let i = 0; i < io[IO_REGION_COUNT]; i++) {
    const r = regionWords.subarray(i * REGION_WORDS, (i + 1) * REGION_WORDS);
    regions.push({
      start: r[R_START],
      end: r[R_END],
      flags: r[R_FLAGS],
      reason: reasonText(r[R_REASON], 0),
      sequenceBefore: r[R_SEQUENCE_BEFORE],
      sequenceAfter: r[R_SEQUENCE_AFTER],
    });
  }
  return {
    status,
    at: io[IO_AT],
    reason: status === SCAN_INVALID ? reasonText(io[IO_REASON], io[IO_REASON_VALUE]) : '',
    watermark: io[IO_WATERMARK],
    lastAt: io[IO_LAST_AT],
    regions,
  };
}

/**
 * One segment's outcome in verifySegments: `bad` undefined when its records are all valid,
 * checksums included, and end exactly at its `used`, else where the first that is not begins and
 * why; `records` and `entries`: those of the valid ones; `checked` false when another segment
 * failed first. `hashLo`, `hashHi`: the XXH3-64 of its bytes [0, used) (two u32), of the very
 * bytes its records were checked in; with `hashOnly`, of its bytes as they are, no record checked
 * (records and entries 0).
 */
export interface SegmentVerdict {
  checked: boolean;
  records: number;
  entries: number;
  hashLo: number;
  hashHi: number;
  bad: { at: number; reason: string } | undefined;
}

/** verifySegments' flags beside the scan's (addon/kv-recovery.cc kFlagHashOnly, kFlagHashRead). */
const FLAG_HASH_ONLY = 16;
const FLAG_HASH_READ = 32;

/**
 * Checks the records of many segments in one native call, nothing read into an index (none
 * may hold a poisoned block: the caller checks), and hashes each one's bytes [0, used) (XXH3-64)
 * in the same read: segs [base, used, nonce] per segment, device offsets. Each is read with
 * read(2) from the file of region `regionId` (undefined: through the mapping, under the
 * SIGBUS guard), on two threads when `threads` is 2. Both stop at the first failure; the
 * verdicts are in segment order. `hashOnly`: no record is checked, each segment's bytes are only
 * hashed, through the mapping under the guard (with regionId, read(2) in small chunks instead
 * when `hashRead`).
 */
export function verifySegments(
  v: MediaViews,
  regionId: number | undefined,
  segs: Float64Array,
  segmentBytes: number,
  threads: number,
  hashOnly = false,
  hashRead = false,
): SegmentVerdict[] {
  const n = segs.length / 3;
  const out = new Float64Array(n * 7);
  const flags = verifyFlags(hashOnly, hashRead);
  const rc = native().verifyKvSegments(mediaFromZero(v), regionId ?? -1, segs, segmentBytes, flags, out, threads);
  if (rc !== 0) throw returnCodeError(rc, `verifyKvSegments of ${n} segments`);
  return verdictsOf(out, n);
}

/** A verifySegments running on threads of its own (startVerifySegments): `finish` waits for it. */
export interface SegmentCheck {
  /** the segs it checks (its own copy: the caller may compare them with what it needs checked) */
  readonly segs: Float64Array;
  /** the calling thread takes the segments left, the job's threads are joined: the verdicts, the workers' CPU ms and, given a `fill`, how it was populated (the same result when called again) */
  finish(): { verdicts: SegmentVerdict[]; cpuMs: number; fill?: RunFill };
}

/** How the check's first thread populated the memory it was given to fill: its CPU ms, and the byte of it from which in small pages (-1: huge pages throughout, as advised). */
export interface RunFill {
  cpuMs: number;
  smallFromBytes: number;
}

/**
 * verifySegments with hashOnly, through the mapping, started on `threads` threads of its own
 * and returning at once, so the caller's thread works meanwhile (an index checkpoint's covered
 * segments at open: recovery.ts). The job reads the media until `finish`, which must be called
 * (before the media is unmapped) whatever happens meanwhile. `ahead`: mapped bytes the caller
 * reads next, from their start, whose page tables the first thread fills before it takes
 * segments (a read fault per 64 KiB costs more than the read); `fill`: memory the caller writes
 * next, which that thread then populates for writing (its first touch: a fault and a zeroed page
 * each; once one 2 MiB page of it took more than `smallAfterNs` of that thread's CPU, the rest
 * in small pages: the caller advises them huge again). undefined when the addon refuses the segs (an offset outside the media, a `used` beyond
 * a segment: a checkpoint read before its checksum can hold anything).
 */
export function startVerifySegments(
  v: MediaViews,
  segs: Float64Array,
  segmentBytes: number,
  threads: number,
  ahead?: Uint8Array,
  fill?: Uint8Array,
  smallAfterNs?: number,
): SegmentCheck | undefined {
  const n = segs.length / 3;
  const own = Float64Array.from(segs);
  const flags = verifyFlags(true, false);
  const job = native().verifyKvSegmentsStart(
    mediaFromZero(v),
    -1,
    own,
    segmentBytes,
    flags,
    threads,
    ahead,
    fill,
    smallAfterNs,
  );
  if (typeof job === 'number') return undefined;
  let result: { verdicts: SegmentVerdict[]; cpuMs: number; fill?: RunFill } | undefined;
  return {
    segs: own,
    finish() {
      if (result !== undefined) return result;
      const out = new Float64Array(n * 7);
      const fillOut = new Float64Array(2);
      const cpuMs = native().verifyKvSegmentsFinish(job, out, false, fillOut);
      assert(cpuMs >= 0, () => `verifyKvSegmentsFinish: ${cpuMs}`);
      result = { verdicts: verdictsOf(out, n), cpuMs };
      if (fill !== undefined) result.fill = { cpuMs: fillOut[0], smallFromBytes: fillOut[1] };
      return result;
    },
  };
}

/** A verifySegments running on a thread of its own (checkSegmentsInBackground). */
export interface SegmentCheckJob {
  /** the job's thread has returned: finish waits for nothing */
  readonly ready: boolean;
  /** Waits for the job (the calling thread takes any segment no thread took): the verdicts. */
  finish(): SegmentVerdict[];
  /** Ends the job early, its thread joined (no segment taken after this); nothing once finished. */
  stop(): void;
}

/**
 * verifySegments (records checked whole and hashed in the same read, with read(2) from region
 * `regionId`'s file where the media has one; `hashOnly` as there) on one thread of its own,
 * returning at once, so the caller's thread serves others meanwhile (a running checkpoint's
 * covered segments: checkpoint.ts SegmentHashes). The job reads the media until it is finished
 * or stopped, which must happen before the media is unmapped and before whatever keeps the
 * segments in the log (a snapshot) is released.
 */
export function checkSegmentsInBackground(
  v: MediaViews,
  regionId: number | undefined,
  segs: Float64Array,
  segmentBytes: number,
  hashOnly = false,
): SegmentCheckJob {
  const n = segs.length / 3;
  const flags = verifyFlags(hashOnly, false);
  const job = native().verifyKvSegmentsStart(mediaFromZero(v), regionId ?? -1, segs, segmentBytes, flags, 1);
  if (typeof job === 'number') throw returnCodeError(job, `verifyKvSegmentsStart of ${n} segments`);
  let ended = false;
  const out = new Float64Array(n * 7);
  return {
    get ready() {
      return ended || native().verifyKvSegmentsDone(job);
    },
    finish() {
      assert(!ended, 'checkSegmentsInBackground: finished twice');
      ended = true;
      const rc = native().verifyKvSegmentsFinish(job, out);
      assert(rc >= 0, () => `verifyKvSegmentsFinish: ${rc}`);
      return verdictsOf(out, n);
    },
    stop() {
      if (ended) return;
      ended = true;
      native().verifyKvSegmentsFinish(job, out, true);
    },
  };
}

function verifyFlags(hashOnly: boolean, hashRead: boolean): number {
  return (
    (isBroken('kv-skip-checksum') ? FLAG_SKIP_CHECKSUM : 0) |
    (hashOnly ? FLAG_HASH_ONLY : 0) |
    (hashOnly && hashRead ? FLAG_HASH_READ : 0)
  );
}

function verdictsOf(out: Float64Array, n: number): SegmentVerdict[] {
  const verdicts: SegmentVerdict[] = [];
  for (let i = 0; i < n; i++) {
    const [status, at, reason, entries, records, hashLo, hashHi] = out.subarray(i * 7, i * 7 + 7);
    const bad =
      status === 0 || status === 2
        ? undefined
        : { at, reason: status === -5 ? 'media error (SIGBUS) reading it' : reasonText(reason, 0) };
    verdicts.push({ checked: status !== 2, records, entries, hashLo, hashHi, bad });
  }
  return verdicts;
}

/** The bulk load's columns: winner i's entry offset, and its index key at keys[starts[i], +lengths[i]). */
export interface WinnerColumns {
  readonly count: number;
  readonly values: Float64Array;
  readonly starts: Uint32Array;
  readonly lengths: Uint16Array;
  readonly keys: Uint8Array;
  /** each winner's sequence (pickWinners with keepDeletes), so that the merge need not read its entry */
  readonly sequences?: BigUint64Array;
}

/**
 * For each segment of `segs` ([base, used] device offsets), whether a scan from `used` would end
 * there at once with nothing found (1: no record header fits after it, or the end marker, 16
 * zero bytes, lies there; scanSegment's first step), read under the SIGBUS guard; undefined on a
 * media error (the caller then scans them, and the scan reports it).
 */
export function endMarkersAt(v: MediaViews, segs: Float64Array, segmentBytes: number): Uint8Array | undefined {
  const out = new Uint8Array(segs.length / 2);
  const rc = native().endMarkersAt(mediaFromZero(v), segs, segmentBytes, out);
  assert(rc === 0 || rc === -5, () => `endMarkersAt: ${rc}`); // -EIO
  return rc === 0 ? out : undefined;
}

/** The media's bytes from offset 0 for the addon: the first window, or the whole buffer when it is longer. */
function mediaFromZero(v: MediaViews): Uint8Array | SharedArrayBuffer {
  const first = v.at(0);
  return first.u8.length === first.u8.buffer.byteLength ? first.u8 : (first.u8.buffer as SharedArrayBuffer);
}

/**
 * Orders found's entries by key and keeps each key's newest (highest sequence; on a tie the
 * lowest offset, i.e. the one scanned first), leaving out keys whose newest is a DEL. The
 * columns go into found's own buffer when they fit (its records are all read first): fresh
 * memory of that size costs page faults.
 */
export function pickWinners(v: MediaViews, found: FoundEntries, keyPrefix: number, keepDeletes = false): WinnerColumns {
  const n = found.count;
  const keyBytes = found.indexKeyBytes; // every entry's key: the winners' sum would cost a pass
  // With keepDeletes (a checkpoint's tail) each winner's sequence too, for the merge.
  const seqBytes = keepDeletes ? n * 8 : 0;
  const columnBytes = n * 14 + seqBytes + keyBytes;
  const scratch =
    columnBytes <= found.records.byteLength ? found.records.buffer : sortScratch(Math.ceil(columnBytes / 4)).buffer;
  const values = new Float64Array(scratch, 0, n);
  const sequences = keepDeletes ? new BigUint64Array(scratch, n * 8, n) : undefined;
  const starts = new Uint32Array(scratch, n * 8 + seqBytes, n);
  const lengths = new Uint16Array(scratch, n * 12 + seqBytes, n);
  const keys = new Uint8Array(scratch, n * 14 + seqBytes, keyBytes);
  const count = native().pickKvWinners(
    mediaFromZero(v),
    found.records,
    n,
    values,
    starts,
    lengths,
    keys,
    keyPrefix,
    keepDeletes,
    sequences,
  );
  if (count < 0) {
    if (count === -12) throw returnCodeError(count, `key-value recovery: sorting ${n} log entries`); // ENOMEM
    assert(false, `pickKvWinners of ${n} entries: ${count}`);
  }
  return { count, values, starts, lengths, keys, sequences };
}

/**
 * A checkpoint's winners (`covered`, no DEL) merged with the winners of the log after it
 * (`tail`, from pickWinners with keepDeletes: a DEL winner's value is -(offset + 1)) in key
 * order: for a key in both the newer entry wins, by the pick's order (the tail's without a
 * read when its sequence is above `coveredSequence`: the tail's sequences come from the pick,
 * `tail.sequences`, so no tail entry is read then); a winning DEL drops the key
 * (addon/kv-recovery.cc RunMerge). Nothing is copied: the result is a tape of runs saying
 * which entry of `covered` or `tail` each step takes or skips (addon/bulk-load.h), which the
 * bulk load reads (bulk-load.ts BulkEntries.merge): its size follows the tail, not the store,
 * and so does its work: each tail key gallops ahead over `covered` (doubling steps, then a
 * bisection), whose entries are checked only where they are read. `dropStale`: tail entries of
 * sequences <= `coveredSequence` are left out (recovery.ts withoutStaleEntries' rule, for a
 * checkpoint loaded with no segment gone).
 */
export function mergeColumns(
  v: MediaViews,
  covered: WinnerColumns,
  tail: WinnerColumns,
  coveredSequence: number,
  dropStale = false,
): MergeTape & { replaced: number; added: number; removed: number } {
  const tape = new Uint32Array(3 * tail.count + 1);
  const counts = new Float64Array(4);
  const n = native().mergeKvColumns(
    mediaFromZero(v),
    covered.count,
    covered.values,
    covered.starts,
    covered.lengths,
    covered.keys,
    tail.count,
    tail.values,
    tail.starts,
    tail.lengths,
    tail.keys,
    coveredSequence,
    tape,
    counts,
    dropStale,
    tail.sequences,
  );
  if (n === -5)
    throw new DaxError('EIO', 'key-value recovery: media error (SIGBUS) reading entries to merge a checkpoint');
  assert(n >= 0, () => `mergeKvColumns of ${covered.count} + ${tail.count} winners: ${n}`);
  return {
    count: n,
    covered,
    tail,
    tape: tape.subarray(0, counts[3]),
    replaced: counts[0],
    added: counts[1],
    removed: counts[2],
  };
}

/** Two winner column sets and the tape that merges them (mergeColumns): `count` entries taken. */
export interface MergeTape {
  readonly count: number;
  readonly covered: WinnerColumns;
  readonly tail: WinnerColumns;
  readonly tape: Uint32Array;
}
