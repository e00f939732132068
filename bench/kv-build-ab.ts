/**
 * The byte path of two builds of daxstore, A/B: kv.bench.ts's binary rows — overwrite puts
 * ('none' and 'sync'), random gets (copies), zero-copy gets in read(), 10k-entry range scans —
 * run by build A and build B (two package roots, e.g. a worktree of the commit before a change
 * and this one) in fresh node processes, alternating round by round (A B, B A, ...) so both
 * meet the same machine load. Each child opens its stores with 'binary' keys and values (a
 * build from before encodings ignores those options), 16-byte random keys, 100-byte values, in
 * /dev/shm, removed after. Prints per row the median CPU time per operation of each build and
 * the paired B/A ratio of CPU time, median over the rounds (below 1: B is faster).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/kv-build-ab.js --a <root of build A> [--b <root of build B, default this package>]
 *     [--keys 200000] [--rounds 8] [--rows 'txn 4r+4w,snapshot+close'] [--warm 1] [--env-b NAME=VALUE]
 *
 * --env-b sets an environment variable for B's children only: with --b the same root as --a,
 * an A/B of one knob (e.g. --env-b DAXSTORE_NO_COLLAPSE=1) on these rows.
 *
 * 'put none new' and 'put sync new' are kv.bench.ts's new-key rows: every key put once into an
 * empty store opened for the row (its open and close untimed), so the row pays what a growing log
 * pays: new segments, their extents' faults and huge pages, the index's inserts. Each row also
 * reports the CPU of the thread that ran it alone and the time it slept (blocked:
 * /proc/thread-self/schedstat), so what other threads spend (prefault, checkpoints) shows apart.
 *
 * The rows beyond kv.bench.ts's: 'txn 4r+4w', txn.bench.ts's transaction (4 gets, 4 puts, one
 * thread, 'none'), CPU per transaction; 'snapshot+close', db.snapshot().close() with no other
 * snapshot of the handle held.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './ab-report.js';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mulberry32 } from '../src/device/sim-media.js';
import { arg, packageRoot } from './args.js';

const ROWS = [
  'put none',
  'put sync',
  'put none new',
  'put sync new',
  'get',
  'getView in read',
  'range 10k',
  'txn 4r+4w',
  'snapshot+close',
] as const;
type Row = (typeof ROWS)[number];
/** The rows run (--rows a,b: a subset, e.g. --rows 'txn 4r+4w,snapshot+close'). */
const SELECTED: readonly Row[] = (() => {
  const i = process.argv.indexOf('--rows');
  if (i < 0) return ROWS;
  const names = process.argv[i + 1].split(',');
  for (const n of names) if (!(ROWS as readonly string[]).includes(n)) throw new Error(`--rows: no row ${n}`);
  return names as Row[];
})();
/** Untimed passes of each row before the timed one (--warm N, default 1). */
const WARM = (() => {
  const i = process.argv.indexOf('--warm');
  const n = i < 0 ? 1 : Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 0) throw new Error('--warm: a non-negative integer');
  return n;
})();
const SCAN = 10_000;
const VALUE = new Uint8Array(100).fill(7);

interface Store {
  put(key: Uint8Array, value: Uint8Array): unknown;
  get(key: Uint8Array): Uint8Array | undefined;
  getView(key: Uint8Array): Uint8Array | undefined;
  read<T>(fn: () => T): T;
  transactionSync<T>(
    fn: (txn: { get(key: Uint8Array): unknown; put(key: Uint8Array, value: Uint8Array): void }) => T,
  ): T;
  snapshot(): { close(): void };
  range(opts: { gte: Uint8Array; limit: number }): Iterable<[Uint8Array, Uint8Array]>;
  close(): void;
}
type Open = (file: string, opts: object) => Store;

/** One row's figures in one child, ns per op: process CPU (every thread), the running thread's CPU and its time asleep. */
interface Sample {
  cpu: number;
  threadCpu: number;
  asleep: number;
}

/** This thread's time on a CPU and waiting for one (runnable), ns: /proc/thread-self/schedstat's first two fields. */
function schedstat(): { onCpuNs: number; waitingNs: number } {
  const [onCpu, waiting] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ');
  return { onCpuNs: Number(onCpu), waitingNs: Number(waiting) };
}

