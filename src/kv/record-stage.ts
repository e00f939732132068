/**
 * A staging area for one log record in this thread's own instance of xxhash-wasm's module
 * (the same xxh64, seed 0, as device/checksum.ts: checked on a sample at load; recovery
 * validates with xxHash's own C code (addon/kv-recovery.cc), and every reopen in test/kv
 * validates staged records that way). Every
 * record the store writes (put, delete, batch, deleteRange, compaction copies) is composed
 * here, hashed IN PLACE (checksum.ts's h64Raw first copies the bytes into its wasm memory
 * through a fresh subarray, then masks the result with a second BigInt op) and copied into
 * the log with ONE memcpy through a view cached by length.
 *
 * Invariants
 *   - stageViews always views the whole current wasm memory. The memory starts at 64 KiB (a
 *     put of an inline value fits) and grows only in ensureStageBytes (a batch or deleteRange
 *     record larger than any before, at most one segment): growing detaches the old buffer,
 *     so stageViews' fields and the by-length cache are rebuilt there, before the caller
 *     composes anything. Callers never keep a stage view across ensureStageBytes.
 * Concurrency: module state is per thread (each worker instantiates its own copy); a caller
 *   uses the stage from compose to copy-out with no other record in between (the writers are
 *   synchronous and never re-enter).
 * Persistence ordering: none; the stage is volatile scratch, the log copy is what is flushed.
 */
import { assert } from '../assert.js';
import { isBroken } from '../test-break.js';
import { instantiateXxhash, xxh64, type XxhashWasm } from '../device/checksum.js';
import { MediaViews } from './media-views.js';
import { ENTRY_HEADER_BYTES, RECORD_HEADER_BYTES } from './layout.js';

/** The slice of the WebAssembly global used here (tsconfig has no DOM lib to declare it). */
interface WasmGlobal {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
  validate(bytes: Uint8Array): boolean;
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmGlobal }).WebAssembly;

/** A PUT record of the largest inline value: header + entry header + key + value, padded. */
export const MAX_STAGED_BYTES = RECORD_HEADER_BYTES + ENTRY_HEADER_BYTES + 1024 + 16 * 1024 + 8;
const WASM_PAGE_BYTES = 65536;

function instantiate(): XxhashWasm {
  const exports = instantiateXxhash();
  assert(exports.mem.buffer.byteLength >= MAX_STAGED_BYTES, 'xxhash wasm memory smaller than one staged record');
  return exports;
}

const wasm = instantiate();
let buffer = wasm.mem.buffer;

/** Views over the stage, offsets from its start (a record is composed at offset 0). Rebuilt when the stage grows. */
export const stageViews: MediaViews = viewsOf(buffer);

function viewsOf(b: ArrayBuffer): MediaViews {
  // One window over the whole stage (it grows: `end` is unbounded, at() is always this one).
  return new MediaViews(
    0,
    Infinity,
    new Uint8Array(b),
    new Uint32Array(b),
    new BigUint64Array(b),
    Buffer.from(b),
    b,
    undefined,
  );
}

let byLength: Uint8Array[] = [];

/** Makes the stage hold a record of `totalBytes` (growing the wasm memory, once per new maximum). Call before composing. */
export function ensureStageBytes(totalBytes: number): void {
  if (totalBytes <= buffer.byteLength) return;
  wasm.mem.grow(Math.ceil((totalBytes - buffer.byteLength) / WASM_PAGE_BYTES));
  buffer = wasm.mem.buffer;
  Object.assign(stageViews, viewsOf(buffer)); // same object, same field types: importers see the new views
  byLength = [];
  assert(buffer.byteLength >= totalBytes, () => `stage of ${buffer.byteLength} bytes after growing for ${totalBytes}`);
}

/** Both hashes on one sample: a stage that disagrees with recovery's checksum must never write a record. */
function checkAgreesWithChecksum(): void {
  const sample = new Uint8Array(200).map((_, i) => (i * 131 + 7) & 0xff);
  stageViews.u8.set(sample, 0);
  assert(
    BigInt.asUintN(64, stagedChecksum(sample.length)) === xxh64(sample.subarray(8)),
    'staged xxh64 differs from device/checksum.ts',
  );
}
checkAgreesWithChecksum();

