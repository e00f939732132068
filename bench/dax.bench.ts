/**
 * DAX mapping layer costs, each beside a peer in the same run, printed as ratios.
 * Run after tsc: `node dist/bench/dax.bench.js` (a ~1.2 GiB space file on /dev/shm,
 * deleted at the end; DAX_BENCH_GIB=<n> scales the 1 GiB working set down for a quick run).
 *
 *   1. fault-in of 1 GiB as write faults of 4 KiB pages and of 2 MiB pages (allocate, zero +
 *      persist, publish the owner record, insert the entry, tag dirty) vs a plain memset
 *      (Uint8Array.fill) of the same mapping's bytes;
 *   2. writeback of 1 GiB of dirty pages (4 KiB and 2 MiB entries: tag walk, entry lock,
 *      flush, one drain) vs raw flushes of the same bytes (media.flush per page + one drain,
 *      and one ranged flush + drain);
 *   3. contention: worker threads running write/read faults, truncate (shrink and grow
 *      back) and memory failure against one object; throughput and p99 per path with 2
 *      workers, beside the same mix in 1 worker (the uncontended peer).
 * Between fault-in iterations (hooks, not timed) the objects are truncated to empty and the
 * epoch collected, so every timed fault allocates.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { DaxSpace, type DaxSpaceHandle } from '../src/dax/space.js';
import type { DaxObject } from '../src/dax/object.js';
import { blockOfValue, pageKey } from '../src/dax/layout.js';
import { avoidWorkerTeardownDeadlock } from '../src/worker-teardown.js';

const KIB4 = 4096;
const HUGE_PAGES = 512;
const GIB = 1024 ** 3;
const WORKING_BYTES =
  Math.round((Number(process.env['DAX_BENCH_GIB'] ?? '1') * GIB) / (2 * 1024 * 1024)) * 2 * 1024 * 1024;
const PAGES = WORKING_BYTES / KIB4;
const SPACE_BYTES =
  WORKING_BYTES + Math.ceil(Math.max(200 * 1024 * 1024, WORKING_BYTES / 5) / (2 * 1024 * 1024)) * 2 * 1024 * 1024;

const CONTENTION_PAGES = 4096;
const CONTENTION_MS = 1500;
const MAX_POISON_PER_WORKER = 100; // the bad-block list holds 1024 entries per space

// ---------------------------------------------------------------- helpers

function meanMs(bench: Bench, name: string): number {
  const r = bench.getTask(name)?.result;
  if (r === undefined || !('latency' in r)) throw new Error(`bench task ${name} did not complete`);
  return r.latency.mean;
}

function gibPerS(bytes: number, ms: number): string {
  return (bytes / GIB / (ms / 1000)).toFixed(2);
}

function emptyObject(space: DaxSpace, obj: DaxObject): void {
  obj.truncate(0);
  obj.truncate(WORKING_BYTES);
  space.collect();
}

function faultAll(obj: DaxObject, huge: boolean): void {
  if (huge) for (let p = 0; p < PAGES; p += HUGE_PAGES) obj.fault(p, { write: true, huge: true });
  else for (let p = 0; p < PAGES; p++) obj.fault(p, { write: true });
}

// ---------------------------------------------------------------- 1. fault-in vs memset

async function faultInBench(space: DaxSpace): Promise<void> {
  const small = space.object(100, { create: true, size: WORKING_BYTES });
  const huge = space.object(101, { create: true, size: WORKING_BYTES });
  const { media } = space.device;
  const data = new Uint8Array(media.buffer, space.device.blockOffset(0), WORKING_BYTES);
  data.fill(1); // first touch of the tmpfs pages outside any timing
  const bench = new Bench({ name: 'fault-in', iterations: 3, time: 0, warmup: false });
  bench.add('fault 4 KiB pages', () => faultAll(small, false), { afterEach: () => emptyObject(space, small) });
  bench.add('fault 2 MiB pages', () => faultAll(huge, true), { afterEach: () => emptyObject(space, huge) });
  bench.add('memset', () => {
    data.fill(0);
  });
  await bench.run();
  const memset = meanMs(bench, 'memset');
  const rows: Record<string, Record<string, string>> = {};
  for (const [name, count] of [
    ['fault 4 KiB pages', PAGES],
    ['fault 2 MiB pages', PAGES / HUGE_PAGES],
    ['memset', 1],
  ] as const) {
    const ms = meanMs(bench, name);
    rows[`${name} (${WORKING_BYTES / GIB} GiB)`] = {
      ms: ms.toFixed(0),
      'GiB/s': gibPerS(WORKING_BYTES, ms),
      'us per fault': name === 'memset' ? '-' : ((ms * 1000) / count).toFixed(2),
      'x memset': (ms / memset).toFixed(2),
    };
  }
  console.log('\nfault-in (write faults of holes) vs memset of the same mapping');
  console.table(rows);
  small.remove();
  huge.remove();
  space.collect();
}

// ---------------------------------------------------------------- 2. writeback vs raw flush

async function writebackBench(space: DaxSpace, huge: boolean): Promise<void> {
  const obj = space.object(huge ? 103 : 102, { create: true, size: WORKING_BYTES });
  faultAll(obj, huge);
  const { media } = space.device;
  const offsets: number[] = [];
  const step = huge ? HUGE_PAGES : 1;
  const bytesEach = step * KIB4;
  for (let p = 0; p < PAGES; p += step)
    offsets.push(space.device.blockOffset(blockOfValue(space.tree.entryInfo(pageKey(obj.id, p))!.value)));
  const label = huge ? '2 MiB' : '4 KiB';
  const bench = new Bench({ name: `writeback ${label}`, iterations: 3, time: 0, warmup: false });
  bench.add(
    'writeback',
    () => {
      const r = obj.writeback();
      if (r.bytes !== WORKING_BYTES) throw new Error(`writeback flushed ${r.bytes} bytes, expected ${WORKING_BYTES}`);
    },
    { beforeEach: () => faultAll(obj, huge) },
  ); // re-dirty: write faults of mapped pages (not timed)
  bench.add('raw flush per entry + drain', () => {
    for (const off of offsets) media.flush(off, bytesEach);
    media.drain();
  });
  bench.add('raw flush one range + drain', () => {
    media.flush(space.device.blockOffset(0), WORKING_BYTES);
    media.drain();
  });
  await bench.run();
  const raw = meanMs(bench, 'raw flush per entry + drain');
  const rows: Record<string, Record<string, string>> = {};
  for (const name of ['writeback', 'raw flush per entry + drain', 'raw flush one range + drain']) {
    const ms = meanMs(bench, name);
    rows[name] = {
      ms: ms.toFixed(1),
      'GiB/s': gibPerS(WORKING_BYTES, ms),
      'x raw flush per entry': (ms / raw).toFixed(2),
    };
  }
  console.log(
    `\nwriteback of ${WORKING_BYTES / GIB} GiB in ${label} entries (${offsets.length} dirty entries) vs raw flush of the same bytes`,
  );
  console.table(rows);
  obj.remove();
  space.collect();
}

// ---------------------------------------------------------------- 3. contention

type Path = 'fault' | 'truncate' | 'memoryFailure';
const PATHS: Path[] = ['fault', 'truncate', 'memoryFailure'];

interface WorkerReport {
  ms: number;
  latenciesUs: Record<Path, number[]>;
  errors: Record<string, number>;
}

function contentionWorker(job: { handle: DaxSpaceHandle; objectId: number; seed: number }): WorkerReport {
  const space = DaxSpace.attach(job.handle);
  const obj = space.object(job.objectId);
  let s = job.seed >>> 0;
  const rand = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const lat: Record<Path, number[]> = { fault: [], truncate: [], memoryFailure: [] };
  const errors: Record<string, number> = {};
  let poisoned = 0;
  const start = performance.now();
  while (performance.now() - start < CONTENTION_MS) {
    const roll = rand();
    const p = Math.floor(rand() * CONTENTION_PAGES);
    const path: Path =
      roll < 0.9 ? 'fault' : roll < 0.98 || poisoned >= MAX_POISON_PER_WORKER ? 'truncate' : 'memoryFailure';
    const t0 = performance.now();
    try {
      if (path === 'fault') space.read(() => obj.fault(p, { write: rand() < 0.5 }));
      else if (path === 'truncate') {
        obj.truncate(Math.floor(rand() * CONTENTION_PAGES) * KIB4);
        obj.truncate(CONTENTION_PAGES * KIB4);
      } else {
        const block = findMappedBlock(space, obj, rand);
        if (block < 0) continue;
        const t1 = performance.now();
        space.memoryFailure(space.device.blockOffset(block));
        lat[path].push((performance.now() - t1) * 1000); // the lookup above is not part of the path
        poisoned++;
        continue;
      }
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'other';
      errors[code] = (errors[code] ?? 0) + 1; // ERANGE: a fault past a concurrent shrink; EIO: a poisoned page
      continue;
    }
    lat[path].push((performance.now() - t0) * 1000);
  }
  const ms = performance.now() - start;
  space.close();
  return { ms, latenciesUs: lat, errors };
}

/** The block of some mapped page of obj (a few random probes), or -1. */
function findMappedBlock(space: DaxSpace, obj: DaxObject, rand: () => number): number {
  for (let probe = 0; probe < 64; probe++) {
    const info = space.tree.entryInfo(pageKey(obj.id, Math.floor(rand() * CONTENTION_PAGES)));
    if (info !== undefined && info.state === 'value') return blockOfValue(info.value);
  }
  return -1;
}

