/**
 * Worker for test/kv/kv-stats-counters.test.ts: attaches to a shared store and, after a
 * barrier (all workers start together), puts `puts` keys of its own ("w<worker>:<i>", none
 * shared with another worker) and deletes every `deleteEvery`-th of them, with 'none'
 * durability so the counters are updated as often as the store allows. Posts [puts, deletes].
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

interface Data {
  handle: KvHandle;
  worker: number;
  workers: number;
  barrier: SharedArrayBuffer;
  puts: number;
  deleteEvery: number;
}
const { handle, worker, workers, barrier, puts, deleteEvery } = workerData as Data;
const db = attach(handle);
const arrived = new Int32Array(barrier);
Atomics.add(arrived, 0, 1);
Atomics.notify(arrived, 0);
for (let seen = Atomics.load(arrived, 0); seen < workers; seen = Atomics.load(arrived, 0))
  Atomics.wait(arrived, 0, seen, 10);
let deletes = 0;
const value = new Uint8Array(8).fill(worker);
for (let i = 0; i < puts; i++) {
  db.put(`w${worker}:${i}`, value);
  if (i % deleteEvery === 0 && db.delete(`w${worker}:${i}`)) deletes++;
}
db.close();
parentPort!.postMessage([puts, deletes]);