/** xxh64 of stage bytes [8, totalBytes): the record checksum (records.ts), unmasked (store it in a BigUint64Array). */
export function stagedChecksum(totalBytes: number): bigint {
  return wasm.xxh64(8, totalBytes - 8, 0n);
}

/**
 * A 244-byte wasm module whose functions store a record's checksums in the stage inside wasm:
 * no BigInt crosses into JS (stagedChecksum's result was a BigInt allocated per record and
 * stored through a BigUint64Array, a share of every put). "s" stores xxh64 of stage bytes
 * [8, n) at offset 0 (the checksum word); "t" first stores the low 32 bits of xxh64 of bytes
 * [12, d) at offset 8 (the directory check of a record whose directory is those bytes:
 * layout.ts), then does what "s" does; "u" does what "t" does for a record of c > 1 entries,
 * whose directory check chains one hash per entry by seed (stagedDirectoryCheck's loop, which
 * took a BigInt in and out of every hash). Its text:
 *   (module
 *     (import "x" "h" (func $h (param i32 i32 i64) (result i64)))   ;; xxh64(offset, length, seed)
 *     (import "x" "m" (memory 0))                                     ;; the stage's memory
 *     (func $s (export "s") (param $n i32)
 *       (i64.store (i32.const 0) (call $h (i32.const 8) (i32.sub (local.get $n) (i32.const 8)) (i64.const 0))))
 *     (func (export "t") (param $n i32) (param $d i32)
 *       (i32.store (i32.const 8)
 *         (i32.wrap_i64 (call $h (i32.const 12) (i32.sub (local.get $d) (i32.const 12)) (i64.const 0))))
 *       ;; then the body of $s, written out
 *       (i64.store (i32.const 0) (call $h (i32.const 8) (i32.sub (local.get $n) (i32.const 8)) (i64.const 0))))
 *     (func (export "u") (param $n i32) (param $c i32)
 *       (local $e i32) (local $i i32) (local $k i32) (local $d i32) (local $h i64)
 *       (local.set $e (i32.const 32))                                 ;; the first entry
 *       (loop $next
 *         (local.set $k (i32.and (i32.load (local.get $e)) (i32.const 0xffff)))   ;; key length
 *         (local.set $d (i32.add (i32.add (local.get $e) (i32.const 24)) (local.get $k)))
 *         (local.set $h
 *           (if (result i64) (local.get $i)
 *             (then (call $h (local.get $e) (i32.sub (local.get $d) (local.get $e)) (local.get $h)))
 *             (else (call $h (i32.const 12) (i32.sub (local.get $d) (i32.const 12)) (i64.const 0)))))
 *         (local.set $e (i32.add (local.get $e)                         ;; the next entry, 8-aligned
 *           (i32.and (i32.add (i32.add (local.get $k) (i32.const 31)) (i32.load offset=4 (local.get $e)))
 *             (i32.const -8))))
 *         (br_if $next (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $c))))
 *       (i32.store (i32.const 8) (i32.wrap_i64 (local.get $h)))
 *       ;; then the body of $s, written out
 *       (i64.store (i32.const 0) (call $h (i32.const 8) (i32.sub (local.get $n) (i32.const 8)) (i64.const 0)))))
 */
const SEAL_WASM = Buffer.from(
  '0061736d0100000001110360037f7f7e017e60017f0060027f7f00020e020178016800000178016d020000030403010202070d03' +
    '0173000101740002017500030ab10103120041004108200041086b420010003703000b23004108410c2001410c6b42001000a736' +
    '020041004108200041086b420010003703000b7802047f017e412021020340200228020041ffff03712104200241186a20046a21' +
    '052003047e2002200520026b2006100005410c2005410c6b420010000b210620022004411f6a20022802046a4178716a21022003' +
    '41016a22032001490d000b41082006a736020041004108200041086b420010003703000b',
  'hex',
);

interface SealExports {
  s(totalBytes: number): void;
  t(totalBytes: number, directoryEnd: number): void;
  u(totalBytes: number, count: number): void;
}

