/**
 * Key-value store vs lmdb (the npm package) in one run, in the same tmpfs directory:
 * 16-byte random keys, 100-byte values, KV_BENCH_KEYS keys (default 1,000,000; a
 * run takes about a minute on 2 cores; KV_BENCH_KEYS=200000 for a quicker one). Printed as daxstore/lmdb
 * throughput ratios.
 * Durable puts are measured twice, each on a pair of stores treated alike: overwrites
 * (both stores loaded with every key first, like the 'none' row) and new keys (both empty).
 * Reader workers also report their own thread CPU time (/proc/thread-self/stat), so the
 * scaling of 2 workers can be judged on a machine whose cores are shared: ops per worker
 * CPU-second with 2 workers vs 1 (1.0 = no contention between them).
 * Open + recovery (absolute, target < 1 s for 1M keys) is printed four times: reopened in this
 * process (a large heap: the 1M key Buffers, warm code), and in fresh node processes (this
 * file with --reopen; recovery as at application start, cold code) with recovery: 'full',
 * as a clean reopen (the index checkpoint of the last close loaded), and after a process
 * that overwrote 10% of the keys was killed (--write-and-die: the checkpoint plus a tail),
 * each with wall time, process CPU time, recovery's three phases (scan with checksums or
 * checkpoint read, sort and winner pick or tail merge, index bulk load) and the ratios to
 * the full scan.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/kv.bench.js
 */
import { Bench } from 'tinybench';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { open as lmdbOpen } from 'lmdb';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { attach, open, type KvHandle, type KvRecoveryReport, type KvStore } from '../src/kv/index.js';
import { mulberry32 } from '../src/device/sim-media.js';
import { avoidWorkerTeardownDeadlock } from '../src/worker-teardown.js';
import { CpuTimer } from './cpu-timed.js';

const KEYS = Number(process.env['KV_BENCH_KEYS'] ?? 1_000_000);
const PER_SAMPLE = 1000;
const VALUE = new Uint8Array(100).fill(7);

function randomKeys(n: number, seed: number): Buffer[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => {
    const k = Buffer.allocUnsafe(16);
    for (let i = 0; i < 16; i += 4) k.writeUInt32LE((rand() * 2 ** 32) >>> 0, i);
    return k;
  });
}

const cpu = new CpuTimer();
const cpuTimed = cpu.timed.bind(cpu);
const opsPerCpuSec = cpu.opsPerCpuSec.bind(cpu);

function opsPerSec(bench: Bench, name: string, perSample: number): number {
  const r = bench.getTask(name)?.result;
  if (r === undefined || !('latency' in r)) throw new Error(`bench task ${name} did not complete`);
  return (perSample * 1000) / r.latency.mean;
}

/** CPU seconds (user + system) this thread has used: fields 14 and 15 of /proc/thread-self/stat, in clock ticks (100 Hz). */
function threadCpuSeconds(): number {
  const fields = readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Worker mode (this same file): random gets (copies) on the shared store for durationMs; posts [how many, thread CPU seconds]. */
function readerWorker(): void {
  const { handle, keys, count, durationMs, seed, barrier } = workerData as {
    handle: KvHandle;
    keys: SharedArrayBuffer;
    count: number;
    durationMs: number;
    seed: number;
    barrier: SharedArrayBuffer;
  };
  const db = attach(handle);
  const all = new Uint8Array(keys);
  const views = Array.from({ length: count }, (_, i) => all.subarray(i * 16, i * 16 + 16));
  let c = seed % count;
  let n = 0;
  // Start together (building the key views takes a few hundred ms): the windows must overlap.
  const go = new Int32Array(barrier);
  Atomics.add(go, 0, 1);
  while (Atomics.load(go, 1) === 0) Atomics.wait(go, 1, 0, 50);
  const cpu0 = threadCpuSeconds();
  const end = performance.now() + durationMs;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) {
      c = (c + 7919) % count;
      n += db.get(views[c]) === undefined ? 0 : 1;
    }
  }
  const cpu = threadCpuSeconds() - cpu0;
  db.close();
  parentPort!.postMessage([n, cpu]);
}

