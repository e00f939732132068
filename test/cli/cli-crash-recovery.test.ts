/**
 * `daxstore crash` also crashes once inside recovery (a seeded fence of the recovery of every
 * 4th image, with a seeded half of that fence's pending words) and checks that recovering the
 * result gives an allowed state: recovery must be idempotent across its own crashes.
 *
 * Seed 3 (kv-mixed, 20 ops, 6 images) is the run that found writeSuperblock overwriting copy A
 * first even when B was already torn (a crash in recovery's superblock update then lost both
 * copies). The fix writes the newest valid copy last; test/device/superblock.test.ts holds the
 * device-level regression test, which goes red on the old order.
 */
import { describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

describe('crash inside recovery', () => {
  it(
    'every image recovers to an allowed state even when recovery itself crashes once (seed 3)',
    { timeout: 300_000 },
    () => {
      // Seconds on an idle machine, many times that on a loaded one: the bounds catch a hang only.
      const r = cli(['crash', '--ops', '20', '--images', '6', '--seed', '3', '--json', '--no-progress'], {}, 280_000);
      const report = JSON.parse(r.stdout) as { violations: Array<{ detail: string }>; imagesChecked: number };
      expect(report.violations, r.stdout.slice(0, 2000)).toEqual([]);
      expect(report.imagesChecked).toBeGreaterThan(50);
      expect(r.status).toBe(0);
    },
  );
});
