/**
 * Worker of test/kv/kv-space-death.test.ts: attaches to a full store and runs op 0, 1, 2, ...
 * of its trial (test/helpers/space-death.ts: deletes, deleteRange, batches of deletes,
 * compact) until the test terminates it. progress (Int32): [0] ops started, [1] ops
 * acknowledged (returned), [2] 1 once attached, [3] 1 once it holds the priority writer
 * (`hold`: the first time its work there appended records, the worker stops inside the
 * compaction mutex, before parking the writer, and waits to be terminated).
 */
import { workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { runOp } from '../helpers/thread-death.js';
import { spaceOpAt } from '../helpers/space-death.js';
import { testHooks } from '../../src/test-break.js';

interface Data {
  handle: KvHandle;
  keys: string[];
  seed: number;
  progress: SharedArrayBuffer;
  hold: boolean;
}
const { handle, keys, seed, progress, hold } = workerData as Data;
const p = new Int32Array(progress);
const db = attach(handle);
if (hold)
  testHooks.priorityHeld = (appended) => {
    if (!appended) return;
    Atomics.store(p, 3, 1);
    for (;;) Atomics.wait(p, 3, 1, 5); // terminate() ends the thread between two waits
  };
Atomics.store(p, 2, 1);
for (let i = 0; ; i++) {
  Atomics.store(p, 0, i + 1);
  runOp(db, spaceOpAt(keys, seed, i));
  Atomics.store(p, 1, i + 1);
}
