/**
 * Online growth: a store opened without `size` starts small and grows as data arrives, up to
 * maxSize, without moving anything: keys written before a growth stay readable, zero-copy
 * views taken before it stay valid, and workers attached with share()/attach() see the new
 * room. open(existing, { size }) grows at open; a file grown with truncate is a grown store.
 *
 * Red case: DAXSTORE_TEST_BREAK=grow-size-private keeps a growth's new size in the growing
 * thread's media object instead of the shared word, so the other threads refuse (ERANGE) the
 * offsets of the room it added.
 */
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { open } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { runWorker } from '../helpers/workers.js';
import { breakEnv } from '../../src/test-break.js';
import { createSimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { isDaxError } from '../../src/errors.js';
import { growValue } from '../helpers/grow.js';
import { tempPaths } from '../helpers/temp-paths.js';
import { daxCodeOf } from '../helpers/expect-code.js';

const FILE = 'test/kv/kv-growth.test.ts';
const MiB = 2 ** 20;
const temp = tempPaths('grow');

function storePath(): string {
  return temp.next();
}

describe('online growth', () => {
  it('a store without size starts small, grows to maxSize as data arrives, keeps everything across reopen', () => {
    const p = storePath();
    const maxSize = 96 * MiB;
    let db = open(p, { maxSize });
    const device = db.dax.device;
    const start = device.media.size;
    expect(start).toBeLessThan(16 * MiB);
    expect(device.maxBytes).toBeGreaterThanOrEqual(maxSize);
    const value = Buffer.alloc(1000, 3);
    let n = 0;
    const sizes = new Set<number>();
    const views: Array<[number, Uint8Array]> = [];
    db.read(() => {
      for (; ; n++) {
        try {
          db.put(Buffer.from(`k${n}`), value.fill(n & 0xff, 8));
        } catch (e) {
          if (isDaxError(e, 'ENOSPC')) break;
          throw e;
        }
        sizes.add(device.media.size);
        if (n % 5000 === 0) views.push([n, db.getView(Buffer.from(`k${n}`))!]);
      }
      // Views taken before every growth still show their bytes.
      for (const [k, v] of views) expect(v[8]).toBe(k & 0xff);
    });
    expect(sizes.size).toBeGreaterThan(2); // it grew, more than once
    expect(device.media.size).toBeGreaterThan(maxSize - 8 * MiB);
    expect(fs.statSync(p).size).toBe(device.media.size);
    db.close();
    db = open(p);
    // maxSize holds across reopen: the owner table's capacity is exactly it
    expect(db.dax.device.maxBytes).toBe(maxSize);
    expect(db.stats().maxSize).toBe(maxSize);
    for (let k = 0; k < n; k++) {
      const got = db.get(Buffer.from(`k${k}`));
      expect(got?.[8]).toBe(k & 0xff);
    }
    // Deletes still succeed at maxSize, and the store stays whole.
    db.delete(Buffer.from('k0'));
    expect(db.get(Buffer.from('k0'))).toBeUndefined();
    db.close();
  }, 120_000);

  it('open(existing, { size }) grows it at open; past its capacity is ENOSPC and changes nothing', () => {
    const p = storePath();
    let db = open(p, { maxSize: 128 * MiB });
    db.put(Buffer.from('a'), Buffer.from('1'));
    const before = db.dax.device.media.size;
    db.close();
    db = open(p, { size: 64 * MiB });
    expect(db.dax.device.media.size).toBeGreaterThanOrEqual(64 * MiB);
    expect(db.dax.device.geometry.sizeBytes).toBe(db.dax.device.media.size);
    expect(Buffer.from(db.get(Buffer.from('a'))!).toString()).toBe('1');
    db.close();
    expect(before).toBeLessThan(64 * MiB);
    const grown = fs.statSync(p).size;
    expect(daxCodeOf(() => open(p, { size: 256 * MiB }))).toBe('ENOSPC');
    expect(fs.statSync(p).size).toBe(grown);
    db = open(p);
    expect(Buffer.from(db.get(Buffer.from('a'))!).toString()).toBe('1');
    db.close();
  });

  it('a store created with size alone has that size for good: full is ENOSPC, and it cannot be grown later', () => {
    const p = storePath();
    let db = open(p, { size: 8 * MiB });
    expect(db.dax.device.maxBytes).toBe(8 * MiB);
    let n = 0;
    try {
      for (; n < 100_000; n++) db.put(Buffer.from(`k${n}`), Buffer.alloc(500));
    } catch (e) {
      if (!isDaxError(e, 'ENOSPC')) throw e;
    }
    expect(n).toBeLessThan(100_000);
    expect(fs.statSync(p).size).toBe(8 * MiB);
    db.close();
    expect(daxCodeOf(() => open(p, { size: 16 * MiB }))).toBe('ENOSPC');
    // not even by its metadata's worth: its capacity is its size
    expect(daxCodeOf(() => open(p, { size: 10 * MiB }))).toBe('ENOSPC');
    db = open(p);
    expect(db.get(Buffer.from('k0'))).toBeDefined();
    db.close();
  });

  it('a file grown with truncate opens as a grown store; one cut short is ECORRUPT', () => {
    const p = storePath();
    let db = open(p, { maxSize: 64 * MiB });
    db.put(Buffer.from('a'), Buffer.from('1'));
    const small = db.dax.device.media.size;
    db.close();
    fs.truncateSync(p, 40 * MiB);
    db = open(p);
    expect(db.dax.device.geometry.sizeBytes).toBe(40 * MiB);
    // The room is usable: more than the old size of data goes in without a growth.
    const value = Buffer.alloc(1000, 9);
    for (let n = 0; n < Math.ceil((small * 1.5) / 1100); n++) db.put(Buffer.from(`t${n}`), value);
    expect(db.dax.device.media.size).toBe(40 * MiB);
    db.close();
    // Past its capacity: the store uses what its owner table describes, the rest stays unused.
    fs.truncateSync(p, 200 * MiB);
    db = open(p);
    expect(db.dax.device.geometry.sizeBytes).toBeLessThanOrEqual(db.dax.device.maxBytes);
    expect(db.dax.device.maxBytes).toBeLessThan(70 * MiB);
    expect(Buffer.from(db.get(Buffer.from('a'))!).toString()).toBe('1');
    const used = db.dax.device.geometry.sizeBytes;
    db.close();
    fs.truncateSync(p, used - 2 * MiB);
    expect(daxCodeOf(() => open(p))).toBe('ECORRUPT');
  });

  it('a media that cannot grow (device-DAX, simulated) keeps its size: growth says no, allocation is ENOSPC', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    expect(device.maxBytes).toBeLessThanOrEqual(8 * MiB);
    expect(device.grow()).toBe(false);
    expect(device.grow(16 * MiB)).toBe(false);
    let blocks = 0;
    expect(
      daxCodeOf(() => {
        for (;;) {
          device.allocate(100, blocks, 9);
          blocks++;
        }
      }),
    ).toBe('ENOSPC');
    expect(blocks).toBeGreaterThan(0);
    device.close();
  });

  it('bad maxSize and size are EINVAL before any file exists', () => {
    const p = storePath();
    expect(daxCodeOf(() => open(p, { maxSize: 1 * MiB }))).toBe('EINVAL');
    expect(daxCodeOf(() => open(p, { maxSize: 64 * MiB + 1 }))).toBe('EINVAL');
    expect(daxCodeOf(() => open(p, { size: 128 * MiB, maxSize: 64 * MiB }))).toBe('EINVAL');
    expect(daxCodeOf(() => open(p, { maxSize: -4096 }))).toBe('EINVAL');
    expect(fs.existsSync(p)).toBe(false);
  });
});

