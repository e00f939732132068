/**
 * bulkLoad refuses what it cannot do safely: unsorted or duplicate keys (DaxError ECORRUPT),
 * bad lengths or values (EINVAL) — either way the tree unchanged and every leaf it had allocated
 * retired — and a key equal to one already in the tree or a tree that was ever shared
 * (assertion: a bug in the caller).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { AssertionError } from '../../src/assert.js';
import { DaxError } from '../../src/errors.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import type { BulkEntries } from '../../src/index/bulk-load.js';
import { expectBaseline } from './tree-helpers.js';

function entries(keys: number[][], values?: number[]): BulkEntries {
  const flat = keys.flat();
  const starts = new Uint32Array(keys.length);
  for (let i = 1; i < keys.length; i++) starts[i] = starts[i - 1] + keys[i - 1].length;
  return {
    count: keys.length,
    keys: Uint8Array.from(flat),
    starts,
    lengths: Uint16Array.from(keys, (k) => k.length),
    values: values ?? keys.map((_, i) => i),
  };
}

/** Bad entries, and the code each is refused with (keys out of order are corrupt input, recovery's to distrust). */
const BAD: Record<string, BulkEntries> = {
  'keys out of order': entries([[1], [3], [2]]),
  'a duplicate key': entries([[1], [2, 0], [2, 0]]),
  'a value of 2^48': entries([[1], [2]], [0, 2 ** 48]),
  'a fractional value': entries([[1], [2]], [0, 0.5]),
  'a key past the buffer': { ...entries([[1], [2]]), lengths: Uint16Array.of(1, 5) },
  'a key over 4096 bytes': {
    count: 1,
    keys: new Uint8Array(5000),
    starts: Uint32Array.of(0),
    lengths: Uint16Array.of(4097),
    values: [0],
  },
  'fewer values than count': { ...entries([[1], [2]]), values: [0] },
};

const ORDER = new Set(['keys out of order', 'a duplicate key']);

for (const [name, bad] of Object.entries(BAD)) {
  const code = ORDER.has(name) ? 'ECORRUPT' : 'EINVAL';
  test(`bulkLoad with ${name} throws ${code} and leaves the tree as it was`, () => {
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch);
    tree.insert(Uint8Array.of(0, 9), 7);
    expect(() => tree.bulkLoad(bad)).toThrow(DaxError);
    try {
      tree.bulkLoad(bad);
    } catch (e) {
      expect((e as DaxError).code).toBe(code);
      if (code === 'ECORRUPT')
        expect((e as DaxError).message).toMatch(/key 2 \(0x[0-9a-f]+\) is not greater than key 1 \(0x[0-9a-f]+\)/);
    }
    verifyTree(tree);
    expect(tree.count()).toBe(1);
    expect(tree.lookup(Uint8Array.of(0, 9))).toBe(7);
    tree.delete(Uint8Array.of(0, 9));
    expectBaseline(tree, epoch);
    epoch.close();
  });
}

test('bulkLoad of a key already in the tree is refused (assertion) before anything is published', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  tree.insert(Uint8Array.of(2), 7);
  expect(() => tree.bulkLoad(entries([[1], [2]]))).toThrow(AssertionError);
  epoch.close();
});

test('bulkLoad on a tree whose handle was taken, or on an attached tree, is an assertion failure', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  const handle = tree.handle();
  expect(() => tree.bulkLoad(entries([[1]]))).toThrow(AssertionError);
  const other = EpochDomain.attach(epoch.handle());
  const attached = RadixTree.attach(handle, other);
  expect(() => attached.bulkLoad(entries([[1]]))).toThrow(AssertionError);
  expect(tree.count()).toBe(0);
  other.close();
  epoch.close();
});