function sealer(x: XxhashWasm): SealExports {
  const bytes = new Uint8Array(SEAL_WASM);
  assert(Wasm.validate(bytes), 'checksum seal wasm does not validate');
  return new Wasm.Instance(new Wasm.Module(bytes), { x: { h: x.xxh64, m: x.mem } }).exports as SealExports;
}

const seal = sealer(wasm);

/**
 * Stores the record checksum, xxh64 of stage bytes [8, totalBytes), in stage bytes [0, 8): what
 * the two below end with; called alone only by checkSealer.
 */
const sealStagedChecksum: (totalBytes: number) => void = seal.s;

/**
 * Stores the directory check of a record whose directory is stage bytes [12, directoryEnd)
 * (no entry, or one) at stage offset 8, then the record checksum as sealStagedChecksum.
 */
export const sealStagedChecksums: (totalBytes: number, directoryEnd: number) => void = seal.t;

/**
 * Stores the directory check of the record of `count` (> 1) entries composed at stage offset 0
 * at stage offset 8 (stagedDirectoryCheck's, in wasm), then the record checksum as
 * sealStagedChecksum.
 */
export const sealStagedBatchChecksums: (totalBytes: number, count: number) => void = seal.u;

/**
 * The directory check of the record of `count` (> 1) entries composed at stage offset 0
 * (layout.ts: header words, then each entry's header and key, chained by seed): the JS
 * reference checkSealer holds sealStagedBatchChecksums to.
 */
function stagedDirectoryCheck(count: number): number {
  const u32 = stageViews.u32;
  let e = 32;
  let h = 0n;
  for (let i = 0; i < count; i++) {
    const keyLength = u32[e >>> 2] & 0xffff;
    const dirEnd = e + ENTRY_HEADER_BYTES + keyLength;
    h = i === 0 ? wasm.xxh64(12, dirEnd - 12, 0n) : wasm.xxh64(e, dirEnd - e, h);
    e += (ENTRY_HEADER_BYTES + keyLength + u32[(e >>> 2) + 1] + 7) & ~7;
  }
  return Number(BigInt.asUintN(32, h));
}

/** The sealer on a sample: it stores exactly device/checksum.ts's xxh64. */
function checkSealer(): void {
  const sample = new Uint8Array(200).map((_, i) => (i * 197 + 3) & 0xff);
  stageViews.u8.set(sample, 0);
  sealStagedChecksum(sample.length);
  assert(stageViews.u64[0] === xxh64(sample.subarray(8)), 'staged checksum seal differs from device/checksum.ts');
  stageViews.u8.set(sample, 0);
  sealStagedChecksums(sample.length, 60);
  assert(
    stageViews.u32[2] === Number(xxh64(sample.subarray(12, 60)) & 0xffff_ffffn) &&
      stageViews.u64[0] === xxh64(stageViews.u8.slice(8, sample.length)),
    'staged directory check seal differs from device/checksum.ts',
  );
  // A record of three entries (key and value lengths 17/100, 5/0, 30/7; the rest sample bytes):
  // "u" against stagedDirectoryCheck's loop, and the checksum of its bytes.
  const lengths = [17, 100, 5, 0, 30, 7];
  let total = RECORD_HEADER_BYTES;
  for (let i = 0; i < lengths.length; i += 2) total += (ENTRY_HEADER_BYTES + lengths[i] + lengths[i + 1] + 7) & ~7;
  const record = new Uint8Array(total).map((_, i) => (i * 89 + 5) & 0xff);
  const words = new Uint32Array(record.buffer);
  for (
    let i = 0, e = RECORD_HEADER_BYTES;
    i < lengths.length;
    e += (ENTRY_HEADER_BYTES + lengths[i] + lengths[i + 1] + 7) & ~7, i += 2
  ) {
    words[e / 4] = (words[e / 4] & 0xffff0000) | lengths[i];
    words[e / 4 + 1] = lengths[i + 1];
  }
  stageViews.u8.set(record, 0);
  const directory = stagedDirectoryCheck(3);
  sealStagedBatchChecksums(total, 3);
  assert(
    stageViews.u32[2] === directory && stageViews.u64[0] === xxh64(stageViews.u8.slice(8, total)),
    'staged batch directory check seal differs from stagedDirectoryCheck',
  );
}
checkSealer();

