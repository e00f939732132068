/**
 * daxstore bench locks: the experiment behind the design. Fault, truncate and memory-failure
 * (reverse map) contention on one object, on worker threads sharing one space, run once
 * through the real DaxSpace path (entry locks) and once through the page-lock baseline
 * (page-lock-baseline.ts: per-4 KiB lock words, lock every page of a huge entry then re-check
 * and retry), for 4 KiB and 2 MiB entries, all in the same run. Each (entry size, path) gets a
 * fresh store of the same size, so neither path inherits the other's fragmentation or limbo.
 * Prints throughput and p99 per role and path, and entry-locks / page-locks ratios.
 * After each run the workers' locks must all be free and the allocator must agree with the
 * owner table (an audit): a path that broke the store does not get a figure.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import cliProgress from 'cli-progress';
import { DaxError } from '../errors.js';
import { DaxSpace } from '../dax/space.js';
import { EXIT_OK, UsageError, emit, table } from './output.js';
import { defaultDirectory } from './bench.js';
import { createPageLocks, PageLockObject, pageKey } from './page-lock-baseline.js';
import type { LockPath, LockRole, LocksJob, LocksResult } from './bench-locks-worker.js';
import { locksChartSvg } from './chart-svg.js';
import { avoidWorkerTeardownDeadlock } from '../worker-teardown.js';

export interface LocksOptions {
  size: number;
  objectSize: number;
  threads: number;
  duration: number;
  truncateInterval: number;
  seed?: number;
  out?: string;
  progress: boolean;
  json?: boolean;
}

export interface LocksRow {
  entryBytes: number;
  path: LockPath;
  role: LockRole;
  threads: number;
  ops: number;
  opsPerSec: number;
  /** ops that did their work: faults that found the page inside the size (the others return early, cheaply) */
  workOpsPerSec: number;
  latencyNs: { p50: number; p99: number; max: number };
  beyondSize: number;
  moved: number;
  enospc: number;
  retries: number;
}

export interface LocksRatio {
  entryBytes: number;
  role: LockRole | 'all';
  /** entry-locks over page-locks ops/s that did their work (workOpsPerSec): > 1 means entry locks do more */
  throughputRatio: number;
  /** page-locks p99 over entry-locks p99: > 1 means entry locks have the shorter tail (null for 'all') */
  p99Ratio: number | null;
}

export interface LocksReport {
  device: { kind: string; flushMethod: string; emulated: boolean };
  config: Omit<LocksOptions, 'progress' | 'json'> & { seed: number; roles: LockRole[] };
  rows: LocksRow[];
  totals: Array<{ entryBytes: number; path: LockPath; ops: number; opsPerSec: number }>;
  ratios: LocksRatio[];
  loadAvg: { before: number[]; after: number[] };
  files: string[];
}

const ENTRY_BYTES = [4096, 2 * 2 ** 20] as const;
const PATHS: readonly LockPath[] = ['entry-locks', 'page-locks'];
/** role of thread i: one of each first, then more faulters */
const ROLE_CYCLE: readonly LockRole[] = ['fault', 'memory-failure', 'truncate', 'fault'];
const OBJECT_ID = 16;

export function rolesFor(threads: number): LockRole[] {
  return Array.from({ length: threads }, (_, i) => ROLE_CYCLE[i % ROLE_CYCLE.length]);
}

export async function runLocks(o: LocksOptions): Promise<number> {
  const report = await benchLocks(o);
  emit(o.json === true, report, () => renderLocks(report));
  return EXIT_OK;
}

