/**
 * Worker for test/device/device-workers.test.ts: attaches to a shared device and
 * allocates (and frees some of) `count` blocks as `ownerId`, checking after each allocation
 * that the owner record is still its own. Replies with the blocks it holds and the
 * records it found overwritten (another thread was handed the same block).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Device, type DeviceHandle } from '../../src/device/device.js';
import { setBroken, type SwitchName } from '../../src/test-break.js';
import { rng } from '../helpers/seed.js';

interface Input {
  handle: DeviceHandle;
  ownerId: number;
  count: number;
  seed: number;
  start: Int32Array; // start barrier: spin until non-zero so both workers race
  testBreak?: SwitchName;
}

const input = workerData as Input;
if (input.testBreak !== undefined) setBroken(input.testBreak, true);
const device = Device.attach(input.handle);
const random = rng(input.seed);
const held: number[] = [];
const stolen: string[] = [];
while (Atomics.load(input.start, 0) === 0) {
  // spin: start together
}
for (let i = 0; i < input.count; i++) {
  if (held.length > 0 && random() < 0.3) {
    const block = held.splice(Math.floor(random() * held.length), 1)[0];
    const info = device.ownerOf(block);
    if (info.ownerId !== input.ownerId)
      stolen.push(`block ${block} held by ${input.ownerId} but owned by ${info.ownerId}`);
    else device.free(block);
    continue;
  }
  const block = device.allocate(input.ownerId, i);
  const info = device.ownerOf(block);
  if (info.ownerId !== input.ownerId || info.index !== i)
    stolen.push(`block ${block} allocated to ${input.ownerId}/${i} reads ${info.ownerId}/${info.index}`);
  held.push(block);
}
device.close();
parentPort!.postMessage({ held, stolen });
