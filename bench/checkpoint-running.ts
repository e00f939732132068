/**
 * Checkpoints taken while running, in one run on one store:
 *   1. Writers' put latency while a checkpoint is taken vs without: a worker thread puts
 *      ('sync', random overwrites of the store's keys) the whole time; the main thread
 *      alternates a window without a checkpoint (as long as the last checkpoint took) and a
 *      window in which it takes one, step by step as the opener's background one runs. Per
 *      round, the worker's p50 and p99 put latency in each window; printed: the medians over
 *      rounds and the median of the paired p99 ratios (with / without). Also the longest step
 *      (wall): how long the opener's thread, and so its own writes, is held at most.
 *   2. Reopen after a kill with a checkpoint taken while running: a process overwrites 10% of
 *      the keys with a writer worker running, takes a checkpoint while the worker writes 1% of
 *      the keys more (then stops: the tail is that long whatever the checkpoint's own time) and
 *      is killed (SIGKILL). Fresh processes then open the
 *      store with recovery: 'full' and with the checkpoint (alternated, `--rounds` each): wall
 *      and CPU time of open(), and the paired ratios to the full scan.
 *
 *   3. Writers in the opener's own thread while the checkpoint's steps run on its event loop:
 *      puts arriving at a steady rate, each one's latency counted from its arrival (a step that
 *      holds the thread delays every put arriving meanwhile), with and without a checkpoint.
 *      Twice: on the wall clock, and on the thread's own CPU clock (arrivals every 100 us of the
 *      thread's CPU time, latencies in it): what the thread itself delays a put by, without the
 *      time other processes of a loaded machine take the core from it.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/checkpoint-running.js [--keys 1000000] [--rounds 3]
 *     [--latency-only 1]  (1 and 3 only)
 *
 * The store: random 16-byte keys, 100-byte values, binary encodings, in /dev/shm, removed at
 * the end. The load average is printed with the figures (the machine is shared).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './ab-report.js';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as kv from '../src/kv/index.js';
import { attach, open, type KvHandle } from '../src/kv/index.js';
import { native } from '../src/native/addon.js';
import { mulberry32 } from '../src/device/sim-media.js';
import { avoidWorkerTeardownDeadlock } from '../src/worker-teardown.js';
import { arg } from './args.js';
import { timedReopen } from './bench-store.js';

const VALUE = new Uint8Array(100).fill(7);
const BIN = { keyEncoding: 'binary', valueEncoding: 'binary' } as const;
const PHASE = 0; // shared word: 0 warm-up, 1 + 2r window without (round r), 2 + 2r with, -1 stop
const LIMIT = 2; // shared word: the writer stops putting once it has put this many (0: no limit)
const SELF = fileURLToPath(import.meta.url);

function keysOf(n: number): Uint8Array[] {
  const r = mulberry32(42);
  return Array.from({ length: n }, () => new Uint8Array(16).map(() => Math.floor(r() * 256)));
}

const quantile = (xs: Float64Array, n: number, q: number): number => {
  const s = xs.slice(0, n).sort();
  return s[Math.min(n - 1, Math.floor(q * n))];
};

/** The writer worker: puts until PHASE is -1, each put's latency kept per window. */
function writer(): void {
  const { handle, flags, keys, seed, windows } = workerData as {
    handle: KvHandle;
    flags: SharedArrayBuffer;
    keys: number;
    seed: number;
    windows: number;
  };
  const f = new Int32Array(flags);
  const db = attach(handle);
  const all = keysOf(keys);
  const r = mulberry32(seed);
  const lat = Array.from({ length: windows + 1 }, () => new Float64Array(1 << 20));
  const count = new Array<number>(windows + 1).fill(0);
  for (;;) {
    const phase = Atomics.load(f, PHASE);
    if (phase < 0) break;
    const limit = Atomics.load(f, LIMIT);
    if (limit > 0 && Atomics.load(f, 1) >= limit) {
      sleep(1);
      continue;
    }
    const k = all[Math.floor(r() * keys)];
    const t = performance.now();
    db.put(k, VALUE);
    const d = performance.now() - t;
    Atomics.add(f, 1, 1);
    if (phase > 0 && phase <= windows && count[phase] < lat[phase].length) lat[phase][count[phase]++] = d;
  }
  db.close();
  parentPort!.postMessage(
    count.map((n, w) =>
      n === 0 ? { n, p50: 0, p99: 0 } : { n, p50: quantile(lat[w], n, 0.5), p99: quantile(lat[w], n, 0.99) },
    ),
  );
}

