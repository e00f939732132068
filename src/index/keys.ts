/**
 * Key helpers shared by the radix tree and entry locks: validation (DaxError EINVAL for what a
 * caller can get wrong) and the 8-byte big-endian form of integer page indices.
 */
import { DaxError } from '../errors.js';
import { MAX_VALUE } from './entry-word.js';
import { MAX_KEY_BYTES } from './nodes.js';

const TWO_32 = 2 ** 32;

export function indexKey(n: number, out: Uint8Array = new Uint8Array(8)): Uint8Array {
  const hi = Math.floor(n / TWO_32);
  const lo = n >>> 0;
  out[0] = hi >>> 24;
  out[1] = hi >>> 16;
  out[2] = hi >>> 8;
  out[3] = hi;
  out[4] = lo >>> 24;
  out[5] = lo >>> 16;
  out[6] = lo >>> 8;
  out[7] = lo;
  return out;
}

export function keyIndex(key: Uint8Array): number {
  return (
    ((key[0] << 24) | (key[1] << 16) | (key[2] << 8) | key[3]) * TWO_32 +
    (((key[4] << 24) | (key[5] << 16) | (key[6] << 8) | key[7]) >>> 0)
  );
}

export function checkKey(key: Uint8Array, op: string): void {
  // The throw is out of line: this check is inlined into every hot entry point (grab's front).
  if (!(key instanceof Uint8Array) || key.length > MAX_KEY_BYTES) badKey(key, op);
}

function badKey(key: unknown, op: string): never {
  if (!(key instanceof Uint8Array)) throw new DaxError('EINVAL', `${op}: key must be a Uint8Array`);
  throw new DaxError('EINVAL', `${op}: key of ${key.length} bytes exceeds ${MAX_KEY_BYTES}`);
}

export function checkIndex(n: number, op: string): void {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new DaxError('EINVAL', `${op}: index ${n} must be a non-negative safe integer`);
}

export function checkValue(v: number, op: string): void {
  if (!Number.isInteger(v) || v < 0 || v > MAX_VALUE)
    throw new DaxError('EINVAL', `${op}: value ${v} must be an integer in [0, 2^48)`);
}
