/**
 * loadImage's `confirm` (src/index/tree-image.ts): the image is copied into a run of the arena
 * and `confirm` asked before anything is grafted, as an index checkpoint's open waits there for
 * the check of the records the checkpoint covers (src/kv/recovery.ts). Refused, the run is given
 * back (the arena's bump and live words as before the copy) and the tree is unchanged: the keys
 * already there all found, none of the image's, the structure verified; the same image loads
 * afterwards into the same words. Keys are random (seeded), the image's under first byte 1, the
 * tree's own under 0 (as an index checkpoint's beside the space's page keys).
 */
import { expect, test } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { H_BUMP } from '../../src/index/arena.js';
import { buildTreeImage } from '../../src/index/tree-image.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { compareBytes, hex } from './tree-helpers.js';
import { rng, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/tree-image-confirm.test.ts';

function randomKeys(random: () => number, first: number, count: number): Uint8Array[] {
  const uniq = new Map<string, Uint8Array>();
  while (uniq.size < count) {
    const k = Uint8Array.from({ length: 1 + Math.floor(random() * 12) }, (_, i) =>
      i === 0 ? first : Math.floor(random() * 256),
    );
    uniq.set(hex(k), k);
  }
  return [...uniq.values()].sort(compareBytes);
}

test('an image refused by confirm after its copy gives its run back and leaves the tree as it was', async () => {
  await withSeed(FILE, (seed) => {
    const random = rng(seed);
    for (let round = 0; round < 6; round++) {
      const mine = randomKeys(random, 0, 1 + Math.floor(random() * 200));
      const theirs = randomKeys(random, 1, 1 + Math.floor(random() * 3000));
      const starts = new Uint32Array(theirs.length);
      let at = 0;
      theirs.forEach((k, i) => ((starts[i] = at), (at += k.length)));
      const keys = new Uint8Array(at);
      theirs.forEach((k, i) => keys.set(k, starts[i]));
      const image = buildTreeImage(
        {
          count: theirs.length,
          keys,
          starts,
          lengths: Uint16Array.from(theirs, (k) => k.length),
          values: Float64Array.from(theirs, (_, i) => i * 8),
        },
        at,
      );
      const epoch = EpochDomain.create();
      const tree = RadixTree.create(epoch);
      mine.forEach((k, i) => expect(tree.insert(k, 100 + i)).toBe(true));
      const live = tree.arena.liveWords();
      const bump = tree.arena.i32[H_BUMP];
      let asked = 0;
      expect(tree.loadImage(image, undefined, () => (asked++, false))).toBe(false);
      expect(asked).toBe(1);
      expect(tree.arena.liveWords()).toBe(live);
      expect(tree.arena.i32[H_BUMP]).toBe(bump);
      expect(tree.count()).toBe(mine.length);
      mine.forEach((k, i) => expect(tree.lookup(k)).toBe(100 + i));
      for (const k of theirs) expect(tree.lookup(k)).toBeUndefined();
      verifyTree(tree);
      // confirmed, the same image loads into the words it was given back
      expect(tree.loadImage(image, undefined, () => true)).toBe(true);
      expect(tree.count()).toBe(mine.length + theirs.length);
      mine.forEach((k, i) => expect(tree.lookup(k)).toBe(100 + i));
      theirs.forEach((k, i) => expect(tree.lookup(k)).toBe(i * 8));
      verifyTree(tree);
      epoch.close();
    }
  });
});
