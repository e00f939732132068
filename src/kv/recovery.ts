/**
 * Recovery: rebuilds the key-value index from the log segments at open, and tells a crash
 * from damage.
 *
 * Invariants (after recoverKv returns)
 *   - The tree holds, for every key whose highest-sequence entry is a PUT, exactly one entry
 *     pointing at that entry; keys whose highest entry is a DEL are absent. "Entries" are
 *     those of valid records, plus the known entries of damaged records (recovery-damage.ts):
 *     a known DEL counts as any DEL, a known PUT whose value is lost counts as a LOST entry,
 *     which wins over older versions of its key, so a key is never served an older version in
 *     place of a lost newer one (no resurrection), and loses to an intact copy of equal sequence.
 *   - A record is applied only if it validates whole (records.ts checkRecord). A batch is one
 *     record, so it is applied entirely or not at all.
 *   - Crash or damage: every record carries its segment's durable watermark (layout.ts); a
 *     bad region of a segment at or past the highest watermark of its segment's valid records
 *     and of the end another segment's SEAL vouches for is a torn tail: dropped quietly with
 *     everything after it, as a crash leaves it (the region is not poison). Every other bad
 *     region, a poisoned block under a record, and an unreadable page are DAMAGE.
 *   - Damage in 'strict' mode: nothing is served. recoverKv throws KvDamageError (ECORRUPT, or
 *     EIO when a poisoned block or media error is among it) with the report: every damaged
 *     region, what it held as far as known, the keys whose newest version it held, the
 *     sequence range of what is unknown. Only exact corrections (recovery-damage.ts) are written.
 *     In 'salvage' mode the report is returned and the store (store.ts salvage) keeps every
 *     intact key, marks the lost ones, and removes the damage from the log.
 *   - Every record that can win is checksummed: every record of every segment is hashed (no
 *     entry is skipped as superseded before its record validates, since a torn newer record
 *     must never hide an older valid one); nothing is read from a poisoned block.
 *
 * How: the two loops that touch every entry run natively (recovery-native.ts, addon/
 * kv-recovery.cc). First the SEAL at the head of every segment is read (its link names the
 * segment its writer left, and the end through which that one is durable). The scan walks
 * each segment's records in place, checks each whole (records.ts's checks, xxh64 included),
 * resyncs past bad ones, cuts a torn tail, and writes one fixed-size sort record per entry
 * (first 16 key bytes, length, op, sequence, entry offset); the pick scatters them into
 * buckets on the first key byte not every key shares (again inside a bucket too large for
 * the cache), sorts each bucket in cache and writes each key's winner (the highest
 * sequence; ties: an intact entry before a LOST one, then the lowest offset) into the bulk
 * load's columns, keys back to back in key order, and the keys are bulk loaded into the tree
 * in one bottom-up build. No tombstones enter the tree. Nothing is allocated per record.
 * Damaged regions (rare) are looked into in TypeScript; their known entries join the sort
 * records before the pick.
 *
 * Memory: 32 bytes of sort record per entry in a SharedArrayBuffer (recovery-native.ts), and
 * as much again in native memory for the scatter (twice when a bucket must split again),
 * freed when the pick returns.
 *
 * Concurrency: runs on the opener before share() can hand the space to anyone (bulkLoad
 * asserts the tree was never shared).
 *
 * Persistence ordering: writes only exact corrections of damaged bytes (each persisted).
 */
import { assert } from '../assert.js';
import { native } from '../native/addon.js';
import { isBroken } from '../test-break.js';
import { DaxError, isDaxError } from '../errors.js';
import type { BulkEntries } from '../index/bulk-load.js';
import type { ImageTail } from '../index/tree-image.js';
import type { DaxSpace } from '../dax/space.js';
import {
  ENTRY_HEADER_BYTES,
  KIND_SEAL,
  KV_KEY_PREFIX,
  OWNER_KV_SEGMENT,
  SEGMENT_BYTES,
  SEGMENT_ORDER,
  joinU32,
} from './layout.js';
import { checkRecord, entrySequence, sealPrevious, type MediaViews } from './records.js';
import { BLOCK_BYTES, HUGE_BLOCKS } from '../device/layout.js';
import type { SegmentTable } from './segment-table.js';
import {
  FoundEntries,
  REGION_CUT,
  REGION_POISON,
  SCAN_CUT,
  SCAN_DAMAGED_TAIL,
  SCAN_END,
  SCAN_EIO,
  SCAN_INVALID,
  SCAN_POISON,
  SORT_RECORD_WORDS,
  mergeColumns,
  type MergeTape,
  pickWinners,
  scanSegment as scanNative,
  verifySegments,
  startVerifySegments,
  endMarkersAt,
  type SegmentCheck,
  type SegmentVerdict,
  type WinnerColumns,
  type BadRegion,
  type SegmentCopy,
} from './recovery-native.js';
import { analyzeRegion, type KnownEntry } from './recovery-damage.js';
import { sequenceAt } from './versions.js';
import {
  CHECKPOINT_ID_FIRST,
  checkpointIds,
  coverageProblem,
  withoutSegments,
  latin1,
  readCheckpoint,
  type CheckpointSegment,
  type LoadedCheckpoint,
} from './checkpoint.js';
import type { SalvageReport } from './recovery-salvage.js';

/** DAXSTORE_SCAN_MAPPED=1 (an A/B knob, docs/TESTING.md): the scan reads segments through the mapping, not with read(2). */
const SCAN_THROUGH_MAPPING = process.env['DAXSTORE_SCAN_MAPPED'] === '1';

/** DAXSTORE_VERIFY_THREADS=1 (an A/B knob, docs/TESTING.md): the covered-record check, when not started early (coveredCheck), on one thread, not two. */
const VERIFY_THREADS = process.env['DAXSTORE_VERIFY_THREADS'] === '1' ? 1 : 2;

/**
 * DAXSTORE_CHECK_SERIAL=1 (an A/B knob, docs/TESTING.md): the covered-record check runs after
 * the checkpoint's checksum, on the opener's thread and one more, not started beforehand on
 * threads of its own.
 */
const CHECK_SERIAL = process.env['DAXSTORE_CHECK_SERIAL'] === '1';
/** DAXSTORE_IMAGE_RUN_LATE=1 (an A/B knob, docs/TESTING.md): the image's arena run is allocated when it is copied in, its pages first touched by that copy, not reserved before the checksum and populated by the check's thread. */
const RUN_LATE = process.env['DAXSTORE_IMAGE_RUN_LATE'] === '1';

/** DAXSTORE_CHECKPOINT_HASH_READ=1 (an A/B knob, docs/TESTING.md): the covered segments' hashes at open read with read(2) in small chunks, not through the mapping. */
const HASH_READ = process.env['DAXSTORE_CHECKPOINT_HASH_READ'] === '1';

/** 'strict' (default): damage refuses the open; 'salvage': serve every intact key, report the rest. */
export type RecoveryMode = 'strict' | 'salvage';

/** One damaged region of a segment and what it held, as far as anything holds. */
export interface KvDamage {
  /** head block of its segment */
  segment: number;
  /** device offsets [start, end) */
  start: number;
  end: number;
  /** 'record': bytes that fail their checks below a durable watermark; 'poison': a poisoned block under records; 'media-error': a read failed (SIGBUS) */
  kind: 'record' | 'poison' | 'media-error';
  reason: string;
  /** entries of its records whose directory holds (their PUT values are lost) */
  known: KnownEntry[];
  /** bytes of it whose entries are unknown, and the sequences around them (0: none known) */
  unknown: { start: number; end: number; sequenceAfter: number; sequenceBefore: number } | undefined;
}

