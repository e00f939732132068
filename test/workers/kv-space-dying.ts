/**
 * Worker of test/kv/kv-space-death.test.ts: attaches to a full store and runs op 0, 1, 2, ...
 * of its trial (test/helpers/space-death.ts: deletes, deleteRange, batches of deletes,
 * compact) until the test terminates it. progress (Int32): [0] ops started, [1] ops
 * acknowledged (returned), [2] 1 once attached.
 */
import { workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { runOp } from '../helpers/thread-death.js';
import { spaceOpAt } from '../helpers/space-death.js';

interface Data {
  handle: KvHandle;
  keys: string[];
  seed: number;
  progress: SharedArrayBuffer;
}
const { handle, keys, seed, progress } = workerData as Data;
const p = new Int32Array(progress);
const db = attach(handle);
Atomics.store(p, 2, 1);
for (let i = 0; ; i++) {
  Atomics.store(p, 0, i + 1);
  runOp(db, spaceOpAt(keys, seed, i));
  Atomics.store(p, 1, i + 1);
}
