/**
 * `daxstore crash` sees the planted bugs that only show during compaction and device block
 * churn (the kv-compact workload: fill batches that close segments, 20 KiB values stored as
 * DAX objects and superseded every few ops, compaction and reclaim passes). Each switch is
 * flipped in a child process (they run concurrently) and must give exit 1 with a violation of
 * the expected kind; --stop-at-first ends a broken run at its first violation, so a switch
 * costs only the ops up to it. The same seed without a switch is clean (checked to the end),
 * so the violation comes from the planted bug. Seed from DAXSTORE_SEED or fresh.
 * --no-recovery-crash: crashes inside recovery find a known superblock bug (see
 * cli-crash-recovery.test.ts) that would make the clean run red for some seeds.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliAsync, tempDir } from './run-cli.js';
import { replayHint, testSeed } from '../helpers/seed.js';

const seed = testSeed();
const hint = replayHint(seed, 'test/cli/cli-crash-planted-bugs.test.ts');
const args = [
  'crash',
  '--workload',
  'kv-compact',
  '--ops',
  '9',
  '--images',
  '4',
  '--seed',
  String(seed),
  '--json',
  '--no-progress',
  '--no-recovery-crash',
];
const stopAtFirst = [...args, '--stop-at-first'];
const dir = tempDir(); // each run saves its violating image under its own --out: parallel-safe, removed after
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Report {
  violations: Array<{ kind: string; detail: string }>;
}

async function run(testBreak?: string): Promise<{ status: number | null; report: Report; raw: string }> {
  const out = ['--out', path.join(dir, testBreak ?? 'clean')];
  const r = await cliAsync(
    [...(testBreak === undefined ? args : stopAtFirst), ...out],
    testBreak === undefined ? {} : { DAXSTORE_TEST_BREAK: testBreak },
    400_000, // six crash runs at once on two loaded cores; the test's own timeout is 420 s
  );
  if (r.status === null) throw new Error(`crash ${testBreak ?? 'clean'} was killed after 400 s: ${hint}\n${r.stderr}`);
  return {
    status: r.status,
    report: JSON.parse(r.stdout) as Report,
    raw: `${hint}\n${r.stdout.slice(0, 2000)}${r.stderr}`,
  };
}

describe.concurrent('crash kv-compact: planted bugs in compaction and block churn are reported', () => {
  it('a correct build has no violation on the same seed', { timeout: 420_000 }, async () => {
    const r = await run();
    expect(r.report.violations, r.raw).toEqual([]);
    expect(r.status, r.raw).toBe(0);
  });

  it.each([
    ['kv-compact-no-commit', 'data', /recovered/],
    // word0 durable before word1: a stale index, or (word0's check bytes cover word1) a record whose check fails
    ['alloc-publish-before-index', 'structure', /stale index|check bytes do not hold/],
    ['free-skip-persist', 'structure', /freed but its owner record is still durable|stale index/],
    // "publishing before the data is durable": the record of a large value is durable, its bytes never flushed
    ['kv-large-ref-before-data', 'data', /recovered/],
    // "a freed block reused inside the grace period": the superseded object removed (its blocks freed at once) before the new record is durable
    ['kv-large-free-early,dax-free-now', 'data', /refers to DAX object \d+ .*which does not exist/],
  ])('%s gives a %s violation', { timeout: 420_000 }, async (testBreak, kind, detail) => {
    const r = await run(testBreak);
    expect(r.status, r.raw).toBe(1);
    const seen = r.report.violations.filter((v) => v.kind === kind && detail.test(v.detail));
    expect(seen.length, r.raw).toBeGreaterThan(0);
  });
});
