import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openRegion, type MappedMedia } from '../../src/device/region.js';
import { DaxError } from '../../src/errors.js';
import { startWorker } from '../helpers/workers.js';
import { cleanupTemp, runChild, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

describe('region lifetime', () => {
  it('a region dropped without close() is unmapped and unlocked when its buffer is collected', () => {
    const file = path.join(tempDir(), 'region');
    const child = runChild('region-gc-child', [file], {}, ['--expose-gc']);
    expect(child.result, child.stderr).toEqual({ unmapped: true, reopened: true });
  });

  it('a SIGBUS in a worker thread copy is EIO in that worker; the process and its other pages live on', async () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 3 * 4096 });
    new Uint8Array(media.buffer)[100] = 42;
    const goOffset = 256;
    const worker = startWorker('region-copy-out', {
      handle: media.share(),
      lostOffset: 8192,
      keptOffset: 100,
      goOffset,
    });
    const result = new Promise<{ lostCode: string; kept: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const go = new Int32Array(media.buffer, goOffset, 1);
    while (Atomics.load(go, 0) !== 1) await new Promise((r) => setTimeout(r, 1));
    fs.truncateSync(file, 4096);
    Atomics.store(go, 0, 2);
    Atomics.notify(go, 0);
    expect(await result).toEqual({ lostCode: 'EIO', kept: 42 });
    await worker.terminate();
    media.close();
  });

  it('the region table (4096 slots) reports full while closed buffers are still referenced, and collects them on demand', () => {
    const file = path.join(tempDir(), 'region');
    let held: MappedMedia[] = [];
    let full: unknown;
    for (let i = 0; i <= 4096 && full === undefined; i++) {
      try {
        const media = openRegion(file, { create: true, sizeBytes: 4096 });
        media.close(); // closed, but its buffer is still referenced from `held`
        held.push(media);
      } catch (e) {
        full = e;
      }
    }
    expect(full).toBeInstanceOf(DaxError);
    expect((full as DaxError).errno).toBe('EMFILE');
    expect((full as DaxError).message).toContain('region table full');
    expect(held.length).toBeGreaterThan(4000);
    held = [];
    openRegion(file).close(); // the addon collects garbage once before giving up
    expect(held.length).toBe(0);
  });
});
