/**
 * The main job for now (npm start): map a store on an emulated-pmem file, write and
 * persist a block, close, reopen, read it back, and report what the device is and how
 * it makes data durable. Later issues turn this into the benchmark + crash-injection run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openRegion } from '../device/region.js';
import { Device } from '../device/device.js';

const SIZE_BYTES = 64 * 2 ** 20;
const OWNER_DEMO = 16;

/** tmpfs is the emulated pmem here; fall back to the OS temp directory where /dev/shm is absent. */
function demoDirectory(): { dir: string; note: string } {
  if (fs.existsSync('/dev/shm')) return { dir: '/dev/shm', note: 'tmpfs (emulated pmem)' };
  return { dir: os.tmpdir(), note: 'OS temp directory' };
}

function main(): void {
  const { dir, note } = demoDirectory();
  const file = path.join(dir, `daxstore-demo-${process.pid}.pmem`);
  const message = new TextEncoder().encode(`hello from daxstore, ${new Date().toISOString()}`);
  try {
    const media = openRegion(file, { create: true, sizeBytes: SIZE_BYTES });
    const device = Device.format(media);
    const block = device.allocate(OWNER_DEMO, 0);
    const offset = device.blockOffset(block);
    new Uint8Array(media.buffer, offset, message.length).set(message);
    const t0 = process.hrtime.bigint();
    media.persist(offset, message.length);
    const persistNs = Number(process.hrtime.bigint() - t0);
    console.log(`store      ${file} (${note}), ${SIZE_BYTES / 2 ** 20} MiB`);
    console.log(`kind       ${media.kind}`);
    console.log(`flush      ${media.flushMethod}${media.mapSync ? ' (MAP_SYNC)' : ''}`);
    console.log(`alignment  ${media.alignment} B`);
    console.log(`wrote      ${message.length} B to block ${block} at offset ${offset}, persisted in ${persistNs} ns`);
    device.close();

    const reopened = Device.open(openRegion(file, {}));
    const back = reopened.read(offset, message.length);
    const same = Buffer.from(back).equals(Buffer.from(message));
    const owner = reopened.ownerOf(block);
    console.log(`reopened   block ${block} owner ${owner.ownerId}/${owner.index} (${owner.state}), data ${same ? 'intact' : 'DIFFERENT'}`);
    console.log(`stats      ${JSON.stringify(reopened.stats())}`);
    reopened.close();
    if (!same) process.exitCode = 1;
  } finally {
    fs.rmSync(file, { force: true });
  }
}

main();
