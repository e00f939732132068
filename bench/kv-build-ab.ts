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
 *     [--keys 200000] [--rounds 8] [--rows 'txn 4r+4w,snapshot+close'] [--warm 1]
 *
 * The rows beyond kv.bench.ts's: 'txn 4r+4w', txn.bench.ts's transaction (4 gets, 4 puts, one
 * thread, 'none'), CPU per transaction; 'snapshot+close', db.snapshot().close() with no other
 * snapshot of the handle held.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './ab-report.js';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mulberry32 } from '../src/device/sim-media.js';
import { arg, packageRoot } from './args.js';

const ROWS = ['put none', 'put sync', 'get', 'getView in read', 'range 10k', 'txn 4r+4w', 'snapshot+close'] as const;
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

/** Child: one build's rows, CPU ns per op of each (process.cpuUsage: every thread of the child). */
async function child(root: string, keys: number): Promise<Record<Row, number>> {
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
    const cpuNs = (ops: number, fn: () => void): number => {
      const c0 = process.cpuUsage();
      fn();
      const d = process.cpuUsage(c0);
      return ((d.user + d.system) * 1000) / ops;
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
    const out = {} as Record<Row, number>;
    for (const row of SELECTED) {
      // Warm-up passes: JIT and first touches out of the figure. A range runs its per-batch code
      // once per 10k entries, so one pass leaves it partly unoptimized (--warm raises the count).
      for (let w = 0; w < WARM; w++) runs[row]();
      out[row] = runs[row]();
    }
    if (sink === -1) console.error(sink);
    none.close();
    sync.close();
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(root: string, keys: number): Record<Row, number> {
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
    },
  );
  return JSON.parse(out) as Record<Row, number>;
}

function main(): void {
  const a = arg('a', '');
  if (a === '') throw new Error('--a <root of build A> is required');
  const b = arg('b', packageRoot);
  const keys = Number(arg('keys', '200000'));
  const rounds = Number(arg('rounds', '8'));
  const load0 = loadavg();
  const runs: Record<'A' | 'B', Array<Record<Row, number>>> = { A: [], B: [] };
  const roots = { A: a, B: b };
  for (let i = 0; i < rounds; i++)
    for (const side of i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const))
      runs[side].push(runChild(roots[side], keys));
  console.log(
    `byte path A/B: ${keys} keys of 16 B, 100 B values, ${rounds} alternating rounds in fresh processes, ${WARM} warm-up pass(es) a row; load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  console.log(`A = ${a}\nB = ${b}`);
  for (const row of SELECTED) {
    const ma = median(runs.A.map((r) => r[row]));
    const mb = median(runs.B.map((r) => r[row]));
    const ratios = runs.A.map((r, i) => runs.B[i][row] / r[row]);
    console.log(
      `${row.padEnd(16)} A ${ma.toFixed(0).padStart(6)} ns/op  B ${mb.toFixed(0).padStart(6)} ns/op (CPU)  B/A paired median ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`,
    );
  }
}

if (process.argv[2] === '--child')
  process.stdout.write(JSON.stringify(await child(process.argv[3], Number(process.argv[4]))));
else main();
