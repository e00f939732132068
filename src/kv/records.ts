/**
 * Encoding and validation of log records and their entries (layout.ts has the byte layout).
 *
 * Invariants
 *   - A record validates only if its magic, kind, lengths, nonce and xxh64 checksum all
 *     agree; every entry it holds then lies inside it. Nothing else is ever trusted.
 *   - Entry bytes are written before the record is sealed; the checksum (sealStagedRecord,
 *     in the stage) is computed last, over exactly what is then copied into the log.
 *
 * Concurrency: records are written only by the thread that reserved them (segment-writer.ts);
 * once sealed and published they are immutable.
 *
 * Persistence ordering: none here (see segment-writer.ts).
 */
import { assert } from '../assert.js';
import { isBroken } from '../test-break.js';
import { xxh64 } from '../device/checksum.js';
import {
  logChecksumMatches,
  logChecksumMatchesInWalk,
  sealStagedBatchChecksums,
  sealStagedChecksums,
  stageViews,
  stagedRecord,
  startLogChecksumWalk,
} from './record-stage.js';
import type { MediaViews } from './media-views.js';
import {
  ENTRY_DEL,
  ENTRY_HEADER_BYTES,
  ENTRY_PUT,
  KIND_BATCH,
  KIND_PAD,
  KIND_PUT,
  KIND_SEAL,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  SEAL_BYTES,
  WATERMARK_SHIFT,
  entryBytes,
  joinU32,
  splitHi,
} from './layout.js';

export { MediaViews, WINDOW_BYTES, mediaViews } from './media-views.js';

/**
 * Writes one entry at `at` (key without the index prefix byte: `key` is the index key, its
 * byte 0 skipped). Returns the offset after it. The sequence and the back pointer are filled in
 * later, under the key's entry lock (setEntrySequence, setEntryPrevious).
 */
export function writeEntry(
  v: MediaViews,
  at: number,
  op: number,
  indexKey: Uint8Array,
  value: Uint8Array | string | undefined,
  valueLength: number,
  flags = 0,
): number {
  v = v.at(at);
  const keyLength = indexKey.length - 1;
  const o = at - v.base;
  const w = o / 4;
  v.u32[w] = (keyLength | (op << 16) | (flags << 24)) >>> 0;
  v.u32[w + 1] = valueLength;
  v.u32[w + 2] = 0;
  v.u32[w + 3] = 0;
  v.u32[w + 4] = 0;
  v.u32[w + 5] = 0;
  const keyAt = o + ENTRY_HEADER_BYTES;
  if (keyLength <= 32) for (let i = 0; i < keyLength; i++) v.u8[keyAt + i] = indexKey[i + 1];
  else v.u8.set(indexKey.subarray(1), keyAt);
  const valueAt = keyAt + keyLength;
  if (typeof value === 'string') v.buf.write(value, valueAt, valueLength, 'utf8');
  else if (value !== undefined) v.u8.set(value, valueAt);
  const end = o + entryBytes(keyLength, valueLength);
  for (let i = valueAt + valueLength; i < end; i++) v.u8[i] = 0; // padding is checksummed: make it deterministic (< 8 bytes: a loop, not the fill builtin)
  return end + v.base;
}

export function setEntrySequence(v: MediaViews, at: number, sequence: number): void {
  v = v.at(at);
  const w = (at - v.base) / 4;
  v.u32[w + 2] = sequence >>> 0;
  v.u32[w + 3] = splitHi(sequence);
}

/** The entry's back pointer: the device offset of the entry of its key it superseded (0: none; layout.ts). */
export function setEntryPrevious(v: MediaViews, at: number, previous: number): void {
  v = v.at(at);
  const w = (at - v.base) / 4;
  v.u32[w + 4] = previous >>> 0;
  v.u32[w + 5] = splitHi(previous);
}

export function entryPrevious(v: MediaViews, at: number): number {
  v = v.at(at);
  const w = (at - v.base) / 4;
  return joinU32(v.u32[w + 5], v.u32[w + 4]);
}