export async function benchLocks(o: LocksOptions): Promise<LocksReport> {
  if (o.threads < 3)
    throw new UsageError(
      `--threads ${o.threads}: bench locks needs at least 3 (a faulter, a memory failure, a truncater)`,
    );
  if (o.objectSize % (4 * ENTRY_BYTES[1]) !== 0)
    throw new UsageError(`--object-size ${o.objectSize} must be a multiple of 8 MiB (at least four 2 MiB entries)`);
  if (o.size < 4 * o.objectSize)
    throw new UsageError(
      `--size ${o.size} must be at least 4x --object-size (room for retired blocks in their grace period)`,
    );
  const seed = o.seed ?? Date.now() >>> 0;
  const roles = rolesFor(o.threads);
  const loadBefore = os.loadavg();
  const work = fs.mkdtempSync(path.join(defaultDirectory(), 'daxstore-bench-locks-'));
  const bar =
    o.progress && o.json !== true && o.duration * 4 > 1000
      ? new cliProgress.SingleBar(
          {
            format: 'bench locks [{bar}] {value}/{total} runs, eta {eta}s',
            stream: process.stderr,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  bar?.start(ENTRY_BYTES.length * PATHS.length, 0);
  const rows: LocksRow[] = [];
  let device: LocksReport['device'] | undefined;
  try {
    for (const entryBytes of ENTRY_BYTES) {
      for (const lockPath of PATHS) {
        const file = path.join(work, `${entryBytes}-${lockPath}.pmem`);
        rows.push(...(await runOne(file, o, roles, entryBytes, lockPath, seed, (d) => (device ??= d))));
        fs.rmSync(file, { force: true });
        bar?.increment();
      }
    }
  } finally {
    bar?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
  const totals = ENTRY_BYTES.flatMap((entryBytes) =>
    PATHS.map((p) => {
      const mine = rows.filter((r) => r.entryBytes === entryBytes && r.path === p);
      return {
        entryBytes,
        path: p,
        ops: sum(mine.map((r) => r.ops)),
        opsPerSec: sum(mine.map((r) => r.workOpsPerSec)),
      };
    }),
  );
  const report: LocksReport = {
    device: device!,
    config: {
      size: o.size,
      objectSize: o.objectSize,
      threads: o.threads,
      duration: o.duration,
      truncateInterval: o.truncateInterval,
      seed,
      roles,
      out: o.out,
    },
    rows,
    totals,
    ratios: ratios(rows, totals),
    loadAvg: { before: loadBefore.map(round2), after: os.loadavg().map(round2) },
    files: [],
  };
  if (o.out !== undefined) report.files = writeResults(o.out, report);
  return report;
}

async function runOne(
  file: string,
  o: LocksOptions,
  roles: readonly LockRole[],
  entryBytes: number,
  lockPath: LockPath,
  seed: number,
  seen: (d: LocksReport['device']) => void,
): Promise<LocksRow[]> {
  const pages = o.objectSize / 4096;
  const entryPages = entryBytes === 4096 ? 1 : 512;
  const space = DaxSpace.open(file, { size: o.size });
  try {
    const d = space.device.stats();
    seen({
      kind: d.mediaKind,
      flushMethod: d.flushMethod,
      emulated: d.mediaKind !== 'devdax' && d.mediaKind !== 'fsdax',
    });
    // The entry-locks object lives in the object table; the baseline's pages use the same
    // key layout under an id the table does not hold (the baseline keeps its own size word).
    const pageLocks = createPageLocks(pages);
    // Both start from a fully mapped object (every entry write-faulted once), as a file in use would be.
    if (lockPath === 'entry-locks') {
      const obj = space.object(OBJECT_ID, { create: true, size: o.objectSize });
      for (let i = 0; i < pages; i += entryPages) obj.fault(i, { write: true, huge: entryPages !== 1 });
    } else {
      const obj = new PageLockObject(space, OBJECT_ID + 1, pages, entryPages, pageLocks);
      for (let i = 0; i < pages; i += entryPages) obj.fault(i);
    }
    const handle = space.share();
    const startLine = new SharedArrayBuffer(4);
    const results = await Promise.all(
      roles.map((role, i) =>
        runWorker({
          path: lockPath,
          role,
          space: handle,
          pageLocks,
          objectId: lockPath === 'entry-locks' ? OBJECT_ID : OBJECT_ID + 1,
          pages,
          entryPages,
          durationMs: o.duration,
          truncateIntervalMs: o.truncateInterval,
          seed: seed + i * 7919,
          startLine,
          workers: roles.length,
        }),
      ),
    );
    verifyAfter(space, lockPath, pages, entryPages, pageLocks, file);
    return rowsOf(results, entryBytes, lockPath);
  } finally {
    space.close();
  }
}

function runWorker(job: LocksJob): Promise<LocksResult> {
  return new Promise((resolve, reject) => {
    avoidWorkerTeardownDeadlock(); // Node 20 worker-exit deadlock (src/worker-teardown.ts)
    const w = new Worker(new URL('./bench-locks-worker.js', import.meta.url), { workerData: job });
    w.once('message', resolve);
    w.once('error', reject);
    w.once(
      'exit',
      (code) =>
        code !== 0 &&
        reject(new DaxError('ESYS', `bench locks worker (${job.path}, ${job.role}) exited with code ${code}`)),
    );
  });
}

/** Both paths must leave the store consistent: locks free, allocator = owner table, entries within the size. */
function verifyAfter(
  space: DaxSpace,
  lockPath: LockPath,
  pages: number,
  entryPages: 1 | 512,
  pageLocks: ReturnType<typeof createPageLocks>,
  file: string,
): void {
  const problems = space.device.audit();
  if (
    lockPath === 'page-locks' &&
    !new PageLockObject(space, OBJECT_ID + 1, pages, entryPages, pageLocks).allUnlocked()
  )
    problems.push('a page lock word is still held');
  const id = lockPath === 'entry-locks' ? OBJECT_ID : OBJECT_ID + 1;
  for (const [key] of space.tree.range({ gte: pageKey(id, pages), lt: pageKey(id + 1, 0) }))
    problems.push(`entry beyond the object's pages: ${Buffer.from(key).toString('hex')}`);
  // The reverse map agrees with the index: a block is owned by the object exactly when an
  // entry maps it (a fault that installed over another's block leaves an owned, unmapped one).
  const mapped = new Map<number, number>();
  for (const [key, value] of space.tree.range({ gte: pageKey(id, 0), lt: pageKey(id, pages) })) {
    const start = Number(Buffer.from(key).readBigUInt64BE(8));
    if (start % entryPages !== 0) problems.push(`entry at page ${start} is not ${entryPages}-page aligned`);
    mapped.set(Math.floor(value / 4), start);
  }
  space.device.forEachOwned((block, owner, index) => {
    if (owner !== id) return;
    if (mapped.get(block) !== index)
      problems.push(`block ${block} is owned by page ${index} but no entry maps it there`);
    mapped.delete(block);
  });
  for (const [block, start] of mapped)
    problems.push(`page ${start} maps block ${block}, which the owner table does not give it`);
  if (problems.length > 0)
    throw new DaxError(
      'ECORRUPT',
      `bench locks (${lockPath}) left ${file} inconsistent: ${problems.slice(0, 3).join('; ')}`,
    );
}

function rowsOf(results: readonly LocksResult[], entryBytes: number, lockPath: LockPath): LocksRow[] {
  const roles = [...new Set(results.map((r) => r.role))];
  return roles.map((role) => {
    const mine = results.filter((r) => r.role === role);
    const merged = hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 60e9,
      numberOfSignificantValueDigits: 3,
    });
    for (const r of mine) merged.add(hdr.decodeFromCompressedBase64(r.histogram));
    const ops = sum(mine.map((r) => r.ops));
    const seconds = Math.max(...mine.map((r) => r.elapsedMs)) / 1000;
    return {
      entryBytes,
      path: lockPath,
      role,
      threads: mine.length,
      ops,
      opsPerSec: Math.round(ops / seconds),
      workOpsPerSec: Math.round((ops - sum(mine.map((r) => r.beyondSize))) / seconds),
      latencyNs: { p50: merged.getValueAtPercentile(50), p99: merged.getValueAtPercentile(99), max: merged.maxValue },
      beyondSize: sum(mine.map((r) => r.beyondSize)),
      moved: sum(mine.map((r) => r.moved)),
      enospc: sum(mine.map((r) => r.enospc)),
      retries: sum(mine.map((r) => r.retries)),
    };
  });
}

function ratios(rows: readonly LocksRow[], totals: LocksReport['totals']): LocksRatio[] {
  const out: LocksRatio[] = [];
  for (const entryBytes of ENTRY_BYTES) {
    for (const role of [...new Set(rows.map((r) => r.role))]) {
      const e = rows.find((r) => r.entryBytes === entryBytes && r.role === role && r.path === 'entry-locks');
      const p = rows.find((r) => r.entryBytes === entryBytes && r.role === role && r.path === 'page-locks');
      if (e === undefined || p === undefined) continue;
      out.push({
        entryBytes,
        role,
        throughputRatio: round2(e.workOpsPerSec / Math.max(1, p.workOpsPerSec)),
        p99Ratio: round2(p.latencyNs.p99 / Math.max(1, e.latencyNs.p99)),
      });
    }
    const te = totals.find((t) => t.entryBytes === entryBytes && t.path === 'entry-locks');
    const tp = totals.find((t) => t.entryBytes === entryBytes && t.path === 'page-locks');
    if (te !== undefined && tp !== undefined)
      out.push({
        entryBytes,
        role: 'all',
        throughputRatio: round2(te.opsPerSec / Math.max(1, tp.opsPerSec)),
        p99Ratio: null,
      });
  }
  return out;
}

const sum = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0);
const round2 = (x: number): number => Math.round(x * 100) / 100;
const sizeName = (bytes: number): string => (bytes >= 2 ** 20 ? `${bytes / 2 ** 20} MiB` : `${bytes / 1024} KiB`);