/** Child: one build's rows, ns per op of each (process.cpuUsage: every thread of the child). */
async function child(root: string, keys: number): Promise<Record<Row, Sample>> {
  const { open } = (await import(pathToFileURL(path.join(root, 'dist', 'src', 'kv', 'index.js')).href)) as {
    open: Open;
  };
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-build-ab-'));
  try {
    const rand = mulberry32(42);
    const all = new Uint8Array(keys * 16);
    for (let i = 0; i < all.length; i++) all[i] = (rand() * 256) | 0;
    // The key of each op copied into one reused Buffer, in a fixed order (stride 7919): the harness costs both builds alike.
    const key = Buffer.alloc(16);
    let c = 0;
    const next = (): Buffer => {
      c = (c + 7919) % keys;
      for (let i = 0; i < 16; i++) key[i] = all[c * 16 + i];
      return key;
    };
    const size = Math.max(256 * 2 ** 20, Math.ceil((keys * 800) / 2 ** 21) * 2 ** 21);
    const binary = { size, keyEncoding: 'binary', valueEncoding: 'binary' };
    const none = open(path.join(dir, 'none'), { ...binary, durability: 'none' });
    const sync = open(path.join(dir, 'sync'), { ...binary, durability: 'sync' });
    for (let i = 0; i < keys; i++) {
      const k = all.subarray(i * 16, i * 16 + 16);
      none.put(k, VALUE);
      sync.put(k, VALUE);
    }
    // The last row's thread CPU and sleep, ns per op (set by cpuNs beside its process CPU).
    let thread = { cpu: 0, asleep: 0 };
    const cpuNs = (ops: number, fn: () => void): number => {
      const s0 = schedstat();
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      fn();
      const d = process.cpuUsage(c0);
      const wall = Number(process.hrtime.bigint() - t0);
      const s1 = schedstat();
      const onCpu = s1.onCpuNs - s0.onCpuNs;
      thread = { cpu: onCpu / ops, asleep: (wall - onCpu - (s1.waitingNs - s0.waitingNs)) / ops };
      return ((d.user + d.system) * 1000) / ops;
    };
    // A store of its own for a new-key row: every key put once into it (open and close untimed).
    let fresh = 0;
    const newKeys = (durability: 'none' | 'sync'): number => {
      const file = path.join(dir, `new-${fresh++}`);
      const db = open(file, { ...binary, durability });
      const ns = cpuNs(keys, () => {
        for (let i = 0; i < keys; i++) db.put(next(), VALUE);
      });
      db.close();
      rmSync(file, { force: true });
      return ns;
    };
    let sink = 0;
    const runs: Record<Row, () => number> = {
      'put none': () =>
        cpuNs(keys, () => {
          for (let i = 0; i < keys; i++) none.put(next(), VALUE);
        }),
      'put sync': () =>
        cpuNs(keys, () => {
          for (let i = 0; i < keys; i++) sync.put(next(), VALUE);
        }),
      'put none new': () => newKeys('none'),
      'put sync new': () => newKeys('sync'),
      get: () =>
        cpuNs(keys, () => {
          for (let i = 0; i < keys; i++) sink += none.get(next())!.length;
        }),
      'getView in read': () =>
        cpuNs(keys, () =>
          none.read(() => {
            for (let i = 0; i < keys; i++) sink += none.getView(next())!.length;
          }),
        ),
      'range 10k': () => {
        const scans = Math.max(1, Math.floor(keys / SCAN));
        let entries = 0;
        const ns = cpuNs(1, () => {
          for (let s = 0; s < scans; s++)
            for (const [, v] of none.range({ gte: next(), limit: SCAN })) entries += v.length > 0 ? 1 : 0;
        });
        thread = { cpu: thread.cpu / entries, asleep: thread.asleep / entries };
        return ns / entries;
      },
      // bench/txn.bench.ts's transaction: 4 gets and 4 puts of keys in the fixed order, one thread.
      'txn 4r+4w': () => {
        const txns = Math.max(1, Math.floor(keys / 8));
        return cpuNs(txns, () => {
          for (let i = 0; i < txns; i++)
            none.transactionSync((txn) => {
              for (let j = 0; j < 4; j++) txn.get(next());
              for (let j = 0; j < 4; j++) txn.put(next(), VALUE);
            });
        });
      },
      // A snapshot taken and closed with no other snapshot of the handle held (the first one registers the handle).
      'snapshot+close': () =>
        cpuNs(keys, () => {
          for (let i = 0; i < keys; i++) none.snapshot().close();
        }),
    };
    const out = {} as Record<Row, Sample>;
    for (const row of SELECTED) {
      // Warm-up passes: JIT and first touches out of the figure. A range runs its per-batch code
      // once per 10k entries, so one pass leaves it partly unoptimized (--warm raises the count).
      for (let w = 0; w < WARM; w++) runs[row]();
      const cpu = runs[row]();
      out[row] = { cpu, threadCpu: thread.cpu, asleep: thread.asleep };
    }
    if (sink === -1) console.error(sink);
    none.close();
    sync.close();
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** --env-b NAME=VALUE: an environment variable set for build B's children only (e.g. a knob, with --b the same build as --a). */
const ENV_B: Record<string, string> = (() => {
  const i = process.argv.indexOf('--env-b');
  if (i < 0) return {};
  const [name, value] = process.argv[i + 1].split('=');
  if (name === undefined || value === undefined) throw new Error('--env-b: NAME=VALUE');
  return { [name]: value };
})();

function runChild(root: string, keys: number, env: Record<string, string> = {}): Record<Row, Sample> {
  const rows = process.argv.indexOf('--rows');
  const warm = process.argv.indexOf('--warm');
  const extra = [
    ...(rows >= 0 ? ['--rows', process.argv[rows + 1]] : []),
    ...(warm >= 0 ? ['--warm', process.argv[warm + 1]] : []),
  ];
  const out = execFileSync(
    process.execPath,
    [fileURLToPath(import.meta.url), '--child', root, String(keys), ...extra],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
      env: { ...process.env, ...env },
    },
  );
  return JSON.parse(out) as Record<Row, Sample>;
}

function main(): void {
  const a = arg('a', '');
  if (a === '') throw new Error('--a <root of build A> is required');
  const b = arg('b', packageRoot);
  const keys = Number(arg('keys', '200000'));
  const rounds = Number(arg('rounds', '8'));
  const load0 = loadavg();
  const runs: Record<'A' | 'B', Array<Record<Row, Sample>>> = { A: [], B: [] };
  const roots = { A: a, B: b };
  for (let i = 0; i < rounds; i++)
    for (const side of i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const))
      runs[side].push(runChild(roots[side], keys, side === 'B' ? ENV_B : {}));
  console.log(
    `byte path A/B: ${keys} keys of 16 B, 100 B values, ${rounds} alternating rounds in fresh processes, ${WARM} warm-up pass(es) a row; load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  console.log(`A = ${a}\nB = ${b}${Object.entries(ENV_B).map(([k, v]) => ` with ${k}=${v}`)}`);
  const med = (side: 'A' | 'B', row: Row, k: keyof Sample): string =>
    median(runs[side].map((r) => r[row][k]))
      .toFixed(0)
      .padStart(6);
  for (const row of SELECTED) {
    const ratios = runs.A.map((r, i) => runs.B[i][row].cpu / r[row].cpu);
    const threadRatios = runs.A.map((r, i) => runs.B[i][row].threadCpu / r[row].threadCpu);
    console.log(
      `${row.padEnd(16)} A ${med('A', row, 'cpu')} ns/op  B ${med('B', row, 'cpu')} ns/op (CPU)  B/A paired median ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`,
    );
    console.log(
      `${''.padEnd(16)} its thread: A ${med('A', row, 'threadCpu')} CPU ${med('A', row, 'asleep')} asleep  B ${med('B', row, 'threadCpu')} CPU ${med('B', row, 'asleep')} asleep (ns/op)  thread CPU B/A ${median(threadRatios).toFixed(3)}`,
    );
  }
}

if (process.argv[2] === '--child')
  process.stdout.write(JSON.stringify(await child(process.argv[3], Number(process.argv[4]))));
else main();