function runWorkers(space: DaxSpace, objectId: number, n: number): Promise<WorkerReport[]> {
  const script = fileURLToPath(import.meta.url);
  return Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<WorkerReport>((resolve, reject) => {
          avoidWorkerTeardownDeadlock(); // Node 20 worker-exit deadlock (src/worker-teardown.ts)
          const w = new Worker(script, { workerData: { handle: space.share(), objectId, seed: 1234 + i } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function summarize(
  reports: WorkerReport[],
): Record<Path, { opsPerS: number; p50Us: number; p99Us: number }> & { errors: Record<string, number> } {
  const ms = Math.max(...reports.map((r) => r.ms));
  const errors: Record<string, number> = {};
  for (const r of reports) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  const out = { errors } as Record<Path, { opsPerS: number; p50Us: number; p99Us: number }> & {
    errors: Record<string, number>;
  };
  for (const path of PATHS) {
    const all = reports.flatMap((r) => r.latenciesUs[path]).sort((a, b) => a - b);
    out[path] = { opsPerS: all.length / (ms / 1000), p50Us: quantile(all, 0.5), p99Us: quantile(all, 0.99) };
  }
  return out;
}

async function contentionBench(space: DaxSpace): Promise<void> {
  const results: Array<ReturnType<typeof summarize>> = [];
  for (const [i, n] of [1, 2].entries()) {
    const obj = space.object(110 + i, { create: true, size: CONTENTION_PAGES * KIB4 });
    results.push(summarize(await runWorkers(space, obj.id, n)));
    obj.remove();
    space.collect();
  }
  const [one, two] = results;
  const rows: Record<string, Record<string, string>> = {};
  for (const path of PATHS) {
    rows[path] = {
      '1 worker ops/s': one[path].opsPerS.toFixed(0),
      '1 worker p50 us': one[path].p50Us.toFixed(1),
      '1 worker p99 us': one[path].p99Us.toFixed(1),
      '2 workers ops/s': two[path].opsPerS.toFixed(0),
      '2 workers p50 us': two[path].p50Us.toFixed(1),
      '2 workers p99 us': two[path].p99Us.toFixed(1),
      'ops/s 2w / 1w': (two[path].opsPerS / one[path].opsPerS).toFixed(2),
      'p99 2w / 1w': (two[path].p99Us / one[path].p99Us).toFixed(2),
    };
  }
  console.log(
    `\ncontention: fault (90%, half writes) / truncate shrink+grow (8%) / memory failure (2%, <= ${MAX_POISON_PER_WORKER} per worker) on one ${CONTENTION_PAGES}-page object, ${CONTENTION_MS} ms`,
  );
  console.table(rows);
  console.log(
    `expected errors (ERANGE: fault past a concurrent shrink; EIO: poisoned page): 1 worker ${JSON.stringify(one.errors)}, 2 workers ${JSON.stringify(two.errors)}`,
  );
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const startLoad = os.loadavg(); // the machine is shared: every figure is a ratio against a peer of the same run
  const dir = fs.mkdtempSync('/dev/shm/daxstore-dax-bench-');
  let space: DaxSpace | undefined;
  try {
    space = DaxSpace.open(path.join(dir, 'space'), { size: SPACE_BYTES });
    console.log(
      `dax bench: ${space.device.stats().mediaKind} space of ${(SPACE_BYTES / GIB).toFixed(2)} GiB on ${dir}, node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}`,
    );
    await faultInBench(space);
    await writebackBench(space, false);
    await writebackBench(space, true);
    await contentionBench(space);
    console.log(
      `\nload average (1, 5, 15 min) at the start: ${startLoad.map((x) => x.toFixed(2)).join(' ')}, at the end: ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    space.collect();
    const audit = space.device.audit();
    if (audit.length > 0) throw new Error(`device audit after the bench: ${audit.join('; ')}`);
  } finally {
    space?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (isMainThread) await main();
else
  parentPort!.postMessage(contentionWorker(workerData as { handle: DaxSpaceHandle; objectId: number; seed: number }));