export function entryKeyLength(v: MediaViews, at: number): number {
  v = v.at(at);
  return v.u32[(at - v.base) / 4] & 0xffff;
}

export function entryOp(v: MediaViews, at: number): number {
  v = v.at(at);
  return (v.u32[(at - v.base) / 4] >>> 16) & 0xff;
}

/** Entry flags (byte 3): ENTRY_FLAG_LARGE = the value is a DAX object reference (large-values.ts). */
export function entryFlags(v: MediaViews, at: number): number {
  v = v.at(at);
  return v.u32[(at - v.base) / 4] >>> 24;
}

export function entryValueLength(v: MediaViews, at: number): number {
  v = v.at(at);
  return v.u32[(at - v.base) / 4 + 1];
}

export function entrySequence(v: MediaViews, at: number): number {
  v = v.at(at);
  const w = (at - v.base) / 4;
  return joinU32(v.u32[w + 3], v.u32[w + 2]);
}

/** Offset of the value bytes of the entry at `at`. */
export function entryValueOffset(v: MediaViews, at: number): number {
  return at + ENTRY_HEADER_BYTES + entryKeyLength(v, at);
}

/**
 * The header words after the checksum and the directory check (bytes 12..32): both are
 * computed over them afterwards. `watermark`: the segment offset below which every byte was
 * durable when this record was sealed (layout.ts).
 */
export function writeRecordHeader(
  v: MediaViews,
  at: number,
  kind: number,
  count: number,
  totalBytes: number,
  nonce: number,
  watermark: number,
): void {
  v = v.at(at);
  const w = (at - v.base) / 4;
  v.u32[w + 3] = RECORD_MAGIC | (kind << 16);
  v.u32[w + 4] = totalBytes;
  v.u32[w + 5] = count;
  v.u32[w + 6] = nonce >>> 0;
  v.u32[w + 7] = (splitHi(nonce) | ((watermark / 8) << WATERMARK_SHIFT)) >>> 0;
}

/** The durable watermark of the record at `at` (an offset inside its segment; layout.ts). */
export function recordWatermark(v: MediaViews, at: number): number {
  v = v.at(at);
  return (v.u32[(at - v.base) / 4 + 7] >>> WATERMARK_SHIFT) * 8;
}

export function recordKind(v: MediaViews, at: number): number {
  v = v.at(at);
  return (v.u32[(at - v.base) / 4 + 3] >>> 16) & 0xff;
}

export function recordTotalBytes(v: MediaViews, at: number): number {
  v = v.at(at);
  return v.u32[(at - v.base) / 4 + 4];
}

export function recordCount(v: MediaViews, at: number): number {
  v = v.at(at);
  return v.u32[(at - v.base) / 4 + 5];
}

/**
 * The directory hash of the record at `at` (layout.ts), low 32 bits, reading its header's
 * count and its entries' lengths as they are; undefined when those lengths run past `end`.
 * For records recovery must look into (records.ts's directory check): not a hot path.
 */
export function directoryCheck(v: MediaViews, at: number, end: number): number | undefined {
  v = v.at(at);
  const count = recordCount(v, at);
  if (at + RECORD_HEADER_BYTES > end) return undefined;
  const b = v.base;
  if (count === 0) return Number(xxh64(v.u8.subarray(at - b + 12, at - b + RECORD_HEADER_BYTES)) & 0xffff_ffffn);
  let e = at + RECORD_HEADER_BYTES;
  let h = 0n;
  for (let i = 0; i < count; i++) {
    if (e + ENTRY_HEADER_BYTES > end) return undefined;
    const keyLength = entryKeyLength(v, e);
    const dirEnd = e + ENTRY_HEADER_BYTES + keyLength;
    if (dirEnd > end) return undefined;
    h = i === 0 ? xxh64(v.u8.subarray(at - b + 12, dirEnd - b)) : xxh64(v.u8.subarray(e - b, dirEnd - b), h);
    e += entryBytes(keyLength, entryValueLength(v, e));
  }
  return Number(h & 0xffff_ffffn);
}

