/**
 * xxHash64 checksums for persistent records (superblock copies, and every record the
 * layers above write). xxhash-wasm initialises asynchronously; top-level await here
 * makes the helpers synchronous for every importer, in workers too.
 */
import xxhash from 'xxhash-wasm';

const api = await xxhash();

/** xxh64 of bytes (any Uint8Array, SharedArrayBuffer-backed included). */
export function xxh64(bytes: Uint8Array, seed: bigint = 0n): bigint {
  return api.h64Raw(bytes, seed);
}

/** The low 53 bits of xxh64: fits a JS number exactly, for fields stored as doubles. */
export function xxh53(bytes: Uint8Array, seed: bigint = 0n): number {
  return Number(api.h64Raw(bytes, seed) & 0x1f_ffff_ffff_ffffn);
}

/** xxh32, for small records where 32 bits of checksum suffice. */
export function xxh32(bytes: Uint8Array, seed = 0): number {
  return api.h32Raw(bytes, seed);
}
