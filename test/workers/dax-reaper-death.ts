/**
 * Worker of test/dax/dax-reaper-death.test.ts, in one of three roles over one object's page.
 *   faulter: write-faults the page; once its fresh block is published and not yet in the tree
 *     (testHooks.faultWindow 'published'), sets progress[0] to 1 and waits to be terminated: a
 *     dead thread whose staging block the reaper must put in the tree.
 *   reaper: attached before that death; on 'go' write-faults the same page, which meets the dead
 *     holder and reaps it. The reap stops at `stop` (testHooks.reapStage), sets progress[1] to 1
 *     and waits to be terminated. If the reap never reaches `stop`, progress[1] becomes 2.
 *   survivor: write-faults the page, stores `stamp` in its first word, and posts the page's
 *     device offset.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DaxSpace, type DaxSpaceHandle } from '../../src/dax/space.js';
import { testHooks } from '../../src/test-break.js';

interface Data {
  role: 'faulter' | 'reaper' | 'survivor';
  handle: DaxSpaceHandle;
  progress: SharedArrayBuffer;
  objectId: number;
  page: number;
  stop?: 'held' | 'filled';
  stamp?: number;
}
const { role, handle, progress, objectId, page, stop, stamp } = workerData as Data;
const p = new Int32Array(progress);
const space = DaxSpace.attach(handle);
const obj = space.object(objectId);

function stay(word: number): never {
  Atomics.store(p, word, 1);
  for (;;) Atomics.wait(p, word, 1, 5); // terminate() ends the thread between two waits
}

if (role === 'faulter') {
  testHooks.faultWindow = (point, id, index) => {
    if (point === 'published' && id === objectId && index === page) stay(0);
  };
  obj.fault(page, { write: true });
} else if (role === 'reaper') {
  testHooks.reapStage = (step) => {
    if (step === stop) stay(1);
  };
  parentPort!.once('message', () => {
    obj.fault(page, { write: true }); // meets the dead faulter's entry and reaps it
    Atomics.store(p, 1, 2);
    space.close();
  });
  parentPort!.postMessage('ready');
} else {
  const view = obj.fault(page, { write: true });
  new Int32Array(view.buffer, view.byteOffset, 1)[0] = stamp!;
  obj.writeback();
  parentPort!.postMessage(view.byteOffset);
  space.close();
}
