/**
 * Misuse is a typed DaxError naming the object, and changes nothing: bad keys, values,
 * bounds and orders; unlock/replace of an entry this thread does not hold; EDEADLK while
 * iterating with the entry held (the iterator itself takes no entry locks).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { deleteLocked, grab, replace, unlock } from '../../src/index/entry-lock.js';
import { MAX_KEY_BYTES } from '../../src/index/nodes.js';
import { expectBaseline } from './tree-helpers.js';

const k = (s: string): Uint8Array => new TextEncoder().encode(s);

test('bad arguments are EINVAL and leave the tree unchanged', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  tree.insert(k('a'), 1);
  expect(() => tree.insert(k('b'), -1)).toThrow(/EINVAL/);
  expect(() => tree.insert(k('b'), 2 ** 48)).toThrow(/EINVAL/);
  expect(() => tree.insert(k('b'), 1.5)).toThrow(/EINVAL/);
  expect(() => tree.lookup(new Uint8Array(MAX_KEY_BYTES + 1))).toThrow(/EINVAL/);
  expect(() => tree.lookup('a' as unknown as Uint8Array)).toThrow(/EINVAL/);
  expect(() => [...tree.range({ gt: k('a'), gte: k('a') })]).toThrow(/EINVAL/);
  expect(() => [...tree.range({ limit: -1 })]).toThrow(/EINVAL/);
  expect(() => tree.lookupIndex(-1)).toThrow(/EINVAL/);
  expect(() => grab(tree, k('x'), { order: 3 as 9 })).toThrow(/EINVAL/);
  expect(tree.count()).toBe(1); // the failed insert of 'b' left no placeholder behind
  expect(tree.lookup(k('b'))).toBeUndefined();
  tree.delete(k('a'));
  expectBaseline(tree, epoch);
});

test('unlock, replace and deleteLocked of an entry not held are EINVAL', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  const ref = grab(tree, k('a'));
  replace(tree, ref, 5);
  unlock(tree, ref);
  expect(() => unlock(tree, ref)).toThrow(/EINVAL.*not held/);
  expect(() => replace(tree, ref, 6)).toThrow(/EINVAL/);
  expect(() => deleteLocked(tree, ref)).toThrow(/EINVAL/);
  expect(tree.lookup(k('a'))).toBe(5);
  tree.delete(k('a'));
  expectBaseline(tree, epoch);
});

test('iterating while holding an entry lock works; grabbing it again inside is EDEADLK', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  for (const s of ['a', 'b', 'c']) tree.insert(k(s), s.charCodeAt(0));
  const ref = grab(tree, k('b'));
  const seen: string[] = [];
  for (const [key, , info] of tree.range()) {
    seen.push(`${new TextDecoder().decode(key)}${info.locked ? '*' : ''}`);
    if (info.locked) expect(() => grab(tree, key)).toThrow(/EDEADLK/);
  }
  expect(seen).toEqual(['a', 'b*', 'c']);
  unlock(tree, ref);
  for (const s of ['a', 'b', 'c']) tree.delete(k(s));
  expectBaseline(tree, epoch);
});
