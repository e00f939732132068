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
import { tempPaths } from '../helpers/temp-paths.js';
import { overwriteRun, type OverwriteRun } from '../helpers/overwrite-run.js';

const FILE = 'test/kv/kv-growth-large.test.ts';
const MiB = 2 ** 20;
const KiB = 1024;
const temp = tempPaths('growlarge');

/**
 * Overwrites 2-9 keys at random with values of 17-400 KiB, and 200 others with values of
 * 200-1800 bytes (`smallShare` of the puts, in the log), until `factor` times the store's
 * starting size has been written.
 */
function overwriteLarge(seed: number, factor: number, autoCompact: boolean, smallShare: number): OverwriteRun {
  const r = rng(seed);
  const keys = 2 + Math.floor(r() * 8);
  return overwriteRun(temp.next(), { maxSize: 2048 * MiB, autoCompact }, factor, seed, (i) => {
    const small = r() < smallShare;
    const k = small ? keys + Math.floor(r() * 200) : Math.floor(r() * keys);
    const v = Buffer.alloc(small ? 200 + Math.floor(r() * 1600) : 17 * KiB + Math.floor(r() * 383 * KiB), i & 0xff);
    v.writeUInt32LE(i, 0);
    return [k, v];
  });
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
        // One growth step (GROW_STEP_BYTES) at most.
        expect(run.end).toBeLessThanOrEqual(run.start + 16 * MiB);
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
        expect(run.end).toBeGreaterThan(run.start + 16 * MiB);
      }),
    300_000,
  );
});
