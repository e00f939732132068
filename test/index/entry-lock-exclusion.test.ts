/**
 * Mutual exclusion of entry locks across worker threads: a critical-section counter in a
 * SharedArrayBuffer, incremented right after grab() and decremented before unlock(), never
 * exceeds 1. The same run with DAXSTORE_TEST_BREAK=entry-lock (grab not exclusive) must
 * see it exceed 1, proving the test can fail.
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { testKey } from '../workers/index-keys.js';
import { C_MAX_INSIDE, expectBaseline, newControl, startTreeWorker, startWhenReady } from './tree-helpers.js';
import { withSeed } from '../helpers/seed.js';

/** Runs until the workers overlap: a few on an idle machine, more when they are run one by one. */
const MAX_RUNS = 20;

async function maxInside(
  seed: number,
  workers: number,
  breakSwitch?: string,
): Promise<{ max: number; tree: RadixTree; epoch: EpochDomain }> {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  const control = newControl();
  const runs = Array.from({ length: workers }, (_, w) =>
    startTreeWorker(
      {
        mode: 'mutex',
        tree: tree.handle(),
        epoch: epoch.handle(),
        control: control.buffer as SharedArrayBuffer,
        seed: seed + w,
        ops: 400,
        keys: 2,
        holdSpins: 3000,
      },
      breakSwitch,
    ),
  );
  await startWhenReady(control, workers);
  await Promise.all(runs);
  return { max: Atomics.load(control, C_MAX_INSIDE), tree, epoch };
}

test('a grabbed entry is held by one thread at a time (4 workers, 2 keys)', async () => {
  await withSeed('test/index/entry-lock-exclusion.test.ts', async (seed) => {
    // Every run must keep one holder at a time. A loaded machine may run the workers one after
    // another, so a run without any wait proves nothing: runs go on until one sees real contention.
    let waits = 0;
    for (let attempt = 0; attempt < MAX_RUNS && waits === 0; attempt++) {
      const { max, tree, epoch } = await maxInside(seed + attempt, 4);
      expect(max).toBe(1);
      waits = tree.stats().waits;
      for (let k = 0; k < 2; k++) tree.delete(testKey(k));
      expectBaseline(tree, epoch);
    }
    expect(waits).toBeGreaterThan(0); // they really contended
  });
}, 300_000);

test('with DAXSTORE_TEST_BREAK=entry-lock the exclusion check goes red', async () => {
  await withSeed('test/index/entry-lock-exclusion.test.ts', async (seed) => {
    // Overlap is a race too (a loaded machine may run the workers one after another), so
    // the broken run goes on until it shows two holders at once, up to a bound.
    let max = 0;
    for (let attempt = 0; attempt < MAX_RUNS && max <= 1; attempt++)
      max = (await maxInside(seed + attempt, 4, 'entry-lock')).max;
    expect(max).toBeGreaterThan(1);
  });
}, 300_000);