function writeResults(dir: string, report: LocksReport): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const files = [path.join(dir, `bench-locks-${stamp}.json`), path.join(dir, `bench-locks-${stamp}.svg`)];
  fs.writeFileSync(
    files[1],
    locksChartSvg(
      `bench locks — ${report.config.threads} threads (${report.config.roles.join(', ')}), ${report.device.emulated ? 'emulated pmem' : 'pmem'} (${report.device.kind})`,
      report.rows,
    ),
  );
  fs.writeFileSync(files[0], `${JSON.stringify({ ...report, files }, null, 2)}\n`);
  return files;
}

export function renderLocks(r: LocksReport): string {
  const us = (ns: number): number => Math.round(ns / 100) / 10;
  const lines = [
    `bench locks: one object of ${sizeName(r.config.objectSize)}, ${r.config.threads} threads (${r.config.roles.join(', ')}), ${r.config.duration} ms per run, a truncate every ${r.config.truncateInterval} ms, seed ${r.config.seed}; ${r.device.emulated ? 'emulated pmem' : 'pmem'} (${r.device.kind}, ${r.device.flushMethod})`,
    table([
      [
        'entry',
        'path',
        'role',
        'threads',
        'ops/s',
        'work ops/s',
        'p50 us',
        'p99 us',
        'beyond size',
        'moved',
        'enospc',
        'retries',
      ],
      ...r.rows.map((x) => [
        sizeName(x.entryBytes),
        x.path,
        x.role,
        x.threads,
        x.opsPerSec,
        x.workOpsPerSec,
        us(x.latencyNs.p50),
        us(x.latencyNs.p99),
        x.beyondSize,
        x.moved,
        x.enospc,
        x.retries,
      ]),
    ]),
    '',
    'entry-locks vs page-locks (throughput x = entry/page work ops/s; p99 x = page/entry p99: above 1 favours entry locks)',
    table([
      ['entry', 'role', 'throughput x', 'p99 x'],
      ...r.ratios.map((x) => [sizeName(x.entryBytes), x.role, x.throughputRatio, x.p99Ratio ?? '-']),
    ]),
    `load average (1/5/15 min): before ${r.loadAvg.before.join(' ')}, after ${r.loadAvg.after.join(' ')}`,
  ];
  for (const f of r.files) lines.push(`wrote ${f}`);
  return lines.join('\n');
}