/** The directory check stored in the record at `at`. */
export function storedDirectoryCheck(v: MediaViews, at: number): number {
  v = v.at(at);
  return v.u32[(at - v.base) / 4 + 2];
}

/** Records up to this size are copied out of the stage by a word loop, larger ones by one memcpy. */
const WORD_COPY_MAX_BYTES = 512;

/**
 * Seals the record composed at offset 0 of the stage (record-stage.ts: hashed in place) and
 * copies it to `at` in the log: the log bytes are exactly the hashed bytes. A small record (a
 * put of a small value) is copied by 32-bit words (records are 8-aligned, whole multiples of
 * 8 bytes): TypedArray.prototype.set is a builtin call and a memmove call per record, a
 * sizeable share of a small 'sync' put.
 */
export function sealStagedRecord(
  v: MediaViews,
  at: number,
  kind: number,
  count: number,
  totalBytes: number,
  nonce: number,
  watermark: number,
): void {
  v = v.at(at);
  writeRecordHeader(stageViews, 0, kind, count, totalBytes, nonce, watermark);
  if (count <= 1) {
    // One contiguous directory (header words, and the one entry's header and key): both hashes
    // in one wasm call, no BigInt (record-stage.ts).
    const dirEnd =
      count === 0 ? RECORD_HEADER_BYTES : RECORD_HEADER_BYTES + ENTRY_HEADER_BYTES + (stageViews.u32[8] & 0xffff);
    sealStagedChecksums(totalBytes, dirEnd);
  } else {
    sealStagedBatchChecksums(totalBytes, count);
  }
  if (totalBytes <= WORD_COPY_MAX_BYTES) {
    const from = stageViews.u32;
    const to = v.u32;
    // Word index of `at` in its window (below 4 GiB): a shift keeps it an integer for the
    // loop's index arithmetic (at / 4 gives a float, which the loop's index arithmetic pays for).
    const w0 = (at - v.base) >>> 2;
    for (let w = 0; w < totalBytes >>> 2; w++) to[w0 + w] = from[w];
  } else v.u8.set(stagedRecord(totalBytes), at - v.base);
}

/**
 * Writes a SEAL record at `at` straight into the log (not through the stage: a writer opens a
 * segment from reserve(), while the caller's record waits composed in the stage), hashed
 * here; not a hot path (one per segment and one per close). Its watermark is its own offset
 * in the segment. `previous`: the segment the writer left (nonce, end offset), or none.
 */
export function writeSealRecord(
  v: MediaViews,
  at: number,
  segmentBase: number,
  nonce: number,
  previous: { nonce: number; end: number } | undefined,
): void {
  v = v.at(at);
  v.u8.fill(0, at - v.base, at - v.base + SEAL_BYTES);
  writeRecordHeader(v, at, KIND_SEAL, 0, SEAL_BYTES, nonce, at - segmentBase);
  const w = (at - v.base) / 4 + RECORD_HEADER_BYTES / 4;
  if (previous !== undefined) {
    v.u32[w] = previous.nonce >>> 0;
    v.u32[w + 1] = splitHi(previous.nonce);
    v.u32[w + 2] = previous.end;
  }
  sealInPlace(v, at, SEAL_BYTES);
}

/** A SEAL's link to the segment its writer left before it: (nonce, end offset), or undefined. */
export function sealPrevious(v: MediaViews, at: number): { nonce: number; end: number } | undefined {
  const w = (at - v.base) / 4 + RECORD_HEADER_BYTES / 4;
  const nonce = joinU32(v.u32[w + 1], v.u32[w]);
  return nonce === 0 ? undefined : { nonce, end: v.u32[w + 2] };
}

/**
 * Writes a PAD record covering [at, at + totalBytes) (zero payload), hashed in place: salvage
 * writes one over a damaged region (recovery.ts). Not a hot path.
 */
