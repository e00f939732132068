/**
 * Recovery: rebuilds the key-value index from the log segments at open.
 *
 * Invariants (after recoverKv returns)
 *   - The tree holds, for every key whose highest-sequence valid entry is a PUT, exactly one
 *     entry pointing at that entry; keys whose highest entry is a DEL are absent.
 *   - A record is applied only if it validates whole (records.ts checkRecord): a torn,
 *     uncommitted or foreign record is dropped with everything after it in its segment, and
 *     counted in the report. A batch is one record, so it is applied entirely or not at all.
 *
 *   - Every record that can win is checksummed: every record of every segment is hashed
 *     (no entry is skipped as superseded before its record validates, since a torn newer
 *     record must never hide an older valid one); a record that claims bytes of a poisoned
 *     block ends its segment's scan before it is hashed (reading poisoned pmem faults).
 *
 * How: each segment is copied once into the verifier's wasm memory and its records hashed
 * in place (record-stage.ts loadVerifyWindow; the checksum compared inside wasm). The scan
 * writes one fixed-size sort record per entry (recovery-sort.ts: first 16 key bytes, length,
 * op, sequence, entry offset) and counts it in a first-byte bucket histogram; one scatter
 * and per-bucket sorts in cache put the entries of each key side by side; the winner of each
 * key is the highest sequence (ties: the first scanned, i.e. the lowest offset: segments are
 * scanned in block order); the keys whose winner is a PUT are written back to back in key
 * order and bulk loaded into the tree in one bottom-up build. No tombstones enter the tree.
 * Everything after the scatter reads memory in order: reading keys by id in log order cost a
 * cache miss per entry per step, most of recovery before. Nothing is allocated per record (a
 * scavenge every few ms was 90 ms of recovery).
 *
 * Memory: 32 bytes of sort record per entry, twice (scan output, scatter), SharedArrayBuffer-
 * backed (recovery-sort.ts sortScratch), so V8 does not count them toward the external-memory
 * limit that starts a full mark-compact in the middle of recovery. The price: nothing makes
 * V8 collect them either, so they (~100 MB for 1.5M entries) go back to the system at the next
 * full GC, whenever the application's own allocation brings one. Measured (/tmp/kv5/rss.mjs,
 * RSS including the ~250 MB of log pages read): 448 MB right after open, 353 MB after a full
 * GC; main before this layout: 419 MB, then 358 MB (its plain buffers also waited for a GC).
 *
 * Measured: 1M keys, 1.5M entries, load average 2.1-2.5 (other sessions' tests running):
 * kv.bench's open 842-1089 ms wall (main before: 1355-1650 ms), a cold open in a fresh
 * process (/tmp/kv5/multi.mjs) 712-842 ms CPU; the commit messages have the steps.
 *
 * Concurrency: runs on the opener before share() can hand the space to anyone (bulkLoad
 * asserts the tree was never shared).
 *
 * Persistence ordering: writes nothing persistent.
 */
import { assert } from '../assert.js';
import { DaxError } from '../errors.js';
import type { DaxSpace } from '../dax/space.js';
import { ENTRY_DEL, ENTRY_HEADER_BYTES, KV_KEY_PREFIX, OWNER_KV_SEGMENT, RECORD_HEADER_BYTES, SEGMENT_BYTES, SEGMENT_ORDER, entryBytes } from './layout.js';
import { CHECK_END, CHECK_INVALID, checkRecordInto, entryKeyLength, type CheckedRecord, entryOp, entrySequence, entryValueLength, type MediaViews } from './records.js';
import { BLOCK_BYTES } from '../device/layout.js';
import { loadVerifyWindow } from './record-stage.js';
import { SORT_BUCKETS, SORT_DEL_BIT, SORT_KEY_BYTES, SORT_RECORD_WORDS, type SortedBucketVisitor, sortBucketOf, sortEntryRecords, sortRecordOffset, sortScratch, writeSortRecord } from './recovery-sort.js';

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
  const report: KvRecoveryReport = { segments: 0, records: 0, entries: 0, keys: 0, droppedRecords: 0, dropped: [], poisonedSegments: 0, maxSequence: 0, timeMs: 0, phasesMs: { scan: 0, sort: 0, load: 0 }, resume: undefined };
  const segments: Array<[block: number, nonce: number]> = [];
  space.device.forEachOwned((block, owner, index, order) => {
    if (owner !== OWNER_KV_SEGMENT) return;
    if (order !== SEGMENT_ORDER) throw new DaxError('ECORRUPT', `${space.device.media.path}: key-value segment at block ${block} has order ${order}, expected ${SEGMENT_ORDER}`);
    segments.push([block, index]);
  });
  // Scan order is offset order (the sort breaks sequence ties by offset): blocks ascending.
  for (let i = 1; i < segments.length; i++) if (segments[i][0] <= segments[i - 1][0]) assert(false, `segments listed out of block order at ${segments[i][0]}`);
  report.segments = segments.length;
  const found = new FoundEntries(segments.length);
  for (const [block, nonce] of segments) scanSegment(space, v, space.device.blockOffset(block), nonce, report, found);
  report.phasesMs.scan = performance.now() - start;
  report.keys = loadWinners(space, v, found, report);
  report.timeMs = performance.now() - start;
  return report;
}

