/**
 * What a damaged region of a log segment held: recovery (recovery.ts) calls this for every bad
 * region its scan found below a durable watermark (addon/kv-recovery.cc: damage, not a torn
 * tail). It looks at the region's records one by one from its start:
 *   - exact corrections, each proven by the record's 64-bit checksum: a single wrong byte in
 *     the directory (found by trying every value of every directory byte against the 32-bit
 *     directory check, then confirmed by the checksum), in the directory-check word, in the
 *     zero padding of an entry, in the payload of a SEAL, or in the checksum word itself. A corrected record is
 *     rewritten in place, persisted, and is then an ordinary valid record;
 *   - otherwise, when the directory check holds (or holds after a one-byte correction): the
 *     record's entries are KNOWN (key, op, sequence; a DEL is all directory, so it is known
 *     whole), and only the PUT values are lost;
 *   - otherwise the rest of the region is UNKNOWN: only the sequences around it are.
 * Nothing is read from a poisoned block (`poisoned` says which bytes may not be read).
 *
 * Invariants
 *   - A byte is changed in the media only when the change makes a check hold that did not:
 *     the directory check (32 bits) and then the record checksum (64 bits), or the checksum
 *     alone. A one-byte change kept on the directory check alone (the value also damaged) is
 *     written too: the keys it restores are what recovery then names as lost.
 *
 * Concurrency: runs on the opener before the store is shared. Persistence ordering: each
 * correction is persisted on its own; nothing else is written.
 */
import { xxh64 } from '../device/checksum.js';
import type { Media } from '../device/media.js';
import {
  ENTRY_DEL,
  ENTRY_HEADER_BYTES,
  ENTRY_PUT,
  KIND_BATCH,
  KIND_PAD,
  KIND_PUT,
  KIND_SEAL,
  MAX_KEY_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  SEAL_BYTES,
  align8,
  entryBytes,
  joinU32,
} from './layout.js';
import type { MediaViews } from './records.js';

/** One entry of a damaged record whose directory holds: its device offset and what it says. */
export interface KnownEntry {
  at: number;
  op: 'put' | 'del';
  sequence: number;
  key: Uint8Array;
}

export interface RegionAnalysis {
  /** records corrected in place (device offsets of their starts), now valid */
  corrected: Array<{ at: number; totalBytes: number; what: string }>;
  /** entries of records that stay damaged but whose directory holds */
  known: KnownEntry[];
  /** [start, end) of the region whose entries are unknown, or undefined */
  unknown: { start: number; end: number } | undefined;
}

/** Directory bytes looked at for a one-byte correction, at most (the search is quadratic in them). */
const MAX_SEARCH_BYTES = 1024;

interface Parsed {
  totalBytes: number;
  entries: Array<{ e: number; keyLength: number; valueLength: number; op: number }>;
}

/**
 * The record at `at` read as it is: its lengths must lie inside [at, limit) and its entries
 * fill it exactly. `dirBytes` collects the offsets of its directory bytes as far as they
 * could be parsed (also on failure: the candidates for a correction).
 */
