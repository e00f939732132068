/**
 * `daxstore crash` also crashes once inside recovery (a seeded fence of the recovery of every
 * 4th image, with a seeded half of that fence's pending words) and checks that recovering the
 * result gives an allowed state: recovery must be idempotent across its own crashes.
 *
 * Seed 3 (kv-mixed, 20 ops, 6 images) reaches a known bug, so the property test is marked
 * `it.fails` until it is fixed: device/superblock.ts writeSuperblock always overwrites copy A
 * first. When copy B was torn by a crash during close, A is the only valid copy, and a crash
 * during recovery's superblock update (Device.open) tears A too: "both superblock copies are
 * invalid". Fix (owner of src/device/superblock.ts): overwrite the invalid or older copy first.
 * When fixed, `it.fails` goes red: turn it into `it`.
 */
import { describe, expect, it } from 'vitest';
import { cli } from './run-cli.js';

const args = ['crash', '--ops', '20', '--images', '6', '--seed', '3', '--json', '--no-progress'];
let cached: ReturnType<typeof cli> | undefined;
const withRecoveryCrash = (): ReturnType<typeof cli> => (cached ??= cli(args));

describe('crash inside recovery', () => {
  it.fails('every image recovers to an allowed state even when recovery itself crashes once (seed 3)', { timeout: 90_000 }, () => {
    const r = withRecoveryCrash();
    const report = JSON.parse(r.stdout) as { violations: Array<{ detail: string }> };
    expect(report.violations, r.stdout.slice(0, 2000)).toEqual([]);
  });

  it('the violation names the crash inside recovery, and without it the same run is clean', { timeout: 90_000 }, () => {
    const withCrash = JSON.parse(withRecoveryCrash().stdout) as { violations: Array<{ detail: string }> };
    expect(withCrash.violations.some((v) => /after a crash inside recovery \(fence \d+ of \d+\)/.test(v.detail)), JSON.stringify(withCrash.violations)).toBe(true);
    const without = cli([...args, '--no-recovery-crash']);
    expect(without.status, without.stdout.slice(0, 2000)).toBe(0);
  });
});