export function writePadRecord(v: MediaViews, at: number, totalBytes: number, nonce: number, watermark: number): void {
  v = v.at(at);
  v = v.at(at);
  v.u8.fill(0, at - v.base, at - v.base + totalBytes);
  writeRecordHeader(v, at, KIND_PAD, 0, totalBytes, nonce, watermark);
  sealInPlace(v, at, totalBytes);
}

/** Stores the directory check and the checksum of the record at `at` whose other bytes are written. */
function sealInPlace(v: MediaViews, at: number, totalBytes: number): void {
  v = v.at(at);
  const dir = directoryCheck(v, at, at + totalBytes);
  assert(dir !== undefined, "sealInPlace: the record's directory runs past it");
  const o = at - v.base;
  v.u32[o / 4 + 2] = dir;
  const sum = xxh64(v.u8.subarray(o + 8, o + totalBytes));
  v.u32[o / 4] = Number(sum & 0xffff_ffffn);
  v.u32[o / 4 + 1] = Number(sum >> 32n);
}

/**
 * Calls fn(at, check) for each valid record of the segment at `base` in offset order, as
 * recovery reads a segment it found no damage in: up to the first record that does not
 * validate (the end marker, or a torn tail) -- except that a poisoned block (`readable`
 * false for a range touching it) is never read: a record running into one, and the block,
 * are skipped and the walk resyncs after it (every 8 bytes, until a record validates).
 * `check` is one object per walk, rewritten for each record: read it during the call only.
 * Without poison the checksums are checked in the walk window (record-stage.ts
 * logChecksumMatchesInWalk: one copy per 64 KiB, not one per record).
 */
export function forEachRecord(
  v: MediaViews,
  base: number,
  segmentBytes: number,
  nonce: number,
  readable: ((from: number, to: number) => boolean) | undefined,
  fn: (at: number, check: { readonly kind: number; readonly count: number; readonly totalBytes: number }) => void,
): void {
  v = v.at(base);
  const end = base + segmentBytes;
  const check: CheckedRecord = { kind: 0, count: 0, totalBytes: 0, reason: '' };
  // The walk window may read any byte up to the segment's end: only when none is poisoned.
  const windowEnd = readable === undefined ? end : 0;
  startLogChecksumWalk();
  let resync = false;
  for (let at = base; at + RECORD_HEADER_BYTES <= end;) {
    if (readable !== undefined) {
      if (!readable(at, at + RECORD_HEADER_BYTES)) {
        resync = true;
        at = base + (Math.floor((at - base) / 4096) + 1) * 4096;
        continue;
      }
      const total = v.u32[(at - v.base) / 4 + 4];
      if (total >= RECORD_HEADER_BYTES && total % 8 === 0 && at + total <= end && !readable(at, at + total)) {
        resync = true;
        at += 8;
        continue;
      }
    }
    if (checkRecordInto(v, at, end, nonce, check, windowEnd) === CHECK_OK) {
      resync = false;
      fn(at, check);
      at += check.totalBytes;
    } else if (resync) at += 8;
    else return;
  }
}

export type RecordCheck =
  | { readonly status: 'end' } // a zero header word: nothing was ever written here
  | { readonly status: 'invalid'; readonly reason: string } // torn, uncommitted, or not ours
  | { readonly status: 'ok'; readonly kind: number; readonly count: number; readonly totalBytes: number };

/**
 * Validates the record at `at` of a segment ending at `segmentEnd` whose owner-table nonce is
 * `nonce`. Recovery's native scan (addon/kv-recovery.cc) makes the same checks in the same
 * order with the same reasons (test kv-recovery-scan holds them to it): a change here goes there.
 */
export function checkRecord(v: MediaViews, at: number, segmentEnd: number, nonce: number): RecordCheck {
  const status = checkRecordInto(v, at, segmentEnd, nonce, checked);
  if (status === CHECK_END) return { status: 'end' };
  if (status === CHECK_INVALID) return { status: 'invalid', reason: checked.reason };
  return { status: 'ok', kind: checked.kind, count: checked.count, totalBytes: checked.totalBytes };
}

