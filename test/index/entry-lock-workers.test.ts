/**
 * Random mixed operations from 2 and 4 worker threads on overlapping keys (grab/tryGrab +
 * replace, deleteLocked, lock-free lookups and ranges) checked against a model: every
 * increment made under an entry lock must survive or be accounted for by a delete.
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { testKey } from '../workers/index-keys.js';
import { C_BAD_READS, expectBaseline, newControl, startTreeWorker, startWhenReady } from './tree-helpers.js';
import { withSeed } from '../helpers/seed.js';

const KEYS = 24;

for (const workers of [2, 4]) {
  test(`mixed ops from ${workers} workers on overlapping keys match the model`, async () => {
    await withSeed('test/index/entry-lock-workers.test.ts', async (seed) => {
      const epoch = EpochDomain.create();
      const tree = RadixTree.create(epoch, { poisonReclaimed: true });
      const control = newControl();
      const runs = Array.from({ length: workers }, (_, w) =>
        startTreeWorker<{ incs: number[]; deleted: number[] }>({
          mode: 'mixed',
          tree: tree.handle(),
          epoch: epoch.handle(),
          control: control.buffer as SharedArrayBuffer,
          seed: seed + w,
          ops: 3000,
          keys: KEYS,
        }),
      );
      await startWhenReady(control, workers);
      const results = await Promise.all(runs);
      expect(Atomics.load(control, C_BAD_READS)).toBe(0);
      for (let k = 0; k < KEYS; k++) {
        const incs = results.reduce((s, r) => s + r.incs[k], 0);
        const deleted = results.reduce((s, r) => s + r.deleted[k], 0);
        expect((tree.lookup(testKey(k)) ?? 0) + deleted, `key ${k}`).toBe(incs);
      }
      verifyTree(tree);
      for (let k = 0; k < KEYS; k++) tree.delete(testKey(k));
      expectBaseline(tree, epoch);
    });
  });
}