function parse(v: MediaViews, at: number, limit: number, dirBytes?: number[]): Parsed | undefined {
  v = v.at(at);
  const u32 = v.u32;
  const b = v.base;
  const w = (at - b) / 4;
  if (dirBytes !== undefined)
    for (let p = at + 12; p < Math.min(limit, at + RECORD_HEADER_BYTES); p++) dirBytes.push(p);
  if (at + RECORD_HEADER_BYTES > limit) return undefined;
  if ((u32[w + 3] & 0xffff) !== RECORD_MAGIC) return undefined;
  const kind = (u32[w + 3] >>> 16) & 0xff;
  const totalBytes = u32[w + 4];
  const count = u32[w + 5];
  if (totalBytes < RECORD_HEADER_BYTES || totalBytes % 8 !== 0 || at + totalBytes > limit) return undefined;
  if (kind === KIND_PAD || kind === KIND_SEAL) {
    if (count !== 0 || (kind === KIND_SEAL && totalBytes !== SEAL_BYTES)) return undefined;
    return { totalBytes, entries: [] };
  }
  if (kind !== KIND_PUT && kind !== KIND_BATCH) return undefined;
  if (count === 0 || count > (totalBytes - RECORD_HEADER_BYTES) / ENTRY_HEADER_BYTES) return undefined;
  const end = at + totalBytes;
  const entries: Parsed['entries'] = [];
  let e = at + RECORD_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (e + ENTRY_HEADER_BYTES > end) return undefined;
    if (dirBytes !== undefined && dirBytes.length < MAX_SEARCH_BYTES)
      for (let p = e; p < e + ENTRY_HEADER_BYTES; p++) dirBytes.push(p);
    const word0 = u32[(e - b) / 4];
    const keyLength = word0 & 0xffff;
    const op = (word0 >>> 16) & 0xff;
    const valueLength = u32[(e - b) / 4 + 1];
    if (keyLength === 0 || keyLength > MAX_KEY_BYTES || (op !== ENTRY_PUT && op !== ENTRY_DEL)) return undefined;
    if (e + ENTRY_HEADER_BYTES + keyLength > end) return undefined;
    if (dirBytes !== undefined && dirBytes.length < MAX_SEARCH_BYTES)
      for (let p = e + ENTRY_HEADER_BYTES; p < e + ENTRY_HEADER_BYTES + keyLength; p++) dirBytes.push(p);
    entries.push({ e, keyLength, valueLength, op });
    const next = e + entryBytes(keyLength, valueLength);
    if (next > end || next < e) return undefined;
    e = next;
  }
  return e === end ? { totalBytes, entries } : undefined;
}

/** The directory hash (layout.ts) of a parsed record, low 32 bits. */
function directoryHash(v: MediaViews, at: number, p: Parsed): number {
  v = v.at(at);
  const b = v.base;
  if (p.entries.length === 0)
    return Number(xxh64(v.u8.subarray(at - b + 12, at - b + RECORD_HEADER_BYTES)) & 0xffff_ffffn);
  let h = 0n;
  p.entries.forEach(({ e, keyLength }, i) => {
    const dirEnd = e + ENTRY_HEADER_BYTES + keyLength;
    h = i === 0 ? xxh64(v.u8.subarray(at - b + 12, dirEnd - b)) : xxh64(v.u8.subarray(e - b, dirEnd - b), h);
  });
  return Number(h & 0xffff_ffffn);
}

function storedChecksum(v: MediaViews, at: number): bigint {
  v = v.at(at);
  const w = (at - v.base) / 4;
  return (BigInt(v.u32[w + 1]) << 32n) | BigInt(v.u32[w]);
}

function checksumOf(v: MediaViews, at: number, totalBytes: number): bigint {
  v = v.at(at);
  return xxh64(v.u8.subarray(at - v.base + 8, at - v.base + totalBytes));
}

function differInOneByte(a: bigint, b: bigint): boolean {
  let bytes = 0;
  for (let x = a ^ b; x !== 0n; x >>= 8n) if ((x & 0xffn) !== 0n) bytes++;
  return bytes === 1;
}

/**
 * Analyzes the damaged region [start, end) of the segment whose records carry `nonce`.
 * `readable(from, to)`: whether [from, to) lies outside every poisoned block.
 */
export function analyzeRegion(
  v: MediaViews,
  media: Media,
  start: number,
  end: number,
  nonce: number,
  readable: (from: number, to: number) => boolean,
): RegionAnalysis {
  const out: RegionAnalysis = { corrected: [], known: [], unknown: undefined };
  let at = start;
  while (at < end) {
    const limit = firstUnreadable(at, end, readable);
    const found = lookInto(v, media, at, limit, nonce, out);
    if (found === undefined) {
      out.unknown = { start: at, end };
      break;
    }
    at += found;
  }
  return out;
}

