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
 * Concurrency: runs on the opener before share() can hand the space to anyone.
 *
 * Persistence ordering: writes nothing persistent.
 */
import { DaxError } from '../errors.js';
import type { DaxSpace } from '../dax/space.js';
import { ENTRY_DEL, KV_KEY_PREFIX, OWNER_KV_SEGMENT, RECORD_HEADER_BYTES, SEGMENT_BYTES, SEGMENT_ORDER, entryBytes } from './layout.js';
import { checkRecord, entryKeyLength, entryOp, entrySequence, entryValueLength, type MediaViews } from './records.js';
import { BLOCK_BYTES } from '../device/layout.js';
import { grab, replace, unlock } from '../index/entry-lock.js';

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
  for (const [block, nonce] of segments) scanSegment(space, v, space.device.blockOffset(block), nonce, report);
  report.keys = dropTombstones(space);
  report.timeMs = performance.now() - start;
  return report;
}

function scanSegment(space: DaxSpace, v: MediaViews, base: number, nonce: number, report: KvRecoveryReport): void {
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
      applyEntry(space, v, e);
      report.maxSequence = Math.max(report.maxSequence, entrySequence(v, e));
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

const scratch = new Uint8Array(1 + 1024);
const scratchViews: Uint8Array[] = [];

/**
 * Newest entry wins; a DEL is kept as a ZERO-state tombstone until every segment was scanned.
 * One grab per entry (it creates the placeholder when absent); the key may live in a scratch
 * buffer because the tree copies it into the leaf and nothing keeps the ref after unlock.
 */
function applyEntry(space: DaxSpace, v: MediaViews, at: number): void {
  const keyLength = entryKeyLength(v, at);
  scratch[0] = KV_KEY_PREFIX;
  for (let i = 0; i < keyLength; i++) scratch[i + 1] = v.u8[at + 16 + i];
  const key = (scratchViews[keyLength] ??= scratch.subarray(0, keyLength + 1));
  const ref = grab(space.tree, key);
  try {
    if (ref.state !== 'empty' && entrySequence(v, ref.value) >= entrySequence(v, at)) return;
    replace(space.tree, ref, at, entryOp(v, at) === ENTRY_DEL ? 'zero' : 'value');
  } finally {
    unlock(space.tree, ref);
  }
}

function dropTombstones(space: DaxSpace): number {
  const tombstones: Uint8Array[] = [];
  let keys = 0;
  for (const [key, , info] of space.tree.range({ gte: Uint8Array.of(KV_KEY_PREFIX), lt: Uint8Array.of(KV_KEY_PREFIX + 1) })) {
    if (info.state === 'zero') tombstones.push(key);
    else keys++;
  }
  for (const key of tombstones) space.tree.delete(key);
  return keys;
}
