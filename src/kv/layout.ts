/**
 * Persistent layout of the key-value store: log segments, records and entries.
 *
 * Decisions
 *   - Segments are 2 MiB device extents (order 9) owned by OWNER_KV_SEGMENT = 3 (dax/layout.ts
 *     reserves 3..15 for other layers; DaxSpace recovery leaves them alone). The owner-table
 *     index of a segment is its NONCE: a random 40-bit number chosen at allocation and
 *     repeated in every record header, so records left in an extent by an earlier life of
 *     the same blocks (freed blocks are not zeroed by the device) never validate.
 *   - Index keys: KV_KEY_PREFIX (0x01) ++ user key bytes, in the space's one radix tree. DAX
 *     object page keys are 16 bytes starting with an 8-byte big-endian object id < 2^40, so
 *     their first byte is always 0x00: the two key spaces are disjoint and one tree handle
 *     (already shared by DaxSpace.share) serves both, with ordered scans over [0x01, 0x02).
 *   - Index value of a key: the device byte offset of its live ENTRY (below), < 2^48.
 *
 * Segment (SEGMENT_BYTES): records packed from offset 0, each 8-byte aligned. The first is a
 * SEAL (below). A record whose first 16 bytes are 0 ends the segment (the END MARKER). A
 * segment whose bytes [8, 16) hold RETIRED_HEAD_WORD is empty (compaction retired it).
 *
 * Record header (RECORD_HEADER_BYTES = 32, little-endian):
 *   0  u64  xxh64 of bytes [8, totalBytes): the commit of the whole record (one hash call)
 *   8  u32  directory check: low 32 bits of the record's directory hash (below)
 *   12 u32  magic 0x564b (bits 0..15) | kind (bits 16..23: PUT 1, BATCH 2, PAD 3, SEAL 4) | 0
 *   16 u32  totalBytes: header + entries (or payload), a multiple of 8, <= MAX_RECORD_BYTES
 *           (a PAD may cover the rest of a segment)
 *   20 u32  count: entries that follow (0 for PAD and SEAL)
 *   24 u32  nonce low 32 bits
 *   28 u32  nonce high bits (bits 0..7, < 2^8) | DURABLE WATERMARK / 8 (bits 8..31): every
 *           byte of the segment below the watermark (an offset from the segment start) was
 *           durable before this record was sealed. Recovery tells a crash from damage by it
 *           (recovery.ts): a record that fails its check below some valid record's watermark
 *           had been made durable, so it is damage; at or above every watermark it may be torn.
 * Directory hash: xxh64 (seed 0) of header bytes [12, 32) followed by the first entry's
 * header and key, then for each further entry xxh64 of its header and key seeded with the
 * hash so far. It covers every key, op, sequence and length of the record, not the values:
 * when a record fails its checksum but its directory check holds, recovery still knows which
 * keys (and sequences) it held, and what a DEL said (a DEL is all directory).
 * Entry (ENTRY_HEADER_BYTES = 24, then key, value, zero padding to 8):
 *   0  u16  keyLength (0..MAX_KEY_BYTES: the empty key is a key)
 *   2  u8   op: ENTRY_PUT 1, ENTRY_DEL 2
 *   3  u8   flags (PUT only): bit 0 ENTRY_FLAG_LARGE: the value bytes are a LARGE_REF_BYTES
 *           reference to a DAX object holding the value (large-values.ts); bit 1
 *           ENTRY_FLAG_LOST: the value was lost to damage (written by salvage, valueLength 0):
 *           reads of the key fail with EIO until it is written again
 *   4  u32  valueLength (0 for ENTRY_DEL; LARGE_REF_BYTES for a large PUT): inline bytes
 *   8  u32  sequence low 32 bits
 *   12 u32  sequence high bits (< 2^21): every entry of a record carries the record's sequence
 *           (its version)
 *   16 u32  back pointer low 32 bits: the device offset of the entry of the same key that this
 *           one superseded when it was written (0: the key was absent), so snapshots reach
 *           older versions (snapshots.ts). Meaningful only in the process that wrote it:
 *           recovery and compaction never follow it (a copy made by compaction keeps it)
 *   20 u32  back pointer high bits (< 2^16)
 * SEAL (kind 4, SEAL_BYTES = 48, count 0): its watermark is its own offset (everything before
 * it is durable). Payload: u32 previous segment's nonce low, u32 its high bits, u32 that
 * segment's end offset, u32 0 (all 0 when none). A writer writes one first in every segment it
 * opens (naming the segment it left, now durable through that end: recovery's watermark of
 * that segment), and one at close, so the last records written before a clean close are
 * covered by a watermark too.
 * PAD (kind 3, count 0): zero payload. Salvage writes one over a damaged region so the segment
 * scans clean afterwards.
 *
 * Outside the log: the store's encodings (kv-root.ts) and the msgpack shared structures
 * (structures.ts) live in the device's root area.
 *
 * Persistence ordering: see segment-writer.ts (a record is durable after flush of its lines
 * and one drain; the checksum is what makes it exist, all or nothing, at recovery).
 */
