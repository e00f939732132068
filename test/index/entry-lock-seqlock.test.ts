/**
 * The value seqlock of replace() (entry-lock.ts): a lock-free reader never sees the low word
 * of one value with the high word of another. replace() bumps the entry word's sequence with
 * a CAS before and after the value stores, and those stores are release stores (plain on x86)
 * since this session, not Atomics.store: this test runs a writer replacing values whose two
 * halves both change at every replace against two lock-free readers; and, for a new key, a
 * writer that fills fresh placeholders (replace of an EMPTY entry: value words first, then ONE
 * CAS sets the state and moves the sequence by two) and deletes them again. With
 * DAXSTORE_TEST_BREAK=seqlock (no sequence bumps around the stores; a placeholder's state set
 * before its value words) both runs go red.
 */
import { expect, test } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { testKey } from '../workers/index-keys.js';
import { C_BAD_READS, C_STOP, expectBaseline, newControl, startTreeWorker, startWhenReady } from './tree-helpers.js';

const KEYS = 4;

async function race(
  ops: number,
  breakSwitch?: string,
  mode: 'seqlock-writer' | 'seqlock-inserter' = 'seqlock-writer',
): Promise<{ bad: number; reads: number }> {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  {
    for (let k = 0; k < KEYS; k++) tree.insert(testKey(k), 2 ** 32 + 1);
    const control = newControl();
    const base = {
      tree: tree.handle(),
      epoch: epoch.handle(),
      control: control.buffer as SharedArrayBuffer,
      keys: KEYS,
      seed: 1,
    };
    const writer = startTreeWorker({ ...base, mode, ops }, breakSwitch);
    const readers = [0, 1].map(() =>
      startTreeWorker<{ reads: number }>({ ...base, mode: 'seqlock-reader', ops: 0 }, breakSwitch),
    );
    await startWhenReady(control, 3);
    await writer;
    Atomics.store(control, C_STOP, 1);
    const reads = (await Promise.all(readers)).reduce((n, r) => n + r.reads, 0);
    for (let k = 0; k < KEYS; k++) tree.delete(testKey(k));
    expectBaseline(tree, epoch);
    return { bad: Atomics.load(control, C_BAD_READS), reads };
  }
}

test('lock-free readers never see a value torn between its two words while it is replaced', async () => {
  const { bad, reads } = await race(300_000);
  console.log(`seqlock: ${reads} reads, ${bad} torn`);
  expect(reads).toBeGreaterThan(0);
  expect(bad).toBe(0);
});

test('goes red with DAXSTORE_TEST_BREAK=seqlock (value words stored without the sequence bumps)', async () => {
  let bad = 0;
  for (let attempt = 0; attempt < 3 && bad === 0; attempt++) {
    const r = await race(20_000, 'seqlock');
    console.log(`seqlock broken: ${r.reads} reads, ${r.bad} torn`);
    bad = r.bad;
  }
  expect(bad).toBeGreaterThan(0);
});

test('readers of a key being created see no value or a whole one (placeholder filled by one CAS)', async () => {
  const { bad, reads } = await race(100_000, undefined, 'seqlock-inserter');
  console.log(`seqlock inserts: ${reads} reads, ${bad} torn`);
  expect(reads).toBeGreaterThan(0);
  expect(bad).toBe(0);
});

test('goes red with DAXSTORE_TEST_BREAK=seqlock for new keys (state published before the value words)', async () => {
  let bad = 0;
  for (let attempt = 0; attempt < 3 && bad === 0; attempt++) {
    const r = await race(20_000, 'seqlock', 'seqlock-inserter');
    console.log(`seqlock inserts broken: ${r.reads} reads, ${r.bad} torn`);
    bad = r.bad;
  }
  expect(bad).toBeGreaterThan(0);
});
