/**
 * Worker for test/kv/kv-compaction-mutex.test.ts: attaches to the store, waits until the main
 * thread says go (flags[0] = 1: its own compaction is inside its unpublish window), compacts
 * with maxLiveRatio, then says done (flags[1] = 1; flags[2] = 1 once attached) and posts the compaction report.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

interface Data {
  handle: KvHandle;
  flags: SharedArrayBuffer;
  maxLiveRatio: number;
}
const { handle, flags, maxLiveRatio } = workerData as Data;
const f = new Int32Array(flags);
const db = attach(handle);
Atomics.store(f, 2, 1); // attached
while (Atomics.load(f, 0) === 0) Atomics.wait(f, 0, 0, 1000);
const report = db.compact({ maxLiveRatio });
Atomics.store(f, 1, 1);
Atomics.notify(f, 1);
db.close();
parentPort!.postMessage(report);
