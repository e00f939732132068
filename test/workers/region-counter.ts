/**
 * Worker: attach to a mapped region from its share() handle and Atomics.add 1 to the
 * Int32 at counterOffset `iterations` times, then write `marker` at markerOffset and persist it.
 */
import { workerData, parentPort } from 'node:worker_threads';
import { attachMedia } from '../../src/device/attach-media.js';
import type { MediaHandle } from '../../src/device/media.js';

const { handle, iterations, counterOffset, markerOffset, marker } = workerData as {
  handle: MediaHandle;
  iterations: number;
  counterOffset: number;
  markerOffset: number;
  marker: number;
};
const media = attachMedia(handle);
const counter = new Int32Array(media.buffer, counterOffset, 1);
const start = new Int32Array(media.buffer, counterOffset + 4, 1);
// Start together so the adds really interleave.
Atomics.add(start, 0, 1);
while (Atomics.load(start, 0) < 2) {
  /* spin: the peer starts within microseconds */
}
for (let i = 0; i < iterations; i++) Atomics.add(counter, 0, 1);
new Uint8Array(media.buffer)[markerOffset] = marker;
media.persist(markerOffset, 1);
media.close();
parentPort?.postMessage({ done: true });
