/**
 * `daxstore bench locks` end to end on a short run: the report has a row per (entry size,
 * path, role), both paths did work in every role, the ratios compare the two paths, and the
 * JSON + SVG land in --out. Speed is not asserted (bench/ measures it). Each run also checks
 * itself (locks free, allocator = owner table, owner table = index): with the baseline's page
 * locks switched off (DAXSTORE_TEST_BREAK=bench-page-locks-off) two faults install over each
 * other and the run exits 3 with ECORRUPT, so the baseline's locks are doing real work.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliAsync, tempDir } from './run-cli.js';
import { replayHint, testSeed } from '../helpers/seed.js';

const seed = testSeed();

interface Row {
  entryBytes: number;
  path: string;
  role: string;
  threads: number;
  ops: number;
  opsPerSec: number;
  latencyNs: { p50: number; p99: number };
}
interface Report {
  rows: Row[];
  ratios: Array<{ entryBytes: number; role: string; throughputRatio: number }>;
  config: { seed: number; roles: string[] };
  loadAvg: { before: number[] };
  files: string[];
}

describe('bench locks', () => {
  it(
    'runs entry locks and the page-lock baseline for 4 KiB and 2 MiB entries, every role doing work',
    { timeout: 60_000 },
    async () => {
      const out = tempDir();
      try {
        const r = await cliAsync([
          'bench',
          'locks',
          '--duration',
          '300ms',
          '--object-size',
          '8M',
          '--size',
          '128M',
          '--threads',
          '4',
          '--seed',
          String(seed),
          '--out',
          out,
          '--json',
        ]);
        const hint = `${replayHint(seed, 'test/cli/cli-bench-locks.test.ts')}\n${r.stderr}`;
        expect(r.status, hint).toBe(0);
        const report = JSON.parse(r.stdout) as Report;
        expect(report.config.seed).toBe(seed);
        expect(report.config.roles).toEqual(['fault', 'memory-failure', 'truncate', 'fault']);
        for (const entryBytes of [4096, 2 * 2 ** 20]) {
          for (const lockPath of ['entry-locks', 'page-locks']) {
            for (const role of ['fault', 'memory-failure', 'truncate']) {
              const row = report.rows.find(
                (x) => x.entryBytes === entryBytes && x.path === lockPath && x.role === role,
              );
              expect(row, `${entryBytes} ${lockPath} ${role}`).toBeDefined();
              expect(row!.ops, `${entryBytes} ${lockPath} ${role} did no work\n${hint}`).toBeGreaterThan(0);
              expect(row!.latencyNs.p99).toBeGreaterThanOrEqual(row!.latencyNs.p50);
            }
            const ratio = report.ratios.find((x) => x.entryBytes === entryBytes && x.role === 'fault');
            expect(ratio!.throughputRatio).toBeGreaterThan(0);
          }
        }
        expect(report.rows).toHaveLength(12);
        expect(report.loadAvg.before).toHaveLength(3);
        expect(report.files.map((f) => path.extname(f)).sort()).toEqual(['.json', '.svg']);
        for (const f of report.files) expect(fs.statSync(f).size).toBeGreaterThan(100);
        expect(
          fs.readFileSync(
            report.files.find((f) => f.endsWith('.svg'))!,
            'utf8',
          ),
        ).toMatch(/page-locks/);
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    },
  );

  it(
    'goes red with bench-page-locks-off: the baseline without its page locks fails its own consistency check (exit 3, ECORRUPT)',
    { timeout: 60_000 },
    async () => {
      // a race: two faulters must hit one hole together; a 1 s run has always done so here, three tries for margin
      let last = { status: 0 as number | null, stderr: '' };
      for (let attempt = 0; attempt < 3 && last.status === 0; attempt++) {
        last = await cliAsync(
          [
            'bench',
            'locks',
            '--duration',
            '1s',
            '--object-size',
            '8M',
            '--size',
            '128M',
            '--threads',
            '4',
            '--seed',
            String(seed + attempt),
            '--json',
          ],
          { DAXSTORE_TEST_BREAK: 'bench-page-locks-off' },
        );
      }
      expect(last.status, last.stderr).toBe(3);
      expect(last.stderr).toMatch(
        /^daxstore: ECORRUPT: bench locks \(page-locks\) left .* inconsistent: .*(no entry maps it|does not give it)/,
      );
    },
  );
});
