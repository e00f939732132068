/**
 * Large values (over 16 KiB, objects of their own) in a store that can grow: their pages go
 * through the same order as the log's segments when the store is full (release superseded
 * values and dead space, then grow one step, or compact first when the closed log is mostly
 * dead), so steady overwrites of large values leave the file a small multiple of the live data
 * instead of growing it toward maxSize at every allocation that finds no room.
 *
 * Randomized (keys, value sizes, overwrite order), seeded; every key's newest value is checked
 * at the end and across a reopen. DAXSTORE_LONG writes more.
 * Red case: DAXSTORE_TEST_BREAK=kv-large-grows-at-fault lets a large value's page fault grow the
 * store at once (the superseded values still waiting for the epoch are never released first):
 * the file grows to many times the live data.
 */
import { describe, expect, it } from 'vitest';
import { open } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { withBroken } from '../../src/test-break.js';
import { isDaxError } from '../../src/errors.js';
import type { KvStore } from '../../src/kv/index.js';
import { tempPaths } from '../helpers/temp-paths.js';

const FILE = 'test/kv/kv-growth-large.test.ts';
const MiB = 2 ** 20;
const KiB = 1024;
const temp = tempPaths('growlarge');

interface Run {
  start: number;
  end: number;
  written: number;
  liveBytes: number;
}

/**
 * Overwrites 2-9 keys at random with values of 17-400 KiB, and 200 others with values of
 * 200-1800 bytes (`smallShare` of the puts, in the log), until `factor` times the store's
 * starting size has been written.
 */
function overwriteLarge(seed: number, factor: number, autoCompact: boolean, smallShare: number): Run {
  const r = rng(seed);
  const p = temp.next();
  const keys = 2 + Math.floor(r() * 8);
  const db = open(p, { maxSize: 2048 * MiB, autoCompact });
  const start = db.dax.device.media.size;
  const newest = new Map<number, Buffer>();
  let written = 0;
  let ops = 0;
  const deadline = performance.now() + 240_000;
  try {
    while (written < factor * start) {
      if (performance.now() > deadline) throw new Error(`watchdog: ${ops} puts in 240 s (seed ${seed})`);
      const small = r() < smallShare;
      const k = small ? keys + Math.floor(r() * 200) : Math.floor(r() * keys);
      const v = Buffer.alloc(small ? 200 + Math.floor(r() * 1600) : 17 * KiB + Math.floor(r() * 383 * KiB), ops & 0xff);
      v.writeUInt32LE(ops++, 0);
      try {
        db.put(Buffer.from(`key-${k}`), v);
      } catch (e) {
        if (isDaxError(e)) throw new Error(`put ${ops} (${written} bytes written, seed ${seed}): ${e.message}`);
        throw e;
      }
      newest.set(k, v);
      written += v.length;
    }
    check(db, newest, 'before close');
    const end = db.dax.device.media.size;
    let liveBytes = 0;
    for (const v of newest.values()) liveBytes += v.length;
    db.close();
    const again = open(p);
    try {
      check(again, newest, 'after reopen');
    } finally {
      again.close();
    }
    return { start, end, written, liveBytes };
  } finally {
    if (!db.closed) db.close();
  }
}

function check(db: KvStore<Uint8Array, Uint8Array>, newest: Map<number, Buffer>, when: string): void {
  for (const [k, v] of newest) {
    const got = db.get(Buffer.from(`key-${k}`));
    if (got === undefined || !Buffer.from(got).equals(v)) throw new Error(`key-${k} wrong ${when}`);
  }
}

describe('large values in a store that can grow', () => {
  it(
    'steady overwrites of large values, 20x the starting size, automatic compaction on: the file stays small',
    () =>
      withSeed(FILE, (seed) => {
        const run = overwriteLarge(seed, scaled(20), true, rng(seed ^ 1)() * 0.5);
        expect(run.written).toBeGreaterThan(20 * run.start - 1);
        // The live data is a few MiB: one growth step at most.
        expect(run.end).toBeLessThanOrEqual(run.start + 16 * MiB);
      }),
    300_000,
  );

  it(
    'the same with autoCompact: false and a log of small overwrites: a full store compacts its mostly dead log first',
    () =>
      withSeed(FILE, (seed) => {
        const run = overwriteLarge(seed, scaled(20), false, 0.9 + rng(seed ^ 1)() * 0.07);
        expect(run.end).toBeLessThanOrEqual(run.start + 32 * MiB);
      }),
    300_000,
  );

  it(
    'DAXSTORE_TEST_BREAK=kv-large-grows-at-fault: large values grow the store instead (goes red)',
    () =>
      withSeed(FILE, (seed) => {
        const run = withBroken('kv-large-grows-at-fault', () =>
          overwriteLarge(seed, 20, false, 0.9 + rng(seed ^ 1)() * 0.07),
        );
        expect(run.end).toBeGreaterThan(run.start + 32 * MiB);
      }),
    300_000,
  );
});
