/**
 * lookupManyPinned (descents walked in lockstep) against lookupPinned, one thread: seeded
 * random trees of short keys over a small alphabet (shared prefixes, compressed paths, keys
 * ending at inner nodes) and 8-byte index keys with order-9 entries, then batches of present,
 * absent, prefix and extension keys, with deletes in between (deleted leaves, shrunk nodes).
 * Every answer must equal lookupPinned's.
 *
 * Not covered here: lookups racing writers (radix-tree-readers.test.ts has lock-free readers
 * use lookupManyPinned while writers churn).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { LOOKUP_MANY_MAX, RadixTree } from '../../src/index/radix-tree.js';
import { indexKey } from '../../src/index/keys.js';
import { expectBaseline, hex } from './tree-helpers.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/radix-tree-lookup-many.test.ts';

function randomKey(random: () => number): Uint8Array {
  if (random() < 0.2) return indexKey(Math.floor(random() * 4096));
  const alphabet = [0, 1, 0x61, 0x62, 0xff];
  const length = Math.floor(random() * 7);
  return Uint8Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]);
}

test('lookupManyPinned answers as lookupPinned for every key of every batch', async () => {
  await withSeed(FILE, (seed) => {
    const random = rng(seed);
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch, { poisonReclaimed: true });
    const keys = new Map<string, Uint8Array>();
    const values = new Float64Array(LOOKUP_MANY_MAX);
    let checked = 0;
    for (let round = 0; round < scaled(60); round++) {
      for (let i = 0; i < 40; i++) {
        const k = randomKey(random);
        if (random() < 0.7) {
          tree.insert(k, Math.floor(random() * 2 ** 48));
          keys.set(hex(k), k);
        } else {
          tree.delete(k);
          keys.delete(hex(k));
        }
      }
      if (random() < 0.3) {
        const n = Math.floor(random() * 8) * 512;
        if (tree.insertIndex(n, Math.floor(random() * 2 ** 40), { order: 9 })) keys.set(hex(indexKey(n)), indexKey(n));
      }
      epoch.collect();
      const present = [...keys.values()];
      for (let b = 0; b < 10; b++) {
        const n = 1 + Math.floor(random() * LOOKUP_MANY_MAX);
        const batch = Array.from({ length: n }, () => {
          const r = random();
          if (r < 0.5 && present.length > 0) return present[Math.floor(random() * present.length)];
          if (r < 0.65 && present.length > 0) {
            const k = present[Math.floor(random() * present.length)];
            return k.subarray(0, Math.floor(random() * k.length)); // a prefix: often an inner node's path
          }
          if (r < 0.8 && present.length > 0) {
            const k = present[Math.floor(random() * present.length)];
            return Uint8Array.of(...k, Math.floor(random() * 256)); // an extension of a key
          }
          if (r < 0.9) return indexKey(Math.floor(random() * 4096) + 1); // maybe inside a huge entry
          return randomKey(random);
        });
        epoch.guard(() => {
          tree.lookupManyPinned(batch, n, values);
          for (let j = 0; j < n; j++) {
            const expected = tree.lookupPinned(batch[j]) ?? -1;
            if (values[j] !== expected)
              expect({ key: hex(batch[j]), got: values[j] }).toEqual({ key: hex(batch[j]), got: expected });
            checked++;
          }
        });
      }
    }
    expect(checked).toBeGreaterThan(0);
    for (const k of keys.values()) tree.delete(k);
    for (let n = 0; n < 8; n++) tree.deleteIndex(n * 512);
    expectBaseline(tree, epoch);
    epoch.close();
  });
});
