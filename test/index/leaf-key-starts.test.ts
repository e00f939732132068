/**
 * addon leafKeyStarts (addon/bulk-load.h JsLeafKeyStarts): where each key of a run of leaves
 * lies, and the run's words, from the keys' lengths alone (an index checkpoint's image: its
 * columns' key starts, and the check that its lengths fit the image's leaves). The words are the
 * size classes' of arena.ts, summed; counted only (starts null) they equal the sum with starts
 * written; a length over 4096, or a key offset past 2^32, is -EINVAL either way.
 * Not covered here: the image's load itself (tree-image*.test.ts, kv-checkpoint-image).
 */
import { describe, expect, it } from 'vitest';
import { classWords, sizeClassOf } from '../../src/index/arena.js';
import { leafWords, Lay } from '../../src/index/nodes.js';
import { native } from '../../src/native/addon.js';
import { rng, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/leaf-key-starts.test.ts';
const EINVAL = -22;

/** The model: each leaf its size class's words, its key after the leaf header. */
function model(lengths: Uint16Array): { starts: number[]; words: number } {
  const starts: number[] = [];
  let words = 0;
  for (const len of lengths) {
    starts.push(words * 4 + Lay.LEAF_HEADER_WORDS * 4);
    words += classWords(sizeClassOf(leafWords(len)));
  }
  return { starts, words };
}

describe('leafKeyStarts: key offsets and words of a run of leaves from the key lengths', () => {
  it('equals the size classes summed, counted alone or with starts written (seeded lengths 0..4096)', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      for (let round = 0; round < 40; round++) {
        const n = Math.floor(r() * 5000);
        const max = [16, 64, 300, 4096][round % 4];
        const lengths = Uint16Array.from({ length: n }, () => Math.floor(r() * (max + 1)));
        const want = model(lengths);
        const starts = new Uint32Array(n);
        expect(native().leafKeyStarts(lengths, starts, n)).toBe(want.words);
        expect(Array.from(starts)).toEqual(want.starts);
        expect(native().leafKeyStarts(lengths, null, n)).toBe(want.words);
        const part = Math.floor(r() * (n + 1));
        expect(native().leafKeyStarts(lengths, null, part)).toBe(model(lengths.subarray(0, part)).words);
      }
    });
  });

  it('refuses a length over 4096 and a key offset past 2^32, counted alone or with starts', () => {
    const long = Uint16Array.of(3, 4097, 5);
    expect(native().leafKeyStarts(long, null, 3)).toBe(EINVAL);
    expect(native().leafKeyStarts(long, new Uint32Array(3), 3)).toBe(EINVAL);
    expect(native().leafKeyStarts(long, null, 1)).toBe(model(long.subarray(0, 1)).words);
    // 4096-byte keys: 1028 leaf words, in the 1024..2047-word class (2048 words, 8 KiB) each.
    const perLeaf = classWords(sizeClassOf(leafWords(4096))) * 4;
    const fit = Math.floor((2 ** 32 - 1 - Lay.LEAF_HEADER_WORDS * 4) / perLeaf) + 1; // the last key's offset still fits
    const big = new Uint16Array(fit + 1).fill(4096);
    expect(native().leafKeyStarts(big, null, fit)).toBe((fit * perLeaf) / 4);
    expect(native().leafKeyStarts(big, null, fit + 1)).toBe(EINVAL);
    expect(native().leafKeyStarts(big, new Uint32Array(fit + 1), fit + 1)).toBe(EINVAL);
    expect(native().leafKeyStarts(big, new Uint32Array(fit), fit)).toBe((fit * perLeaf) / 4);
  });
});
