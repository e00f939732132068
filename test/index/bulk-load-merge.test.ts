/**
 * bulkLoad of a merge (BulkEntries.merge): the entries a tape takes from two column sets, in
 * tape order (addon/bulk-load.h), as recovery loads a checkpoint's winners and the log's after
 * it without copying either. Random sorted key sets are split between the two sets (a key in
 * one, or in both with one side skipped, or skipped alone); the tree built from the tape must
 * be node for node the one the same entries taken whole build. A tape that leaves its columns,
 * or takes more or fewer entries than `count`, is refused (DaxError EINVAL, tree unchanged).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { DaxError } from '../../src/errors.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import type { BulkEntries } from '../../src/index/bulk-load.js';
import { compareBytes, expectBaseline, hex } from './tree-helpers.js';
import { rng, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/bulk-load-merge.test.ts';
const TAKE_A = 0;
const SKIP_A = 1;
const TAKE_B = 2;
const SKIP_B = 3;

/** Columns of sorted keys, each stored at its own place in one buffer. */
function columns(keys: Uint8Array[], values: number[]) {
  const starts = new Uint32Array(keys.length);
  let at = 0;
  keys.forEach((k, i) => {
    starts[i] = at;
    at += k.length + 1;
  });
  const buf = new Uint8Array(at);
  keys.forEach((k, i) => buf.set(k, starts[i]));
  return {
    keys: buf,
    starts,
    lengths: Uint16Array.from(keys, (k) => k.length),
    values: Float64Array.from(values),
  };
}

/** Steps (op per entry) as run-length tape words. */
function tape(steps: number[]): Uint32Array {
  const words: number[] = [];
  for (const op of steps) {
    const last = words.length - 1;
    if (last >= 0 && words[last] >>> 30 === op) words[last]++;
    else words.push(((op << 30) | 1) >>> 0);
  }
  return Uint32Array.from(words);
}

function randomKey(random: () => number): Uint8Array {
  const n = Math.floor(random() * 6);
  return Uint8Array.from({ length: n }, () => Math.floor(random() * 4) * 60);
}

test('a merge tape over two column sets builds the tree its taken entries build whole', async () => {
  await withSeed(FILE, (seed) => {
    const random = rng(seed);
    for (let round = 0; round < 20; round++) {
      const uniq = new Map<string, Uint8Array>();
      for (let i = 0; i < 1 + Math.floor(random() * 300); i++) {
        const k = randomKey(random);
        uniq.set(hex(k), k);
      }
      const sorted = [...uniq.values()].sort(compareBytes);
      const a: Uint8Array[] = [];
      const av: number[] = [];
      const b: Uint8Array[] = [];
      const bv: number[] = [];
      const steps: number[] = [];
      const taken: Array<[Uint8Array, number]> = [];
      for (const k of sorted) {
        const value = Math.floor(random() * 2 ** 48);
        const r = random();
        if (r < 0.4) {
          (a.push(k), av.push(value), steps.push(TAKE_A), taken.push([k, value]));
        } else if (r < 0.6) {
          (b.push(k), bv.push(value), steps.push(TAKE_B), taken.push([k, value]));
        } else if (r < 0.75) {
          // In both, the tail's wins: a's skipped first (the merge's order), then b's taken.
          (a.push(k), av.push(1), b.push(k), bv.push(value));
          (steps.push(SKIP_A, TAKE_B), taken.push([k, value]));
        } else if (r < 0.9) {
          (a.push(k), av.push(value), b.push(k), bv.push(2));
          (steps.push(TAKE_A, SKIP_B), taken.push([k, value]));
        } else {
          (b.push(k), bv.push(3), steps.push(SKIP_B)); // a DEL of a key the checkpoint lacks
        }
      }
      const A = columns(a, av);
      const merged: BulkEntries = { count: taken.length, ...A, merge: { ...columns(b, bv), tape: tape(steps) } };
      const whole: BulkEntries = {
        count: taken.length,
        ...columns(
          taken.map(([k]) => k),
          taken.map(([, v]) => v),
        ),
      };
      const epoch = EpochDomain.create();
      const tree = RadixTree.create(epoch);
      tree.bulkLoad(merged);
      verifyTree(tree);
      const peer = RadixTree.create(epoch);
      peer.bulkLoad(whole);
      expect(tree.count()).toBe(taken.length);
      for (const [k, v] of taken) expect(tree.lookup(k)).toBe(v);
      expect(tree.arena.liveWords()).toBe(peer.arena.liveWords());
      epoch.close();
    }
  });
});

const K = [Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3)];
const BAD_TAPES: Record<string, { count: number; steps: number[] }> = {
  'takes past the first set': { count: 3, steps: [TAKE_A, TAKE_A, TAKE_A] },
  'skips past the second set': { count: 1, steps: [TAKE_A, SKIP_B, SKIP_B] },
  'takes fewer entries than count': { count: 3, steps: [TAKE_A, TAKE_B] },
  'takes more entries than count': { count: 1, steps: [TAKE_A, TAKE_B] },
  'takes keys out of order': { count: 2, steps: [TAKE_B, TAKE_A] },
};

for (const [name, bad] of Object.entries(BAD_TAPES)) {
  const code = name.includes('out of order') ? 'ECORRUPT' : 'EINVAL';
  test(`bulkLoad of a merge tape that ${name} throws ${code} and leaves the tree as it was`, () => {
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch);
    tree.insert(Uint8Array.of(0, 9), 7);
    const entries: BulkEntries = {
      count: bad.count,
      ...columns([K[0], K[1]], [10, 11]),
      merge: { ...columns([K[2]], [12]), tape: tape(bad.steps) },
    };
    let thrown: unknown;
    try {
      tree.bulkLoad(entries);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(DaxError);
    expect((thrown as DaxError).code).toBe(code);
    verifyTree(tree);
    expect(tree.count()).toBe(1);
    expect(tree.lookup(Uint8Array.of(0, 9))).toBe(7);
    tree.delete(Uint8Array.of(0, 9));
    expectBaseline(tree, epoch);
    epoch.close();
  });
}
