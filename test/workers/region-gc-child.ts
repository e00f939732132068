/**
 * Child process (run with --expose-gc): opens a region, drops it without close(), and
 * collects garbage until the mapping is gone from /proc/self/maps. Then a second open of
 * the same path must succeed, because the buffer's deleter unmapped it and dropped the
 * flock. Prints {unmapped, reopened}.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { openRegion } from '../../src/device/region.js';

const file = process.argv[2] ?? '';
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

function openAndDrop(): void {
  const media = openRegion(file, { create: true, sizeBytes: 8192 });
  new Uint8Array(media.buffer)[0] = 1;
  media.persist(0, 1);
}

const mapped = (): boolean => fs.readFileSync('/proc/self/maps', 'utf8').includes(file);
openAndDrop();
const wasMapped = mapped();
for (let i = 0; i < 50 && mapped(); i++) {
  gc();
  await sleep(10);
}
const unmapped = wasMapped && !mapped();
let reopened = false;
try {
  openRegion(file).close();
  reopened = true;
} catch {
  reopened = false;
}
process.stdout.write(JSON.stringify({ unmapped, reopened }));
