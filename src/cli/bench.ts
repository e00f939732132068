/**
 * daxstore bench: YCSB A-F and fill/read/scan on worker threads sharing one store
 * (KvStore.share/attach), optionally the same workload on lmdb in the same run.
 * Per (store, workload, threads): throughput and HDR latency percentiles, merged from
 * every worker's histogram. Results as JSON + one SVG chart per workload in --out.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import cliProgress from 'cli-progress';
import { DaxError, isDaxError } from '../errors.js';
import { open, type KvStore } from '../kv/index.js';
import { UsageError, EXIT_OK, emit, mib, table } from './output.js';
import { WORKLOADS, keyOf, type Distribution, type WorkloadName } from './ycsb.js';
import type { WorkerFailure, WorkerJob, WorkerResult } from './bench-worker.js';
import { benchChartSvg } from './chart-svg.js';
import { avoidWorkerTeardownDeadlock } from '../worker-teardown.js';

export interface BenchOptions {
  path?: string;
  size: number;
  workload: string;
  threads: number[];
  valueSize: number;
  keys: number;
  duration: number;
  distribution: Distribution;
  compare?: 'lmdb';
  out?: string;
  seed?: number;
  progress: boolean;
  json?: boolean;
}

export interface BenchRow {
  store: 'daxstore' | 'lmdb';
  workload: WorkloadName;
  threads: number;
  ops: number;
  opsPerSec: number;
  latencyNs: { p50: number; p90: number; p99: number; p999: number; max: number };
}

export interface BenchReport {
  device: { kind: string; flushMethod: string; emulated: boolean; note: string; path: string };
  config: Omit<BenchOptions, 'progress' | 'json'> & { seed: number };
  rows: BenchRow[];
  ratios: Array<{ workload: WorkloadName; threads: number; throughputRatio: number; p99Ratio: number }>;
  /** os.loadavg() (1, 5, 15 min) before and after the runs: the machine is shared, figures are noisy */
  loadAvg: { before: number[]; after: number[] };
  files: string[];
}

export function parseWorkloads(text: string): WorkloadName[] {
  const names = text.split(',').map((s) => s.trim().toLowerCase());
  for (const n of names)
    if (!(WORKLOADS as readonly string[]).includes(n))
      throw new UsageError(`unknown workload '${n}' (choose from ${WORKLOADS.join(', ')})`);
  return names as WorkloadName[];
}

export function defaultDirectory(): string {
  return fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
}

export async function runBench(o: BenchOptions): Promise<number> {
  const report = await bench(o);
  emit(o.json === true, report, () => renderBench(report));
  return EXIT_OK;
}

