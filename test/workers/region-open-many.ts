/**
 * Worker: opens, persists and closes `count` regions (dir/prefix-i) while other threads
 * do the same, exercising the addon's process-global region table from several threads;
 * then tries `busyPath` (held by the parent) and reports the error code it got.
 */
import path from 'node:path';
import { workerData, parentPort } from 'node:worker_threads';
import { openRegion } from '../../src/device/region.js';
import { isDaxError } from '../../src/errors.js';

const { dir, prefix, count, busyPath } = workerData as { dir: string; prefix: string; count: number; busyPath: string };
const ids = new Set<number>();
for (let i = 0; i < count; i++) {
  const media = openRegion(path.join(dir, `${prefix}-${i}`), { create: true, sizeBytes: 4096 });
  ids.add(media.regionId);
  new Uint32Array(media.buffer)[0] = i;
  media.persist(0, 4);
  media.close();
}
let busyCode = 'none';
try {
  openRegion(busyPath).close();
} catch (e) {
  if (!isDaxError(e)) throw e;
  busyCode = e.code;
}
parentPort?.postMessage({ opened: count, busyCode });
