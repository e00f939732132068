/**
 * Transactions and snapshots, daxstore beside lmdb (the npm package) in one run, in one tmpfs
 * directory: 16-byte random keys, 100-byte values, TXN_BENCH_KEYS keys (default 100,000).
 *
 *   txn 4r+4w   transactionSync reading 4 random keys and writing 4 random keys. daxstore
 *               'none' beside lmdb noSync, daxstore 'sync' beside lmdb's default (synced
 *               commits), each with 1 and with 2 worker threads (every thread its own random
 *               keys: conflicts are rare, as in a store that is not one hot key). Printed:
 *               transactions per second (all threads, wall) and per thread CPU-second (each
 *               worker's own /proc/thread-self/stat; on a shared machine the wall figure
 *               includes preemption, the CPU figure does not), and the share of the window
 *               the workers were asleep (blocked: neither running nor waiting for a CPU, from
 *               /proc/thread-self/schedstat; mean over the threads): what a second thread
 *               loses to waiting on the first, whatever the machine's load.
 *   snapshot    db.snapshot() + close() beside an uncontended entry-lock grab + unlock of one
 *               key in the same store's index (the cheapest write-side step): ns each, rounds
 *               alternated, median of the per-round ratios; with no other snapshot of the
 *               handle held (each one registers the handle) and with another held.
 *   reads beside a writer
 *               random gets and 1000-entry range() scans in the main thread while a worker
 *               overwrites random keys as fast as it can, beside the same reads with no writer:
 *               reads per main-thread CPU-second, with/without; lmdb alike (its writer's
 *               putSync: one-put transactions, noSync).
 *
 * TXN_BENCH_SKIP=txn,reads leaves those sections out (either or both); TXN_BENCH_DEBUG=1 prints
 * progress.
 *
 * Rounds (TXN_BENCH_ROUNDS, default 3) alternate the stores; each figure is the median over the
 * rounds. Every measured window lasts TXN_BENCH_MS (default 1500 ms). Each worker runs its
 * operation TXN_BENCH_WARM_OPS times (default 5000) before the window opens: a fresh worker's
 * JavaScript runs unoptimized for its first thousands of calls, which would otherwise be most
 * of a short window on a loaded machine (a count, not a time: under load a thread gets little
 * CPU in a given wall time; lmdb's workers warm up alike, though its work is native code).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/txn.bench.js
 *
 * Stores use binary keys and values on both sides (no encoding cost in either).
 */
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { open as lmdbOpen, type RootDatabase } from 'lmdb';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { attach, open, type KvHandle, type KvStore } from '../src/kv/index.js';
import { grab, unlock } from '../src/index/entry-lock.js';
import { mulberry32 } from '../src/device/sim-media.js';
import { avoidWorkerTeardownDeadlock } from '../src/worker-teardown.js';

const KEYS = Number(process.env['TXN_BENCH_KEYS'] ?? 100_000);
const ROUNDS = Number(process.env['TXN_BENCH_ROUNDS'] ?? 3);
const WINDOW_MS = Number(process.env['TXN_BENCH_MS'] ?? 1500);
const WARM_OPS = Number(process.env['TXN_BENCH_WARM_OPS'] ?? 5000);
const VALUE = new Uint8Array(100).fill(7);
const SKIP = new Set((process.env['TXN_BENCH_SKIP'] ?? '').split(','));

type Role = 'txn-dax' | 'txn-lmdb' | 'writer-dax' | 'writer-lmdb';
interface Job {
  role: Role;
  handle?: KvHandle;
  lmdbPath?: string;
  lmdbNoSync?: boolean;
  keys: SharedArrayBuffer;
  seed: number;
  barrier: SharedArrayBuffer;
}

