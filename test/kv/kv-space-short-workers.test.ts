/**
 * A pool of short-lived workers runs forever in a small store: each attaches, puts one key,
 * closes and ends, and its log segment (2 MiB, nearly empty) comes back: closing leaves the
 * segment to compaction, which moves its one entry and frees it when space runs low. 300
 * workers in a 64 MiB store (DAXSTORE_LONG=5; CI: 60 in 16 MiB), a few at a time with seeded
 * value sizes, where the 31st ran out of space when segments of ended writers stayed theirs;
 * every key right at the end and after reopen. A watchdog per worker and for the whole run (4 s a
 * worker). Red with DAXSTORE_TEST_BREAK=kv-close-keeps-segment (a closed writer's segment stays
 * announced: ENOSPC).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { open } from '../helpers/kv-bytes.js';
import { runWorker } from '../helpers/workers.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-space-short-workers.test.ts';
const MiB = 2 ** 20;
const AT_ONCE = 4;
// CI: 60 workers in a 16 MiB store (6 free extents: each comes back 10 times);
// DAXSTORE_LONG=5: the 300 workers in a 64 MiB store where the 31st ran out of space.
const WORKERS = scaled(60);
/** The whole run's watchdog: 4 s a worker (each also has its own 60 s one), so a long run scales with it. */
const runMsFor = (workers: number): number => workers * 4_000;

async function run(seed: number, workers: number, sizeBytes: number, env?: Record<string, string>): Promise<void> {
  const dir = mkdtempSync('/dev/shm/kv-space-workers-');
  try {
    const file = path.join(dir, 'store');
    const random = rng(seed);
    const sizes = Array.from({ length: workers }, () => 1 + Math.floor(random() * 2000));
    let db = open(file, { size: sizeBytes });
    try {
      const handle = db.share();
      const runMs = runMsFor(workers);
      const deadline = performance.now() + runMs;
      for (let first = 0; first < workers; first += AT_ONCE) {
        if (performance.now() > deadline)
          throw new Error(`watchdog: ${first} of ${workers} workers after ${runMs / 1000} s`);
        const batch: Array<Promise<string>> = [];
        for (let w = first; w < Math.min(workers, first + AT_ONCE); w++)
          batch.push(
            runWorker<string>('kv-one-key', { handle, key: `w${w}`, bytes: sizes[w], fill: w & 0xff }, 60_000, env),
          );
        for (const [i, r] of (await Promise.all(batch)).entries())
          if (r !== 'done') throw new Error(`worker ${first + i} of ${workers}: ${r}`);
      }
      const check = (): void => {
        for (let w = 0; w < workers; w++)
          expect(db.get(`w${w}`), `w${w}`).toEqual(new Uint8Array(sizes[w]).fill(w & 0xff));
        expect(db.stats().keys).toBe(workers);
      };
      check();
      db.close();
      db = open(file);
      check();
      expect(db.dax.device.audit()).toEqual([]);
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('short-lived workers in a small store', () => {
  it(
    'workers each put a key and close in a small store: their segments come back',
    { timeout: runMsFor(WORKERS) + 60_000 },
    async () => {
      await withSeed(FILE, (seed) => run(seed, WORKERS, WORKERS >= 300 ? 64 * MiB : 16 * MiB));
    },
  );

  it('goes red with DAXSTORE_TEST_BREAK=kv-close-keeps-segment: ENOSPC', { timeout: 180_000 }, async () => {
    await withSeed(FILE, async (seed) => {
      let error: unknown;
      try {
        await run(seed, 30, 16 * MiB, { DAXSTORE_TEST_BREAK: 'kv-close-keeps-segment' });
      } catch (e) {
        error = e;
      }
      expect(String(error)).toMatch(/ENOSPC/);
    });
  });
});
