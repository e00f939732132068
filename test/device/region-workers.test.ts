import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openRegion } from '../../src/device/region.js';
import { runWorker } from '../helpers/workers.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

describe('region shared with worker threads', () => {
  it('two workers Atomics.add on one counter: no increment lost, and their writes land in the file', async () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 8192 });
    const handle = media.share();
    const iterations = 200_000;
    const results = await Promise.all(
      [0, 1].map((w) =>
        runWorker<{ done: boolean }>('region-counter', {
          handle,
          iterations,
          counterOffset: 64,
          markerOffset: 4096 + w,
          marker: 0xa0 + w,
        }),
      ),
    );
    expect(results.every((r) => r.done)).toBe(true);
    expect(Atomics.load(new Int32Array(media.buffer, 64, 1), 0)).toBe(2 * iterations);
    media.persist(0, 8192);
    media.close();
    const onDisk = fs.readFileSync(file);
    expect(onDisk.readInt32LE(64)).toBe(2 * iterations);
    expect([onDisk[4096], onDisk[4097]]).toEqual([0xa0, 0xa1]);
  });

  it('two workers ping-pong with Atomics.wait/notify over the mapping', async () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 4096 });
    const handle = media.share();
    const rounds = 500;
    await Promise.all(
      [0, 1].map((player) => runWorker('region-ping-pong', { handle, player, rounds, turnOffset: 128 })),
    );
    const turn = new Int32Array(media.buffer, 128, 2);
    expect(Atomics.load(turn, 1)).toBe(2 * rounds);
    expect(Atomics.load(turn, 0)).toBe(0); // player 1 played last and handed the turn back
    media.close();
    expect(fs.readFileSync(file).readInt32LE(132)).toBe(2 * rounds);
  });

  it('a worker closing its attached media only detaches: the opener keeps working', async () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 8192 });
    Atomics.store(new Int32Array(media.buffer, 4, 1), 0, 1); // stand in for the counter worker's peer
    await runWorker('region-counter', {
      handle: media.share(),
      iterations: 10,
      counterOffset: 0,
      markerOffset: 100,
      marker: 7,
    });
    expect(media.closed).toBe(false);
    media.persist(0, 4096);
    const out = new Uint8Array(1);
    media.copyOut(100, 1, out);
    expect(out[0]).toBe(7);
    expect(Atomics.load(new Int32Array(media.buffer, 0, 1), 0)).toBe(10);
    media.close();
  });

  it('worker threads open and close regions concurrently, and one held by the main thread is EBUSY for them', async () => {
    const dir = tempDir();
    const busyPath = path.join(dir, 'held');
    const held = openRegion(busyPath, { create: true, sizeBytes: 4096 });
    const count = 100;
    const results = await Promise.all(
      ['a', 'b'].map((prefix) =>
        runWorker<{ opened: number; busyCode: string }>('region-open-many', { dir, prefix, count, busyPath }),
      ),
    );
    expect(results).toEqual([
      { opened: count, busyCode: 'EBUSY' },
      { opened: count, busyCode: 'EBUSY' },
    ]);
    for (const prefix of ['a', 'b']) {
      for (let i = 0; i < count; i += 33)
        expect(fs.readFileSync(path.join(dir, `${prefix}-${i}`)).readUInt32LE(0)).toBe(i);
    }
    held.close();
  });
});