/** Gets per second by all workers together, and gets per worker CPU-second. */
async function readers(
  db: KvStore,
  keys: Buffer[],
  workers: number,
  durationMs: number,
): Promise<{ perSecond: number; perCpuSecond: number }> {
  const shared = new SharedArrayBuffer(keys.length * 16);
  const all = new Uint8Array(shared);
  keys.forEach((k, i) => all.set(k, i * 16));
  const handle = db.share();
  const barrier = new SharedArrayBuffer(8);
  const go = new Int32Array(barrier);
  const done = Promise.all(
    Array.from(
      { length: workers },
      (_, w) =>
        new Promise<[number, number]>((resolve, reject) => {
          avoidWorkerTeardownDeadlock(); // Node 20 worker-exit deadlock (src/worker-teardown.ts)
          const worker = new Worker(fileURLToPath(import.meta.url), {
            workerData: { handle, keys: shared, count: keys.length, durationMs, seed: w * 1000, barrier },
          });
          worker.once('message', resolve);
          worker.once('error', reject);
        }),
    ),
  );
  while (Atomics.load(go, 0) < workers) await new Promise((r) => setTimeout(r, 5));
  Atomics.store(go, 1, 1);
  Atomics.notify(go, 1);
  const counts = await done;
  const gets = counts.reduce((a, [n]) => a + n, 0);
  const cpu = counts.reduce((a, [, c]) => a + c, 0);
  return { perSecond: (gets * 1000) / durationMs, perCpuSecond: gets / cpu };
}

interface TimedOpen {
  wallMs: number;
  cpuMs: number;
  recovery: KvRecoveryReport;
}

/** open() of an existing store, timed: wall and process CPU (recovery runs inside open()). */
function timedOpen(file: string, full = false): TimedOpen & { db: KvStore } {
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  const db = open(file, {
    durability: 'none',
    checkpoint: true,
    keyEncoding: 'binary',
    valueEncoding: 'binary',
    ...(full ? { recovery: 'full' as const } : {}),
  });
  const wallMs = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  return { db, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, recovery: db.recovery! };
}

/**
 * The same open in a new node process (this file with --reopen): recovery as it happens at
 * application start, with a small heap and cold code, beside the in-process figure whose heap
 * holds the bench's 1M keys and warm code. Timed inside the child (node start-up excluded).
 */
function freshProcessOpen(file: string, full = false): TimedOpen {
  const out = execFileSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--reopen', file, ...(full ? ['full'] : [])],
    { encoding: 'utf8' },
  );
  return JSON.parse(out) as TimedOpen;
}

/**
 * A process that opens the store, overwrites `count` random keys of the bench's key set
 * ('sync') and is killed (SIGKILL, no close): the next open finds a checkpoint that misses
 * those writes and replays them from the log.
 */
function writeAndDie(file: string, count: number): void {
  try {
    execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--write-and-die', file, String(count)]);
  } catch (e) {
    if ((e as { signal?: string }).signal !== 'SIGKILL') throw e;
  }
}