/** CPU seconds (user + system) this thread has used: fields 14 and 15 of /proc/thread-self/stat, in clock ticks (100 Hz). */
function threadCpuSeconds(): number {
  const fields = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Seconds this thread has run and waited for a CPU (runnable, not running): /proc/thread-self/schedstat, ns. */
function threadSchedSeconds(): { run: number; queued: number } {
  try {
    const [run, queued] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    return { run: run / 1e9, queued: queued / 1e9 };
  } catch {
    return { run: NaN, queued: NaN };
  }
}

function openLmdb(dir: string, noSync: boolean): RootDatabase<Uint8Array, Uint8Array> {
  return lmdbOpen<Uint8Array, Uint8Array>({ path: dir, keyEncoding: 'binary', encoding: 'binary', noSync });
}

/**
 * Worker mode: runs its role until barrier[1] is set (barrier[0] counts the ready workers);
 * posts [operations, thread CPU seconds, share of the window asleep].
 */
function worker(): void {
  const job = workerData as Job;
  const all = new Uint8Array(job.keys);
  const count = all.length / 16;
  const key = (i: number): Uint8Array => all.subarray(i * 16, i * 16 + 16);
  const rand = mulberry32(job.seed);
  const pick = (): Uint8Array => key(Math.floor(rand() * count));
  const dax = job.handle === undefined ? undefined : attach(job.handle);
  const lm = job.lmdbPath === undefined ? undefined : openLmdb(job.lmdbPath, job.lmdbNoSync === true);
  let step: () => void;
  if (job.role === 'txn-dax')
    step = () =>
      dax!.transactionSync((txn) => {
        for (let i = 0; i < 4; i++) txn.get(pick());
        for (let i = 0; i < 4; i++) txn.put(pick(), VALUE);
      });
  else if (job.role === 'txn-lmdb')
    step = () =>
      lm!.transactionSync(() => {
        for (let i = 0; i < 4; i++) lm!.get(pick());
        for (let i = 0; i < 4; i++) lm!.put(pick(), VALUE);
      });
  else if (job.role === 'writer-dax') step = () => dax!.put(pick(), VALUE);
  // putSync: one write transaction per put. lmdb 3.5's transactionSync(() => put()) here, beside
  // the main thread's reads of the same environment, left the environment's writing lock held:
  // the worker's close() (and its exit, whose cleanup hook closes too) then waited on it in
  // EnvWrap::cleanupStrayTxns for ever, and the process never exited after its last figure.
  else step = () => lm!.putSync(pick(), VALUE);
  // Warm-up before the window: the JIT's optimized code, not the interpreter's first thousands of calls, is measured.
  for (let i = 0; i < WARM_OPS; i++) step();
  const go = new Int32Array(job.barrier);
  Atomics.add(go, 0, 1);
  while (Atomics.load(go, 1) === 0) Atomics.wait(go, 1, 0, 20);
  const cpu0 = threadCpuSeconds();
  const sched0 = threadSchedSeconds();
  const wall0 = performance.now();
  let n = 0;
  while (Atomics.load(go, 1) === 1) {
    for (let i = 0; i < 64; i++) step();
    n += 64;
  }
  const cpu = threadCpuSeconds() - cpu0;
  const sched1 = threadSchedSeconds();
  const wall = (performance.now() - wall0) / 1000;
  // Clamped: the three clocks differ by a few ms, which can make a window with no sleep a little negative.
  const asleep = Math.max(0, (wall - (sched1.run - sched0.run) - (sched1.queued - sched0.queued)) / wall);
  if (process.env['TXN_BENCH_DEBUG'] !== undefined) console.log(`worker ${job.role} stopped after ${n}`);
  dax?.close();
  // Reported before lmdb's close, which can wait on the main thread's read transaction.
  parentPort!.postMessage([n, cpu, asleep]);
  void lm?.close();
}

interface Started {
  /** Waits until every worker is ready, then lets them run. */
  start(): Promise<void>;
  /** Stops them: [operations of all, CPU seconds of each, share of the window each was asleep]. */
  stop(): Promise<{ ops: number; cpu: number[]; asleep: number[] }>;
}

function startWorkers(jobs: Array<Omit<Job, 'barrier'>>): Started {
  const barrier = new SharedArrayBuffer(8);
  const go = new Int32Array(barrier);
  const done = Promise.all(
    jobs.map(
      (job) =>
        new Promise<[number, number, number]>((resolve, reject) => {
          avoidWorkerTeardownDeadlock(); // Node 20 worker-exit deadlock (src/worker-teardown.ts)
          const w = new Worker(fileURLToPath(import.meta.url), { workerData: { ...job, barrier } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  return {
    async start() {
      while (Atomics.load(go, 0) < jobs.length) await new Promise((r) => setTimeout(r, 5));
      Atomics.store(go, 1, 1);
      Atomics.notify(go, 1);
    },
    async stop() {
      Atomics.store(go, 1, 2);
      const results = await done;
      return {
        ops: results.reduce((s, r) => s + r[0], 0),
        cpu: results.map((r) => r[1]),
        asleep: results.map((r) => r[2]),
      };
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Transactions per second (wall, all threads) and per thread CPU-second. */
async function txnRun(
  jobs: Array<Omit<Job, 'barrier'>>,
): Promise<{ perSecond: number; perCpuSecond: number; asleep: number }> {
  const w = startWorkers(jobs);
  await w.start();
  const t0 = performance.now();
  await sleep(WINDOW_MS);
  const r = await w.stop();
  const wall = (performance.now() - t0) / 1000;
  const cpu = r.cpu.reduce((a, b) => a + b, 0);
  const asleep = r.asleep.reduce((a, b) => a + b, 0) / r.asleep.length;
  return { perSecond: r.ops / wall, perCpuSecond: r.ops / Math.max(cpu, 0.01), asleep };
}

/** ns per snapshot()+close() and per grab+unlock of one key, alternated in rounds of `loop`. */
function snapshotVsLock(
  db: KvStore,
  key: Uint8Array,
  rounds: number,
  loop: number,
): { snap: number; lock: number; ratio: number; snapHeld: number; ratioHeld: number } {
  const tree = db.dax.tree;
  const k = new Uint8Array(key.length + 1);
  // The store's index key of `key` (store.ts: a one-byte namespace prefix, 1, before the key bytes).
  k[0] = 1;
  k.set(key, 1);
  const snaps: number[] = [];
  const locks: number[] = [];
  const ratios: number[] = [];
  const helds: number[] = [];
  const ratiosHeld: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t = performance.now();
    for (let i = 0; i < loop; i++) db.snapshot().close();
    const s = ((performance.now() - t) * 1e6) / loop;
    if (process.env['TXN_BENCH_DEBUG'] !== undefined) console.log(`snapshots ${s}`);
    t = performance.now();
    for (let i = 0; i < loop; i++) unlock(tree, grab(tree, k));
    const l = ((performance.now() - t) * 1e6) / loop;
    const other = db.snapshot(); // this handle's first snapshot registers the handle; later ones do not
    t = performance.now();
    for (let i = 0; i < loop; i++) db.snapshot().close();
    const h = ((performance.now() - t) * 1e6) / loop;
    other.close();
    snaps.push(s);
    locks.push(l);
    ratios.push(s / l);
    helds.push(h);
    ratiosHeld.push(h / l);
  }
  return {
    snap: median(snaps),
    lock: median(locks),
    ratio: median(ratios),
    snapHeld: median(helds),
    ratioHeld: median(ratiosHeld),
  };
}

/** Reads per main-thread CPU-second: random gets, and entries of 1000-entry scans from random keys. */
function readWindow(
  get: (k: Uint8Array) => unknown,
  scan: (from: Uint8Array) => number,
  keys: Uint8Array,
  seed: number,
): { gets: number; scanned: number } {
  const count = keys.length / 16;
  const rand = mulberry32(seed);
  const key = (): Uint8Array => {
    const i = Math.floor(rand() * count);
    return keys.subarray(i * 16, i * 16 + 16);
  };
  const c0 = process.cpuUsage();
  const end = performance.now() + WINDOW_MS / 2;
  let gets = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++) get(key());
    gets += 256;
  }
  const c1 = process.cpuUsage(c0);
  if (process.env['TXN_BENCH_DEBUG'] !== undefined) console.log(`gets ${gets}`);
  let scanned = 0;
  const end2 = performance.now() + WINDOW_MS / 2;
  while (performance.now() < end2) scanned += scan(key());
  const c2 = process.cpuUsage(c0);
  const getCpu = (c1.user + c1.system) / 1e6;
  const scanCpu = (c2.user + c2.system) / 1e6 - getCpu;
  return { gets: gets / getCpu, scanned: scanned / scanCpu };
}

async function main(): Promise<void> {
  const load = loadavg();
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'txn-bench-'));
  try {
    const keys = new Uint8Array(new SharedArrayBuffer(KEYS * 16));
    const rand = mulberry32(42);
    for (let i = 0; i < keys.length; i++) keys[i] = (rand() * 256) | 0;
    const key = (i: number): Uint8Array => keys.subarray(i * 16, i * 16 + 16);
    const size = Math.max(256 * 2 ** 20, Math.ceil((KEYS * 2000) / 2 ** 21) * 2 ** 21);
    const daxNone = open(path.join(dir, 'dax-none'), {
      size,
      durability: 'none',
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
    const daxSync = open(path.join(dir, 'dax-sync'), {
      size,
      durability: 'sync',
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
    const lmNoSyncPath = path.join(dir, 'lmdb-nosync');
    const lmSyncPath = path.join(dir, 'lmdb-sync');
    const lmNoSync = openLmdb(lmNoSyncPath, true);
    const lmSync = openLmdb(lmSyncPath, false);
    for (let i = 0; i < KEYS; i += 1000) {
      const ops = Array.from({ length: Math.min(1000, KEYS - i) }, (_, j) => ({
        type: 'put' as const,
        key: key(i + j),
        value: VALUE,
      }));
      daxNone.batch(ops);
      daxSync.batch(ops);
    }
    for (const lm of [lmNoSync, lmSync])
      await lm.transaction(() => {
        for (let i = 0; i < KEYS; i++) lm.put(key(i), VALUE);
      });

    const txnRows: Array<[string, Array<Omit<Job, 'barrier'>>]> = [];
    for (const threads of [1, 2]) {
      const seeds = Array.from({ length: threads }, (_, t) => 1000 + t);
      txnRows.push(
        [
          `daxstore 'none', ${threads} thread(s)`,
          seeds.map((seed) => ({
            role: 'txn-dax',
            handle: daxNone.share(),
            keys: keys.buffer as SharedArrayBuffer,
            seed,
          })),
        ],
        [
          `lmdb noSync, ${threads} thread(s)`,
          seeds.map((seed) => ({
            role: 'txn-lmdb',
            lmdbPath: lmNoSyncPath,
            lmdbNoSync: true,
            keys: keys.buffer as SharedArrayBuffer,
            seed,
          })),
        ],
        [
          `daxstore 'sync', ${threads} thread(s)`,
          seeds.map((seed) => ({
            role: 'txn-dax',
            handle: daxSync.share(),
            keys: keys.buffer as SharedArrayBuffer,
            seed,
          })),
        ],
        [
          `lmdb sync, ${threads} thread(s)`,
          seeds.map((seed) => ({
            role: 'txn-lmdb',
            lmdbPath: lmSyncPath,
            lmdbNoSync: false,
            keys: keys.buffer as SharedArrayBuffer,
            seed,
          })),
        ],
      );
    }
    const txn = new Map<string, { perSecond: number[]; perCpuSecond: number[]; asleep: number[] }>();
    for (let r = 0; r < ROUNDS; r++)
      for (const [name, jobs] of SKIP.has('txn') ? [] : txnRows) {
        if (process.env['TXN_BENCH_DEBUG'] !== undefined) console.log(`round ${r}: ${name}`);
        const res = await txnRun(jobs.map((j) => ({ ...j, seed: j.seed + 7919 * r })));
        const acc = txn.get(name) ?? { perSecond: [], perCpuSecond: [], asleep: [] };
        acc.perSecond.push(res.perSecond);
        acc.perCpuSecond.push(res.perCpuSecond);
        acc.asleep.push(res.asleep);
        txn.set(name, acc);
      }
    const m = (name: string, field: 'perSecond' | 'perCpuSecond' | 'asleep'): number => median(txn.get(name)![field]);

    const debug = (what: string): void => {
      if (process.env['TXN_BENCH_DEBUG'] !== undefined) console.log(what);
    };
    debug('snapshot vs lock');
    const snap = snapshotVsLock(daxNone, key(7), Math.max(ROUNDS, 5) * 3, 100_000);

    const reads: Record<string, { gets: number[]; scanned: number[] }> = {};
    const record = (name: string, r: { gets: number; scanned: number }): void => {
      reads[name] ??= { gets: [], scanned: [] };
      reads[name].gets.push(r.gets);
      reads[name].scanned.push(r.scanned);
    };
    const daxGet = (k: Uint8Array): unknown => daxNone.get(k);
    const daxScan = (from: Uint8Array): number => {
      let n = 0;
      for (const _ of daxNone.range({ gte: from, limit: 1000 })) n++;
      return n;
    };
    const lmGet = (k: Uint8Array): unknown => lmNoSync.get(k);
    const lmScan = (from: Uint8Array): number => {
      let n = 0;
      for (const _ of lmNoSync.getRange({ start: from, limit: 1000 })) n++;
      return n;
    };
    const buf = keys.buffer as SharedArrayBuffer;
    for (let r = 0; r < (SKIP.has('reads') ? 0 : ROUNDS); r++) {
      debug(`reads round ${r}`);
      record('daxstore, no writer', readWindow(daxGet, daxScan, keys, r));
      const wd = startWorkers([{ role: 'writer-dax', handle: daxNone.share(), keys: buf, seed: 77 + r }]);
      await wd.start();
      record('daxstore, a writer running', readWindow(daxGet, daxScan, keys, r));
      const writes = await wd.stop();
      record('lmdb, no writer', readWindow(lmGet, lmScan, keys, r));
      const wl = startWorkers([
        { role: 'writer-lmdb', lmdbPath: lmNoSyncPath, lmdbNoSync: true, keys: buf, seed: 77 + r },
      ]);
      await wl.start();
      record('lmdb, a writer running', readWindow(lmGet, lmScan, keys, r));
      lmNoSync.resetReadTxn(); // the writer may wait for this thread's read transaction to end (map growth)
      debug('stopping the lmdb writer');
      const lwrites = await wl.stop();
      debug('stopped');
      if (r === 0)
        console.log(`writer puts during the first round's reads: daxstore ${writes.ops}, lmdb ${lwrites.ops}`);
    }

    const f = (x: number): string => Math.round(x).toLocaleString('en-US');
    console.log(
      `txn.bench: ${KEYS} keys, ${ROUNDS} rounds of ${WINDOW_MS} ms, load average at start ${load.map((x) => x.toFixed(2)).join(' ')}`,
    );
    if (txn.size > 0) printTxn();
    function printTxn(): void {
      console.log('\ntransactions of 4 reads + 4 writes (median over rounds)');
      console.log('  store                          txn/s (wall)   txn per thread CPU-s   asleep');
      for (const [name] of txnRows)
        console.log(
          `  ${name.padEnd(30)} ${f(m(name, 'perSecond')).padStart(12)}   ${f(m(name, 'perCpuSecond')).padStart(12)}   ${(100 * m(name, 'asleep')).toFixed(1).padStart(8)}%`,
        );
      for (const [dax, lm] of [
        ["daxstore 'none'", 'lmdb noSync'],
        ["daxstore 'sync'", 'lmdb sync'],
      ]) {
        const ratio = (t: number, field: 'perSecond' | 'perCpuSecond'): string =>
          (m(`${dax}, ${t} thread(s)`, field) / m(`${lm}, ${t} thread(s)`, field)).toFixed(2);
        const scale = (name: string, field: 'perSecond' | 'perCpuSecond'): string =>
          (m(`${name}, 2 thread(s)`, field) / m(`${name}, 1 thread(s)`, field)).toFixed(2);
        console.log(
          `  ${dax} / ${lm}: 1 thread ${ratio(1, 'perSecond')}x wall, ${ratio(1, 'perCpuSecond')}x CPU; 2 threads ${ratio(2, 'perSecond')}x wall, ${ratio(2, 'perCpuSecond')}x CPU`,
        );
        console.log(
          `  2 threads / 1 thread (wall): ${dax} ${scale(dax, 'perSecond')}x, ${lm} ${scale(lm, 'perSecond')}x`,
        );
      }
    }
    console.log('\nsnapshot() + close() against an entry-lock grab + unlock (ns each, median of rounds)');
    console.log(
      `  snapshot, none other held      ${snap.snap.toFixed(0)} ns vs ${snap.lock.toFixed(0)} ns, ratio ${snap.ratio.toFixed(2)}x`,
    );
    console.log(
      `  snapshot, another held         ${snap.snapHeld.toFixed(0)} ns vs ${snap.lock.toFixed(0)} ns, ratio ${snap.ratioHeld.toFixed(2)}x`,
    );
    if (!SKIP.has('reads')) printReads();
    function printReads(): void {
      console.log('\nreads in the main thread, per main-thread CPU-second (median over rounds)');
      for (const [name, r] of Object.entries(reads))
        console.log(
          `  ${name.padEnd(28)} gets ${f(median(r.gets)).padStart(12)}   scanned entries ${f(median(r.scanned)).padStart(12)}`,
        );
      for (const s of ['daxstore', 'lmdb']) {
        const a = reads[`${s}, a writer running`];
        const b = reads[`${s}, no writer`];
        console.log(
          `  ${s}: with a writer / without: gets ${(median(a.gets) / median(b.gets)).toFixed(2)}, scans ${(median(a.scanned) / median(b.scanned)).toFixed(2)}`,
        );
      }
    }
    daxNone.close();
    daxSync.close();
    await lmNoSync.close();
    await lmSync.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMainThread) await main();
else worker();
