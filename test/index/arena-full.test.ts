/**
 * The index's own limit: a tree's arena (one shared WebAssembly memory) ends at its maxBytes (a
 * store's is 1 GiB; a wasm32 memory ends at 4 GiB). Reaching it is a DaxError('ENOSPC') naming
 * the arena, the insert that met it changes nothing, every key inserted before stays, and
 * deletes still work.
 */
import { expect, test } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { isDaxError } from '../../src/errors.js';
import { rng, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/arena-full.test.ts';

function keyOf(r: () => number, i: number): Uint8Array {
  const k = new Uint8Array(8 + Math.floor(r() * 40));
  for (let j = 0; j < k.length; j++) k[j] = Math.floor(r() * 256);
  new DataView(k.buffer).setUint32(0, i);
  return k;
}

test('a full arena is ENOSPC that changes nothing; the keys before it stay; deletes still work', async () => {
  await withSeed(FILE, (seed) => {
    const r = rng(seed);
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch, { maxBytes: 2 * 2 ** 20, initialBytes: 1 * 2 ** 20 });
    const keys: Uint8Array[] = [];
    let full: unknown;
    for (let i = 0; full === undefined && i < 1_000_000; i++) {
      const k = keyOf(r, i);
      try {
        tree.insert(k, i);
        keys.push(k);
      } catch (e) {
        full = e;
        expect(tree.lookup(k)).toBeUndefined();
      }
    }
    expect(isDaxError(full, 'ENOSPC')).toBe(true);
    expect(String((full as Error).message)).toMatch(/arena full/);
    verifyTree(tree);
    keys.forEach((k, i) => expect(tree.lookup(k)).toBe(i));
    // Deletes still work on a full arena, and the tree stays whole.
    for (let i = 0; i < keys.length; i += 2) expect(tree.delete(keys[i])).toBe(true);
    for (let i = 0; i < 8; i++) epoch.collect();
    verifyTree(tree);
    for (let i = 1; i < keys.length; i += 2) expect(tree.lookup(keys[i])).toBe(i);
  });
});
