/**
 * Children added in place to N4/N16/N32 nodes (nodes.ts: child word, key byte, then the
 * count in the header) under lock-free readers in workers: a reader always finds the keys
 * that were there before (two stable keys per node, bytes 250 and 251, which every append
 * lands before in sort order) with their values, and an appended key either absent or whole.
 * With DAXSTORE_TEST_BREAK=append-shift the writer keeps the bytes sorted by shifting them in
 * place instead, and the readers must see it (the test goes red).
 * Not covered: non-x86 (there the append is a copy-on-write, as before).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { C_BAD_READS, C_STOP, expectBaseline, newControl, startTreeWorker, startWhenReady } from './tree-helpers.js';
import { withSeed } from '../helpers/seed.js';

const FILE = 'test/index/radix-tree-append.test.ts';
const NODES = 256;

async function appendUnderReaders(
  seed: number,
  breakSwitch?: string,
): Promise<{ bad: number; errors: string[]; tree: RadixTree; epoch: EpochDomain }> {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  for (let p = 0; p < NODES; p++) for (const s of [250, 251]) tree.insert(Uint8Array.of(p, s), p * 256 + s + 1);
  const control = newControl();
  const base = {
    tree: tree.handle(),
    epoch: epoch.handle(),
    control: control.buffer as SharedArrayBuffer,
    keys: NODES,
  };
  const errors: string[] = [];
  const settle = (p: Promise<unknown>): Promise<void> =>
    p.then(
      () => undefined,
      (e: unknown) => void errors.push(String(e)),
    );
  const writer = settle(startTreeWorker({ ...base, mode: 'appender', seed, ops: 0 }, breakSwitch));
  const readers = [1, 2].map((w) =>
    settle(startTreeWorker({ ...base, mode: 'append-reader', seed: seed + w, ops: 0 }, breakSwitch)),
  );
  await startWhenReady(control, 3);
  await writer;
  Atomics.store(control, C_STOP, 1);
  await Promise.all(readers);
  return { bad: Atomics.load(control, C_BAD_READS), errors, tree, epoch };
}

test('readers find every earlier key while children are appended in place to N4/N16/N32 nodes', async () => {
  await withSeed(FILE, async (seed) => {
    const { bad, errors, tree, epoch } = await appendUnderReaders(seed);
    expect({ bad, errors }).toEqual({ bad: 0, errors: [] });
    verifyTree(tree);
    expect(tree.count()).toBe(NODES * 32);
    for (let p = 0; p < NODES; p++) {
      for (let s = 0; s < 30; s++) expect(tree.lookup(Uint8Array.of(p, s))).toBe(p * 256 + s + 1);
      // scans see each node's children in byte order although they are stored in insertion order
      expect([...tree.prefix(Uint8Array.of(p))].map(([k]) => k[1])).toEqual([
        ...Array.from({ length: 30 }, (_, i) => i),
        250,
        251,
      ]);
    }
    for (let p = 0; p < NODES; p++) {
      for (let s = 0; s < 30; s++) tree.delete(Uint8Array.of(p, s));
      for (const s of [250, 251]) tree.delete(Uint8Array.of(p, s));
    }
    expectBaseline(tree, epoch);
  });
});

test('with DAXSTORE_TEST_BREAK=append-shift (sorted insert shifting in place) the readers miss keys (the test goes red)', async () => {
  await withSeed(FILE, async (seed) => {
    let detected = false;
    for (let attempt = 0; attempt < 5 && !detected; attempt++) {
      const { bad } = await appendUnderReaders(seed + attempt * 101, 'append-shift');
      detected = bad > 0;
    }
    expect(detected).toBe(true);
  });
});