function openRow(label: string, o: TimedOpen, full?: TimedOpen): string {
  const r = o.recovery;
  const p = r.phasesMs;
  const c = r.checkpoint;
  const how = c?.loaded === undefined ? 'full scan' : `checkpoint ${c.loaded} + a tail of ${c.tailEntries} log entries`;
  const vs =
    full === undefined
      ? ''
      : `; / full scan: wall ${(o.wallMs / full.wallMs).toFixed(2)}, CPU ${(o.cpuMs / full.cpuMs).toFixed(2)}`;
  return `${label}: ${r.keys} keys (${how}, ${r.segments} segments): wall ${o.wallMs.toFixed(0)} ms, CPU ${o.cpuMs.toFixed(0)} ms; recovery ${r.timeMs.toFixed(0)} ms = scan ${p.scan.toFixed(0)} + sort and winners ${p.sort.toFixed(0)} + bulk load ${p.load.toFixed(0)}${vs}`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-bench-'));
  try {
    const keys = randomKeys(KEYS, 42);
    const sizeBytes = Math.max(256 * 2 ** 20, Math.ceil((KEYS * 600) / 2 ** 21) * 2 ** 21);
    let db: KvStore = open(path.join(dir, 'dax-none'), {
      size: sizeBytes,
      durability: 'none',
      checkpoint: true,
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
    const syncDb = open(path.join(dir, 'dax-sync'), {
      size: sizeBytes,
      durability: 'sync',
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
    const syncNewDb = open(path.join(dir, 'dax-sync-new'), {
      size: sizeBytes,
      durability: 'sync',
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
    const lm = lmdbOpen({
      path: path.join(dir, 'lmdb-nosync'),
      keyEncoding: 'binary',
      encoding: 'binary',
      noSync: true,
    });
    const lmSync = lmdbOpen({ path: path.join(dir, 'lmdb-sync'), keyEncoding: 'binary', encoding: 'binary' });
    const lmSyncNew = lmdbOpen({ path: path.join(dir, 'lmdb-sync-new'), keyEncoding: 'binary', encoding: 'binary' });

    let t = performance.now();
    for (const k of keys) db.put(k, VALUE);
    const loadDax = performance.now() - t;
    t = performance.now();
    await lm.transaction(() => {
      for (const k of keys) lm.put(k, VALUE);
    });
    const loadLmdb = performance.now() - t;
    // The overwrite pair of durable stores: every key loaded first (daxstore: one batch per 1000 keys; lmdb: one transaction).
    for (let i = 0; i < keys.length; i += 1000)
      syncDb.batch(keys.slice(i, i + 1000).map((key) => ({ type: 'put' as const, key, value: VALUE })));
    await lmSync.transaction(() => {
      for (const k of keys) lmSync.put(k, VALUE);
    });

    // The key of each op, in hand: keys laid out in access order (stride 7919, period KEYS) in one
    // array and copied into one reused Buffer, for both stores. Fetching keys[c] from an array of
    // 1M Buffers instead costs three cache misses (array slot, Buffer object, its bytes), ~600 ns
    // of CPU per op here at 1M keys, paid alike by both sides; that is the harness, not a store.
    const inOrder = new Uint8Array(KEYS * 16);
    for (let i = 0, c = 0; i < KEYS; i++) inOrder.set(keys[(c = (c + 7919) % KEYS)], i * 16);
    const keyInHand = Buffer.alloc(16);
    let at = 0;
    let sink = 0;
    const next = (): Buffer => {
      const from = at;
      for (let i = 0; i < 16; i++) keyInHand[i] = inOrder[from + i];
      at = from + 16 === inOrder.length ? 0 : from + 16;
      return keyInHand;
    };
    const bench = new Bench({ time: 600, warmup: true });
    bench
      .add(
        'dax put none',
        cpuTimed('dax put none', () => {
          for (let i = 0; i < PER_SAMPLE; i++) db.put(next(), VALUE);
        }),
      )
      .add(
        'lmdb putSync noSync',
        cpuTimed('lmdb putSync noSync', () => {
          for (let i = 0; i < PER_SAMPLE; i++) lm.putSync(next(), VALUE);
        }),
      )
      .add(
        'dax put sync',
        cpuTimed('dax put sync', () => {
          for (let i = 0; i < PER_SAMPLE; i++) syncDb.put(next(), VALUE);
        }),
      )
      .add(
        'lmdb putSync durable',
        cpuTimed('lmdb putSync durable', () => {
          for (let i = 0; i < PER_SAMPLE; i++) lmSync.putSync(next(), VALUE);
        }),
      )
      .add(
        'dax put sync new',
        cpuTimed('dax put sync new', () => {
          for (let i = 0; i < PER_SAMPLE; i++) syncNewDb.put(next(), VALUE);
        }),
      )
      .add(
        'lmdb putSync durable new',
        cpuTimed('lmdb putSync durable new', () => {
          for (let i = 0; i < PER_SAMPLE; i++) lmSyncNew.putSync(next(), VALUE);
        }),
      )
      .add(
        'dax get',
        cpuTimed('dax get', () => {
          for (let i = 0; i < PER_SAMPLE; i++) sink += db.get(next())!.length;
        }),
      )
      .add(
        'lmdb get',
        cpuTimed('lmdb get', () => {
          for (let i = 0; i < PER_SAMPLE; i++) sink += (lm.get(next()) as Buffer).length;
        }),
      )
      .add(
        'dax getView in read',
        cpuTimed('dax getView in read', () =>
          db.read(() => {
            for (let i = 0; i < PER_SAMPLE; i++) sink += db.getView(next())!.length;
          }),
        ),
      )
      .add(
        'lmdb getBinaryFast',
        cpuTimed('lmdb getBinaryFast', () => {
          for (let i = 0; i < PER_SAMPLE; i++) sink += lm.getBinaryFast(next())!.length;
        }),
      )
      .add(
        'dax range 10k',
        cpuTimed('dax range 10k', () => {
          for (const [, v] of db.range({ gte: next(), limit: 10_000 })) sink += v.length;
        }),
      )
      .add(
        'lmdb getRange 10k',
        cpuTimed('lmdb getRange 10k', () => {
          for (const { value } of lm.getRange({ start: next(), limit: 10_000 })) sink += (value as Buffer).length;
        }),
      );
    await bench.run();

    const row = (label: string, a: string, b: string, perSample: number, target: string): string => {
      const x = opsPerSec(bench, a, perSample);
      const y = opsPerSec(bench, b, perSample);
      const cpuRatio = opsPerCpuSec(a, perSample) / opsPerCpuSec(b, perSample);
      return `${label.padEnd(30)} daxstore ${(x / 1e3).toFixed(0).padStart(7)}k/s   lmdb ${(y / 1e3).toFixed(0).padStart(7)}k/s   ratio ${(x / y).toFixed(2)}x, by CPU time ${cpuRatio.toFixed(2)}x (target ${target})`;
    };
    // 1 and 2 readers alternately, three rounds, medians: one disturbance (a GC, a neighbour) moves one round, not the row.
    const rounds: Array<{ one: Awaited<ReturnType<typeof readers>>; two: Awaited<ReturnType<typeof readers>> }> = [];
    for (let r = 0; r < 3; r++)
      rounds.push({ one: await readers(db, keys, 1, 1000), two: await readers(db, keys, 2, 1000) });
    const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const one = {
      perSecond: median(rounds.map((x) => x.one.perSecond)),
      perCpuSecond: median(rounds.map((x) => x.one.perCpuSecond)),
    };
    const two = {
      perSecond: median(rounds.map((x) => x.two.perSecond)),
      perCpuSecond: median(rounds.map((x) => x.two.perCpuSecond)),
    };
    const scaling = rounds.map((x) => (x.two.perSecond / x.one.perSecond).toFixed(2)).join(', ');
    const stats = db.stats();
    db.close();
    const reopened = timedOpen(path.join(dir, 'dax-none'));
    db = reopened.db;
    db.close();
    // Fresh processes: recovery: 'full', the clean reopen (the checkpoint close wrote), and
    // the reopen after a kill with a checkpoint older than the last 10% of writes.
    const full = freshProcessOpen(path.join(dir, 'dax-none'), true);
    const fresh = freshProcessOpen(path.join(dir, 'dax-none'));
    writeAndDie(path.join(dir, 'dax-none'), Math.ceil(KEYS / 10));
    const afterKill = freshProcessOpen(path.join(dir, 'dax-none'));
    db = open(path.join(dir, 'dax-none'), {
      durability: 'none',
      checkpoint: true,
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
    console.log(
      `key-value store vs lmdb, ${KEYS} keys of 16 B, values 100 B, tmpfs ${dir} (node ${process.version}); persist: ${stats.persistMethod}; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} (2 cores: ratios are noisy above ~1)`,
    );
    console.log(
      `load ${KEYS} keys: daxstore ${loadDax.toFixed(0)} ms (puts, 'none'), lmdb ${loadLmdb.toFixed(0)} ms (one transaction)`,
    );
    console.log(row('random put (none / noSync)', 'dax put none', 'lmdb putSync noSync', PER_SAMPLE, '>= 5x'));
    console.log(row('durable put (sync), overwrite', 'dax put sync', 'lmdb putSync durable', PER_SAMPLE, '>= 5x'));
    console.log(
      row('durable put (sync), new keys', 'dax put sync new', 'lmdb putSync durable new', PER_SAMPLE, '>= 5x'),
    );
    console.log(row('random get (copy)', 'dax get', 'lmdb get', PER_SAMPLE, '>= 2x'));
    console.log(row('zero-copy get', 'dax getView in read', 'lmdb getBinaryFast', PER_SAMPLE, '>= 1.5x'));
    console.log(row('ordered scan (entries)', 'dax range 10k', 'lmdb getRange 10k', 10_000, '>= 2x'));
    console.log(
      `2 workers reading vs 1 (get copy): ${(one.perSecond / 1e3).toFixed(0)}k/s -> ${(two.perSecond / 1e3).toFixed(0)}k/s, ratio ${(two.perSecond / one.perSecond).toFixed(2)}x (medians of 3 alternating rounds of 1 s; per round ${scaling}; target >= 1.7x; 2 cores shared with the load above); per worker CPU-second ${(one.perCpuSecond / 1e3).toFixed(0)}k -> ${(two.perCpuSecond / 1e3).toFixed(0)}k, efficiency ${(two.perCpuSecond / one.perCpuSecond).toFixed(2)} (2 x efficiency = the scaling on 2 idle cores)`,
    );
    console.log(openRow('open + recovery, this process', reopened));
    console.log(openRow("open + recovery, fresh process, recovery: 'full'", full));
    console.log(openRow('open + recovery, fresh process, clean reopen', fresh, full));
    console.log(openRow('open + recovery, fresh process, after a kill past the checkpoint', afterKill, full));
    console.log(`index bytes per key: ${stats.indexBytesPerKey.toFixed(1)} (target < 48); segments ${stats.segments}`);
    if (sink === -1) console.log(sink);
    db.close();
    syncDb.close();
    syncNewDb.close();
    await lm.close();
    await lmSync.close();
    await lmSyncNew.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!isMainThread) readerWorker();
else if (process.argv[2] === '--reopen') {
  const { db, ...timed } = timedOpen(process.argv[3], process.argv[4] === 'full');
  db.close();
  process.stdout.write(JSON.stringify(timed));
} else if (process.argv[2] === '--write-and-die') {
  const db = open(process.argv[3], { durability: 'sync', keyEncoding: 'binary', valueEncoding: 'binary' });
  const keys = randomKeys(KEYS, 42); // the bench's key set
  const r = mulberry32(7);
  for (let i = 0; i < Number(process.argv[4]); i++) db.put(keys[Math.floor(r() * keys.length)], VALUE);
  process.kill(process.pid, 'SIGKILL');
} else await main();