export interface KvRecoveryReport {
  mode: RecoveryMode;
  segments: number;
  records: number;
  entries: number;
  keys: number;
  /** segments whose scan ended at a torn tail (a crash: dropped quietly) */
  droppedRecords: number;
  /** where each torn tail began and why it did not validate, with its device offset (first 20) */
  dropped: string[];
  /** segments with a poisoned block under a record */
  poisonedSegments: number;
  /** damaged regions not corrected (strict mode refuses when there is any) */
  damage: KvDamage[];
  /** records found damaged and corrected in place, exactly (recovery-damage.ts) */
  corrected: Array<{ offset: number; what: string }>;
  /** keys whose newest version was in damaged bytes and is lost: reads throw EIO (salvage) */
  lostKeys: Array<{ key: Uint8Array; sequence: number; entryAt: number }>;
  /** keys whose newest version is a DEL found in damaged bytes (known whole): they stay deleted */
  damagedDeletes: Array<{ key: Uint8Array; sequence: number; entryAt: number }>;
  /** sequence ranges (exclusive bounds; 0: open) whose writes may be lost, keys unknown: a key whose newest intact version precedes `before` may be stale */
  unknownSequences: Array<{ after: number; before: number }>;
  maxSequence: number;
  timeMs: number;
  /**
   * where timeMs went: the segments and checkpoints listed (owner and object tables), segment
   * scan (checksums included; from a checkpoint: its read and coverage check, the check of the
   * records it covers and the tail's scan), key sort + winner pick (or the tail's merge), index
   * bulk load, and what follows it (the segment table's estimate of each segment's live entries,
   * a loop over every winner)
   */
  phasesMs: { list: number; scan: number; sort: number; load: number; estimate: number };
  /** the same phases in process CPU time (every thread's: on a loaded machine the steadier figure) */
  phasesCpuMs: { list: number; scan: number; sort: number; load: number; estimate: number };
  /**
   * open() as a whole (wall ms, set by the store) and its parts besides this recovery (timeMs):
   * the file mapped, the device opened (superblock, owner table checked, allocator rebuilt), the
   * space's volatile structures created (epoch domain, index arena, wait table, object table),
   * the space recovered (object table, page index), and the store set up after recovery (ignored
   * checkpoints removed, the large-value orphan sweep, writers)
   */
  openMs: { total: number; map: number; device: number; structures: number; space: number; setup: number };
  /** the segment with the most room after its last valid record (the opener resumes appending there) */
  resume: { base: number; used: number; nonce: number } | undefined;
  /** head blocks of segments whose damaged owner record salvage rebuilt from their SEAL */
  restoredSegments: number[];
  /** owner records found damaged and corrected (one byte) or cleared (salvage), from Device.open */
  ownerRecords: { corrected: string[]; cleared: string[] };
  /** object-table records found damaged and corrected (one byte per word) or cleared (salvage: the object is lost) */
  objectRecords: { corrected: string[]; cleared: string[] };
  /** what open did about index checkpoints (checkpoint.ts) */
  checkpoint: CheckpointUse | undefined;
  /** what salvage did about the damage (salvage mode only) */
  salvaged?: SalvageReport;
}

/** open() refused damage (strict recovery): `damage` is the full report; nothing was served. */
export class KvDamageError extends DaxError {
  constructor(
    path: string,
    readonly report: KvRecoveryReport,
  ) {
    const media = report.damage.some((d) => d.kind !== 'record');
    super(media ? 'EIO' : 'ECORRUPT', damageSummary(path, report), { path });
    this.name = 'KvDamageError';
  }
}

/** What open does about checkpoints (store.ts): the store's uuid, and whether the full scan is forced. */
export interface RecoverOptions {
  /** the superblock's uuid: a checkpoint must carry it */
  uuid?: Uint8Array;
  /** recovery: 'full' (or salvage): scan the whole log, load no checkpoint */
  full?: boolean;
}

/** What open did about checkpoints (stats().recovery.checkpoint). */
export interface CheckpointUse {
  /** the generation loaded (the log scanned only after what it covers), or undefined: full scan */
  loaded: number | undefined;
  /** checkpoints found and not trusted, and why (damaged, stale, another store's, another version) */
  ignored: string[];
  /** the full scan was asked for (recovery: 'full', or salvage) */
  forcedFull: boolean;
  /** log records scanned after the checkpoint, and the entries in them */
  tailRecords: number;
  tailEntries: number;
  /** keys the tail changed: replaced, added, removed */
  tailKeys: { replaced: number; added: number; removed: number };
  /** checkpoint objects to remove (ignored ones): the store removes them after open */
  remove: number[];
  /** time to read and check the checkpoint, ms */
  readMs: number;
  /**
   * time to check every record it covers (checksums), ms; with checkOverlapped, only the wait
   * for that check's end (the rest ran alongside the checksum, the tail and the image's copy)
   */
  verifyMs: number;
  /**
   * the same two in CPU time, ms: readCpuMs the process's (every thread's: with checkOverlapped,
   * the check's threads' share while the checkpoint was read included), verifyCpuMs the check's
   * own threads' (with checkOverlapped; else the process's while it ran)
   */
  readCpuMs: number;
  verifyCpuMs: number;
  /**
   * the image's arena run populated by the check's thread (its CPU ms, within verifyCpuMs) and
   * the byte of it from which in small pages (-1: huge pages throughout), when it did so
   */
  runFill?: { cpuMs: number; smallFromBytes: number };
  /**
   * the check of the records the loaded checkpoint covers ran on threads of its own, started
   * when its segment list was read (before its checksum), alongside the rest of the open
   */
  checkOverlapped: boolean;
  /** the loaded checkpoint's segment ends: the next close hops on from them (checkpoint.ts segmentEnd) */
  coveredSegments: CheckpointSegment[];
  /**
   * after a full scan of a log without damage: each segment it read whole and clean, with the
   * XXH3-64 of the bytes its records were checked in (fullScan); the next checkpoint keeps them
   * as it keeps a loaded checkpoint's (checkpoint.ts hashSegments) instead of reading the log again
   */
  scannedSegments: CheckpointSegment[];
  /**
   * segments the loaded checkpoint lists that compaction freed (or a new segment reuses) since:
   * their keys were not loaded from it; the tail holds what compaction moved out of them
   */
  segmentsGone: number;
  /**
   * the index was loaded from the checkpoint's tree image (no segment freed since; a tail, if
   * any, applied to it: tailOnImage), not bulk-loaded from its columns
   */
  imageLoaded: boolean;
  /**
   * a tail was applied to the loaded image (its replaced keys' values written into the copied
   * leaves, its added and removed keys through the tree) instead of a bulk load of the
   * checkpoint's columns merged with it: taken when the keys it adds and removes are at most
   * TAIL_ON_IMAGE_MIN or a 512th of the checkpoint's keys
   */
  tailOnImage: boolean;
  /** the loaded checkpoint was read in place from the mapping (checkpoint.ts inPlace), not copied out */
  readInPlace: boolean;
}

/**
 * `table`: each segment found gets its estimate (segment-table.ts): bytes written up to its
 * last valid record, and live bytes = its winners times its mean bytes per entry.
 */
export function recoverKv(
  space: DaxSpace,
  v: MediaViews,
  mode: RecoveryMode = 'strict',
  table?: SegmentTable,
  opts: RecoverOptions = {},
): KvRecoveryReport {
  const start = performance.now();
  const startCpu = cpuMs();
  const restored: number[] = [];
  if (mode === 'salvage') restoreSegments(space, v, restored);
  const segments: Array<[block: number, nonce: number]> = [];
  space.device.forEachOwned((block, owner, index, order) => {
    if (owner !== OWNER_KV_SEGMENT) return;
    if (order !== SEGMENT_ORDER)
      throw new DaxError(
        'ECORRUPT',
        `${space.device.media.path}: key-value segment at block ${block} has order ${order}, expected ${SEGMENT_ORDER}`,
      );
    segments.push([block, index]);
  });
  // Scan order is offset order (the sort breaks sequence ties by offset): blocks ascending.
  for (let i = 1; i < segments.length; i++)
    if (segments[i][0] <= segments[i - 1][0]) assert(false, `segments listed out of block order at ${segments[i][0]}`);
  const use: CheckpointUse = {
    loaded: undefined,
    ignored: [],
    forcedFull: opts.full === true || mode === 'salvage',
    tailRecords: 0,
    tailEntries: 0,
    tailKeys: { replaced: 0, added: 0, removed: 0 },
    remove: [],
    readMs: 0,
    verifyMs: 0,
    readCpuMs: 0,
    verifyCpuMs: 0,
    coveredSegments: [],
    scannedSegments: [],
    segmentsGone: 0,
    readInPlace: false,
    checkOverlapped: false,
    imageLoaded: false,
    tailOnImage: false,
  };
  const ids = checkpointIds(space);
  // Salvage rewrites the log in place (damage removed, lost versions marked): a checkpoint of
  // the index before it would no longer describe the log, so every one goes.
  if (mode === 'salvage') use.remove.push(...ids);
  const list = { ms: performance.now() - start, cpuMs: cpuMs() - startCpu };
  const uuid = opts.uuid;
  if (!use.forcedFull && uuid !== undefined && ids.length > 0) {
    const report = withEarlyWork(space, (early) =>
      recoverFromCheckpoint(space, v, mode, segments, ids, uuid, use, start, restored, table, early),
    );
    if (report !== undefined) return withList(report, list);
  }
  const report = fullScan(space, v, mode, segments, start, restored, table, use);
  report.checkpoint = use;
  return withList(report, list);
}