export const OWNER_KV_SEGMENT = 3;
export const KV_KEY_PREFIX = 0x01;
export const SEGMENT_ORDER = 9;
export const SEGMENT_BYTES = 2 * 1024 * 1024;
export const RECORD_HEADER_BYTES = 32;
export const ENTRY_HEADER_BYTES = 24;
export const RECORD_MAGIC = 0x564b;
export const KIND_PUT = 1;
export const KIND_BATCH = 2;
export const KIND_PAD = 3;
export const KIND_SEAL = 4;
/** A SEAL record: header + 16-byte payload (previous segment's nonce and end). */
export const SEAL_BYTES = 48;
/**
 * Largest record: a segment holds its first SEAL, the record and room for the SEAL of close
 * (segment-writer.ts keeps that room).
 */
export const MAX_RECORD_BYTES = SEGMENT_BYTES - 2 * SEAL_BYTES;
export const ENTRY_PUT = 1;
export const ENTRY_DEL = 2;
/** Largest key in bytes (strings: their UTF-8 encoding). */
export const MAX_KEY_BYTES = 1024;
/**
 * Largest value in bytes (256 MiB). Values above LARGE_VALUE_THRESHOLD_BYTES live in a DAX
 * object of their own (the space's object table holds 16384 objects by default: that many
 * large values at most); smaller ones inline in the log.
 */
export const MAX_VALUE_BYTES = 256 * 1024 * 1024;
/** Values of more than 16 KiB are stored as DAX objects (large-values.ts). */
export const LARGE_VALUE_THRESHOLD_BYTES = 16 * 1024;
export const ENTRY_FLAG_LARGE = 1;
export const ENTRY_FLAG_LOST = 2;
/** Inline bytes of a large PUT: u64 object id, u64 value length, u64 xxh64 of the value (little-endian). */
export const LARGE_REF_BYTES = 24;
export const MAX_NONCE = 2 ** 40 - 1;
/**
 * Bytes [8, 16) of a segment compaction retires (one aligned 8-byte store, before its owner
 * record leaves the log): recovery reads such a segment as empty, and never takes it for a live
 * one by its SEAL. Not a record: its magic bytes are not RECORD_MAGIC.
 */
export const RETIRED_HEAD_WORD = 0x2144455249544552n; // 'RETIRED!' little-endian
/** Byte offset of the header word holding the nonce's high bits and the durable watermark / 8. */
export const HEADER_NONCE_HI = 28;
export const WATERMARK_SHIFT = 8;

const TWO_32 = 2 ** 32;

export function align8(n: number): number {
  return (n + 7) & ~7;
}

export function entryBytes(keyLength: number, valueLength: number): number {
  return align8(ENTRY_HEADER_BYTES + keyLength + valueLength);
}

export function splitHi(n: number): number {
  return Math.floor(n / TWO_32);
}

export function joinU32(hi: number, lo: number): number {
  return hi * TWO_32 + (lo >>> 0);
}
