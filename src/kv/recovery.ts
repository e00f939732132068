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
  const found = new FoundEntries(segments.length);
  for (const [block, nonce] of segments) scanSegment(space, v, space.device.blockOffset(block), nonce, report, found);
  report.keys = loadWinners(space, found);
  report.timeMs = performance.now() - start;
  return report;
}

/**
 * Every valid entry seen by the scan, in scan order (growable typed columns). Index keys
 * (KV_KEY_PREFIX ++ key) are copied back to back into `keys` while the scan reads the
 * records anyway, so sorting and the bulk load read a compact buffer, not the whole log.
 */
class FoundEntries {
  count = 0;
  at: Float64Array;
  sequence: Float64Array;
  keyStart: Uint32Array;
  /** index key length (prefix byte included) */
  keyLength: Uint16Array;
  del: Uint8Array;
  keys: Uint8Array;
  keyBytes = 0;

  /** Sized for `segments` full of small records (~16k 128-byte records a segment), so a typical log never regrows them. */
  constructor(segments: number) {
    const n = Math.max(1 << 14, segments * (SEGMENT_BYTES >> 7));
    this.at = new Float64Array(n);
    this.sequence = new Float64Array(n);
    this.keyStart = new Uint32Array(n);
    this.keyLength = new Uint16Array(n);
    this.del = new Uint8Array(n);
    this.keys = new Uint8Array(n * 20);
  }

  add(u8: Uint8Array, at: number, sequence: number, keyLength: number, del: boolean): void {
    if (this.count === this.at.length) this.grow();
    if (this.keyBytes + keyLength + 1 > this.keys.length) this.keys = grown(this.keys, Math.max(this.keys.length * 2, keyLength + 1));
    const i = this.count++;
    this.at[i] = at;
    this.sequence[i] = sequence;
    this.keyLength[i] = keyLength + 1;
    this.del[i] = del ? 1 : 0;
    const keys = this.keys;
    let o = this.keyBytes;
    this.keyStart[i] = o;
    keys[o++] = KV_KEY_PREFIX;
    const from = at + ENTRY_HEADER_BYTES;
    if (keyLength <= 32) for (let j = 0; j < keyLength; j++) keys[o + j] = u8[from + j];
    else keys.set(u8.subarray(from, from + keyLength), o);
    this.keyBytes = o + keyLength;
  }

  private grow(): void {
    const n = this.at.length * 2;
    this.at = grown(this.at, n);
    this.sequence = grown(this.sequence, n);
    this.keyStart = grown(this.keyStart, n);
    this.keyLength = grown(this.keyLength, n);
    this.del = grown(this.del, n);
  }
}

function grown<T extends Float64Array | Uint32Array | Uint16Array | Uint8Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

/**
 * Sorts the entries by key, keeps the newest entry of each key (highest sequence; on a tie
 * the one scanned first, as applying them in scan order would) and bulk loads the keys whose
 * newest entry is a PUT. Returns how many.
 */
function loadWinners(space: DaxSpace, found: FoundEntries): number {
  const n = found.count;
  const { order, sameAsPrevious } = sortKeyRuns(found.keys, found.keyStart, found.keyLength, n);
  const starts = new Uint32Array(n);
  const lengths = new Uint16Array(n);
  const values = new Float64Array(n);
  let keys = 0;
  for (let p = 0; p < n; ) {
    let best = order[p];
    let q = p + 1;
    for (; q < n && sameAsPrevious[q] === 1; q++) {
      const id = order[q];
      const d = found.sequence[id] - found.sequence[best];
      if (d > 0 || (d === 0 && id < best)) best = id;
    }
    if (found.del[best] === 0) {
      starts[keys] = found.keyStart[best];
      lengths[keys] = found.keyLength[best];
      values[keys++] = found.at[best];
    }
    p = q;
  }
  space.tree.bulkLoad({ count: keys, keys: found.keys, starts, lengths, values });
  return keys;
}

function scanSegment(space: DaxSpace, v: MediaViews, base: number, nonce: number, report: KvRecoveryReport, found: FoundEntries): void {
  const end = base + SEGMENT_BYTES;
  let at = base;
  const done = (resumable: boolean): void => {
    if (resumable && (report.resume === undefined || at - base < report.resume.used)) report.resume = { base, used: at - base, nonce };
  };
  const anyPoison = spansPoison(space, base, end); // once per segment: the per-record checks only when it has a poisoned block
  for (;;) {
    if (anyPoison && spansPoison(space, at, Math.min(end, at + RECORD_HEADER_BYTES))) {
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
    if (anyPoison && spansPoison(space, at, at + check.totalBytes)) {
      report.poisonedSegments++;
      return done(false);
    }
    report.records++;
    let e = at + RECORD_HEADER_BYTES;
    for (let i = 0; i < check.count; i++) {
      const sequence = entrySequence(v, e);
      const keyLength = entryKeyLength(v, e);
      found.add(v.u8, e, sequence, keyLength, entryOp(v, e) === ENTRY_DEL);
      if (sequence > report.maxSequence) report.maxSequence = sequence;
      report.entries++;
      e += entryBytes(keyLength, entryValueLength(v, e));
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
