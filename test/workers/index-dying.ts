/**
 * Worker of test/index/index-thread-death.test.ts: attaches to a bare radix tree and runs op 0,
 * 1, ... (indexDeathOp) until it is terminated: inserts and deletes that grow and shrink nodes
 * (N4 up to N256 and back), and DIRTY tag changes under the entry lock. progress (Int32): [0]
 * ops started, [1] ops done, [2] 1 once attached.
 */
import { workerData } from 'node:worker_threads';
import { EpochDomain, type EpochHandle } from '../../src/index/epoch.js';
import { RadixTree, type RadixTreeHandle } from '../../src/index/radix-tree.js';
import { runIndexDeathOp } from './index-death-ops.js';

const {
  tree: th,
  epoch: eh,
  seed,
  progress,
} = workerData as {
  tree: RadixTreeHandle;
  epoch: EpochHandle;
  seed: number;
  progress: SharedArrayBuffer;
};
const p = new Int32Array(progress);
const epoch = EpochDomain.attach(eh);
const tree = RadixTree.attach(th, epoch);
Atomics.store(p, 2, 1);
for (let i = 0; ; i++) {
  Atomics.store(p, 0, i + 1);
  runIndexDeathOp(tree, seed, i);
  Atomics.store(p, 1, i + 1);
}
