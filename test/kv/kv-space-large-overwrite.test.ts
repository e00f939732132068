/**
 * Superseded large values wait for an epoch grace period before their blocks come back; a
 * put that finds no free block collects the epoch (and compacts) before it gives up. So a
 * few keys overwritten with large values (17-200 KiB, random) run indefinitely in an 8 MiB
 * store (and in one of the minimum size, 6 MiB), with random reads and deletes in between; values read back
 * right, also after reopen. Seeded; a watchdog ends a run that stops making progress.
 * Red with DAXSTORE_TEST_BREAK=kv-no-reclaim (a failed allocation is reported at once).
 */
import { describe, expect, it } from 'vitest';
import { isDaxError } from '../../src/errors.js';
import { MIN_STORE_BYTES } from '../../src/kv/index.js';
import { modelRun } from '../helpers/model-run.js';
import { setBroken } from '../../src/test-break.js';
import { scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-space-large-overwrite.test.ts';

function run(seed: number, puts: number, size: number): void {
  modelRun(
    {
      tag: 'kv-space-large',
      unit: 'puts',
      seed,
      steps: puts,
      size,
      watchdogMs: 60_000,
      keys: (r) => 1 + Math.floor(r() * 4),
    },
    (db, i, random, key, model) => {
      const k = key();
      if (random() < 0.05) {
        db.delete(k);
        model.delete(k);
        return;
      }
      const value = Buffer.alloc(17 * 1024 + Math.floor(random() * 183 * 1024), i & 0xff);
      value.writeUInt32LE(i, 0);
      db.put(k, value);
      model.set(k, value);
    },
  );
}

describe('large values overwritten in a minimum-size store', () => {
  it('never run out of space: superseded values are reclaimed when an allocation fails', async () => {
    await withSeed(FILE, (seed) => run(seed, scaled(400), 8 * 2 ** 20));
  });

  it('the same in the smallest store (MIN_STORE_BYTES: two extents, no reserve)', async () => {
    await withSeed(FILE, (seed) => run(seed, scaled(400), MIN_STORE_BYTES));
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-no-reclaim', async () => {
    setBroken('kv-no-reclaim', true);
    try {
      await withSeed(FILE, (seed) => {
        let error: unknown;
        try {
          run(seed, 400, 8 * 2 ** 20);
        } catch (e) {
          error = e;
        }
        expect(isDaxError(error, 'ENOSPC')).toBe(true);
      });
    } finally {
      setBroken('kv-no-reclaim', false);
    }
  });
});
