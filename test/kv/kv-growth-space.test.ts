/**
 * Growth and reclamation together: a store that can grow grows rather than copy live data, but
 * not while its log is mostly dead, and it never eats its reserve while it can grow.
 *
 * - Steady overwrites in a store created without size (20x its starting size, with and without
 *   automatic compaction): no ENOSPC, and the file stays a small multiple of the live data.
 * - A priority allocation (deletes, compaction) grows a growable store before it takes the
 *   reserve; at maxSize it takes the reserve.
 *
 * Red case: DAXSTORE_TEST_BREAK=grow-before-compact makes a full store grow even when its log
 * is mostly dead: with automatic compaction off the overwrites grow the file to many times the
 * live data.
 */
import { describe, expect, it } from 'vitest';
import { open } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { withBroken } from '../../src/test-break.js';
import { isDaxError } from '../../src/errors.js';
import { tempPaths } from '../helpers/temp-paths.js';
import { overwriteRun, type OverwriteRun } from '../helpers/overwrite-run.js';

const FILE = 'test/kv/kv-growth-space.test.ts';
const MiB = 2 ** 20;
const temp = tempPaths('growspace');

function storePath(): string {
  return temp.next();
}

/**
 * Overwrites `keys` keys at random with values of 200-1800 bytes until `factor` times the
 * store's starting size has been written; every key's newest value is checked at the end and
 * across a reopen. Returns the file's size before and after.
 */
function overwrite(seed: number, autoCompact: boolean, factor: number, keys = 200): OverwriteRun {
  const r = rng(seed);
  return overwriteRun(storePath(), { maxSize: 1024 * MiB, autoCompact }, factor, seed, (i) => {
    const k = Math.floor(r() * keys);
    const v = Buffer.alloc(200 + Math.floor(r() * 1600), i & 0xff);
    v.writeUInt32LE(i, 0);
    return [k, v];
  });
}

describe('growth and reclamation', () => {
  it(
    'steady overwrites, 20x the starting size, automatic compaction on: no ENOSPC, the file stays small',
    () =>
      withSeed(FILE, (seed) => {
        const run = overwrite(seed, true, scaled(20));
        expect(run.written).toBeGreaterThan(20 * run.start - 1);
        // The live data is a few hundred KiB: a growth step or two at most.
        expect(run.end).toBeLessThanOrEqual(run.start + 32 * MiB);
      }),
    300_000,
  );

  it(
    'steady overwrites with autoCompact: false: a full, mostly dead store compacts before it grows',
    () =>
      withSeed(FILE, (seed) => {
        const run = overwrite(seed, false, scaled(20));
        expect(run.end).toBeLessThanOrEqual(run.start + 32 * MiB);
      }),
    300_000,
  );

  it(
    'DAXSTORE_TEST_BREAK=grow-before-compact: a mostly dead store grows instead (goes red)',
    () =>
      withSeed(FILE, (seed) => {
        const run = withBroken('grow-before-compact', () => overwrite(seed, false, 20));
        expect(run.end).toBeGreaterThan(run.start + 32 * MiB);
      }),
    300_000,
  );
});

describe('growth and the reserve', () => {
  it('a priority allocation grows a growable store before it takes the reserve; at maxSize it takes it', () => {
    const p = storePath();
    const db = open(p, { maxSize: 64 * MiB });
    const device = db.dax.device;
    try {
      db.put(Buffer.from('a'), Buffer.from('1'));
      expect(device.stats().reserveExtents).toBe(1);
      const OWNER = 77;
      let index = 0;
      // Every extent but the reserve, without growing.
      for (;;) {
        try {
          device.allocate(OWNER, index++, 9, { grow: false });
        } catch (e) {
          if (!isDaxError(e, 'ENOSPC')) throw e;
          break;
        }
      }
      expect(device.stats().freeExtents).toBe(1);
      const size = device.geometry.sizeBytes;
      device.allocate(OWNER, index++, 9, { priority: true });
      expect(device.geometry.sizeBytes).toBeGreaterThan(size); // grew
      expect(device.stats().freeExtents).toBeGreaterThanOrEqual(1); // the reserve is still whole
      // Up to maxSize with ordinary allocations, then the reserve goes to a priority one.
      for (;;) {
        try {
          device.allocate(OWNER, index++, 9);
        } catch (e) {
          if (!isDaxError(e, 'ENOSPC')) throw e;
          break;
        }
      }
      expect(device.canGrow).toBe(false);
      expect(device.stats().freeExtents).toBe(1);
      device.allocate(OWNER, index++, 9, { priority: true });
      expect(device.stats().freeExtents).toBe(0);
      expect(() => device.allocate(OWNER, index++, 9, { priority: true })).toThrow(/ENOSPC|no free space/);
      // Deletes still succeed: the priority writer's segment holds their records.
      expect(db.delete(Buffer.from('a'))).toBe(true);
    } finally {
      db.close();
    }
  });
});
