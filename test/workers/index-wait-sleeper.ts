/** Worker: prepare an exclusive wait on `key`, announce it (control[index] = 1), block, report the result. */
import { workerData, parentPort } from 'node:worker_threads';
import { WaitTable, type WaitTableHandle } from '../../src/index/wait-table.js';

const { handle, key, control, index, timeoutMs } = workerData as {
  handle: WaitTableHandle;
  key: number;
  control: SharedArrayBuffer;
  index: number;
  timeoutMs: number;
};
const table = WaitTable.attach(handle);
const c = new Int32Array(control);
const waiter = table.prepare(key, 'exclusive');
Atomics.store(c, index, 1);
const result = table.wait(waiter, timeoutMs);
parentPort!.postMessage({ result, at: Atomics.add(c, 0, 1) });
