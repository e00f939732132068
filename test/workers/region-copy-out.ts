/**
 * Worker: attach to a mapped region, signal 'attached', wait for the parent to truncate
 * the file (go word), then copyOut from `lostOffset` and from `keptOffset`; reports the
 * DaxError code of the first (or 'none') and the first byte of the second.
 */
import { workerData, parentPort } from 'node:worker_threads';
import { attachMedia } from '../../src/device/attach-media.js';
import type { MediaHandle } from '../../src/device/media.js';
import { isDaxError } from '../../src/errors.js';

const { handle, lostOffset, keptOffset, goOffset } = workerData as {
  handle: MediaHandle;
  lostOffset: number;
  keptOffset: number;
  goOffset: number;
};
const media = attachMedia(handle);
// The go word sits in the page that survives the truncate.
const go = new Int32Array(media.buffer, goOffset, 1);
Atomics.store(go, 0, 1);
Atomics.notify(go, 0);
while (Atomics.load(go, 0) !== 2) Atomics.wait(go, 0, 1, 1_000);
let lostCode = 'none';
try {
  media.copyOut(lostOffset, 64, new Uint8Array(64));
} catch (e) {
  if (!isDaxError(e)) throw e;
  lostCode = e.code;
}
const kept = new Uint8Array(1);
media.copyOut(keptOffset, 1, kept);
media.close();
parentPort?.postMessage({ lostCode, kept: kept[0] });
