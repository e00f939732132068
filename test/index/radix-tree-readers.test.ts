/**
 * Lock-free readers (lookups and ordered scans, Atomics loads only) running in workers while
 * writer workers insert, delete and retire underneath them, in poisonReclaimed mode: readers
 * never see a torn value, a key out of order, or a reclaimed (poisoned) node. With
 * DAXSTORE_TEST_BREAK=epoch (no grace period) the same run must go red.
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { testKey } from '../workers/index-keys.js';
import { C_BAD_READS, C_STOP, expectBaseline, newControl, startTreeWorker, startWhenReady } from './tree-helpers.js';
import { withSeed } from '../helpers/seed.js';

const FILE = 'test/index/radix-tree-readers.test.ts';
const KEYS = 200;

async function churn(
  seed: number,
  breakSwitch?: string,
): Promise<{ bad: number; poisonHits: number; errors: string[]; tree: RadixTree; epoch: EpochDomain }> {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { poisonReclaimed: true });
  const control = newControl();
  const base = { tree: tree.handle(), epoch: epoch.handle(), control: control.buffer as SharedArrayBuffer, keys: KEYS };
  const errors: string[] = [];
  // Record each worker's failure as soon as it happens: a reader may crash (the broken run's
  // restart guard) while the writers are still awaited, and an unobserved rejection would
  // fail the whole vitest run.
  const settle = (p: Promise<unknown>): Promise<void> =>
    p.then(
      () => undefined,
      (e: unknown) => void errors.push(String(e)),
    );
  const writers = [0, 1].map((w) =>
    settle(startTreeWorker({ ...base, mode: 'writer', seed: seed + w, ops: 15_000 }, breakSwitch)),
  );
  const readers = [2, 3].map((w) =>
    settle(startTreeWorker({ ...base, mode: 'reader', seed: seed + w, ops: 0 }, breakSwitch)),
  );
  await startWhenReady(control, 4);
  await Promise.all(writers);
  Atomics.store(control, C_STOP, 1);
  await Promise.all(readers);
  return { bad: Atomics.load(control, C_BAD_READS), poisonHits: tree.stats().poisonHits, errors, tree, epoch };
}

test('lock-free readers never see torn, out-of-order or reclaimed nodes while writers churn', async () => {
  await withSeed(FILE, async (seed) => {
    const { bad, poisonHits, errors, tree, epoch } = await churn(seed);
    expect({ bad, poisonHits, errors }).toEqual({ bad: 0, poisonHits: 0, errors: [] });
    verifyTree(tree);
    for (let k = 0; k < KEYS; k++) tree.delete(testKey(k));
    expectBaseline(tree, epoch);
  });
});

test('with DAXSTORE_TEST_BREAK=epoch the readers see reclaimed memory (the test goes red)', async () => {
  await withSeed(FILE, async (seed) => {
    // The broken run is itself a race (a reader must be inside a node as it is reclaimed),
    // so give it up to five runs to show the evidence: bad values, poison hits, or the
    // readers' restart guard tripping.
    let detected = false;
    for (let attempt = 0; attempt < 5 && !detected; attempt++) {
      const { bad, poisonHits, errors } = await churn(seed + attempt * 101, 'epoch');
      detected = bad + poisonHits > 0 || errors.some((e) => /reaching freed nodes/.test(e));
    }
    expect(detected).toBe(true);
  });
});
