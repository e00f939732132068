/**
 * diffWords: the aligned 8-byte words that differ between two equal-length buffers,
 * in native code (a memcmp per cache line, then per word). For the simulated device's
 * crash images; any layer may use it.
 */
import { DaxError } from '../errors.js';
import { native } from './addon.js';

const WORD_BYTES = 8;

function bytesOf(name: string, x: Uint8Array | SharedArrayBuffer | ArrayBuffer): Uint8Array {
  if (x instanceof Uint8Array) return x;
  if (x instanceof SharedArrayBuffer || x instanceof ArrayBuffer) return new Uint8Array(x);
  throw new DaxError('EINVAL', `diffWords: ${name} must be a Uint8Array, SharedArrayBuffer or ArrayBuffer`);
}

/**
 * Writes into `out`, ascending, the indices (counted from the start of a and b) of the
 * words at or after startWord where a and b differ; returns how many it wrote. When the
 * return value equals out.length there may be more: call again with startWord =
 * out[out.length - 1] + 1. Words being written concurrently may or may not be reported.
 */
export function diffWords(
  a: Uint8Array | SharedArrayBuffer | ArrayBuffer,
  b: Uint8Array | SharedArrayBuffer | ArrayBuffer,
  out: Uint32Array,
  startWord = 0,
): number {
  const left = bytesOf('a', a);
  const right = bytesOf('b', b);
  if (left.byteLength !== right.byteLength || left.byteLength % WORD_BYTES !== 0) {
    throw new DaxError(
      'EINVAL',
      `diffWords: lengths ${left.byteLength} and ${right.byteLength} must be equal multiples of ${WORD_BYTES}`,
    );
  }
  if (left.byteLength / WORD_BYTES > 0xffffffff) throw new DaxError('EINVAL', 'diffWords: more than 2^32 words');
  if (!(out instanceof Uint32Array)) throw new DaxError('EINVAL', 'diffWords: out must be a Uint32Array');
  if (!Number.isSafeInteger(startWord) || startWord < 0)
    throw new DaxError('EINVAL', `diffWords: startWord ${startWord} is not a non-negative integer`);
  const n = native().diffWords(left, right, out, startWord);
  if (n < 0) throw new DaxError('EINVAL', `diffWords: rejected by the addon (${n})`);
  return n;
}

/** Every differing word index, collected in chunks. */
export function diffAllWords(
  a: Uint8Array | SharedArrayBuffer | ArrayBuffer,
  b: Uint8Array | SharedArrayBuffer | ArrayBuffer,
): number[] {
  const chunk = new Uint32Array(4096);
  const found: number[] = [];
  for (let start = 0; ;) {
    const n = diffWords(a, b, chunk, start);
    for (let i = 0; i < n; i++) found.push(chunk[i]!);
    if (n < chunk.length) return found;
    start = chunk[n - 1]! + 1;
  }
}
