/**
 * Worker: a reader of the R6 stress. Repeatedly pins, loads the current object pointer and
 * reads the object's words several times; under the pin they must all hold one version
 * and never POISON. Counts violations.
 */
import { workerData, parentPort } from 'node:worker_threads';
import { EpochDomain, EPOCH_CHECK_BROKEN, type EpochHandle } from '../../src/index/epoch.js';
import { CONTROL, POISON, WORDS } from './index-epoch-stress-layout.js';

const { handle, objects, control } = workerData as {
  handle: EpochHandle;
  objects: SharedArrayBuffer;
  control: SharedArrayBuffer;
};
const obj = new Int32Array(objects);
const c = new Int32Array(control);
const domain = EpochDomain.attach(handle);
void domain.threadId;
Atomics.add(c, CONTROL.READY, 1);
Atomics.notify(c, CONTROL.READY);
let reads = 0;
let violations = 0;
let poisonSeen = 0;
while (Atomics.load(c, CONTROL.STOP) === 0) {
  domain.pin();
  const base = Atomics.load(c, CONTROL.PTR) * WORDS;
  const version = Atomics.load(obj, base);
  let bad = version === POISON;
  for (let round = 0; round < 4 && !bad; round++) {
    for (let i = 0; i < WORDS; i++) {
      const word = Atomics.load(obj, base + i);
      if (word !== version) {
        bad = true;
        if (word === POISON) poisonSeen++;
        break;
      }
    }
  }
  domain.unpin();
  if (bad) violations++;
  reads++;
}
domain.close();
Atomics.add(c, CONTROL.DONE, 1);
Atomics.notify(c, CONTROL.DONE);
parentPort!.postMessage({ reads, violations, poisonSeen, broken: EPOCH_CHECK_BROKEN });
