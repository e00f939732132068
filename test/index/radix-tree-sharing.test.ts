/**
 * One tree shared by all threads: a worker attaches with tree.handle() (no copy) before the
 * main thread grows the arena several times, and then sees every key the main thread
 * inserted, through its own (refreshed) views of the same shared WebAssembly.Memory.
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { testKey } from '../workers/index-keys.js';
import { expectBaseline, newControl, startTreeWorker, startWhenReady } from './tree-helpers.js';

test('a worker attached before the arena grew sees every key inserted after', async () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { initialBytes: 64 * 1024 });
  const before = tree.arena.sab.byteLength;
  const control = newControl();
  const KEYS = 40_000;
  const run = startTreeWorker<{ wrong: number; scanned: number; arenaBytes: number }>({
    mode: 'check-all',
    tree: tree.handle(),
    epoch: epoch.handle(),
    control: control.buffer as SharedArrayBuffer,
    seed: 1,
    ops: 0,
    keys: KEYS,
  });
  // Wait until the worker has attached (it counts itself ready), then grow.
  while (Atomics.load(control, 3) < 1) await new Promise((r) => setTimeout(r, 2));
  for (let k = 0; k < KEYS; k++) tree.insert(testKey(k), k);
  expect(tree.arena.sab.byteLength).toBeGreaterThan(before * 8);
  await startWhenReady(control, 1);
  const r = await run;
  expect(r).toEqual({ wrong: 0, scanned: KEYS, arenaBytes: tree.arena.sab.byteLength });
  for (let k = 0; k < KEYS; k++) tree.delete(testKey(k));
  expectBaseline(tree, epoch);
});
