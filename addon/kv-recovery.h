// The key-value store's recovery loops: the segment scan (validate every record, checksum
// included, and write one sort record per entry) and the winner pick (order the entries by
// key, keep each key's newest). src/kv/recovery.ts owns the algorithm, its invariants and
// the report; src/kv/layout.ts owns the byte layout read here (record header, entry header),
// and src/kv/recovery-native.ts the io slots and codes below. They run here because in
// JavaScript they are most of an open, run once as cold JIT code (docs/PERFORMANCE.md).
//
// Sort record (8 u32 words per entry; written by the scan, read by the pick):
//   0     user key length (bits 0..14) | LOST (bit 15: a salvage marker, layout.ts
//         ENTRY_FLAG_LOST) | DEL (bit 16) | bits 32..44 of entry offset / 8 (bits 17..29)
//   1..4  key bytes 0..15, big-endian in each word, zero past the key's end
//   5, 6  sequence low 32 bits, high bits
//   7     bits 0..31 of entry offset / 8
//
// Invariants
//   - The scan reads no byte of a block the poison bitmap names: a record that claims such
//     bytes is bad (reason poisoned) before it is hashed, and resync skips the block. A SIGBUS
//     anyway (poison nobody reported) stops it as EIO, never kills the process.
//   - The scan writes a record's entries only after the whole record validated, and only if
//     they all fit in `out` (else FULL, nothing written for that record: call again with a
//     larger array from io.at); a bad region only if `regions` has room (else REGIONS_FULL,
//     the same way).
//   - A bad region at or past the segment's durable watermark (the highest any valid record
//     carries, or the vouched end io passes in) that is not poison is a torn tail: when the
//     scan returns, no entry of it or after it is counted (CUT).
//   - The pick reads every sort record before it writes any output, so its output arrays may
//     share the sort records' buffer; it never writes past an output array (-ERANGE).
//
// Concurrency: the caller guarantees nobody writes the segments or arrays meanwhile
// (recovery runs before the store is shared). Persistence ordering: writes nothing persistent.
#pragma once

#include <napi.h>

