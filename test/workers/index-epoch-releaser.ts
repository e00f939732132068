/**
 * Worker: attach to the domain BEFORE the main thread grows its limbo (so this thread's limbo
 * view is the small one), signal ready, wait for the main thread's go, then release kind-1
 * items with its own reclaimer and post what it released (epoch-cross-thread.test.ts).
 */
import { workerData, parentPort } from 'node:worker_threads';
import { EpochDomain, type EpochHandle } from '../../src/index/epoch.js';

const { handle, control } = workerData as { handle: EpochHandle; control: SharedArrayBuffer };
const domain = EpochDomain.attach(handle);
const c = new Int32Array(control);
const released: number[] = [];
domain.registerReclaimer(1, (payload) => released.push(payload));
domain.collect(); // takes the limbo mutex once with the small view
Atomics.store(c, 0, 1);
Atomics.notify(c, 0);
while (Atomics.load(c, 1) === 0) Atomics.wait(c, 1, 0, 50);
let error = '';
try {
  for (let i = 0; i < 4; i++) domain.collect();
} catch (e) {
  error = String(e);
}
domain.close();
parentPort!.postMessage({ released, error });
