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
 * How: the segment scan only collects (entry offset, sequence, op, key length) per entry in
 * typed arrays; the keys stay in the log. One radix sort of the entry ids by key bytes
 * (bulk-load.ts sortKeyRuns) puts the entries of each key side by side; the winner of each
 * key is the highest sequence (ties: the first scanned, as applying them in scan order
 * would); keys whose winner is a PUT are bulk loaded into the tree in one bottom-up build.
 * No tombstones enter the tree.
 *
 * Concurrency: runs on the opener before share() can hand the space to anyone (bulkLoad
 * asserts the tree was never shared).
 *
 * Persistence ordering: writes nothing persistent.
 */
import { DaxError } from '../errors.js';
import type { DaxSpace } from '../dax/space.js';
import { ENTRY_DEL, ENTRY_HEADER_BYTES, KV_KEY_PREFIX, OWNER_KV_SEGMENT, RECORD_HEADER_BYTES, SEGMENT_BYTES, SEGMENT_ORDER, entryBytes } from './layout.js';
import { checkRecord, entryKeyLength, entryOp, entrySequence, entryValueLength, type MediaViews } from './records.js';
import { BLOCK_BYTES } from '../device/layout.js';
import { sortKeyRuns } from '../index/bulk-load.js';

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
  /** the segment with the most room after its last valid record (the opener resumes appending there) */
  resume: { base: number; used: number; nonce: number } | undefined;
}

export function recoverKv(space: DaxSpace, v: MediaViews): KvRecoveryReport {
  const start = performance.now();
  const report: KvRecoveryReport = { segments: 0, records: 0, entries: 0, keys: 0, droppedRecords: 0, dropped: [], poisonedSegments: 0, maxSequence: 0, timeMs: 0, resume: undefined };
  const segments: Array<[block: number, nonce: number]> = [];
  space.device.forEachOwned((block, owner, index, order) => {
    if (owner !== OWNER_KV_SEGMENT) return;
    if (order !== SEGMENT_ORDER) throw new DaxError('ECORRUPT', `${space.device.media.path}: key-value segment at block ${block} has order ${order}, expected ${SEGMENT_ORDER}`);
    segments.push([block, index]);
  });
  report.segments = segments.length;
  const found = new FoundEntries();
  for (const [block, nonce] of segments) scanSegment(space, v, space.device.blockOffset(block), nonce, report, found);
  report.keys = loadWinners(space, v, found);
  report.timeMs = performance.now() - start;
  return report;
}

/** Every valid entry seen by the scan, in scan order (growable typed columns). */
class FoundEntries {
  count = 0;
  at = new Float64Array(1 << 14);
  sequence = new Float64Array(1 << 14);
  keyLength = new Uint16Array(1 << 14);
  del = new Uint8Array(1 << 14);

  add(at: number, sequence: number, keyLength: number, del: boolean): void {
    if (this.count === this.at.length) this.grow();
    const i = this.count++;
    this.at[i] = at;
    this.sequence[i] = sequence;
    this.keyLength[i] = keyLength;
    this.del[i] = del ? 1 : 0;
  }

  private grow(): void {
    const n = this.at.length * 2;
    const grown = <T extends Float64Array | Uint16Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.at = grown(this.at, (k) => new Float64Array(k));
    this.sequence = grown(this.sequence, (k) => new Float64Array(k));
    this.keyLength = grown(this.keyLength, (k) => new Uint16Array(k));
    this.del = grown(this.del, (k) => new Uint8Array(k));
  }
}

/**
 * Sorts the entries by key, keeps the newest entry of each key (highest sequence; on a tie
 * the one scanned first) and bulk loads the keys whose newest entry is a PUT. Returns how many.
 */
function loadWinners(space: DaxSpace, v: MediaViews, found: FoundEntries): number {
  const n = found.count;
  const keyStart = new Float64Array(n);
  for (let i = 0; i < n; i++) keyStart[i] = found.at[i] + ENTRY_HEADER_BYTES;
  const { order, sameAsPrevious } = sortKeyRuns(v.u8, keyStart, found.keyLength, n);
  const winners = new Int32Array(n);
  let keys = 0;
  let keyBytes = 0;
  for (let p = 0; p < n; ) {
    let best = order[p];
    let q = p + 1;
    for (; q < n && sameAsPrevious[q] === 1; q++) {
      const id = order[q];
      const d = found.sequence[id] - found.sequence[best];
      if (d > 0 || (d === 0 && id < best)) best = id;
    }
    if (found.del[best] === 0) {
      winners[keys++] = best;
      keyBytes += 1 + found.keyLength[best];
    }
    p = q;
  }
  const keyBuffer = new Uint8Array(keyBytes);
  const offsets = new Uint32Array(keys + 1);
  const values = new Float64Array(keys);
  const u8 = v.u8;
  let o = 0;
  for (let k = 0; k < keys; k++) {
    const id = winners[k];
    const from = keyStart[id];
    const len = found.keyLength[id];
    keyBuffer[o++] = KV_KEY_PREFIX;
    for (let j = 0; j < len; j++) keyBuffer[o + j] = u8[from + j];
    o += len;
    offsets[k + 1] = o;
    values[k] = found.at[id];
  }
  space.tree.bulkLoad({ count: keys, keys: keyBuffer, offsets, values });
  return keys;
}

function scanSegment(space: DaxSpace, v: MediaViews, base: number, nonce: number, report: KvRecoveryReport, found: FoundEntries): void {
  const end = base + SEGMENT_BYTES;
  let at = base;
  const done = (resumable: boolean): void => {
    if (resumable && (report.resume === undefined || at - base < report.resume.used)) report.resume = { base, used: at - base, nonce };
  };
  for (;;) {
    if (spansPoison(space, at, Math.min(end, at + RECORD_HEADER_BYTES))) {
      report.poisonedSegments++;
      return done(false);
    }
    const check = checkRecord(v, at, end, nonce);
    if (check.status === 'end') return done(true);
    if (check.status === 'invalid') {
      report.droppedRecords++;
      if (report.dropped.length < 20) report.dropped.push(`offset ${at}: ${check.reason}`);
      return done(true);
    }
    if (spansPoison(space, at, at + check.totalBytes)) {
      report.poisonedSegments++;
      return done(false);
    }
    report.records++;
    let e = at + RECORD_HEADER_BYTES;
    for (let i = 0; i < check.count; i++) {
      const sequence = entrySequence(v, e);
      found.add(e, sequence, entryKeyLength(v, e), entryOp(v, e) === ENTRY_DEL);
      report.maxSequence = Math.max(report.maxSequence, sequence);
      report.entries++;
      e += entryBytes(entryKeyLength(v, e), entryValueLength(v, e));
    }
    at += check.totalBytes;
  }
}

function spansPoison(space: DaxSpace, from: number, to: number): boolean {
  const device = space.device;
  for (let off = from - ((from - device.dataOffset) % BLOCK_BYTES); off < to; off += BLOCK_BYTES) {
    if (device.isPoisoned(device.blockAt(off))) return true;
  }
  return false;
}