/**
 * Every valid entry seen by the scan, in scan order: its sort record (recovery-sort.ts:
 * key bytes 0..15, length, op, sequence, entry offset), counted in the sort's bucket
 * histogram as it is written. Longer keys stay in the log: the sort and the winners read
 * their tails there (records checksummed whole, outside poisoned blocks).
 */
class FoundEntries {
  count = 0;
  records: Uint32Array;
  readonly histogram = new Int32Array(SORT_BUCKETS + 1);
  /** index key bytes of every entry's key (prefix byte included): room for the winners' keys */
  indexKeyBytes = 0;

  /** Sized for `segments` full of small records (~16k 128-byte records a segment), so a typical log never regrows them (untouched pages cost nothing). */
  constructor(segments: number) {
    this.records = sortScratch(Math.max(1 << 14, segments * (SEGMENT_BYTES >> 7)) * SORT_RECORD_WORDS);
  }

  add(u32: Uint32Array, at: number, sequence: number, keyLength: number, del: boolean): void {
    if ((this.count + 1) * SORT_RECORD_WORDS > this.records.length) this.grow();
    const r = this.count++ * SORT_RECORD_WORDS;
    writeSortRecord(this.records, r, u32, at + ENTRY_HEADER_BYTES, keyLength, del, sequence, at);
    this.histogram[sortBucketOf(this.records, r) + 1]++;
    this.indexKeyBytes += keyLength + 1;
  }

  /** A copy in an array twice the size (shared: see sortScratch). */
  private grow(): void {
    const b = sortScratch(this.records.length * 2);
    b.set(this.records);
    this.records = b;
  }
}

/**
 * Sorts the entries by key, keeps the newest entry of each key (highest sequence; on a tie
 * the one scanned first, as applying them in scan order would) and bulk loads the keys whose
 * newest entry is a PUT. Returns how many. The winners' index keys are written back to back
 * in key order (from the sort records; longer keys from the log), so the bulk load reads
 * them sequentially.
 */
function loadWinners(space: DaxSpace, v: MediaViews, found: FoundEntries, report: KvRecoveryReport): number {
  const t0 = performance.now();
  const n = found.count;
  // The bulk load's columns go into the scan's record buffer, free once the sort has scattered
  // it (they fit there for keys up to 18 bytes): fresh memory of this size (31 MB for 1M keys)
  // costs page faults. Otherwise a shared buffer: as plain typed arrays it would add external
  // memory, which in a process with a large heap (the bench's) starts a full mark-compact.
  // The key column has room for every entry's key, not only the winners' (their sum would
  // cost a pass); bytes past the last winner's key stay unused (bulkLoad reads keys by start).
  const keyBytes = found.indexKeyBytes;
  const columnBytes = n * 14 + keyBytes;
  const scratch = columnBytes <= found.records.byteLength ? found.records.buffer : sortScratch(Math.ceil(columnBytes / 4)).buffer;
  const winners = new WinnerColumns(v.u8, new Float64Array(scratch, 0, n), new Uint32Array(scratch, n * 8, n), new Uint16Array(scratch, n * 12, n), new Uint8Array(scratch, n * 14, keyBytes));
  sortEntryRecords(found.records, n, v.u8, ENTRY_HEADER_BYTES, winners, found.histogram);
  const t1 = performance.now();
  report.phasesMs.sort = t1 - t0;
  const { values, starts, lengths, indexKeys, keys } = winners;
  space.tree.bulkLoad({ count: keys, keys: indexKeys, starts, lengths, values });
  report.phasesMs.load = performance.now() - t1;
  return keys;
}