interface WriterResult {
  written: number;
  wrong: number;
}

async function growUnderWriters(seed: number, env?: Record<string, string>): Promise<void> {
  const r = rng(seed);
  const p = storePath();
  const workers = 3;
  const keys = scaled(6000) + Math.floor(r() * 2000);
  const db = open(p, { maxSize: 512 * MiB });
  const start = db.dax.device.media.size;
  try {
    const results = await Promise.all(
      Array.from({ length: workers }, (_, worker) =>
        runWorker<WriterResult>('kv-grow-writer', { handle: db.share(), worker, seed, keys }, 240_000, env),
      ),
    );
    for (const [w, res] of results.entries()) {
      if (res.written !== keys || res.wrong !== 0)
        throw new Error(`worker ${w}: wrote ${res.written} of ${keys}, ${res.wrong} reads wrong`);
    }
    if (db.dax.device.media.size <= start) throw new Error(`the store did not grow (${start} bytes)`);
    for (let w = 0; w < workers; w++)
      for (let n = 0; n < keys; n++) {
        const got = db.get(Buffer.from(`w${w}/${n}`));
        if (got === undefined || !Buffer.from(got).equals(growValue(w, n))) throw new Error(`key w${w}/${n} lost`);
      }
  } finally {
    db.close();
  }
  const again = open(p);
  try {
    for (let w = 0; w < workers; w++)
      for (let n = 0; n < keys; n++) {
        const got = again.get(Buffer.from(`w${w}/${n}`));
        if (got === undefined || !Buffer.from(got).equals(growValue(w, n)))
          throw new Error(`key w${w}/${n} lost after reopen`);
      }
  } finally {
    again.close();
  }
}

describe('growth under writers in worker threads', () => {
  it('workers writing at once grow the store: no key lost, held views stay valid, a reopen agrees', async () => {
    await withSeed(FILE, (seed) => growUnderWriters(seed));
  }, 300_000);

  it('DAXSTORE_TEST_BREAK=grow-size-private: the other threads never see the room a growth added (goes red)', async () => {
    await expect(withSeed(FILE, (seed) => growUnderWriters(seed, breakEnv('grow-size-private')))).rejects.toThrow(
      /ERANGE/,
    );
  }, 300_000);
});