/** The end of the readable run of bytes from `at` (8-byte granules), at most `end`. */
function firstUnreadable(at: number, end: number, readable: (from: number, to: number) => boolean): number {
  if (readable(at, end)) return end;
  let lo = at;
  let hi = end; // readable(at, lo) holds, readable(at, hi) does not
  while (hi - lo > 8) {
    const mid = lo + Math.floor((hi - lo) / 16) * 8;
    if (readable(at, mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * The record at `at` whose bytes up to `limit` may be read: corrected (recorded in out.corrected),
 * or its entries known (out.known). Returns its length, or undefined when nothing about it holds.
 */
function lookInto(
  v: MediaViews,
  media: Media,
  at: number,
  limit: number,
  nonce: number,
  out: RegionAnalysis,
): number | undefined {
  v = v.at(at);
  if (at + RECORD_HEADER_BYTES > limit) return undefined;
  const stored = v.u32[(at - v.base) / 4 + 2];
  let parsed = parse(v, at, limit);
  let what = '';
  if (parsed !== undefined && directoryHash(v, at, parsed) !== stored) {
    const directory = directoryHash(v, at, parsed);
    if (readableWhole(at, parsed.totalBytes, limit) && wholeRecordHolds(v, at, parsed, directory)) {
      // Only the directory-check word was wrong: the rest is proven by the checksum.
      v.u32[(at - v.base) / 4 + 2] = directory;
      media.persist(at + 8, 4);
      out.corrected.push({ at, totalBytes: parsed.totalBytes, what: 'directory check word' });
      return parsed.totalBytes;
    }
    parsed = undefined;
  }
  if (parsed === undefined) {
    const fixed = correctDirectory(v, at, limit, stored);
    if (fixed === undefined) return undefined;
    media.persist(fixed.p, 1); // proven by the directory check: the keys are right again
    parsed = fixed.parsed;
    what = `directory byte at offset ${fixed.p}`;
  }
  if (!sameNonce(v, at, nonce)) return undefined;
  if (!readableWhole(at, parsed.totalBytes, limit)) {
    recordKnown(v, at, parsed, out);
    return parsed.totalBytes;
  }
  // The directory holds: the checksum decides whether the rest does, after the remaining
  // one-byte suspects (padding, the checksum word itself).
  const sum = checksumOf(v, at, parsed.totalBytes);
  if (sum === storedChecksum(v, at)) {
    out.corrected.push({ at, totalBytes: parsed.totalBytes, what: what || 'nothing (valid as found)' });
    return parsed.totalBytes;
  }
  if (what === '' && zeroPadding(v, media, at, parsed)) {
    out.corrected.push({ at, totalBytes: parsed.totalBytes, what: 'entry padding' });
    return parsed.totalBytes;
  }
  if (what === '' && parsed.entries.length === 0 && correctPayload(v, media, at, parsed.totalBytes)) {
    out.corrected.push({ at, totalBytes: parsed.totalBytes, what: 'payload byte of a SEAL or PAD' });
    return parsed.totalBytes;
  }
  if (what === '' && differInOneByte(sum, storedChecksum(v, at))) {
    v.u32[(at - v.base) / 4] = Number(sum & 0xffff_ffffn);
    v.u32[(at - v.base) / 4 + 1] = Number(sum >> 32n);
    media.persist(at, 8);
    out.corrected.push({ at, totalBytes: parsed.totalBytes, what: 'checksum word' });
    return parsed.totalBytes;
  }
  recordKnown(v, at, parsed, out);
  return parsed.totalBytes;
}

function readableWhole(at: number, totalBytes: number, limit: number): boolean {
  return at + totalBytes <= limit;
}

function sameNonce(v: MediaViews, at: number, nonce: number): boolean {
  v = v.at(at);
  const w = (at - v.base) / 4;
  return joinU32(v.u32[w + 7] & 0xff, v.u32[w + 6]) === nonce;
}

/** Whether the record's checksum holds with `directory` as its directory-check word (nothing is changed). */
function wholeRecordHolds(v: MediaViews, at: number, p: Parsed, directory: number): boolean {
  v = v.at(at);
  const w = (at - v.base) / 4 + 2;
  const was = v.u32[w];
  v.u32[w] = directory;
  const holds = checksumOf(v, at, p.totalBytes) === storedChecksum(v, at);
  v.u32[w] = was;
  return holds;
}

/** Largest payload of an entry-less record (SEAL, PAD) searched byte by byte against the checksum. */
const MAX_PAYLOAD_SEARCH_BYTES = 32;

/**
 * A SEAL's (or a short PAD's) payload holds no directory: tries every value of each of its
 * bytes for one that makes the record's checksum hold (persisted when found).
 */
function correctPayload(v: MediaViews, media: Media, at: number, totalBytes: number): boolean {
  v = v.at(at);
  if (totalBytes - RECORD_HEADER_BYTES > MAX_PAYLOAD_SEARCH_BYTES) return false;
  const stored = storedChecksum(v, at);
  for (let p = at + RECORD_HEADER_BYTES; p < at + totalBytes; p++) {
    const was = v.u8[p - v.base];
    for (let x = 1; x < 256; x++) {
      v.u8[p - v.base] = was ^ x;
      if (checksumOf(v, at, totalBytes) === stored) {
        media.persist(p, 1);
        return true;
      }
    }
    v.u8[p - v.base] = was;
  }
  return false;
}

/** Zeroes any nonzero padding byte of the record's entries when that makes its checksum hold (persisted). */
function zeroPadding(v: MediaViews, media: Media, at: number, p: Parsed): boolean {
  v = v.at(at);
  const changed: Array<[number, number]> = [];
  for (const { e, keyLength, valueLength } of p.entries) {
    const from = e + ENTRY_HEADER_BYTES + keyLength + valueLength;
    for (let b = from; b < e + align8(ENTRY_HEADER_BYTES + keyLength + valueLength); b++)
      if (v.u8[b - v.base] !== 0) changed.push([b, v.u8[b - v.base]]);
  }
  if (changed.length === 0) return false;
  for (const [b] of changed) v.u8[b - v.base] = 0;
  if (checksumOf(v, at, p.totalBytes) === storedChecksum(v, at)) {
    for (const [b] of changed) media.persist(b, 1);
    return true;
  }
  for (const [b, was] of changed) v.u8[b - v.base] = was;
  return false;
}

/**
 * Tries every value of every directory byte (as far as the damaged record parses, at most
 * MAX_SEARCH_BYTES of them) for one that makes the directory check hold; exactly one must.
 * The change is kept (and persisted) only then; `what` names it.
 */
function correctDirectory(
  v: MediaViews,
  at: number,
  limit: number,
  stored: number,
): { parsed: Parsed; p: number } | undefined {
  const candidates: number[] = [];
  parse(v, at, limit, candidates);
  let found: { p: number; value: number; parsed: Parsed } | undefined;
  for (const p of candidates) {
    v = v.at(at);
    const was = v.u8[p - v.base];
    for (let x = 1; x < 256; x++) {
      v.u8[p - v.base] = was ^ x;
      const parsed = parse(v, at, limit);
      if (parsed !== undefined && directoryHash(v, at, parsed) === stored) {
        if (found !== undefined) {
          v.u8[p - v.base] = was;
          return undefined; // two corrections hold: neither is proven
        }
        found = { p, value: was ^ x, parsed };
      }
    }
    v.u8[p - v.base] = was;
  }
  if (found === undefined) return undefined;
  v.u8[found.p - v.base] = found.value;
  return { parsed: found.parsed, p: found.p };
}

function recordKnown(v: MediaViews, at: number, p: Parsed, out: RegionAnalysis): void {
  v = v.at(at);
  for (const { e, keyLength, op } of p.entries) {
    out.known.push({
      at: e,
      op: op === ENTRY_DEL ? 'del' : 'put',
      sequence: joinU32(v.u32[(e - v.base) / 4 + 3], v.u32[(e - v.base) / 4 + 2]),
      key: v.u8.slice(e - v.base + ENTRY_HEADER_BYTES, e - v.base + ENTRY_HEADER_BYTES + keyLength),
    });
  }
}