/**
 * A second instance of the module, only for checking records (compaction, `daxstore check`):
 * its own memory, so a check never overwrites a record being composed in the stage (a check
 * can run between compose and seal: a test's fence hook opens a crash image there).
 */
const verifyWasm = instantiate();
let verifyU8 = new Uint8Array(verifyWasm.mem.buffer);
/** A checksum being compared, as two u32 words (written through an i64 view: no BigInt conversion). */
const compareScratch = new Uint32Array(2);
const compareScratchI64 = new BigInt64Array(compareScratch.buffer);

/**
 * Whether the xxh64 of log bytes [from, to) equals the u64 stored at `sumAt` (records.ts:
 * a record's checksum). The bytes are copied into the verify instance's memory (one memcpy)
 * and hashed in place: no subarray, no mask op (compaction checks every record it moves).
 */
export function logChecksumMatches(v: MediaViews, from: number, to: number, sumAt: number): boolean {
  const length = to - from;
  ensureVerifyBytes(length);
  v = v.at(from);
  v.buf.copy(verifyU8, 0, from - v.base, to - v.base);
  windowFrom = windowTo = 0; // the copy overwrote the walk's window
  return sumEquals(v, 0, length, sumAt);
}

/**
 * The walk window: log bytes [windowFrom, windowTo) as copied to the verify instance's memory
 * at 0, so that a walk over a segment's records (records.ts forEachRecord) copies them
 * WALK_WINDOW_BYTES at a time rather than one memcpy (a builtin call) per record. Empty
 * (windowFrom === windowTo) outside a walk: startLogChecksumWalk empties it.
 */
let windowFrom = 0;
let windowTo = 0;
const WALK_WINDOW_BYTES = 64 * 1024;

/** Empties the walk window: a walk starts with it, its bytes may have changed since the last. */
export function startLogChecksumWalk(): void {
  windowFrom = windowTo = 0;
}

/**
 * logChecksumMatches for a walk whose log bytes up to `limit` (its segment's end) are all
 * readable (no poisoned block) and lie in v's window: hashes the record in the walk window,
 * copying the next WALK_WINDOW_BYTES (or the record, when larger) from `from` when the window
 * does not hold it. The window's bytes were copied before this record's header was read; a
 * record they fail is checked again from a fresh copy (logChecksumMatches), so the answer is
 * the fresh copy's whenever the two differ.
 */
export function logChecksumMatchesInWalk(
  v: MediaViews,
  from: number,
  to: number,
  sumAt: number,
  limit: number,
): boolean {
  if (from < windowFrom || to > windowTo) {
    const copyTo = Math.min(limit, Math.max(to, from + WALK_WINDOW_BYTES));
    ensureVerifyBytes(copyTo - from);
    v = v.at(from);
    v.buf.copy(verifyU8, 0, from - v.base, copyTo - v.base);
    windowFrom = from;
    windowTo = copyTo;
  }
  if (sumEquals(v, from - windowFrom, to - from, sumAt)) return true;
  if (isBroken('kv-walk-window-no-recopy')) return false; // trusts bytes copied before the header was read
  return logChecksumMatches(v, from, to, sumAt);
}

function ensureVerifyBytes(length: number): void {
  if (length <= verifyU8.length) return;
  verifyWasm.mem.grow(Math.ceil((length - verifyU8.length) / WASM_PAGE_BYTES));
  verifyU8 = new Uint8Array(verifyWasm.mem.buffer);
}

function sumEquals(v: MediaViews, wasmAt: number, length: number, sumAt: number): boolean {
  compareScratchI64[0] = verifyWasm.xxh64(wasmAt, length, 0n);
  const w = (sumAt - v.base) / 4;
  return compareScratch[0] === v.u32[w] && compareScratch[1] === v.u32[w + 1];
}

/** Stage bytes [0, totalBytes) as a view cached by length (no allocation after the first use of a length). */
export function stagedRecord(totalBytes: number): Uint8Array {
  assert(
    totalBytes <= buffer.byteLength,
    () => `staged record of ${totalBytes} bytes in a stage of ${buffer.byteLength}`,
  );
  return (byLength[totalBytes] ??= new Uint8Array(buffer, 0, totalBytes));
}