const CHECK_END = 0;
const CHECK_OK = 1;
const CHECK_INVALID = 2;

/** What checkRecordInto found: kind, count and totalBytes when CHECK_OK, reason when CHECK_INVALID. */
interface CheckedRecord {
  kind: number;
  count: number;
  totalBytes: number;
  reason: string;
}

const checked: CheckedRecord = { kind: 0, count: 0, totalBytes: 0, reason: '' };

/**
 * checkRecord's checks: returns CHECK_END, CHECK_OK or CHECK_INVALID and fills `out`.
 * `windowEnd`: nonzero in a walk whose bytes up to it are all readable (forEachRecord), whose
 * checksums are checked in the walk window.
 */
function checkRecordInto(
  v: MediaViews,
  at: number,
  segmentEnd: number,
  nonce: number,
  out: CheckedRecord,
  windowEnd = 0,
): number {
  v = v.at(at);
  if (at + RECORD_HEADER_BYTES > segmentEnd) return CHECK_END;
  const w = (at - v.base) / 4;
  const word0 = v.u32[w + 3];
  if (v.u32[w] === 0 && v.u32[w + 1] === 0 && v.u32[w + 2] === 0 && word0 === 0) return CHECK_END;
  if ((word0 & 0xffff) !== RECORD_MAGIC) return invalid(out, 'bad magic');
  const kind = (word0 >>> 16) & 0xff;
  if (kind !== KIND_PUT && kind !== KIND_BATCH && kind !== KIND_PAD && kind !== KIND_SEAL)
    return invalid(out, `unknown kind ${kind}`);
  const totalBytes = v.u32[w + 4];
  const count = v.u32[w + 5];
  if (totalBytes < RECORD_HEADER_BYTES || totalBytes % 8 !== 0 || at + totalBytes > segmentEnd)
    return invalid(out, `length ${totalBytes}`);
  if (joinU32(v.u32[w + 7] & 0xff, v.u32[w + 6]) !== nonce) return invalid(out, 'nonce of another segment life');
  if (!recordChecksumMatches(v, at, totalBytes, windowEnd)) return invalid(out, 'checksum mismatch');
  if (kind === KIND_PUT || kind === KIND_BATCH) {
    if (!entriesFit(v, at + RECORD_HEADER_BYTES, at + totalBytes, count))
      return invalid(out, 'entries overrun the record');
  } else if (count !== 0 || (kind === KIND_SEAL && totalBytes !== SEAL_BYTES))
    return invalid(out, 'entries overrun the record');
  out.kind = kind;
  out.count = count;
  out.totalBytes = totalBytes;
  return CHECK_OK;
}

/** Whether the record's stored xxh64 matches its bytes [8, totalBytes); windowEnd as checkRecordInto's. */
function recordChecksumMatches(v: MediaViews, at: number, totalBytes: number, windowEnd: number): boolean {
  if (isBroken('kv-skip-checksum')) return true; // accepts torn and corrupted records
  if (windowEnd !== 0) return logChecksumMatchesInWalk(v, at + 8, at + totalBytes, at, windowEnd);
  return logChecksumMatches(v, at + 8, at + totalBytes, at);
}

function invalid(out: CheckedRecord, reason: string): number {
  out.reason = reason;
  return CHECK_INVALID;
}

function entriesFit(v: MediaViews, from: number, end: number, count: number): boolean {
  let at = from;
  for (let i = 0; i < count; i++) {
    if (at + ENTRY_HEADER_BYTES > end) return false;
    const op = entryOp(v, at);
    if ((op !== ENTRY_PUT && op !== ENTRY_DEL) || entryKeyLength(v, at) === 0) return false;
    at += entryBytes(entryKeyLength(v, at), entryValueLength(v, at));
    if (at > end) return false;
  }
  return at === end;
}
