/**
 * Multi-order entries: an order-9 entry at an aligned index n covers n..n+511; a huge grab
 * over smaller entries falls back (undefined); a real huge entry is never split; a ZERO or
 * EMPTY huge entry is replaced by small ones (grab a covered index, deleteLocked, grab small).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { deleteLocked, grab, grabIndex, replace, unlock } from '../../src/index/entry-lock.js';
import { indexKey, keyIndex } from '../../src/index/keys.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { expectBaseline } from './tree-helpers.js';

function setup(): { tree: RadixTree; epoch: EpochDomain } {
  const epoch = EpochDomain.create();
  return { tree: RadixTree.create(epoch), epoch };
}

test('a huge entry covers 512 indices and every covered lookup finds it', () => {
  const { tree, epoch } = setup();
  expect(tree.insertIndex(1024, 99, { order: 9 })).toBe(true);
  for (const n of [1024, 1025, 1300, 1535]) expect(tree.lookupIndex(n)).toBe(99);
  for (const n of [1023, 1536]) expect(tree.lookupIndex(n)).toBeUndefined();
  expect(tree.entryInfo(indexKey(1500))).toMatchObject({ order: 9, value: 99 });
  expect(tree.count()).toBe(1);
  const ref = grabIndex(tree, 1400)!; // a covered index grabs the huge entry itself
  expect([ref.order, keyIndex(ref.key)]).toEqual([9, 1024]);
  unlock(tree, ref);
  expect(tree.deleteIndex(1400)).toBe(false); // not the entry's own key
  expect(tree.deleteIndex(1024)).toBe(true);
  expectBaseline(tree, epoch);
});

test('a huge grab over existing small entries falls back (undefined) and changes nothing', () => {
  const { tree, epoch } = setup();
  tree.insertIndex(1537, 1);
  expect(grabIndex(tree, 1536, { order: 9 })).toBeUndefined();
  expect(grab(tree, indexKey(1536), { order: 9 })).toBeUndefined();
  expect(tree.insertIndex(1536, 5, { order: 9 })).toBe(false);
  expect(tree.count()).toBe(1);
  expect(() => grabIndex(tree, 1537, { order: 9 })).toThrow(/EINVAL/); // misaligned
  tree.deleteIndex(1537);
  expectBaseline(tree, epoch);
});

test('a real huge entry is never split: small inserts inside it are refused', () => {
  const { tree, epoch } = setup();
  tree.insertIndex(0, 7, { order: 9 });
  expect(tree.insertIndex(3, 1)).toBe(false);
  expect(tree.lookupIndex(3)).toBe(7);
  expect(tree.count()).toBe(1);
  tree.deleteIndex(0);
  expectBaseline(tree, epoch);
});

test('a ZERO huge entry is replaced by small ones', () => {
  const { tree, epoch } = setup();
  tree.insertIndex(512, 0, { order: 9, state: 'zero' });
  expect(tree.insertIndex(600, 3)).toBe(true); // deletes the ZERO huge entry, inserts small
  expect(tree.lookupIndex(600)).toBe(3);
  expect(tree.lookupIndex(601)).toBeUndefined();
  // The explicit protocol: grab a covered index, deleteLocked the huge entry, grab small.
  tree.insertIndex(2048, 0, { order: 9, state: 'zero' });
  const huge = grabIndex(tree, 2100)!;
  expect(huge.state).toBe('zero');
  deleteLocked(tree, huge);
  const small = grabIndex(tree, 2100)!;
  expect([small.order, small.state]).toEqual([0, 'empty']);
  replace(tree, small, 11);
  unlock(tree, small);
  expect(tree.lookupIndex(2048)).toBeUndefined();
  expect(tree.lookupIndex(2100)).toBe(11);
  verifyTree(tree);
  tree.deleteIndex(600);
  tree.deleteIndex(2100);
  expectBaseline(tree, epoch);
});

test('a failed huge fault leaves nothing behind (EMPTY huge placeholder removed on unlock)', () => {
  const { tree, epoch } = setup();
  const ref = grabIndex(tree, 4096, { order: 9 })!;
  expect([ref.order, ref.state]).toEqual([9, 'empty']);
  expect(tree.lookupIndex(4100)).toBeUndefined(); // placeholders hold no value
  unlock(tree, ref);
  expect(tree.count()).toBe(0);
  expectBaseline(tree, epoch);
});