export async function bench(o: BenchOptions): Promise<BenchReport> {
  const workloads = parseWorkloads(o.workload);
  const seed = o.seed ?? Date.now() >>> 0;
  const work = fs.mkdtempSync(path.join(defaultDirectory(), 'daxstore-bench-'));
  const storePath = o.path ?? path.join(work, 'store.pmem');
  if (o.path !== undefined && fs.existsSync(o.path))
    throw new DaxError('EEXIST', `bench: ${o.path} exists; bench writes a fresh store (give a new path)`);
  const lmdb = o.compare === 'lmdb' ? await loadLmdb() : undefined;
  const loadBefore = os.loadavg();
  const steps = workloads.length * o.threads.length * (lmdb === undefined ? 1 : 2);
  const bar = progressBar(o, steps);
  const rows: BenchRow[] = [];
  let device: BenchReport['device'] | undefined;
  try {
    for (const store of lmdb === undefined ? (['daxstore'] as const) : (['daxstore', 'lmdb'] as const)) {
      for (const workload of workloads) {
        for (const threads of o.threads) {
          const fresh = path.join(work, `${store}-${workload}-${threads}`);
          const target =
            store === 'daxstore'
              ? o.path !== undefined && rows.length === 0
                ? storePath
                : `${fresh}.pmem`
              : `${fresh}.mdb`;
          const result = await tooSmall(
            () =>
              store === 'daxstore'
                ? runDaxstore(target, o, workload, threads, seed, (d) => (device ??= d))
                : runLmdb(lmdb!, target, o, workload, threads, seed),
            store,
            o,
            workload,
            threads,
          );
          rows.push(result);
          bar?.increment();
          if (target !== storePath) fs.rmSync(target, { force: true });
          fs.rmSync(`${target}-lock`, { force: true });
        }
      }
    }
  } finally {
    bar?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
  const report: BenchReport = {
    device: device!,
    config: { ...o, seed, progress: undefined, json: undefined } as BenchReport['config'],
    rows,
    ratios: ratios(rows),
    loadAvg: { before: loadBefore.map(round2), after: os.loadavg().map(round2) },
    files: [],
  };
  if (o.out !== undefined) report.files = writeResults(o.out, report, workloads);
  return report;
}

/** A store that fills up (ENOSPC, or lmdb's MDB_MAP_FULL) is the command line's --size, said so, not a crash. */
async function tooSmall(
  run: () => Promise<BenchRow>,
  store: BenchRow['store'],
  o: BenchOptions,
  workload: WorkloadName,
  threads: number,
): Promise<BenchRow> {
  try {
    return await run();
  } catch (e) {
    const full = isDaxError(e, 'ENOSPC') || (e instanceof Error && /MDB_MAP_FULL/.test(e.message));
    if (!full) throw e;
    throw new DaxError(
      'ENOSPC',
      `bench: the ${store} store (--size ${mib(o.size)}) is too small for workload ${workload}${workload === 'fill' ? '' : ` on ${o.keys} keys`} (${o.valueSize} B values, ${threads} thread${threads === 1 ? '' : 's'}, ${o.duration} ms): give a larger --size${workload === 'fill' ? '' : ', fewer --keys'} or a shorter --duration (${(e as Error).message})`,
      { cause: e },
    );
  }
}

async function loadLmdb(): Promise<typeof import('lmdb')> {
  try {
    return await import('lmdb');
  } catch (e) {
    throw new DaxError(
      'ENOTSUP',
      `--compare lmdb: the lmdb package is not installed (it is a devDependency: npm install lmdb): ${(e as Error).message}`,
    );
  }
}

function progressBar(o: BenchOptions, steps: number): cliProgress.SingleBar | undefined {
  const expectedMs = steps * (o.duration + 200);
  if (!o.progress || o.json === true || expectedMs <= 1000) return undefined;
  const bar = new cliProgress.SingleBar(
    { format: 'bench [{bar}] {value}/{total} runs, eta {eta}s', stream: process.stderr, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(steps, 0);
  return bar;
}

function load(kv: KvStore, keys: number, valueBytes: number): void {
  const value = new Uint8Array(valueBytes).fill(0x62);
  const batch = 256;
  for (let i = 0; i < keys; i += batch) {
    const ops = [];
    for (let k = i; k < Math.min(keys, i + batch); k++) ops.push({ type: 'put' as const, key: keyOf(k), value });
    kv.batch(ops);
  }
}

async function runDaxstore(
  file: string,
  o: BenchOptions,
  workload: WorkloadName,
  threads: number,
  seed: number,
  seen: (d: BenchReport['device']) => void,
): Promise<BenchRow> {
  const kv = open(file, { size: o.size, durability: 'sync', keyEncoding: 'binary', valueEncoding: 'binary' });
  try {
    const stats = kv.stats();
    const emulated = stats.mediaKind !== 'devdax' && stats.mediaKind !== 'fsdax';
    seen({
      kind: stats.mediaKind,
      flushMethod: stats.persistMethod,
      emulated,
      note: emulated ? `emulated pmem (${stats.mediaKind})` : `real pmem (${stats.mediaKind})`,
      path: file,
    });
    if (workload !== 'fill') load(kv, o.keys, o.valueSize);
    const handle = kv.share();
    return await runWorkers(
      'daxstore',
      (s) => ({ type: 'daxstore', handle }),
      o,
      workload,
      threads,
      seed,
      workload === 'fill' ? 0 : o.keys,
    );
  } finally {
    kv.close();
  }
}

async function runLmdb(
  lmdb: typeof import('lmdb'),
  file: string,
  o: BenchOptions,
  workload: WorkloadName,
  threads: number,
  seed: number,
): Promise<BenchRow> {
  const db = lmdb.open({ path: file, encoding: 'binary', noSubdir: true, mapSize: o.size * 4 });
  try {
    if (workload !== 'fill') {
      const value = Buffer.alloc(o.valueSize, 0x62);
      await db.transaction(() => {
        for (let k = 0; k < o.keys; k++) void db.put(keyOf(k), value);
      });
    }
    return await runWorkers(
      'lmdb',
      () => ({ type: 'lmdb', path: file }),
      o,
      workload,
      threads,
      seed,
      workload === 'fill' ? 0 : o.keys,
    );
  } finally {
    await db.close();
  }
}

async function runWorkers(
  store: BenchRow['store'],
  target: (i: number) => WorkerJob['store'],
  o: BenchOptions,
  workload: WorkloadName,
  threads: number,
  seed: number,
  loadedKeys: number,
): Promise<BenchRow> {
  const counter = new SharedArrayBuffer(4);
  new Int32Array(counter)[0] = loadedKeys;
  const script = new URL('./bench-worker.js', import.meta.url);
  const jobs = Array.from({ length: threads }, (_, i): WorkerJob => ({
    store: target(i),
    workload,
    distribution: o.distribution,
    loadedKeys: Math.max(1, loadedKeys),
    valueBytes: o.valueSize,
    durationMs: o.duration,
    seed: seed + i * 7919,
    counter,
  }));
  // Every worker settles before the store closes (a failing one does not stop the others at once).
  const settled = await Promise.allSettled(
    jobs.map(
      (job) =>
        new Promise<WorkerResult>((resolve, reject) => {
          avoidWorkerTeardownDeadlock(); // Node 20 worker-exit deadlock (src/worker-teardown.ts)
          const w = new Worker(script, { workerData: job });
          w.once('message', (m: WorkerResult | WorkerFailure) =>
            'failed' in m ? reject(new DaxError(m.failed.code, m.failed.message)) : resolve(m),
          );
          w.once('error', reject);
          w.once('exit', (code) => code !== 0 && reject(new DaxError('ESYS', `bench worker exited with code ${code}`)));
        }),
    ),
  );
  const failure = settled.find((r) => r.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
  const results = settled.map((r) => (r as PromiseFulfilledResult<WorkerResult>).value);
  const merged = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60e9,
    numberOfSignificantValueDigits: 3,
  });
  for (const r of results) merged.add(hdr.decodeFromCompressedBase64(r.histogram));
  const ops = results.reduce((s, r) => s + r.ops, 0);
  const seconds = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
  const p = (q: number): number => merged.getValueAtPercentile(q);
  return {
    store,
    workload,
    threads,
    ops,
    opsPerSec: Math.round(ops / seconds),
    latencyNs: { p50: p(50), p90: p(90), p99: p(99), p999: p(99.9), max: merged.maxValue },
  };
}

function ratios(rows: readonly BenchRow[]): BenchReport['ratios'] {
  return rows
    .filter((r) => r.store === 'daxstore')
    .flatMap((d) => {
      const l = rows.find((r) => r.store === 'lmdb' && r.workload === d.workload && r.threads === d.threads);
      return l === undefined
        ? []
        : [
            {
              workload: d.workload,
              threads: d.threads,
              throughputRatio: round2(d.opsPerSec / l.opsPerSec),
              p99Ratio: round2(d.latencyNs.p99 / l.latencyNs.p99),
            },
          ];
    });
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

function writeResults(dir: string, report: BenchReport, workloads: readonly WorkloadName[]): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const files = [path.join(dir, `bench-${stamp}.json`)];
  for (const w of workloads) {
    const file = path.join(dir, `bench-${stamp}-${w}.svg`);
    fs.writeFileSync(
      file,
      benchChartSvg(
        `YCSB ${w.toUpperCase()} — ${report.device.note}`,
        report.rows.filter((r) => r.workload === w),
      ),
    );
    files.push(file);
  }
  fs.writeFileSync(files[0], `${JSON.stringify({ ...report, files }, null, 2)}\n`);
  return files;
}

export function renderBench(r: BenchReport): string {
  const us = (ns: number): number => Math.round(ns / 100) / 10;
  const lines = [
    `device: ${r.device.note}, persist by ${r.device.flushMethod}; durability sync; ${r.config.keys} keys, ${r.config.valueSize} B values, ${r.config.distribution}, seed ${r.config.seed}`,
  ];
  lines.push(
    table([
      ['store', 'workload', 'threads', 'ops/s', 'p50 us', 'p99 us', 'p99.9 us'],
      ...r.rows.map((x) => [
        x.store,
        x.workload,
        x.threads,
        x.opsPerSec,
        us(x.latencyNs.p50),
        us(x.latencyNs.p99),
        us(x.latencyNs.p999),
      ]),
    ]),
  );
  if (r.ratios.length > 0)
    lines.push(
      '',
      'daxstore / lmdb',
      table([
        ['workload', 'threads', 'throughput x', 'p99 x'],
        ...r.ratios.map((x) => [x.workload, x.threads, x.throughputRatio, x.p99Ratio]),
      ]),
    );
  lines.push(`load average (1/5/15 min): before ${r.loadAvg.before.join(' ')}, after ${r.loadAvg.after.join(' ')}`);
  for (const f of r.files) lines.push(`wrote ${f}`);
  return lines.join('\n');
}