function startWriter(db: ReturnType<typeof open>, flags: Int32Array, keys: number, seed: number, windows: number) {
  avoidWorkerTeardownDeadlock();
  const w = new Worker(SELF, { workerData: { handle: db.share(), flags: flags.buffer, keys, seed, windows } });
  return new Promise<Array<{ n: number; p50: number; p99: number }>>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
}

/**
 * A checkpoint taken as the opener's background one is (store.ts backgroundCheckpointDue), its
 * steps run one after another on this thread; while a step waits for work on a native thread
 * (backgroundCheckpointReady false), this thread sleeps as the event loop would serve others.
 * Returns the longest step, ms, wall and the thread's own CPU (on a loaded machine the wall
 * time holds whatever ran meanwhile): how long the thread's own writes would wait at most.
 */
function backgroundCheckpoint(db: ReturnType<typeof open>): [number, number] {
  const store = db as unknown as { backgroundCheckpointReady?: () => boolean };
  db.startBackgroundCheckpoint();
  let longest = 0;
  let longestCpu = 0;
  for (;;) {
    if (store.backgroundCheckpointReady?.() === false) {
      sleep(1);
      continue;
    }
    const t = performance.now();
    const c = native().threadCpuMs();
    const more = db.stepBackgroundCheckpoint();
    longest = Math.max(longest, performance.now() - t);
    longestCpu = Math.max(longestCpu, native().threadCpuMs() - c);
    if (!more) break;
  }
  const last = db.lastCheckpoint;
  if (last !== undefined && 'error' in last) throw new Error(`background checkpoint: ${last.error}`);
  return [longest, longestCpu];
}

/**
 * Writers in the opener's own thread: puts arrive every ARRIVAL_MS (open loop: a put that
 * arrives while the thread is held waits), each run at the first turn of the event loop after
 * its arrival, its latency counted from its arrival. The background checkpoint's steps run on
 * the same event loop as the store runs them (a turn per step; a step whose native work has not
 * ended looked at again in 1 ms). Per round, a window without a checkpoint (as long as the last
 * checkpoint took) and one in which one is taken: each window's p50 and p99, and the longest
 * step.
 */
const ARRIVAL_MS = 0.1;

async function sameThread(
  file: string,
  keys: number,
  rounds: number,
  now: () => number,
): Promise<{ windows: Array<{ n: number; p50: number; p99: number }>; took: number[]; longest: number[] }> {
  const db = open(file, { durability: 'sync', checkpointEvery: 0, checkpoint: false, ...BIN });
  const store = db as unknown as { backgroundCheckpointReady?: () => boolean };
  const all = keysOf(keys);
  const r = mulberry32(11);
  const lat = new Float64Array(1 << 21);
  const windows: Array<{ n: number; p50: number; p99: number }> = [];
  /** Puts for `ms`, or until `until` resolves; their latencies from arrival. */
  const writeWindow = (ms: number, until?: Promise<void>): Promise<{ n: number; p50: number; p99: number }> =>
    new Promise((resolve) => {
      let n = 0;
      let stop = false;
      void until?.then(() => (stop = true));
      const t0 = now();
      let next = t0;
      const turn = (): void => {
        const at = now();
        if (stop || (until === undefined && at - t0 >= ms)) {
          resolve({ n, p50: quantile(lat, n, 0.5), p99: quantile(lat, n, 0.99) });
          return;
        }
        while (next <= at) {
          db.put(all[Math.floor(r() * keys)], VALUE);
          if (n < lat.length) lat[n++] = now() - next;
          next += ARRIVAL_MS;
        }
        setImmediate(turn);
      };
      setImmediate(turn);
    });
  /** The background checkpoint, stepped as the store's event-loop turns step it; resolves with its longest step. */
  const checkpointOnLoop = (): { done: Promise<void>; longest: () => number } => {
    let longest = 0;
    db.startBackgroundCheckpoint();
    const done = new Promise<void>((resolve, reject) => {
      const turn = (): void => {
        if (store.backgroundCheckpointReady?.() === false) return void setTimeout(turn, 1);
        const t = now();
        let more: boolean;
        try {
          more = db.stepBackgroundCheckpoint();
        } catch (e) {
          return reject(e as Error);
        }
        longest = Math.max(longest, now() - t);
        if (more) setImmediate(turn);
        else resolve();
      };
      setImmediate(turn);
    });
    return { done, longest: () => longest };
  };
  await writeWindow(300); // warm-up
  let lastMs = 1000;
  const took: number[] = [];
  const longest: number[] = [];
  for (let round = 0; round < rounds; round++) {
    windows.push(await writeWindow(lastMs));
    const t = now();
    const cp = checkpointOnLoop();
    windows.push(await writeWindow(0, cp.done));
    lastMs = now() - t;
    took.push(lastMs);
    longest.push(cp.longest());
  }
  db.close();
  return { windows, took, longest };
}