function withList(report: KvRecoveryReport, list: { ms: number; cpuMs: number }): KvRecoveryReport {
  report.phasesMs.list = list.ms;
  report.phasesCpuMs.list = list.cpuMs;
  return report;
}

function newReport(mode: RecoveryMode, segments: number): KvRecoveryReport {
  return {
    mode,
    segments,
    records: 0,
    entries: 0,
    keys: 0,
    droppedRecords: 0,
    dropped: [],
    poisonedSegments: 0,
    damage: [],
    corrected: [],
    lostKeys: [],
    damagedDeletes: [],
    unknownSequences: [],
    maxSequence: 0,
    timeMs: 0,
    phasesMs: { list: 0, scan: 0, sort: 0, load: 0, estimate: 0 },
    phasesCpuMs: { list: 0, scan: 0, sort: 0, load: 0, estimate: 0 },
    openMs: { total: 0, map: 0, device: 0, structures: 0, space: 0, setup: 0 },
    resume: undefined,
    restoredSegments: [],
    ownerRecords: { corrected: [], cleared: [] },
    objectRecords: { corrected: [], cleared: [] },
    checkpoint: undefined,
  };
}

/** Every record of every segment: the index rebuilt from the log alone. */
function fullScan(
  space: DaxSpace,
  v: MediaViews,
  mode: RecoveryMode,
  segments: Array<[block: number, nonce: number]>,
  start: number,
  restored: number[],
  table: SegmentTable | undefined,
  use: CheckpointUse,
): KvRecoveryReport {
  const t0 = performance.now();
  const cpu0 = cpuMs();
  const report = newReport(mode, segments.length);
  const vouched = vouchedEnds(space, v, segments);
  const found = new FoundEntries(segments.length, SEGMENT_BYTES);
  const injected = new Map<number, KnownEntry>();
  const scratch = space.device.media.readInto === undefined ? undefined : new Uint8Array(SEGMENT_BYTES);
  const scanned: Array<{ used: number; entries: number }> = [];
  const vouchers: CheckpointSegment[] = [];
  const vouch = !isBroken('kv-skip-checksum');
  for (const [block, nonce] of segments) {
    const before = found.count;
    const recordsBefore = found.validRecords;
    const clean = { copied: false, lastAt: -1 };
    const used = scanSegment(space, v, block, nonce, vouched, report, found, injected, scratch, 0, clean);
    scanned.push({ used, entries: found.count - before });
    if (vouch && clean.copied && used > 0)
      vouchers.push(vouchFor(block, nonce, used, clean.lastAt, scratch!, found, recordsBefore, before));
  }
  // Only of a log without damage: salvage rewrites segments, strict refuses the open.
  if (report.damage.length === 0 && report.corrected.length === 0 && injected.size === 0)
    use.scannedSegments = vouchers;
  report.records = found.validRecords;
  report.entries = found.count;
  report.maxSequence = found.maxSequence;
  report.phasesMs.scan = performance.now() - t0;
  const cpu1 = cpuMs();
  report.phasesCpuMs.scan = cpu1 - cpu0;
  const t1 = performance.now();
  const winners = pickWinners(v, found, KV_KEY_PREFIX);
  const t2 = performance.now();
  report.phasesMs.sort = t2 - t1;
  const cpu2 = cpuMs();
  report.phasesCpuMs.sort = cpu2 - cpu1;
  if (injected.size > 0) findLosses(winners, injected, report);
  try {
    space.tree.bulkLoad({
      count: winners.count,
      keys: winners.keys,
      starts: winners.starts,
      lengths: winners.lengths,
      values: winners.values,
    });
  } catch (e) {
    // The pick hands keys sorted and unique: one out of order here is a fault in it, refused
    // (the tree unchanged) rather than an index whose scans would never end.
    if (!isDaxError(e, 'ECORRUPT')) throw e;
    throw new DaxError('ECORRUPT', `the index rebuilt from the log of ${space.device.media.path}: ${e.message}`);
  }
  const t3 = performance.now();
  const cpu3 = cpuMs();
  report.phasesMs.load = t3 - t2;
  report.phasesCpuMs.load = cpu3 - cpu2;
  if (table !== undefined)
    estimateSegments(table, segments, scanned, liveByExtent(table, winners.values, winners.count));
  report.keys = winners.count;
  if (injected.size > 0) findDamagedDeletes(space, injected, report);
  report.timeMs = performance.now() - start;
  report.phasesMs.estimate = performance.now() - t3;
  report.phasesCpuMs.estimate = cpuMs() - cpu3;
  return withOwnerRepairs(report, space, restored);
}

/** The report with what Device.open did about owner records, and the segments salvage restored. */
function withOwnerRepairs(report: KvRecoveryReport, space: DaxSpace, restored: number[]): KvRecoveryReport {
  report.restoredSegments = restored;
  report.ownerRecords = {
    corrected: space.device.ownerRepairs.corrected.map((c) => c.what),
    cleared: space.device.ownerRepairs.cleared.map((c) => c.why),
  };
  report.objectRecords = {
    corrected: space.recovery?.objectRecordsCorrected ?? [],
    cleared: space.recovery?.objectRecordsCleared ?? [],
  };
  return report;
}

/**
 * Salvage: an owner record Device.open cleared (damaged past a one-byte correction) at the head
 * of a 2 MiB extent that begins with a valid SEAL was a log segment's: restored with the SEAL's
 * nonce (its head block pushed to `restored`). A retired segment's SEAL is zeroed before its
 * owner record changes (compaction.ts), so only a segment that was still in the log looks like one.
 */
function restoreSegments(space: DaxSpace, v: MediaViews, restored: number[]): void {
  const device = space.device;
  for (const { block } of device.ownerRepairs.cleared) {
    if (block % HUGE_BLOCKS !== 0 || block + HUGE_BLOCKS > device.dataBlocks || device.isPoisoned(block)) continue;
    const base = device.blockOffset(block);
    const w = v.at(base);
    const nonce = joinU32(w.u32[(base - w.base) / 4 + 7] & 0xff, w.u32[(base - w.base) / 4 + 6]);
    const check = checkRecord(v, base, base + SEGMENT_BYTES, nonce);
    if (check.status !== 'ok' || check.kind !== KIND_SEAL || nonce === 0) continue;
    if (device.restoreOwner(block, OWNER_KV_SEGMENT, nonce, SEGMENT_ORDER)) restored.push(block);
  }
}

/**
 * `recover` given the work the clean reopen starts early. The covered-record check started early
 * reads the mapping on threads of its own: it is waited for on every way out, a throw included;
 * the image's run reserved early is given back when no load took it (before anything else is
 * allocated in the tree).
 */
function withEarlyWork<T>(space: DaxSpace, recover: (early: EarlyWork) => T): T {
  const early: EarlyWork = {};
  try {
    return recover(early);
  } finally {
    const fill = early.check?.finish().fill;
    if (early.run !== undefined) {
      space.tree.releaseRun(early.run.run, early.run.words);
      early.settled = early.run;
    }
    // The run the check's thread populated, the later part small (runSmallAfterNs): advised
    // huge again, its whole 2 MiB pages collapsed in the background, used or given back.
    if (early.settled !== undefined && fill !== undefined && fill.smallFromBytes >= 0)
      space.tree.restoreHugePages(early.settled.run, early.settled.words);
  }
}

