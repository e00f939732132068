/** Worker: pin the shared epoch domain, report pinned (control[0] = 1), stay pinned until control[1] != 0. */
import { workerData, parentPort } from 'node:worker_threads';
import { EpochDomain, type EpochHandle } from '../../src/index/epoch.js';

const { handle, control } = workerData as { handle: EpochHandle; control: SharedArrayBuffer };
const c = new Int32Array(control);
const domain = EpochDomain.attach(handle);
domain.pin();
Atomics.store(c, 0, 1);
Atomics.notify(c, 0);
while (Atomics.load(c, 1) === 0) Atomics.wait(c, 1, 0, 1000);
domain.unpin();
const threadId = domain.threadId;
domain.close();
parentPort!.postMessage({ threadId });
