/**
 * `daxstore crash`: a clean build checks every image without a violation; with a planted
 * missing fence (DAXSTORE_TEST_BREAK=kv-skip-drain) it reports violations, saves the image
 * and prints a replay command that reproduces the violation. The kv-full workload (a store filled
 * until puts get ENOSPC, then deletes, fills and compactions in it) recovers at every crash
 * point, and reports a planted compaction bug there. The kv-grow workload (a store that grows
 * from 8 to 24 MiB) recovers at every crash point inside the growth, and reports a growth that
 * names the new size before the file has it. The kv-txn workload
 * (transactions, some aborted) is clean, and red when a transaction is committed as one record
 * per write (kv-txn-record-per-write). Seed from DAXSTORE_SEED or fresh.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, tempDir } from './run-cli.js';
import { replayHint, testSeed } from '../helpers/seed.js';

const seed = testSeed();
const hint = replayHint(seed, 'test/cli/cli-crash.test.ts');
const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('crash', () => {
  it('a correct build: every image recovers to an allowed state (exit 0), JSON report written', () => {
    const r = cli(['crash', '--ops', '12', '--images', '8', '--seed', String(seed), '--json', '--out', dir]);
    expect(r.status, `${hint}\n${r.stdout}${r.stderr}`).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.imagesChecked).toBeGreaterThan(0);
    expect(report.imagesUnique).toBeLessThanOrEqual(report.imagesGenerated);
    expect(report.violations).toEqual([]);
    expect(fs.existsSync(path.join(dir, `crash-kv-mixed-seed${seed}.json`))).toBe(true);
  });

  it('the text report of a clean run says 0 violations, with no stray {}', () => {
    const r = cli(['crash', '--ops', '3', '--images', '2', '--seed', String(seed), '--no-progress']);
    expect(r.status, `${hint}\n${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/; 0 violations in \d+ ms$/m);
    expect(r.stdout).not.toMatch(/[{}]/);
  });

  it('kv-full: crash points inside the reclaims and compactions of a full store all recover (exit 0)', () => {
    const r = cli([
      'crash',
      '--workload',
      'kv-full',
      '--ops',
      '20',
      '--images',
      '4',
      '--seed',
      String(seed),
      '--no-recovery-crash',
      '--json',
    ]);
    expect(r.status, `${hint}\n${r.stdout}${r.stderr}`).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.violations).toEqual([]);
    expect(report.opsRefused, 'the store was full (fills refused with ENOSPC)').toBeGreaterThan(0);
    expect(report.imagesChecked).toBeGreaterThan(0);
  }, 600_000);

  it('kv-full goes red with kv-compact-no-commit (copies not flushed before their segment is freed)', () => {
    const out = path.join(dir, 'full-broken');
    const r = cli(
      ['crash', '--workload', 'kv-full', '--ops', '30', '--images', '4', '--seed', String(seed)].concat([
        '--no-recovery-crash',
        '--stop-at-first',
        '--out',
        out,
      ]),
      { DAXSTORE_TEST_BREAK: 'kv-compact-no-commit' },
    );
    expect(r.status, `${hint}\n${r.stdout}${r.stderr}`).toBe(1);
    expect(r.stdout).toMatch(/violation/);
  }, 600_000);

  it('kv-grow: crash points inside a growth of the store all recover (exit 0)', () => {
    const r = cli(
      ['crash', '--workload', 'kv-grow', '--ops', '5', '--images', '2', '--seed', String(seed)].concat([
        '--no-recovery-crash',
        '--json',
      ]),
      {},
      540_000, // a growth crash run is the longest here: the child gets most of the test's 600 s
    );
    expect(r.status, `${hint}\n${r.stdout}${r.stderr}`).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.violations).toEqual([]);
    expect(report.growths, 'the store grew').toBe(1);
    // the file grown, then the two superblock copies naming the new size
    expect(report.growthPoints).toBe(3);
  }, 600_000);

  it('kv-grow goes red with grow-superblock-first (the new size named before the file has it)', () => {
    const r = cli(
      ['crash', '--workload', 'kv-grow', '--ops', '5', '--images', '2', '--seed', String(seed)].concat([
        '--no-recovery-crash',
        '--stop-at-first',
        '--out',
        path.join(dir, 'grow-broken'),
      ]),
      { DAXSTORE_TEST_BREAK: 'grow-superblock-first' },
    );
    expect(r.status, `${hint}\n${r.stdout}${r.stderr}`).toBe(1);
    expect(r.stdout).toMatch(/structure at crash point \d+: recovery failed: ECORRUPT: .*cut short/);
  }, 600_000);

  it('a missing fence (kv-skip-drain) is reported with a saved image whose replay shows the violation', () => {
    const out = path.join(dir, 'broken');
    const r = cli(['crash', '--ops', '12', '--images', '8', '--seed', String(seed), '--out', out], {
      DAXSTORE_TEST_BREAK: 'kv-skip-drain',
    });
    expect(r.status, `${hint}\n${r.stdout}${r.stderr}`).toBe(1);
    // the counts by kind in words: '3 violations (3 lost-ack)', never a raw object
    expect(r.stdout).toMatch(/; \d+ violations? \(\d+ [a-z-]+(, \d+ [a-z-]+)*\) in \d+ ms$/m);
    expect(r.stdout).not.toMatch(/[{}]/);
    const line = r.stdout.split('\n').find((l) => l.includes('replay: daxstore crash --replay '));
    expect(line, r.stdout).toBeDefined();
    const image = line!.trim().replace('replay: daxstore crash --replay ', '');
    const replay = cli(['crash', '--replay', image]);
    expect(replay.status, replay.stdout).toBe(1);
    expect(replay.stdout).toMatch(/violation/);
  });

  it('kv-txn: every image holds each transaction whole or not at all, an aborted one never', () => {
    const r = cli(['crash', '--workload', 'kv-txn', '--ops', '14', '--images', '4', '--seed', String(seed), '--json']);
    expect(r.status, `${replayHint}\n${r.stdout}${r.stderr}`).toBe(0);
    expect(JSON.parse(r.stdout).violations).toEqual([]);
  });

  it('kv-txn goes red with DAXSTORE_TEST_BREAK=kv-txn-record-per-write: part of a transaction recovered', () => {
    const args = ['crash', '--workload', 'kv-txn', '--ops', '30', '--images', '4', '--seed', String(seed)];
    const r = cli([...args, '--json', '--stop-at-first', '--no-recovery-crash', '--out', path.join(dir, 'txn')], {
      DAXSTORE_TEST_BREAK: 'kv-txn-record-per-write',
    });
    expect(r.status, `${replayHint}\n${r.stdout}${r.stderr}`).toBe(1);
    const violations = (JSON.parse(r.stdout) as { violations: Array<{ kind: string }> }).violations;
    expect(violations.map((v) => v.kind)).toContain('data');
  });
});