/** Picks each key's winner from the sorted buckets and appends it to the bulk load's columns. */
class WinnerColumns implements SortedBucketVisitor {
  keys = 0;
  private o = 0;

  constructor(
    private readonly media: Uint8Array,
    readonly values: Float64Array,
    readonly starts: Uint32Array,
    readonly lengths: Uint16Array,
    readonly indexKeys: Uint8Array,
  ) {}

  visitBucket(recs: Uint32Array, perm: Int32Array, same: Uint8Array, n: number): void {
    const indexKeys = this.indexKeys;
    let o = this.o;
    let keys = this.keys;
    for (let p = 0; p < n; ) {
      let best = perm[p];
      let q = p + 1;
      for (; q < n && same[q] === 1; q++) {
        const r = perm[q];
        const d = recs[r + 6] - recs[best + 6] || recs[r + 5] - recs[best + 5];
        if (d > 0 || (d === 0 && sortRecordOffset(recs, r) < sortRecordOffset(recs, best))) best = r;
      }
      p = q;
      if ((recs[best] & SORT_DEL_BIT) !== 0) continue;
      const len = recs[best] & 0xffff;
      const at = sortRecordOffset(recs, best);
      this.starts[keys] = o;
      this.lengths[keys] = len + 1;
      this.values[keys++] = at;
      indexKeys[o++] = KV_KEY_PREFIX;
      if (len <= SORT_KEY_BYTES) {
        // Whole words: up to 3 bytes past the key are written too, and overwritten by the next
        // key (after the last one they land in unused room, or outside indexKeys, where typed
        // array stores are dropped).
        for (let w = 0; 4 * w < len; w++) {
          const x = recs[best + 1 + w];
          const k = o + 4 * w;
          indexKeys[k] = x >>> 24; // Uint8Array stores keep the low 8 bits
          indexKeys[k + 1] = x >>> 16;
          indexKeys[k + 2] = x >>> 8;
          indexKeys[k + 3] = x;
        }
      } else indexKeys.set(this.media.subarray(at + ENTRY_HEADER_BYTES, at + ENTRY_HEADER_BYTES + len), o);
      o += len;
    }
    this.o = o;
    this.keys = keys;
  }
}

const checked: CheckedRecord = { kind: 0, count: 0, totalBytes: 0, reason: '' };

function scanSegment(space: DaxSpace, v: MediaViews, base: number, nonce: number, report: KvRecoveryReport, found: FoundEntries): void {
  const end = base + SEGMENT_BYTES;
  let at = base;
  const done = (resumable: boolean): void => {
    if (resumable && (report.resume === undefined || at - base < report.resume.used)) report.resume = { base, used: at - base, nonce };
  };
  const anyPoison = spansPoison(space, base, end); // once per segment: the per-record checks only when it has a poisoned block
  // One copy of the segment into the verifier's memory, every record then hashed in place. It
  // stops at the first poisoned block (reading poisoned pmem faults): the check below ends the
  // scan at any record that claims bytes there, before its checksum is computed.
  loadVerifyWindow(v, base, anyPoison ? firstPoisoned(space, base, end) : end);
  for (;;) {
    // The header first (not read if poisoned), then every byte its length claims.
    if (anyPoison && (spansPoison(space, at, Math.min(end, at + RECORD_HEADER_BYTES)) || spansPoison(space, at, Math.min(end, at + v.u32[at / 4 + 3])))) {
      report.poisonedSegments++;
      return done(false);
    }
    const status = checkRecordInto(v, at, end, nonce, true, checked);
    if (status === CHECK_END) return done(true);
    if (status === CHECK_INVALID) {
      report.droppedRecords++;
      if (report.dropped.length < 20) report.dropped.push(`offset ${at}: ${checked.reason}`);
      return done(true);
    }
    if (anyPoison && spansPoison(space, at, at + checked.totalBytes)) {
      report.poisonedSegments++;
      return done(false);
    }
    report.records++;
    let e = at + RECORD_HEADER_BYTES;
    for (let i = 0; i < checked.count; i++) {
      const sequence = entrySequence(v, e);
      const keyLength = entryKeyLength(v, e);
      found.add(v.u32, e, sequence, keyLength, entryOp(v, e) === ENTRY_DEL);
      if (sequence > report.maxSequence) report.maxSequence = sequence;
      report.entries++;
      e += entryBytes(keyLength, entryValueLength(v, e));
    }
    at += checked.totalBytes;
  }
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