/**
 * The CPU time the image run's 2 MiB pages may take to populate, on average over four at
 * least, before the check's thread populates the rest in 4 KiB pages (addon kv-recovery.cc
 * PopulateFill). Here a huge page freed a moment ago costs ~0.2 ms (its zeroing), 2 MiB of small
 * pages ~0.5 ms either way, and a huge page whose block free page reporting handed back to the
 * host (an idle machine's) 1.7 ms and up, 13 ms at worst (docs/PERFORMANCE.md): 1.5 ms on
 * average lets a busy machine's mixed free lists keep huge pages. DAXSTORE_IMAGE_RUN_HUGE=1:
 * never (-1); DAXSTORE_IMAGE_RUN_SMALL_AFTER_US: another threshold (tests: 0, always after
 * the first four whole 2 MiB pages).
 */
function runSmallAfterNs(): number {
  if (process.env['DAXSTORE_IMAGE_RUN_HUGE'] === '1') return -1;
  const us = Number(process.env['DAXSTORE_IMAGE_RUN_SMALL_AFTER_US'] ?? '1500');
  return Number.isFinite(us) && us >= 0 ? us * 1000 : 1_500_000;
}

/**
 * The run for an image of `words` words, reserved before the checkpoint's checksum: `words` is
 * unvouched for (at most the checkpoint's size over 4), so an arena that cannot take that many
 * (ENOSPC) leaves it unreserved, as does any other refusal: the image, if it loads, then gets
 * its run when it is copied in.
 */
function reserveRun(space: DaxSpace, words: number): EarlyWork['run'] {
  try {
    return { ...space.tree.reserveRun(words), words, smallAfterNs: runSmallAfterNs() };
  } catch (e) {
    if (isDaxError(e)) return undefined;
    throw e;
  }
}

/**
 * What the clean reopen starts before the newest checkpoint's checksum: the check of the
 * records it covers, and the arena run its image will be copied into (words as its header
 * gives them), whose pages the check's thread populates first; undefined once used or given back.
 */
interface EarlyWork {
  check?: SegmentCheck;
  run?: { run: number; words: number; bytes: Uint8Array; smallAfterNs: number };
  /** the run once used or given back (its pages' advice settled by withEarlyWork) */
  settled?: { run: number; words: number };
}

/**
 * The newest checkpoint that checks out (checkpoint.ts: whole, this store's, this version,
 * covering what the log still holds), its winners merged with those of the log written after
 * it. undefined (every reason in use.ignored) when none does, or when the log after it holds
 * damage (the full scan then reports it as usual). `early`: what it starts before the
 * checksum, settled by withEarlyWork.
 */
function recoverFromCheckpoint(
  space: DaxSpace,
  v: MediaViews,
  mode: RecoveryMode,
  segments: Array<[block: number, nonce: number]>,
  ids: number[],
  uuid: Uint8Array,
  use: CheckpointUse,
  start: number,
  restored: number[],
  table: SegmentTable | undefined,
  early: EarlyWork,
): KvRecoveryReport | undefined {
  const t0 = performance.now();
  const cpu0 = cpuMs();
  // A poisoned block under the log is damage the full scan must report (the records a
  // checkpoint covers are not read): scanned whole, the checkpoint kept.
  const device = space.device;
  if (device.poisonedBlocks !== 0 && segments.some(([block]) => device.firstPoisoned(block, HUGE_BLOCKS) >= 0)) {
    use.ignored.push('poisoned blocks under the log: scanned whole');
    return undefined;
  }
  const owned = new Map(segments);
  let cp: LoadedCheckpoint | undefined;
  const dropped = new Set<string>();
  const checked = !isBroken('kv-checkpoint-trust-covered') && !isBroken('kv-checkpoint-trust-stale');
  // The newest checkpoint's covered segments are checked from the moment its segment list is
  // read, on threads of their own, while this thread takes its checksum (and then loads its
  // image): the list is not yet vouched for, so the check's verdicts count only for a
  // checkpoint that then passes and lists the very same segments (coveredCheck).
  const startEarly =
    checked && !CHECK_SERIAL && !HASH_READ
      ? (list: CheckpointSegment[], mapped: Uint8Array | undefined, imageWords: number): void => {
          if (Number.isSafeInteger(imageWords) && imageWords > 0 && !RUN_LATE)
            early.run = reserveRun(space, imageWords);
          early.check = startCoveredCheck(space, v, list, owned, mapped, early.run);
        }
      : undefined;
  for (const id of ids) {
    if (cp !== undefined) break;
    const r = readCheckpoint(space, v, id, uuid, id === ids[0] ? startEarly : undefined);
    const coverage = 'reason' in r ? { problem: r.reason } : coverageProblem(space, v, r.checkpoint, owned);
    if ('gone' in coverage && 'checkpoint' in r) {
      cp = coverage.gone.size === 0 ? r.checkpoint : withoutSegments(space, r.checkpoint, coverage.gone, dropped);
      use.segmentsGone = coverage.gone.size;
    } else {
      use.ignored.push('problem' in coverage ? coverage.problem : 'unreadable');
      use.remove.push(id);
    }
  }
  use.readMs = performance.now() - t0;
  use.readCpuMs = cpuMs() - cpu0;
  if (cp === undefined) return undefined;
  const scratch = space.device.media.readInto === undefined ? undefined : new Uint8Array(SEGMENT_BYTES);
  // Every record the checkpoint covers is checked whole (checksums included) though none is
  // parsed: damage there is reported or refused by the full scan exactly as without one. The
  // check started early runs on while the tail is scanned and merged and the image copied in;
  // its verdict is waited for before anything is published into the tree (settle, below).
  const coveredEntries = new Map<number, number>();
  const coveredCounts = { records: 0, entries: 0 };
  const verdict = checked ? coveredCheck(space, v, cp, coveredEntries, coveredCounts, early.check, use) : undefined;
  const refuseCovered = (damaged: string): undefined => {
    use.ignored.push(`checkpoint ${cp.generation}: ${damaged}; scanned whole`);
    return undefined;
  };
  if (verdict !== undefined && !verdict.overlapped) {
    const damaged = verdict.result();
    if (damaged !== undefined) return refuseCovered(damaged);
  }
  const report = newReport(mode, segments.length);
  // What the checkpoint covers of each segment: only of the same segment life (block and nonce).
  const covered = new Map(cp.segments.map((s) => [s.block, s]));
  const froms = segments.map(([block, nonce]) => {
    const s = covered.get(block);
    return s !== undefined && s.nonce === nonce ? s.used : undefined;
  });
  const quiet = quietTails(space, v, segments, froms);
  let vouched: Map<number, number> | undefined; // read when a segment is scanned
  const found = new FoundEntries(1, SEGMENT_BYTES);
  const injected = new Map<number, KnownEntry>();
  const scanned: Array<{ used: number; entries: number }> = [];
  segments.forEach(([block, nonce], i) => {
    const from = froms[i];
    const old = from === undefined ? 0 : (coveredEntries.get(block) ?? 0);
    if (from !== undefined && quiet[i] === 1) {
      // The scan from `from` would end there at once with nothing (status end): what it notes.
      const base = space.device.blockOffset(block);
      if (report.resume === undefined || from < report.resume.used) report.resume = { base, used: from, nonce };
      scanned.push({ used: from, entries: old });
      return;
    }
    vouched ??= vouchedEnds(space, v, segments);
    const before = found.count;
    const used = scanSegment(space, v, block, nonce, vouched, report, found, injected, scratch, from ?? 0);
    scanned.push({ used, entries: old + found.count - before });
  });
  if (report.damage.length > 0 || injected.size > 0 || report.corrected.length > 0) {
    use.ignored.push(`checkpoint ${cp.generation}: the log after it holds damage; scanned whole`);
    return undefined;
  }
  // The log's counts, as a full scan gives them: the covered records' (counted by their
  // check) and the tail's. Under a trust switch nothing was checked: the checkpoint's own.
  report.records = (checked ? coveredCounts.records : cp.records) + found.validRecords;
  report.entries = (checked ? coveredCounts.entries : cp.entries) + found.count;
  report.maxSequence = Math.max(cp.maxSequence, found.maxSequence);
  report.phasesMs.scan = performance.now() - t0;
  const cpu1 = cpuMs();
  report.phasesCpuMs.scan = cpu1 - cpu0;
  const t1 = performance.now();
  const base: WinnerColumns = {
    count: cp.keys,
    values: cp.values,
    get starts(): Uint32Array {
      return cp.starts; // worked out on first read (checkpoint.ts): a clean reopen that loads the image never reads it
    },
    lengths: cp.lengths,
    keys: cp.keyBytes,
  };
  let merged: ReturnType<typeof mergeColumns> | undefined;
  if (found.count > 0) {
    // The stale entries (withoutStaleEntries) are left out by the merge itself, which reads
    // every tail winner's sequence anyway, unless a key was left out with a freed segment.
    const broken = isBroken('kv-checkpoint-stale-tail');
    const winners = pickWinners(v, found, KV_KEY_PREFIX, true);
    const inMerge = !broken && dropped.size === 0;
    const tail = broken || inMerge ? winners : withoutStaleEntries(v, winners, cp.maxSequence, dropped);
    const m = mergeColumns(v, base, tail, cp.maxSequence, inMerge);
    use.tailKeys = { replaced: m.replaced, added: m.added, removed: m.removed };
    merged = m;
  }
  const t2 = performance.now();
  report.phasesMs.sort = t2 - t1;
  const cpu2 = cpuMs();
  report.phasesCpuMs.sort = cpu2 - cpu1;
  // Without a tail, the checkpoint's tree image is copied in (the columns' own tree, built by
  // the close's bulk load, which checked their order: the checksum vouches for it since). With
  // one, the bulk load reads the checkpoint's columns and the tail's through the merge's tape:
  // no merged copy of either is written. It checks every key against the one before it
  // (ECORRUPT, the tree unchanged): a checkpoint whose keys are out of order is not trusted, as
  // a damaged one is, or the index would send scans round the same keys for ever.
  // A tail whose keys are mostly replaced ones (the common case after a kill: overwrites) is
  // applied to the image as it is copied in (tree-image.ts ImageTail): each replaced key's leaf
  // gets the tail's entry, and the few keys it adds or removes go through the tree afterwards
  // (a descent and a node copied each, where the bulk load writes every key once; the bound:
  // TAIL_ON_IMAGE_SHARE). The
  // result is the tree the bulk load of the tape builds: the image holds the checkpoint's keys
  // in order (its checksum vouches for it), the tape says what the tail replaces, adds and
  // removes. Not after a freed segment left keys out of the columns (they no longer match the
  // image's leaves).
  const tail =
    merged !== undefined && cp.image !== undefined && dropped.size === 0 && use.segmentsGone === 0
      ? imageTail(base, merged)
      : undefined;
  const image = merged === undefined || tail !== undefined ? cp.image : undefined;
  // The check's verdict is waited for once the image is copied into its run and before it is
  // grafted (or before the bulk load): a failure gives the run back and scans the whole log.
  // Each extent's winners (the segment estimate's input, read from the checkpoint's columns and
  // the merge's tape only) are counted first, while the check's thread may still be hashing.
  let damaged: string | undefined;
  let live: Int32Array | undefined;
  const settle = (): boolean => {
    if (table !== undefined) live ??= liveByExtent(table, base.values, base.count, merged);
    damaged = verdict?.result();
    return damaged === undefined;
  };
  const graftUnchecked = isBroken('kv-checkpoint-graft-unchecked');
  // The run reserved early serves an image of the words it was reserved for; any other way on,
  // it is given back first (before the bulk load allocates).
  const reserved =
    early.run !== undefined && image !== undefined && image.words === early.run.words ? early.run : undefined;
  const early0 = early.run;
  if (early0 !== undefined && reserved === undefined) space.tree.releaseRun(early0.run, early0.words);
  early.run = undefined;
  use.imageLoaded =
    image !== undefined && space.tree.loadImage(image, tail, graftUnchecked ? undefined : settle, reserved?.run);
  if (early0 !== undefined) early.settled = early0;
  if (!(graftUnchecked && use.imageLoaded)) settle(); // asked once: result() keeps its answer
  if (damaged !== undefined) return refuseCovered(damaged);
  if (image !== undefined && !use.imageLoaded)
    use.ignored.push(`checkpoint ${cp.generation}: its tree image is not a tree of its keys; its columns loaded`);
  if (use.imageLoaded && tail !== undefined) {
    applyTailChanges(space, base, merged!.tail, tail);
    use.tailOnImage = true;
  }
  const refused = use.imageLoaded
    ? undefined
    : loadOrRefuse(space, {
        count: merged?.count ?? base.count,
        keys: base.keys,
        starts: base.starts,
        lengths: base.lengths,
        values: base.values,
        merge: merged === undefined ? undefined : { ...merged.tail, tape: merged.tape },
      });
  if (refused !== undefined) {
    use.ignored.push(`checkpoint ${cp.generation}: ${refused}; scanned whole`);
    use.remove.push(CHECKPOINT_ID_FIRST + cp.generation);
    use.tailKeys = { replaced: 0, added: 0, removed: 0 };
    use.segmentsGone = 0;
    return undefined;
  }
  use.loaded = cp.generation;
  use.readInPlace = cp.inPlace;
  use.coveredSegments = cp.segments;
  use.tailRecords = found.validRecords;
  use.tailEntries = found.count;
  const t3 = performance.now();
  const cpu3 = cpuMs();
  report.phasesMs.load = t3 - t2;
  report.phasesCpuMs.load = cpu3 - cpu2;
  if (table !== undefined)
    estimateSegments(table, segments, scanned, live ?? liveByExtent(table, base.values, base.count, merged));
  report.keys = merged?.count ?? base.count;
  report.checkpoint = use;
  report.timeMs = performance.now() - start;
  report.phasesMs.estimate = performance.now() - t3;
  report.phasesCpuMs.estimate = cpuMs() - cpu3;
  return withOwnerRepairs(report, space, restored);
}

