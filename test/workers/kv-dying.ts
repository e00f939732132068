/**
 * Worker of test/kv/kv-thread-death.test.ts: attaches to the store and runs op 0, 1, 2, ... of
 * its kind (test/helpers/thread-death.ts) until the test ends it. progress (Int32): [0] ops
 * started, [1] ops acknowledged (returned), [2] 1 once attached. How it ends is `end`:
 * 'terminate' (the test calls worker.terminate() at a random moment), or after `ops` ops
 * 'throw' (an uncaught error), 'exit' (process.exit) or 'return' (the script just ends) —
 * in every case without close().
 */
import { workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { opAt, runOp, type Kind } from '../helpers/thread-death.js';

interface Data {
  handle: KvHandle;
  kind: Kind;
  seed: number;
  progress: SharedArrayBuffer;
  end: 'terminate' | 'throw' | 'exit' | 'return';
  ops: number;
}
const { handle, kind, seed, progress, end, ops } = workerData as Data;
const p = new Int32Array(progress);
const db = attach(handle);
Atomics.store(p, 2, 1);
const limit = end === 'terminate' ? Infinity : ops;
for (let i = 0; i < limit; i++) {
  Atomics.store(p, 0, i + 1);
  runOp(db, opAt(kind, seed, i));
  Atomics.store(p, 1, i + 1);
}
if (end === 'throw') throw new Error('the dying worker throws on purpose');
if (end === 'exit') process.exit(0);