namespace daxstore {

// JsScanKvSegment(media: Uint8Array, io: Float64Array, out: Uint32Array, poison: Uint32Array,
//   regions: Float64Array, bias = 0) -> status or -EINVAL. media holds the device's bytes
// [bias, bias + length) (the whole mapping, or a segment read into a buffer); every offset
// in io, out and regions is a device offset. poison: one bit per block of the segment
// (empty: none); regions: REGION_WORDS doubles per bad region found (recovery-native.ts).
Napi::Value JsScanKvSegment(const Napi::CallbackInfo& info);

// JsVerifyKvSegments(media: Uint8Array | SharedArrayBuffer, regionId (-1: none), segs:
//   Float64Array, segmentBytes, flags, out: Float64Array, threads) -> 0 or -EINVAL / -EBADF.
// The check of what an index checkpoint covers: every record of each segment's [base,
// base + used) valid (header, nonce, checksum, entries; a record may not claim past the
// segment's segmentBytes) and ending exactly at base + used; reads the records, writes nothing.
// segs holds [base, used, nonce] per segment (device offsets; media holds device bytes from
// 0), out gets [status (0 valid, 1 a bad record, -EIO a media error, 2 not checked because
// another failed first), where it stopped (the first bad record), its reason, entries,
// records (of the valid ones), the XXH3-64 of its bytes [0, used) as two u32 (low, high), of the
// bytes its records were checked in] per segment. flags: test flags as for the scan
// (skip-checksum), and 16: hash only (no record checked: an index checkpoint's covered segments
// at open, compared with the hashes it stores), through the mapping, or with 32 too read with
// pread(2) in small chunks. Each segment is read with pread(2) from the region's file when
// regionId names one that has a file, else (or when the read fails) through the mapping under
// the SIGBUS guard. threads >= 2: one more thread takes segments off the same list; both stop
// at the first failure.
Napi::Value JsVerifyKvSegments(const Napi::CallbackInfo& info);

// JsVerifyKvSegmentsStart(media, regionId, segs, segmentBytes, flags, threads[, ahead:
// Uint8Array[, fill: Uint8Array]]) -> a job (an external) or -EINVAL / -EBADF: the same check
// as JsVerifyKvSegments, its arguments checked the same way, run by `threads` threads started
// now (0: none), so the caller's thread can work meanwhile. With `ahead` (bytes of a mapping the
// caller is about to read through from its start), the first helper first fills their page
// tables (MADV_POPULATE_READ, 2 MiB at a time) so that the caller's read takes no faults; with
// `fill` (memory the caller is about to write), then theirs for writing (MADV_POPULATE_WRITE:
// fresh pages allocated and zeroed there, off the caller's thread). Neither changes a byte. JsVerifyKvSegmentsFinish(job, out: Float64Array) -> the workers' CPU ms, or
// -EINVAL (finished already, out too short): the caller's thread takes the segments no helper
// has taken yet, joins the helpers and copies the verdicts (as JsVerifyKvSegments' out) into
// out. A job must be finished before the media it reads is unmapped; one never finished is
// stopped and joined when collected.
// `fill` is populated 2 MiB at a time; once one 2 MiB page took more than `smallAfterNs` (a
// number after fill; negative or absent: never) of that thread's CPU, the rest's whole 2 MiB
// pages are advised small (MADV_NOHUGEPAGE) first. JsVerifyKvSegmentsFinish(job, out, stop,
// fillOut: Float64Array(2)) also writes the fill's CPU ms and the byte of it from which it
// went small (-1: not) into fillOut.
// JsVerifyKvSegmentsFinish(job, out, stop: true) stops the job instead: no segment is taken
// after it, the helpers are joined, and the verdicts of the segments not checked are 2.
// JsVerifyKvSegmentsDone(job) -> true once every helper has returned (finish then waits for
// nothing and, unless none started, checks nothing on the caller's thread), or the job is finished.
Napi::Value JsVerifyKvSegmentsStart(const Napi::CallbackInfo& info);
Napi::Value JsVerifyKvSegmentsFinish(const Napi::CallbackInfo& info);
Napi::Value JsVerifyKvSegmentsDone(const Napi::CallbackInfo& info);

// JsNonzeroWords(buffer: SharedArrayBuffer or Uint8Array, byteOffset, count, stride, out: Int32Array)
// -> how many of the 8-byte words at byteOffset + i * stride (i < count) are not 0, or -EINVAL;
// the first out.length of those i go to out, ascending (the owner table's in-use records:
// src/device/owner-table.ts inUse).
Napi::Value JsNonzeroWords(const Napi::CallbackInfo& info);

// JsColumnStarts(lengths: Uint16Array, starts: Uint32Array, count) -> total or -EINVAL:
// starts[i] = lengths[0] + ... + lengths[i - 1] (keys back to back; a checkpoint's key column).
Napi::Value JsColumnStarts(const Napi::CallbackInfo& info);

// JsCountByExtent(values: Float64Array, count, origin, extentBytes, out: Int32Array) -> the
// values outside out's extents (not counted), or -EINVAL: out[floor((values[i] - origin) /
// extentBytes)]++ for i < count (live entries per segment). With two more arguments (bValues:
// Float64Array, tape: Uint32Array, bulk-load.h), the values counted are those the tape takes from
// values (a) and bValues (b), `count` of them; -EINVAL when it takes another number or leaves them.
Napi::Value JsCountByExtent(const Napi::CallbackInfo& info);

// JsPickKvWinners(media: Uint8Array, recs: Uint32Array, count, values: Float64Array,
//   starts: Uint32Array, lengths: Uint16Array, indexKeys: Uint8Array, keyPrefix) -> winners or -errno
// media: the device's bytes from offset 0 (a Uint8Array, or the mapping's whole
// SharedArrayBuffer past 4 GiB).
// Winner of a key: highest sequence, ties to an entry that is not LOST, then to the lowest
// entry offset; keys whose winner is a DEL are left out (a LOST winner is kept). Winner i: values[i] = its entry offset, its index key (keyPrefix ++ user
// key) at indexKeys[starts[i], starts[i] + lengths[i]), back to back in key order. With a 9th
// argument true, DEL winners are kept too, their value -(entry offset + 1). A 10th, a
// BigUint64Array as long as values: sequences[i] = winner i's sequence (from its sort record).
Napi::Value JsPickKvWinners(const Napi::CallbackInfo& info);

// JsMergeKvColumns(media, aCount, aValues, aStarts, aLengths, aKeys, bCount, bValues, bStarts,
//   bLengths, bKeys, covered, tape: Uint32Array, counts: Float64Array, dropStale: boolean,
//   bSequences?: BigUint64Array)
//   -> winners, or -errno (-ERANGE: tape too small; -EIO: media error)
// Merges a checkpoint's winners (a, key order, no DEL) with the winners of the log written after
// it (b, key order, DEL winners with value -(offset + 1), pickKvWinners keepDeletes) in key
// order: for a key in both, b's entry wins when its sequence is above `covered` (the
// checkpoint's highest), else by the pick's order read from both entries' headers; a winning
// DEL removes the key. Nothing is copied: the result is a tape (bulk-load.h kTape*) of which
// entry of a or b each step takes or skips, 3 * bCount + 1 words at most (every b step adds at
// most a run of a's takes, one a op and one b op). counts: [replaced, added, removed, tape words].
// dropStale: b's entries of sequences <= covered are skipped (stale: the caller's rule when no
// covered segment is gone). Each b key finds its place in a by doubling steps then a bisection,
// so the work follows bCount; a's keys and values are checked where they are read.
// bSequences: b's entries' sequences as the pick gave them (JsPickKvWinners' 10th argument), so
// that b's entries (spread over the tail's log in key order: a cache miss each) are read only
// when a's entry of the same key must be compared with them; without it they are read.
// media: as for JsPickKvWinners.
Napi::Value JsMergeKvColumns(const Napi::CallbackInfo& info);

// JsCoverRecords(media: Uint8Array, base, at, lastAt, segmentBytes, nonce, snapshot, maxSequence,
//   out: Float64Array(4)) -> 0, -EINVAL, or -EIO (a media error reading them)
// What a checkpoint taken while running covers of the segment at media[base, base +
// segmentBytes) (src/kv/checkpoint.ts coverRunning): from byte `at` (its last record at `lastAt`,
// -1 none) on, every record that is whole (magic, length inside the segment, the segment's
// nonce, its xxh64) and whose entries all have sequences <= snapshot, up to the first that is
// not. out: [the byte after the last such record, its offset (lastAt when none), the records,
// the highest sequence of theirs and maxSequence].
Napi::Value JsCoverRecords(const Napi::CallbackInfo& info);

// JsHashRange(bytes: Uint8Array, offset, length, out: Uint32Array) -> 0, -EINVAL, or -EIO (a
// media error reading them). xxh64 (seed 0) of bytes[offset, offset + length) into out[0]
// (low 32 bits) and out[1]: the checksum of a large value (src/kv/large-values.ts), hashed
// in place, over the store's mapping or any other buffer. A fifth argument true: XXH3-64
// instead (an index checkpoint's checksum, and a segment's hash as a checkpoint stores it).
Napi::Value JsHashRange(const Napi::CallbackInfo& info);

// JsHashRangeStart(bytes: Uint8Array, offset, length, xxh3?) -> a job (an external) or -EINVAL:
// JsHashRange's hash run on a thread of its own (on the caller's, at once, when no thread can be
// had), so the caller's thread works meanwhile (a running checkpoint's checksum: the bytes must
// not change until it is finished). JsHashRangeDone(job) -> true once the hash has ended.
// JsHashRangeFinish(job, out: Uint32Array) -> 0 (the hash in out[0], out[1]), -EIO (a media
// error under the range) or -EINVAL; waits for the thread. One never finished is joined when
// collected.
Napi::Value JsHashRangeStart(const Napi::CallbackInfo& info);

// JsThreadCpuMs() -> the calling thread's CPU time in ms (CLOCK_THREAD_CPUTIME_ID; 0 when it
// cannot be read): benches time a step the event loop's thread runs without the other threads'.
Napi::Value JsThreadCpuMs(const Napi::CallbackInfo& info);
Napi::Value JsHashRangeDone(const Napi::CallbackInfo& info);
Napi::Value JsHashRangeFinish(const Napi::CallbackInfo& info);

// JsEndMarkersAt(media, segs: Float64Array, segmentBytes, out: Uint8Array) -> 0, -EINVAL, or
// -EIO (a media error reading them: out then says nothing). segs: [base, used] per segment
// (device offsets, 8-aligned, used <= segmentBytes, each segment inside the media); out[i] = 1
// when a scan of segment i from `used` ends there at once with nothing found (RunScan: no
// record header fits after `used`, or its first 16 bytes are 0: the end marker), else 0. Read
// under the SIGBUS guard: an index checkpoint's covered segments at a clean reopen, whose
// records after what the checkpoint covers (none, after a clean close) are the tail.
// media: as for JsPickKvWinners.
Napi::Value JsEndMarkersAt(const Napi::CallbackInfo& info);

}  // namespace daxstore