/** Keys a tail may add and remove and still be applied to a loaded image (tailOnImage), at least. */
export const TAIL_ON_IMAGE_MIN = 1024;
/**
 * ... or this share of the checkpoint's keys, when more. An insert into a freshly loaded tree
 * misses the cache at every level it walks and copies the node it changes, where the bulk load
 * writes each key once, in order, and the image's load is one copy: the share keeps the inserts
 * below the bulk load they save (bench/tail-insert.ts measures both; docs/PERFORMANCE.md).
 */
const TAIL_ON_IMAGE_SHARE = 512;

/**
 * What the load of a checkpoint's image applies of the tail merged over it, or undefined when
 * the tail adds and removes too many keys for the tree's inserts and deletes (one descent and a
 * node copied each) to beat a bulk load of every key (TAIL_ON_IMAGE_SHARE).
 */
function imageTail(base: WinnerColumns, merged: ReturnType<typeof mergeColumns>): ImageTail | undefined {
  if (merged.added + merged.removed > Math.max(TAIL_ON_IMAGE_MIN, base.count / TAIL_ON_IMAGE_SHARE)) return undefined;
  return {
    starts: base.starts.subarray(0, base.count),
    values: merged.tail.values.subarray(0, merged.tail.count),
    tape: merged.tape,
    added: new Int32Array(merged.added),
    removed: new Int32Array(merged.removed),
    write: !isBroken('kv-checkpoint-tail-unpatched'),
  };
}

/** The keys a tail applied to a loaded image adds and removes (listed by its load), through the tree. */
function applyTailChanges(space: DaxSpace, base: WinnerColumns, winners: WinnerColumns, tail: ImageTail): void {
  const tree = space.tree;
  for (const i of tail.removed) {
    const key = base.keys.subarray(base.starts[i], base.starts[i] + base.lengths[i]);
    assert(tree.delete(key), () => `checkpoint tail: key ${i} to remove is not in the loaded image`);
  }
  for (const j of tail.added) {
    const key = winners.keys.subarray(winners.starts[j], winners.starts[j] + winners.lengths[j]);
    assert(tree.insert(key, winners.values[j]), () => `checkpoint tail: key ${j} not inserted`);
  }
}

/**
 * Bulk loads a checkpoint's winners (merged with its tail's); the reason when their keys are
 * not sorted and unique (or their columns do not hold them), the tree then unchanged.
 * DAXSTORE_TEST_BREAK=kv-checkpoint-order-trusted: the refusal fails the open instead.
 */
function loadOrRefuse(space: DaxSpace, entries: BulkEntries): string | undefined {
  try {
    space.tree.bulkLoad(entries);
    return undefined;
  } catch (e) {
    if (!isDaxError(e) || (e.code !== 'ECORRUPT' && e.code !== 'EINVAL')) throw e;
    if (isBroken('kv-checkpoint-order-trusted')) throw e;
    return `its keys do not load (${e.message})`;
  }
}

