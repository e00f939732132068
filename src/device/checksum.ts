/**
 * xxHash64 checksums for persistent records (superblock copies, and every record the
 * layers above write). xxhash-wasm's module is compiled and instantiated synchronously
 * (WebAssembly.Module/Instance on its .wasm file), so every importer gets synchronous helpers
 * with no top-level await anywhere in the module graph: `require('daxstore')` from CommonJS
 * (Node's require of an ES module) refuses a graph with one.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** The slice of the WebAssembly global used here (tsconfig has no DOM lib to declare it). */
interface WasmGlobal {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmGlobal }).WebAssembly;

/** xxhash-wasm's module exports (the one-shot hashes over its own memory). */
export interface XxhashWasm {
  readonly mem: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  xxh32(offset: number, length: number, seed: number): number;
  xxh64(offset: number, length: number, seed: bigint): bigint;
}

const WASM_PAGE_BYTES = 65536;
const U64_MASK = 2n ** 64n - 1n;

/** A fresh instance of xxhash-wasm's module (its own memory): checksum.ts has one, record-stage.ts its own. */
export function instantiateXxhash(): XxhashWasm {
  const dir = path.dirname(createRequire(import.meta.url).resolve('xxhash-wasm'));
  const bytes = readFileSync(path.join(dir, '..', 'workerd', 'xxhash.wasm'));
  return new Wasm.Instance(new Wasm.Module(bytes), {}).exports as unknown as XxhashWasm;
}

const wasm = instantiateXxhash();
let memory = new Uint8Array(wasm.mem.buffer);

/** Copies bytes to the start of the module's memory (growing it when short). */
function load(bytes: Uint8Array): void {
  if (memory.length < bytes.length) {
    wasm.mem.grow(Math.ceil((bytes.length - memory.length) / WASM_PAGE_BYTES));
    memory = new Uint8Array(wasm.mem.buffer);
  }
  memory.set(bytes);
}

/** xxh64 of bytes (any Uint8Array, SharedArrayBuffer-backed included). */
export function xxh64(bytes: Uint8Array, seed: bigint = 0n): bigint {
  load(bytes);
  return wasm.xxh64(0, bytes.length, seed) & U64_MASK;
}

/** The low 53 bits of xxh64: fits a JS number exactly, for fields stored as doubles. */
export function xxh53(bytes: Uint8Array, seed: bigint = 0n): number {
  load(bytes);
  return Number(wasm.xxh64(0, bytes.length, seed) & 0x1f_ffff_ffff_ffffn);
}

/** xxh32, for small records where 32 bits of checksum suffice. */
export function xxh32(bytes: Uint8Array, seed = 0): number {
  load(bytes);
  return wasm.xxh32(0, bytes.length, seed) >>> 0;
}
