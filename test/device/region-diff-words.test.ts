/**
 * diffWords (src/native/diff-words.ts) against a plain BigUint64Array comparison, on
 * random buffers with random changed bytes, over ArrayBuffer and SharedArrayBuffer,
 * with small out arrays to exercise resuming. Seed from DAXSTORE_SEED.
 * Not covered: words changing concurrently during the scan.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { diffAllWords, diffWords } from '../../src/native/diff-words.js';
import { DaxError } from '../../src/errors.js';
import { replayHint, testSeed } from '../helpers/seed.js';

function modelDiff(a: Uint8Array, b: Uint8Array): number[] {
  const x = new BigUint64Array(a.buffer, a.byteOffset, a.byteLength / 8);
  const y = new BigUint64Array(b.buffer, b.byteOffset, b.byteLength / 8);
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) out.push(i);
  return out;
}

describe('diffWords', () => {
  it('finds exactly the differing 8-byte words, resuming when out fills', () => {
    const seed = testSeed();
    const input = fc.record({
      words: fc.integer({ min: 0, max: 300 }),
      changes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 40 }),
      outLength: fc.integer({ min: 1, max: 16 }),
      shared: fc.boolean(),
    });
    try {
      fc.assert(
        fc.property(input, ({ words, changes, outLength, shared }) => {
          const make = (): Uint8Array =>
            new Uint8Array(shared ? new SharedArrayBuffer(words * 8) : new ArrayBuffer(words * 8));
          const a = make();
          const b = make();
          for (let i = 0; i < a.length; i++) a[i] = b[i] = (i * 31) & 0xff;
          for (const [at, x] of changes) if (words > 0) b[at % b.length] ^= x;
          const out = new Uint32Array(outLength);
          const found: number[] = [];
          for (let start = 0; ;) {
            const n = diffWords(a, b, out, start);
            found.push(...out.subarray(0, n));
            if (n < out.length) break;
            start = out[n - 1]! + 1;
          }
          expect(found).toEqual(modelDiff(a, b));
          expect(diffAllWords(a.buffer as ArrayBuffer, b.buffer as ArrayBuffer)).toEqual(found);
        }),
        { seed, numRuns: 300 },
      );
    } catch (e) {
      console.error(`diffWords fuzz failed: ${replayHint(seed, 'test/device/region-diff-words.test.ts')}`);
      throw e;
    }
  });

  it('unequal or unaligned lengths and bad arguments are EINVAL', () => {
    const out = new Uint32Array(4);
    expect(() => diffWords(new Uint8Array(16), new Uint8Array(8), out)).toThrow(DaxError);
    expect(() => diffWords(new Uint8Array(12), new Uint8Array(12), out)).toThrow(DaxError);
    expect(() => diffWords(new Uint8Array(16), new Uint8Array(16), [] as unknown as Uint32Array)).toThrow(DaxError);
    expect(() => diffWords(new Uint8Array(16), new Uint8Array(16), out, -1)).toThrow(DaxError);
  });
});