/**
 * The records a checkpoint covers, vouched for by their hashes: each covered segment's bytes
 * [0, used) hashed (XXH3-64, recovery-native.ts verifySegments with hashOnly: nothing parsed) on
 * VERIFY_THREADS threads when it runs here, through the mapping under the SIGBUS guard (read(2) in
 * small chunks with DAXSTORE_CHECKPOINT_HASH_READ=1), and compared with the hash the checkpoint
 * stores, which was taken of those very bytes when their records were checked whole (checkpoint.ts
 * hashSegments). The caller has made sure no poisoned block lies under the log. `early`: the check
 * started before the checkpoint's checksum (startCoveredCheck), on the segment list as it read
 * then: used only when that list is exactly the one `cp` now lists as covered (the checkpoint
 * passed, so its list is vouched for; a list that differs, e.g. of an older checkpoint taken after
 * the newest failed, is checked afresh here). Its verdict is then waited for when first asked
 * (`overlapped`); otherwise the check runs now. result(): undefined when all match, else the first
 * segment that does not. `entries`: each covered segment's entry count (by head block), for the
 * segment table's estimate; `counts`: the records and entries of all of them (as the checkpoint
 * counted them when it checked them): filled now, meaningful once result() is undefined.
 */
function coveredCheck(
  space: DaxSpace,
  v: MediaViews,
  cp: LoadedCheckpoint,
  entries: Map<number, number>,
  counts: { records: number; entries: number },
  early: SegmentCheck | undefined,
  use: CheckpointUse,
): { readonly overlapped: boolean; result(): string | undefined } {
  const covered = cp.segments.filter((s) => s.used > 0);
  for (const s of covered) {
    entries.set(s.block, s.entries);
    counts.records += s.records;
    counts.entries += s.entries;
  }
  const segs = segsOf(space.device, covered);
  const running =
    early !== undefined && (sameSegs(early.segs, segs) || isBroken('kv-checkpoint-early-list-unmatched'))
      ? early
      : undefined;
  if (running === undefined) {
    const t = performance.now();
    const cpu = cpuMs();
    early?.finish(); // the check of another list: its verdicts are not this checkpoint's
    const regionId = HASH_READ ? space.device.media.readableRegionId : undefined;
    const verdicts = verifySegments(v, regionId, segs, SEGMENT_BYTES, VERIFY_THREADS, true, HASH_READ);
    use.verifyMs = performance.now() - t;
    use.verifyCpuMs = cpuMs() - cpu;
    const damaged = judgeCovered(covered, verdicts);
    return { overlapped: false, result: () => damaged };
  }
  let answer: { damaged: string | undefined } | undefined;
  return {
    overlapped: true,
    result() {
      if (answer !== undefined) return answer.damaged;
      const t = performance.now();
      const { verdicts, cpuMs: checkCpu, fill } = running.finish();
      use.verifyMs = performance.now() - t; // the wait: the rest ran alongside the opener's work
      use.verifyCpuMs = checkCpu;
      if (fill !== undefined) use.runFill = fill;
      use.checkOverlapped = true;
      answer = { damaged: judgeCovered(covered, verdicts) };
      return answer.damaged;
    },
  };
}

/** The first covered segment whose verdict fails (damage, or a hash other than the one the checkpoint stores), or undefined. */
function judgeCovered(covered: CheckpointSegment[], verdicts: SegmentVerdict[]): string | undefined {
  const compare = !isBroken('kv-checkpoint-hash-unchecked');
  for (let i = 0; i < covered.length; i++) {
    const s = covered[i];
    const { checked, hashLo, hashHi, bad } = verdicts[i];
    if (bad !== undefined) return `the segment at block ${s.block} it covers: ${bad.reason}`;
    if (!checked) continue;
    if (compare && (hashLo !== s.hashLo || hashHi !== s.hashHi))
      return `the segment at block ${s.block} it covers does not hash to what it stores (its records changed since they were checked)`;
  }
  return undefined;
}

/** verifySegments' [base, used, nonce] per covered segment. */
function segsOf(device: DaxSpace['device'], covered: readonly CheckpointSegment[]): Float64Array {
  const segs = new Float64Array(covered.length * 3);
  covered.forEach((s, i) => segs.set([device.blockOffset(s.block), s.used, s.nonce], i * 3));
  return segs;
}

