/**
 * A staging area for one PUT record in this thread's own instance of xxhash-wasm's module
 * (the same xxh64, seed 0, as device/checksum.ts, which recovery uses to validate: checked
 * on a sample at load, and every reopen in test/kv validates staged records that way). The put path composes its record here, hashes it IN PLACE
 * (checksum.ts's h64Raw first copies the bytes into its wasm memory through a fresh subarray,
 * then masks the result with a second BigInt op) and copies it into the log with ONE memcpy
 * through a view cached by length.
 *
 * Invariants
 *   - The wasm memory never grows (MAX_STAGED_BYTES fits its initial 64 KiB), so the views
 *     made at load stay attached.
 * Concurrency: module state is per thread (each worker instantiates its own copy); a caller
 *   uses the stage from compose to copy-out with no other put in between (put is synchronous).
 * Persistence ordering: none; the stage is volatile scratch, the log copy is what is flushed.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { assert } from '../assert.js';
import { xxh64 } from '../device/checksum.js';
import type { MediaViews } from './records.js';

/** The slice of the WebAssembly global used here (tsconfig has no DOM lib to declare it). */
interface WasmGlobal {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmGlobal }).WebAssembly;

interface XxhashExports {
  readonly mem: { readonly buffer: ArrayBuffer };
  xxh64(offset: number, length: number, seed: bigint): bigint;
}

/** Largest record the stage takes: header + entry header + key + an inline value, padded. */
export const MAX_STAGED_BYTES = 32 + 16 + 1024 + 16 * 1024 + 8;

function instantiate(): XxhashExports {
  const dir = path.dirname(createRequire(import.meta.url).resolve('xxhash-wasm'));
  const bytes = readFileSync(path.join(dir, '..', 'workerd', 'xxhash.wasm'));
  const exports = new Wasm.Instance(new Wasm.Module(bytes), {}).exports as unknown as XxhashExports;
  assert(exports.mem.buffer.byteLength >= MAX_STAGED_BYTES, 'xxhash wasm memory smaller than one staged record');
  return exports;
}

const wasm = instantiate();
const buffer = wasm.mem.buffer;

/** Views over the stage, offsets from its start (a record is composed at offset 0). */
export const stageViews: MediaViews = {
  u8: new Uint8Array(buffer),
  u32: new Uint32Array(buffer),
  u64: new BigUint64Array(buffer),
  buf: Buffer.from(buffer),
};

const byLength: Uint8Array[] = [];

/** Both hashes on one sample: a stage that disagrees with recovery's checksum must never write a record. */
function checkAgreesWithChecksum(): void {
  const sample = new Uint8Array(200).map((_, i) => (i * 131 + 7) & 0xff);
  stageViews.u8.set(sample, 0);
  assert(BigInt.asUintN(64, stagedChecksum(sample.length)) === xxh64(sample.subarray(8)), 'staged xxh64 differs from device/checksum.ts');
}
checkAgreesWithChecksum();

/** xxh64 of stage bytes [8, totalBytes): the record checksum (records.ts), unmasked (store it in a BigUint64Array). */
export function stagedChecksum(totalBytes: number): bigint {
  return wasm.xxh64(8, totalBytes - 8, 0n);
}

/** Stage bytes [0, totalBytes) as a view cached by length (no allocation after the first use of a length). */
export function stagedRecord(totalBytes: number): Uint8Array {
  assert(totalBytes <= MAX_STAGED_BYTES, () => `staged record of ${totalBytes} bytes`);
  return (byLength[totalBytes] ??= new Uint8Array(buffer, 0, totalBytes));
}