const sleep = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function child(...args: string[]): string {
  return execFileSync(process.execPath, [SELF, '--child', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
}

async function runChild(mode: string, file: string, keys: number, rounds: number): Promise<void> {
  const all = keysOf(keys);
  if (mode === 'build') {
    // Room for the log the writer worker adds while checkpoints are taken (sparse: unused room costs nothing).
    const size = Math.max(512 * 2 ** 20, Math.ceil((keys * 1400) / 2 ** 21) * 2 ** 21);
    const db = open(file, { size, durability: 'none', checkpoint: false, ...BIN });
    for (const k of all) db.put(k, VALUE);
    db.close();
  } else if (mode === 'latency') {
    const db = open(file, { durability: 'sync', checkpointEvery: 0, checkpoint: false, ...BIN });
    const flags = new Int32Array(new SharedArrayBuffer(12));
    const done = startWriter(db, flags, keys, 7, 2 * rounds);
    while (Atomics.load(flags, 1) < 20000) sleep(5); // warmed up
    let lastMs = 1000;
    const took: number[] = [];
    const longest: number[] = [];
    const longestCpu: number[] = [];
    for (let round = 0; round < rounds; round++) {
      Atomics.store(flags, PHASE, 1 + 2 * round);
      sleep(lastMs);
      Atomics.store(flags, PHASE, 2 + 2 * round);
      const t = performance.now();
      const [wall, cpu] = backgroundCheckpoint(db);
      longest.push(wall);
      longestCpu.push(cpu);
      lastMs = performance.now() - t;
      took.push(lastMs);
      Atomics.store(flags, PHASE, 0);
    }
    Atomics.store(flags, PHASE, -1);
    const w = await done;
    db.close();
    process.stdout.write(JSON.stringify({ windows: w, took, longest, longestCpu }));
  } else if (mode === 'same-thread') {
    process.stdout.write(JSON.stringify(await sameThread(file, keys, rounds, () => performance.now())));
  } else if (mode === 'same-thread-cpu') {
    process.stdout.write(JSON.stringify(await sameThread(file, keys, rounds, () => native().threadCpuMs())));
  } else if (mode === 'write-and-die') {
    const db = open(file, { durability: 'sync', checkpointEvery: 0, checkpoint: false, ...BIN });
    const flags = new Int32Array(new SharedArrayBuffer(12));
    void startWriter(db, flags, keys, 9, 0);
    while (Atomics.load(flags, 1) < keys / 10) sleep(5); // 10% of the keys overwritten
    // A tail of 1% of the keys, written while the checkpoint is taken (and after, if it ends
    // first): whatever the checkpoint's own time, the log after it is that long.
    const limit = Atomics.load(flags, 1) + keys / 100;
    Atomics.store(flags, LIMIT, limit);
    const cp = db.checkpoint(); // while the worker writes
    while (Atomics.load(flags, 1) < limit) sleep(2);
    process.stderr.write(JSON.stringify({ checkpointMs: cp.timeMs }) + '\n');
    process.kill(process.pid, 'SIGKILL');
  } else {
    const { wallMs, cpuMs, recovery: r } = timedReopen(kv, file, mode === 'full');
    process.stdout.write(
      JSON.stringify({
        wallMs,
        cpuMs,
        loaded: r.checkpoint?.loaded !== undefined,
        tail: r.checkpoint?.tailEntries ?? 0,
        image: r.checkpoint?.imageLoaded === true,
        keys: r.keys,
        ignored: r.checkpoint?.ignored ?? [],
      }),
    );
  }
}

function main(): void {
  const keys = Number(arg('keys', '1000000'));
  const rounds = Number(arg('rounds', '3'));
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ckpt-run-'));
  const file = path.join(dir, 'store');
  const load = (): string =>
    loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  try {
    child('build', file, String(keys), '0');
    const lat = JSON.parse(child('latency', file, String(keys), String(rounds))) as {
      windows: Array<{ n: number; p50: number; p99: number }>;
      took: number[];
      longest: number[];
      longestCpu: number[];
    };
    const without = Array.from({ length: rounds }, (_, r) => lat.windows[1 + 2 * r]);
    const withCp = Array.from({ length: rounds }, (_, r) => lat.windows[2 + 2 * r]);
    const us = (ms: number): string => (ms * 1000).toFixed(1);
    console.log(`checkpoints while running, ${keys} keys, ${rounds} rounds; load average ${load()}`);
    console.log(
      `put latency ('sync', one writer worker): without a checkpoint p50 ${us(median(without.map((w) => w.p50)))} us, p99 ${us(median(without.map((w) => w.p99)))} us (${median(without.map((w) => w.n))} puts/window); while one is taken (${median(lat.took).toFixed(0)} ms each) p50 ${us(median(withCp.map((w) => w.p50)))} us, p99 ${us(median(withCp.map((w) => w.p99)))} us (${median(withCp.map((w) => w.n))} puts/window); p99 with / without, paired: ${median(withCp.map((w, i) => w.p99 / without[i].p99)).toFixed(2)}`,
    );
    console.log(
      `longest step of a checkpoint taken as the background one is (the opener's thread held, its own writes waiting): wall median ${median(lat.longest).toFixed(1)} ms, most ${Math.max(...lat.longest).toFixed(1)} ms; the thread's CPU median ${median(lat.longestCpu).toFixed(1)} ms, most ${Math.max(...lat.longestCpu).toFixed(1)} ms`,
    );
    for (const clock of ['wall', 'cpu']) {
      const same = JSON.parse(
        child(clock === 'wall' ? 'same-thread' : 'same-thread-cpu', file, String(keys), String(rounds)),
      ) as Omit<typeof lat, 'longestCpu'>;
      const without = Array.from({ length: rounds }, (_, r) => same.windows[2 * r]);
      const withCp = Array.from({ length: rounds }, (_, r) => same.windows[2 * r + 1]);
      console.log(
        `put latency in the opener's own thread, ${clock === 'wall' ? 'wall clock' : "the thread's CPU clock"} ('sync', a put arriving every ${ARRIVAL_MS * 1000} us, counted from its arrival): without a checkpoint p50 ${us(median(without.map((w) => w.p50)))} us, p99 ${us(median(without.map((w) => w.p99)))} us; while one is taken on the same event loop (${median(same.took).toFixed(0)} ms each, longest step median ${median(same.longest).toFixed(1)} ms, most ${Math.max(...same.longest).toFixed(1)} ms) p50 ${us(median(withCp.map((w) => w.p50)))} us, p99 ${us(median(withCp.map((w) => w.p99)))} us; p99 with / without, paired: ${median(withCp.map((w, i) => w.p99 / without[i].p99)).toFixed(2)}; load average ${load()}`,
      );
    }
    if (arg('latency-only', '0') === '1') return;
    try {
      child('write-and-die', file, String(keys), '0');
    } catch (e) {
      if ((e as { signal?: string }).signal !== 'SIGKILL') throw e;
    }
    type Open = {
      wallMs: number;
      cpuMs: number;
      loaded: boolean;
      tail: number;
      image: boolean;
      keys: number;
      ignored: string[];
    };
    const full: Open[] = [];
    const cp: Open[] = [];
    for (let round = 0; round < rounds; round++) {
      full.push(JSON.parse(child('full', file, String(keys), '0')) as Open);
      cp.push(JSON.parse(child('open', file, String(keys), '0')) as Open);
    }
    for (const o of cp) if (!o.loaded) console.log(`not loaded: ${o.ignored.join('; ')}`);
    const ratio = (f: 'wallMs' | 'cpuMs'): string => median(cp.map((o, i) => o[f] / full[i][f])).toFixed(3);
    console.log(
      `reopen after a kill: full scan wall ${median(full.map((o) => o.wallMs)).toFixed(0)} ms, CPU ${median(full.map((o) => o.cpuMs)).toFixed(0)} ms; with the running checkpoint (${cp.every((o) => o.loaded) ? 'loaded' : 'NOT always loaded'}, tail ${median(cp.map((o) => o.tail))} entries, its tree image loaded in ${cp.filter((o) => o.image).length} of ${cp.length}) wall ${median(cp.map((o) => o.wallMs)).toFixed(0)} ms, CPU ${median(cp.map((o) => o.cpuMs)).toFixed(0)} ms; / full scan, paired: wall ${ratio('wallMs')}, CPU ${ratio('cpuMs')}; load average ${load()}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!isMainThread) writer();
else if (process.argv[2] === '--child') {
  const [, , , mode, file, keys, rounds] = process.argv;
  await runChild(mode, file, Number(keys), Number(rounds));
} else main();