function sameSegs(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The covered-record check of a checkpoint's segment list as read before its checksum
 * (readCheckpoint `early`), started on one thread of its own (the opener's thread hashes the
 * checkpoint and copies its image meanwhile, then takes what is left when it asks for the
 * verdict): the segments whose block is owned under the nonce listed (the others are left out
 * of what a checkpoint covers: coverageProblem) and that hold records. Whatever the list holds,
 * nothing is read outside the log's segments: undefined (no early check) when a value is not
 * one the addon takes. `mapped`: the checkpoint's bytes when read in place, whose page tables
 * that thread fills first (MADV_POPULATE_READ, 2 MiB at a time from the start, ahead of the
 * checksum reading them, which would otherwise take a read fault per 64 KiB of a 4 KiB-page
 * mapping).
 */
function startCoveredCheck(
  space: DaxSpace,
  v: MediaViews,
  list: CheckpointSegment[],
  owned: ReadonlyMap<number, number>,
  mapped: Uint8Array | undefined,
  run: EarlyWork['run'],
): SegmentCheck | undefined {
  const covered = list.filter((s) => owned.get(s.block) === s.nonce && s.used > 0);
  return startVerifySegments(v, segsOf(space.device, covered), SEGMENT_BYTES, 1, mapped, run?.bytes, run?.smallAfterNs);
}

/**
 * Which segments' scans from what the checkpoint covers of them (`froms`, undefined: not
 * covered) would end at once with nothing found (1): the end marker at `used`, or no room for a
 * record after it (endMarkersAt, under the SIGBUS guard), as after a clean close. Those are not
 * scanned; a full segment keeps room for a record, so its size alone does not tell. All 0 (each
 * scanned) on a media error, which the scan then reports. DAXSTORE_TEST_BREAK=
 * kv-checkpoint-tail-unread: every covered segment taken to end at `used`, unread.
 */
function quietTails(
  space: DaxSpace,
  v: MediaViews,
  segments: ReadonlyArray<[block: number, nonce: number]>,
  froms: ReadonlyArray<number | undefined>,
): ArrayLike<number> {
  if (isBroken('kv-checkpoint-tail-unread')) return froms.map((from) => (from === undefined ? 0 : 1));
  const quiet = new Uint8Array(segments.length);
  const at: number[] = [];
  const segs: number[] = [];
  froms.forEach((from, i) => {
    // (a list can only hold other values by a bug in its writer: those are scanned as before)
    if (from === undefined || !(Number.isInteger(from) && from >= 0 && from <= SEGMENT_BYTES && from % 8 === 0)) return;
    at.push(i);
    segs.push(space.device.blockOffset(segments[i][0]), from);
  });
  const ends = at.length === 0 ? undefined : endMarkersAt(v, Float64Array.from(segs), SEGMENT_BYTES);
  if (ends !== undefined) at.forEach((i, k) => (quiet[i] = ends[k]));
  return quiet;
}

/** CPU time of the process (every thread), in ms. */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Throws KvDamageError when the report holds damage that was not corrected (strict mode). */
export function refuseDamage(path: string, report: KvRecoveryReport): void {
  if (report.damage.length > 0) throw new KvDamageError(path, report);
}

/**
 * The end offset through which each segment is known durable, by nonce: what the SEAL at the
 * head of every segment says about the segment its writer left (segment-writer.ts).
 */
function vouchedEnds(space: DaxSpace, v: MediaViews, segments: Array<[number, number]>): Map<number, number> {
  const out = new Map<number, number>();
  const device = space.device;
  for (const [block, nonce] of segments) {
    if (device.poisonedBlocks !== 0 && device.isPoisoned(block)) continue;
    const base = device.blockOffset(block);
    const check = checkRecord(v, base, base + SEGMENT_BYTES, nonce);
    if (check.status !== 'ok' || check.kind !== KIND_SEAL) continue;
    const previous = sealPrevious(v, base);
    if (previous !== undefined) out.set(previous.nonce, Math.max(out.get(previous.nonce) ?? 0, previous.end));
  }
  return out;
}

/**
 * Each extent's winners, for estimateSegments: values[0, count) counted by the extent they
 * lie in, or with `merged` the values its tape takes from them and from the tail's.
 */
function liveByExtent(table: SegmentTable, values: Float64Array, count: number, merged?: MergeTape): Int32Array {
  const live = new Int32Array(table.extents);
  // A loop run once over every winner: cold in JavaScript, so native.
  const rc =
    merged === undefined
      ? native().countByExtent(values, count, table.dataOffset, SEGMENT_BYTES, live)
      : native().countByExtent(
          values,
          merged.count,
          table.dataOffset,
          SEGMENT_BYTES,
          live,
          merged.tail.values,
          merged.tape,
        );
  assert(rc >= 0, () => `countByExtent: ${rc}`);
  return live;
}

/** The segment table's estimate for every segment recovery found (see recoverKv), from each extent's winners (`live`). */
function estimateSegments(
  table: SegmentTable,
  segments: Array<[block: number, nonce: number]>,
  scanned: Array<{ used: number; entries: number }>,
  live: Int32Array,
): void {
  segments.forEach(([block], i) => {
    const e = block / HUGE_BLOCKS;
    const { used, entries } = scanned[i];
    table.recovered(e, used, entries === 0 ? 0 : Math.round((live[e] * used) / entries));
  });
}

/**
 * What vouches for the records [0, used) of a segment the full scan read into `copy` and
 * checked whole there, nothing skipped (scanSegment's `clean`): the XXH3-64 of those very
 * bytes, as a checkpoint stores it (checkpoint.ts hashSegments takes it over as it takes a
 * loaded checkpoint's), where its last record begins and that record's first two words (what
 * segmentEnd compares), and the records and entries the scan counted in it.
 */
function vouchFor(
  block: number,
  nonce: number,
  used: number,
  lastAt: number,
  copy: Uint8Array,
  found: FoundEntries,
  recordsBefore: number,
  entriesBefore: number,
): CheckpointSegment {
  assert(lastAt >= 0 && lastAt < used && used <= copy.length, () => `vouchFor: last record at ${lastAt}, used ${used}`);
  const sum = new Uint32Array(2);
  const rc = native().hashRange(copy, 0, used, sum, true);
  assert(rc === 0, () => `hashRange of a segment copy: ${rc}`);
  const last = new DataView(copy.buffer, copy.byteOffset + lastAt, 8);
  return {
    block,
    nonce,
    used,
    lastAt,
    lastSumLo: last.getUint32(0, true),
    lastSumHi: last.getUint32(4, true),
    hashLo: sum[0],
    hashHi: sum[1],
    records: found.validRecords - recordsBefore,
    entries: found.count - entriesBefore,
  };
}

/** Scans one segment; returns the bytes up to its last valid record. */
function scanSegment(
  space: DaxSpace,
  v: MediaViews,
  block: number,
  nonce: number,
  vouched: Map<number, number>,
  report: KvRecoveryReport,
  found: FoundEntries,
  injected: Map<number, KnownEntry>,
  scratch: Uint8Array | undefined,
  from = 0,
  clean?: { copied: boolean; lastAt: number },
): number {
  const device = space.device;
  const base = device.blockOffset(block);
  const end = base + SEGMENT_BYTES;
  const poison = poisonBitmap(space, block);
  const vouchedEnd = vouched.get(nonce);
  const copy = scratch === undefined ? undefined : readSegment(space, base, poison, scratch, from);
  const scan = scanNative(
    v,
    base,
    end,
    nonce,
    found,
    poison,
    vouchedEnd === undefined ? 0 : base + vouchedEnd,
    copy,
    base + from,
  );
  let resumable = scan.status === SCAN_END || scan.status === SCAN_CUT;
  if (scan.status === SCAN_INVALID || scan.status === SCAN_POISON) {
    // kv-no-resync (a test switch): the old rule, the first bad record ends the segment quietly.
    report.droppedRecords++;
    if (report.dropped.length < 20) report.dropped.push(`offset ${scan.at}: ${scan.reason || 'poisoned block'}`);
    resumable = scan.status === SCAN_INVALID;
  }
  let poisoned = false;
  for (const region of scan.regions) {
    if ((region.flags & REGION_CUT) !== 0) {
      report.droppedRecords++;
      if (report.dropped.length < 20) report.dropped.push(`offset ${region.start}: ${region.reason}`);
      continue;
    }
    poisoned ||= (region.flags & REGION_POISON) !== 0;
    lookInto(space, v, block, nonce, poison, region, report, found, injected);
  }
  if (scan.status === SCAN_EIO) {
    poisoned = true;
    const region: BadRegion = {
      start: scan.at,
      end,
      flags: REGION_POISON,
      reason: 'media error (SIGBUS) reading it',
      sequenceBefore: 0,
      sequenceAfter: 0,
    };
    report.damage.push(damageOf(block, region, 'media-error', [], { start: scan.at, end }));
    report.unknownSequences.push({ after: 0, before: 0 });
  }
  if (poisoned) report.poisonedSegments++;
  // A segment with damage is not appended to: salvage removes the damage (or the segment).
  if (scan.status === SCAN_DAMAGED_TAIL || report.damage.some((d) => d.segment === block)) resumable = false;
  if (resumable && (report.resume === undefined || scan.at - base < report.resume.used))
    report.resume = { base, used: scan.at - base, nonce };
  if (clean !== undefined) {
    // Every record of [from, at) checked whole in `copy`, nothing skipped, cut or resynced past.
    clean.copied = copy !== undefined && scan.status === SCAN_END && scan.regions.length === 0 && !poisoned;
    clean.lastAt = scan.lastAt < 0 ? -1 : scan.lastAt - base;
  }
  return scan.at - base;
}

/**
 * The segment at `base` read into `scratch` with read(2) (Media.readInto), every block but
 * the poisoned ones (never read; the scan skips them by the same bitmap); undefined when the
 * media cannot (the scan then reads the mapping, where an unknown poisoned page is a SIGBUS
 * the scan turns into EIO). Scanning a copy instead of the mapping spares a first touch of
 * each 4 KiB page of the mapping (a page fault; on a virtual machine with shadow page tables
 * a hypervisor exit too), most of a scan's cost where the store was just mapped; the copy is
 * made by the kernel through its own map of the pages, and the scan then reads it in cache.
 */
function readSegment(
  space: DaxSpace,
  base: number,
  poison: Uint32Array,
  scratch: Uint8Array,
  from: number,
): SegmentCopy | undefined {
  const media = space.device.media;
  if (media.readInto === undefined || SCAN_THROUGH_MAPPING) return undefined;
  const poisoned = (b: number): boolean => poison.length !== 0 && ((poison[b >>> 5] >>> (b & 31)) & 1) !== 0;
  // From the block holding `from` (a checkpoint's tail): the scan reads nothing before it.
  for (let b = Math.floor(from / BLOCK_BYTES); b < HUGE_BLOCKS;) {
    if (poisoned(b)) {
      b++;
      continue;
    }
    let e = b + 1;
    while (e < HUGE_BLOCKS && !poisoned(e)) e++;
    if (media.readInto(base + b * BLOCK_BYTES, (e - b) * BLOCK_BYTES, scratch, b * BLOCK_BYTES) !== 0) return undefined;
    b = e;
  }
  return { bytes: scratch, base };
}

/** One bit per block of the segment that is poisoned (empty when none is). */
function poisonBitmap(space: DaxSpace, block: number): Uint32Array {
  const device = space.device;
  if (device.poisonedBlocks === 0 || device.firstPoisoned(block, HUGE_BLOCKS) < 0) return new Uint32Array(0);
  const bits = new Uint32Array(HUGE_BLOCKS / 32);
  for (let b = 0; b < HUGE_BLOCKS; b++) if (device.isPoisoned(block + b)) bits[b >>> 5] |= 1 << (b & 31);
  return bits;
}

/**
 * A damaged region: corrections are rescanned (their entries join `found` as any valid
 * record's), known entries join as LOST (PUT) or DEL sort records, the rest is unknown.
 */
function lookInto(
  space: DaxSpace,
  v: MediaViews,
  block: number,
  nonce: number,
  poison: Uint32Array,
  region: BadRegion,
  report: KvRecoveryReport,
  found: FoundEntries,
  injected: Map<number, KnownEntry>,
): void {
  const device = space.device;
  const base = device.blockOffset(block);
  const readable = (from: number, to: number): boolean => {
    if (poison.length === 0) return true;
    for (let b = Math.floor((from - base) / BLOCK_BYTES); b * BLOCK_BYTES + base < to; b++)
      if ((poison[b >>> 5] >>> (b & 31)) & 1) return false;
    return true;
  };
  const analysis = analyzeRegion(v, device.media, region.start, region.end, nonce, readable);
  for (const c of analysis.corrected) {
    report.corrected.push({ offset: c.at, what: c.what });
    const rescan = scanNative(v, c.at, c.at + c.totalBytes, nonce, found);
    assert(rescan.regions.length === 0, () => `corrected record at ${c.at} does not validate`);
  }
  for (const entry of analysis.known) {
    injected.set(entry.at, entry);
    appendSortRecord(v, found, entry);
  }
  if (analysis.known.length === 0 && analysis.unknown === undefined) return; // all corrected
  const kind = (region.flags & REGION_POISON) !== 0 ? 'poison' : 'record';
  const unknown = analysis.unknown;
  report.damage.push(damageOf(block, region, kind, analysis.known, unknown));
  if (unknown !== undefined)
    report.unknownSequences.push({ after: region.sequenceBefore, before: region.sequenceAfter });
}

function damageOf(
  block: number,
  region: BadRegion,
  kind: KvDamage['kind'],
  known: KnownEntry[],
  unknown: { start: number; end: number } | undefined,
): KvDamage {
  return {
    segment: block,
    start: region.start,
    end: region.end,
    kind,
    reason: region.reason,
    known,
    unknown:
      unknown === undefined
        ? undefined
        : { ...unknown, sequenceAfter: region.sequenceBefore, sequenceBefore: region.sequenceAfter },
  };
}

/** The sort record of a known entry of a damaged record (addon/kv-recovery.h layout): LOST for a PUT. */
function appendSortRecord(v: MediaViews, found: FoundEntries, entry: KnownEntry): void {
  if ((found.count + 1) * SORT_RECORD_WORDS > found.records.length) found.grow();
  const r = found.records.subarray(found.count * SORT_RECORD_WORDS, (found.count + 1) * SORT_RECORD_WORDS);
  const at8 = entry.at / 8;
  const keyLength = entry.key.length;
  r[0] = (keyLength | (entry.op === 'del' ? 1 << 16 : 1 << 15) | (Math.floor(at8 / 2 ** 32) << 17)) >>> 0;
  const head = new Uint8Array(16);
  head.set(entry.key.subarray(0, 16));
  for (let w = 0; w < 4; w++)
    r[1 + w] = ((head[4 * w] << 24) | (head[4 * w + 1] << 16) | (head[4 * w + 2] << 8) | head[4 * w + 3]) >>> 0;
  r[5] = entry.sequence >>> 0;
  r[6] = Math.floor(entry.sequence / 2 ** 32);
  r[7] = at8 >>> 0;
  found.count++;
  found.indexKeyBytes += keyLength + 1;
  found.maxSequence = Math.max(found.maxSequence, entry.sequence);
  assert(
    joinU32(r[6], r[5]) === entry.sequence && entrySequence(v, entry.at) === entry.sequence,
    'sort record of a known entry',
  );
}

/** Winners that are known PUTs of damaged records: keys whose newest version is lost. */
function findLosses(
  winners: { count: number; values: Float64Array },
  injected: Map<number, KnownEntry>,
  report: KvRecoveryReport,
): void {
  for (let i = 0; i < winners.count; i++) {
    const entry = injected.get(winners.values[i]);
    if (entry !== undefined && entry.op === 'put')
      report.lostKeys.push({ key: entry.key, sequence: entry.sequence, entryAt: entry.at });
  }
}

/** Known DELs of damaged records whose key is absent (its newest version is a DEL): they must outlive the damage. */
function findDamagedDeletes(space: DaxSpace, injected: Map<number, KnownEntry>, report: KvRecoveryReport): void {
  const indexKey = (key: Uint8Array): Uint8Array => {
    const k = new Uint8Array(key.length + 1);
    k[0] = KV_KEY_PREFIX;
    k.set(key, 1);
    return k;
  };
  for (const entry of injected.values()) {
    if (entry.op === 'del' && space.tree.lookup(indexKey(entry.key)) === undefined)
      report.damagedDeletes.push({ key: entry.key, sequence: entry.sequence, entryAt: entry.at });
  }
}

/** A key for a message: its UTF-8 text in quotes when it is printable, else hex. */
export function keyText(key: Uint8Array): string {
  const text = Buffer.from(key).toString('utf8');
  return /^[\x20-\x7e\u00a0-\uffff]*$/.test(text) && !text.includes('\ufffd')
    ? JSON.stringify(text)
    : `0x${Buffer.from(key).toString('hex')}`;
}

/** What damage the report holds, in a few lines (the message of KvDamageError). */
export function damageSummary(path: string, report: KvRecoveryReport): string {
  const lines = [`${path}: recovery found ${report.damage.length} damaged region(s) in the key-value log:`];
  for (const d of report.damage.slice(0, 10)) {
    const held = d.known.length > 0 ? `; held ${d.known.length} known entr${d.known.length === 1 ? 'y' : 'ies'}` : '';
    const unknown =
      d.unknown !== undefined
        ? `; ${d.unknown.end - d.unknown.start} bytes of unknown entries (sequences ${d.unknown.sequenceAfter || '?'}..${d.unknown.sequenceBefore || '?'})`
        : '';
    lines.push(
      `  ${d.kind} at offset ${d.start}..${d.end} (segment at block ${d.segment}): ${d.reason}${held}${unknown}`,
    );
  }
  if (report.damage.length > 10) lines.push(`  … ${report.damage.length - 10} more`);
  if (report.lostKeys.length > 0)
    lines.push(
      `  keys whose newest version is lost: ${report.lostKeys
        .slice(0, 20)
        .map((k) => keyText(k.key))
        .join(', ')}${report.lostKeys.length > 20 ? ` … (${report.lostKeys.length})` : ''}`,
    );
  if (report.damagedDeletes.length > 0)
    lines.push(
      `  deleted keys whose delete is in the damage (kept deleted): ${report.damagedDeletes
        .slice(0, 20)
        .map((k) => keyText(k.key))
        .join(', ')}`,
    );
  for (const u of report.unknownSequences)
    lines.push(
      `  writes of unknown keys lost between sequences ${u.after || 'the start'} and ${u.before || 'the end'}: any key whose newest surviving version is older may be stale`,
    );
  lines.push(
    `  nothing was served; open with { recovery: 'salvage' } or run \`daxstore check --repair\` to keep every intact key`,
  );
  return lines.join('\n');
}

/**
 * The log's winners after a checkpoint without the stale ones: an entry of a sequence the
 * checkpoint covers (<= covered) whose key the checkpoint lacks. The checkpoint holds every
 * key as of its sequence, so such an entry's key was deleted (or overwritten and deleted) by
 * then: the entry is a compaction copy of an older version, or lies after a record above the
 * checkpoint in its segment (coverage stops there), and its DEL is among the covered records
 * the merge does not read. Merged, it would bring the deleted key back. The exception is a key
 * `dropped` with a freed segment (withoutSegments): compaction's copy of its entry is the one
 * the index had, and it is taken. Entries above `covered`, and keys the checkpoint has, are
 * the merge's to judge.
 */
function withoutStaleEntries(
  v: MediaViews,
  tail: WinnerColumns,
  covered: number,
  dropped: ReadonlySet<string>,
): WinnerColumns {
  const values = new Float64Array(tail.count);
  const starts = new Uint32Array(tail.count);
  const lengths = new Uint16Array(tail.count);
  let n = 0;
  for (let i = 0; i < tail.count; i++) {
    const value = tail.values[i];
    const at = value < 0 ? -value - 1 : value;
    if (sequenceAt(v, at) <= covered && !dropped.has(latin1(tail.keys, tail.starts[i], tail.lengths[i]))) continue;
    values[n] = value;
    starts[n] = tail.starts[i];
    lengths[n] = tail.lengths[i];
    n++;
  }
  return { count: n, values, starts, lengths, keys: tail.keys };
}
