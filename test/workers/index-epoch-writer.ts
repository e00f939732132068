/**
 * Worker: the writer of the R6 stress. It owns OBJECTS object slots of WORDS words in a
 * SharedArrayBuffer. Each step fills a free slot with a new version, publishes it as the
 * current object (control[PTR]), and retires the old slot; the reclaimer poisons the slot
 * and returns it to the free list, so a reader that still looks at it after release sees
 * POISON or a newer version. At the end it waits for the readers and drains the limbo.
 */
import { workerData, parentPort } from 'node:worker_threads';
import { EpochDomain, EPOCH_CHECK_BROKEN, type EpochHandle } from '../../src/index/epoch.js';
import { CONTROL, POISON, WORDS } from './index-epoch-stress-layout.js';

const { handle, objects, control, durationMs, readers } = workerData as {
  handle: EpochHandle;
  objects: SharedArrayBuffer;
  control: SharedArrayBuffer;
  durationMs: number;
  readers: number;
};
const obj = new Int32Array(objects);
const c = new Int32Array(control);
const slots = obj.length / WORDS;
const domain = EpochDomain.attach(handle);
const free: number[] = [];
for (let s = slots - 1; s >= 1; s--) free.push(s);
domain.registerReclaimer(0, (slot) => {
  for (let i = 0; i < WORDS; i++) Atomics.store(obj, slot * WORDS + i, POISON);
  free.push(slot);
});

while (Atomics.load(c, CONTROL.READY) < readers) Atomics.wait(c, CONTROL.READY, Atomics.load(c, CONTROL.READY), 5);
let version = 1;
let writes = 0;
let starved = 0;
// At least durationMs, and at least MIN_WRITES writes (so a loaded machine still gives the
// readers a real churn to race), but never past HARD_LIMIT_MS.
const MIN_WRITES = 1024;
const HARD_LIMIT_MS = 30_000;
const start = Date.now();
while ((Date.now() < start + durationMs || writes < MIN_WRITES) && Date.now() < start + HARD_LIMIT_MS) {
  for (let step = 0; step < 64; step++) {
    let slot = free.pop();
    while (slot === undefined) {
      starved++;
      domain.collect();
      slot = free.pop();
    }
    version++;
    for (let i = 0; i < WORDS; i++) Atomics.store(obj, slot * WORDS + i, version);
    const old = Atomics.exchange(c, CONTROL.PTR, slot); // publish, then the old one is unreachable
    domain.retire(0, old);
    writes++;
  }
}
Atomics.store(c, CONTROL.STOP, 1);
while (Atomics.load(c, CONTROL.DONE) < readers) Atomics.wait(c, CONTROL.DONE, Atomics.load(c, CONTROL.DONE), 5);
for (let i = 0; i < 10 && domain.stats().limbo[0] > 0; i++) domain.collect();
const limboLeft = domain.stats().limbo[0];
domain.close();
parentPort!.postMessage({ writes, starved, limboLeft, broken: EPOCH_CHECK_BROKEN });
