/**
 * Worker for test/kv/kv-compaction-open-writers.test.ts: attaches to a 'group' store, puts
 * `k-<i>` = `v2-<i>` (records in its own open segment, NOT committed),
 * announces it (flags[0] = 1), then blocks its thread in Atomics.wait until the main thread
 * has compacted and checked a crash image (flags[1] = 1): its group-commit timer cannot fire
 * meanwhile, so its records stay un-durable unless someone else flushes them. Then it closes
 * (which commits) and posts how many operations it made.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

interface Data {
  handle: KvHandle;
  flags: SharedArrayBuffer;
  keys: number;
}
const { handle, flags, keys } = workerData as Data;
const f = new Int32Array(flags);
const db = attach(handle);
let ops = 0;
for (let i = 0; i < keys; i++, ops++) db.put(`k-${i}`, `v2-${i}`);
Atomics.store(f, 0, 1);
Atomics.notify(f, 0);
while (Atomics.load(f, 1) === 0) Atomics.wait(f, 1, 0, 1000);
db.close();
parentPort!.postMessage(ops);
