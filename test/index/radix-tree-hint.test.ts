/**
 * getOrCreateLocked's descent hint (radix-tree.ts findExactHintPinned; arena.ts H_VERSION):
 * an absent key's lock-free descent leaves the slot and depth where it ended, and the create
 * under treeLock starts there only while no treeLock holder has unlocked since the descent
 * began. Each case here makes the hint stale with one structural change between the descent
 * and the create (a prefix split above the hinted node, a node grown by copy, the hinted leaf
 * split, the hinted node's whole subtree deleted), then creates the key: it must land in the
 * tree as it is now. Red run: with the version check switched off ('tree-hint-unchecked'),
 * the stale hints put keys into nodes that are no longer in the tree.
 * Also: a fresh hint gives the same tree as no hint (a model check over random keys).
 */
import { expect, test } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { setBroken } from '../../src/test-break.js';
import { rng, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/radix-tree-hint.test.ts';
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Hint for `key` (absent), then `change`, then create `key` with the hint: is it found after? */
function createAfter(
  base: string[],
  key: string,
  change: (tree: RadixTree) => void,
): { found: boolean; verified: boolean; threw: string } {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { poisonReclaimed: true });
  base.forEach((k, i) => tree.insert(enc(k), i + 1));
  const k = enc(key);
  epoch.pin();
  expect(tree.findExactHintPinned(k)).toBe(0);
  epoch.unpin();
  change(tree);
  for (let i = 0; i < 4; i++) epoch.collect(); // reclaim what the change retired (poisoned)
  let threw = '';
  tree.lockTree();
  try {
    tree.getOrCreateLocked(k, 0, true); // entry word 0: an unlocked VALUE entry of value 0
  } catch (err) {
    threw = String(err); // a stale hint met a reclaimed (poisoned) node: the invariant check fires
  } finally {
    tree.unlockTree();
  }
  let verified = true;
  try {
    verifyTree(tree);
  } catch {
    verified = false;
  }
  return { found: tree.lookup(k) === 0, verified, threw };
}

const CASES: Array<[string, string[], string, (tree: RadixTree) => void]> = [
  [
    'a prefix split above the hinted node',
    ['shared/prefix/a1', 'shared/prefix/a2'],
    'shared/prefix/a3',
    (t) => t.insert(enc('shared/other'), 9),
  ],
  ['the hinted node grown by copy (N4 to N16)', ['n/a', 'n/b', 'n/c'], 'n/d', (t) => t.insert(enc('n/e'), 9)],
  ['the hinted leaf split', ['leaf/alone'], 'leaf/alonf', (t) => t.insert(enc('leaf/alonx'), 9)],
  [
    'the hinted subtree deleted',
    ['gone/a', 'gone/b', 'kept'],
    'gone/c',
    (t) => (t.delete(enc('gone/a')), t.delete(enc('gone/b'))),
  ],
];

test.each(CASES)('a stale hint is not used: %s', (_name, base, key, change) => {
  expect(createAfter(base, key, change)).toEqual({ found: true, verified: true, threw: '' });
});

test('goes red with tree-hint-unchecked: with the version check off, a stale hint breaks the tree (the create meets a reclaimed node, or the key is lost)', () => {
  setBroken('tree-hint-unchecked', true);
  try {
    const results = CASES.map(([, base, key, change]) => createAfter(base, key, change));
    const broken = results.filter((r) => !r.found || !r.verified || r.threw !== '').length;
    console.log(`${FILE}: red run: ${broken} of ${CASES.length} stale hints broke the tree`);
    expect(broken).toBeGreaterThan(0);
  } finally {
    setBroken('tree-hint-unchecked', false);
  }
});

test('a fresh hint builds the same tree as a descent from the root', () => {
  withSeed(FILE, (seed) => {
    const r = rng(seed);
    const trees = [true, false].map(() => RadixTree.create(EpochDomain.create()));
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 3000; i++) {
      const k = Uint8Array.from({ length: 1 + Math.floor(r() * 24) }, () => Math.floor(r() * 6) + 0x61);
      keys.push(k);
      trees.forEach((tree, t) => {
        tree.epoch.pin();
        const found = tree.findExactHintPinned(k);
        tree.epoch.unpin();
        if (found !== 0) return;
        tree.lockTree();
        try {
          tree.getOrCreateLocked(k, 0, t === 0);
        } finally {
          tree.unlockTree();
        }
      });
    }
    const shapes = trees.map((t) => verifyTree(t));
    expect(shapes[0]).toEqual(shapes[1]);
    for (const k of keys) expect(trees.map((t) => t.lookup(k))).toEqual([0, 0]);
  });
});
