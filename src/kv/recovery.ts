/**
 * Recovery: rebuilds the key-value index from the log segments at open.
 *
 * Invariants (after recoverKv returns)
 *   - The tree holds, for every key whose highest-sequence valid entry is a PUT, exactly one
 *     entry pointing at that entry; keys whose highest entry is a DEL are absent.
 *   - A record is applied only if it validates whole (records.ts checkRecord): a torn,
 *     uncommitted or foreign record is dropped with everything after it in its segment, and
 *     counted in the report. A batch is one record, so it is applied entirely or not at all.
 *   - Every record that can win is checksummed: every record of every segment is hashed
 *     (no entry is skipped as superseded before its record validates, since a torn newer
 *     record must never hide an older valid one); a record that claims bytes of a poisoned
 *     block ends its segment's scan before it is hashed (reading poisoned pmem faults).
 *
 * How: the two loops that touch every entry run natively (recovery-native.ts, addon/
 * kv-recovery.cc). The scan walks each segment's records in place, checks each whole
 * (records.ts's checks, xxh64 included) and writes one fixed-size sort record per entry
 * (first 16 key bytes, length, op, sequence, entry offset); the pick scatters them into
 * buckets on the first key byte not every key shares (again inside a bucket too large for
 * the cache), sorts each bucket in cache and writes each key's winner (the highest
 * sequence; ties: the first scanned, i.e. the lowest offset: segments are scanned in block
 * order) into the bulk load's columns, keys back to back in key order, and the keys are
 * bulk loaded into the tree in one bottom-up build. No tombstones enter the tree. Nothing is
 * allocated per record.
 *
 * Memory: 32 bytes of sort record per entry in a SharedArrayBuffer (recovery-native.ts), and
 * as much again in native memory for the scatter (twice when a bucket must split again),
 * freed when the pick returns.
 *
 * Concurrency: runs on the opener before share() can hand the space to anyone (bulkLoad
 * asserts the tree was never shared).
 *
 * Persistence ordering: writes nothing persistent.
 */
import { assert } from '../assert.js';
import { DaxError } from '../errors.js';
import type { DaxSpace } from '../dax/space.js';
import { KV_KEY_PREFIX, OWNER_KV_SEGMENT, SEGMENT_BYTES, SEGMENT_ORDER } from './layout.js';
import type { MediaViews } from './records.js';
import { BLOCK_BYTES } from '../device/layout.js';
import {
  FoundEntries,
  SCAN_END,
  SCAN_EIO,
  SCAN_INVALID,
  SCAN_POISON,
  pickWinners,
  scanSegment as scanNative,
} from './recovery-native.js';

export interface KvRecoveryReport {
  segments: number;
  records: number;
  entries: number;
  keys: number;
  /** segments whose scan ended at a record that did not validate (torn, uncommitted, foreign) */
  droppedRecords: number;
  /** why each dropped record was dropped, with its device offset (first 20) */
  dropped: string[];
  /** segments whose scan stopped at a poisoned block (records after it are lost) */
  poisonedSegments: number;
  maxSequence: number;
  timeMs: number;
  /** where timeMs went: segment scan (checksums included), key sort + winner pick, index bulk load */
  phasesMs: { scan: number; sort: number; load: number };
  /** the segment with the most room after its last valid record (the opener resumes appending there) */
  resume: { base: number; used: number; nonce: number } | undefined;
}

export function recoverKv(space: DaxSpace, v: MediaViews): KvRecoveryReport {
  const start = performance.now();
  const report: KvRecoveryReport = {
    segments: 0,
    records: 0,
    entries: 0,
    keys: 0,
    droppedRecords: 0,
    dropped: [],
    poisonedSegments: 0,
    maxSequence: 0,
    timeMs: 0,
    phasesMs: { scan: 0, sort: 0, load: 0 },
    resume: undefined,
  };
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
  report.segments = segments.length;
  const found = new FoundEntries(segments.length, SEGMENT_BYTES);
  for (const [block, nonce] of segments) scanSegment(space, v, space.device.blockOffset(block), nonce, report, found);
  report.records = found.validRecords;
  report.entries = found.count;
  report.maxSequence = found.maxSequence;
  report.phasesMs.scan = performance.now() - start;
  const t1 = performance.now();
  const winners = pickWinners(v, found, KV_KEY_PREFIX);
  const t2 = performance.now();
  report.phasesMs.sort = t2 - t1;
  space.tree.bulkLoad({
    count: winners.count,
    keys: winners.keys,
    starts: winners.starts,
    lengths: winners.lengths,
    values: winners.values,
  });
  report.phasesMs.load = performance.now() - t2;
  report.keys = winners.count;
  report.timeMs = performance.now() - start;
  return report;
}

function scanSegment(
  space: DaxSpace,
  v: MediaViews,
  base: number,
  nonce: number,
  report: KvRecoveryReport,
  found: FoundEntries,
): void {
  const end = base + SEGMENT_BYTES;
  // The scan reads nothing from the first poisoned block on (reading poisoned pmem faults).
  const limit = spansPoison(space, base, end) ? firstPoisoned(space, base, end) : end;
  const { status, at, reason } = scanNative(v, base, end, limit, nonce, found);
  let resumable = true;
  if (status === SCAN_INVALID) {
    report.droppedRecords++;
    if (report.dropped.length < 20) report.dropped.push(`offset ${at}: ${reason}`);
  } else if (status === SCAN_POISON || status === SCAN_EIO) {
    report.poisonedSegments++;
    if (status === SCAN_EIO && report.dropped.length < 20)
      report.dropped.push(`offset ${at}: media error (SIGBUS) reading the record`);
    resumable = false;
  } else assert(status === SCAN_END, `segment scan status ${status}`);
  if (resumable && (report.resume === undefined || at - base < report.resume.used))
    report.resume = { base, used: at - base, nonce };
}

/** Offset of the first poisoned block in [from, to) (from block aligned), or `to`. */
function firstPoisoned(space: DaxSpace, from: number, to: number): number {
  const device = space.device;
  for (let off = from; off < to; off += BLOCK_BYTES) if (device.isPoisoned(device.blockAt(off))) return off;
  return to;
}

function spansPoison(space: DaxSpace, from: number, to: number): boolean {
  const device = space.device;
  for (let off = from - ((from - device.dataOffset) % BLOCK_BYTES); off < to; off += BLOCK_BYTES) {
    if (device.isPoisoned(device.blockAt(off))) return true;
  }
  return false;
}
