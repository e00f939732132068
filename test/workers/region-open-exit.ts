/**
 * Worker of test/device/region-worker-unload.test.ts: maps a fresh region (a SharedArrayBuffer
 * the addon makes in this thread), takes a participant id (another one), and ends.
 */
import { threadId } from 'node:worker_threads';
import { rmSync } from 'node:fs';
import { openRegion } from '../../src/device/region.js';
import { participantId } from '../../src/device/participants.js';

const file = `/dev/shm/region-unload-${process.pid}-${threadId}`;
const region = openRegion(file, { create: true, sizeBytes: 1 << 20 });
new Uint8Array(region.buffer)[0] = 1;
participantId();
region.close();
rmSync(file, { force: true });
