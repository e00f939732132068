/**
 * DAX layer constants, tree keys and the index value encoding.
 *
 * Decisions:
 *   - ONE radix tree for all objects of a space; key = objectId (8 bytes big-endian) ++
 *     pageIndex (8 bytes big-endian). Objects appear at any time in any thread and one tree
 *     handle posted once covers them all; KV large values become objects with no new SABs.
 *   - Reserved owner ids in the device owner table: 1 = object table pages, 2 = staging
 *     (blocks being zeroed before publication, or made unreachable before epoch release),
 *     3..15 reserved for other layers (recovery leaves them alone). Object ids >= 16.
 *
 * Index value (integer < 2^48) of an object page entry:
 *   bit  0      MAPPED  the lock-free read fast path may hand out a view without locking
 *                       (the userspace stand-in for a present PTE; invalidate clears it)
 *   bit  1      HUGE    a 2 MiB extent mapping indices [i, i+512) (i % 512 == 0); the tree
 *                       only knows multi-order on 8-byte keys, so coverage is done here:
 *                       a miss at index j looks up the aligned key j - j % 512 (fault.ts)
 *   bits 2..47  device block number (extent head for HUGE)
 */
import { BLOCK_BYTES } from '../device/layout.js';

export const PAGE_BYTES = BLOCK_BYTES;
export const OWNER_OBJECT_TABLE = 1;
export const OWNER_STAGING = 2;
export const MIN_OBJECT_ID = 16;
export const MAX_OBJECT_ID = 2 ** 40 - 1;
/** Largest object size (256 TiB): the size word of an object record holds 48 bits beside its check bytes. */
export const MAX_OBJECT_BYTES = 2 ** 48;

export const VALUE_MAPPED = 1;
export const VALUE_HUGE = 2;
export const HUGE_PAGES = 512;

export function encodeValue(block: number, mapped: boolean, huge = false): number {
  return block * 4 + (huge ? VALUE_HUGE : 0) + (mapped ? VALUE_MAPPED : 0);
}

export function blockOfValue(value: number): number {
  return Math.floor(value / 4);
}

export function isMapped(value: number): boolean {
  return (value & VALUE_MAPPED) !== 0;
}

export function isHuge(value: number): boolean {
  return (value & VALUE_HUGE) !== 0;
}

/** Bytes a value's block maps. */
export function valueBytes(value: number): number {
  return isHuge(value) ? HUGE_PAGES * PAGE_BYTES : PAGE_BYTES;
}

const TWO_32 = 2 ** 32;

function putU64(out: Uint8Array, at: number, n: number): void {
  const hi = Math.floor(n / TWO_32);
  const lo = n >>> 0;
  out[at] = hi >>> 24;
  out[at + 1] = hi >>> 16;
  out[at + 2] = hi >>> 8;
  out[at + 3] = hi;
  out[at + 4] = lo >>> 24;
  out[at + 5] = lo >>> 16;
  out[at + 6] = lo >>> 8;
  out[at + 7] = lo;
}

/** The 16-byte tree key of (objectId, pageIndex). */
export function pageKey(objectId: number, index: number, out: Uint8Array = new Uint8Array(16)): Uint8Array {
  putU64(out, 0, objectId);
  putU64(out, 8, index);
  return out;
}

export function keyObjectId(key: Uint8Array): number {
  return readU64(key, 0);
}

export function keyPageIndex(key: Uint8Array): number {
  return readU64(key, 8);
}

function readU64(key: Uint8Array, at: number): number {
  return (
    ((key[at] << 24) | (key[at + 1] << 16) | (key[at + 2] << 8) | key[at + 3]) * TWO_32 +
    (((key[at + 4] << 24) | (key[at + 5] << 16) | (key[at + 6] << 8) | key[at + 7]) >>> 0)
  );
}

export function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
