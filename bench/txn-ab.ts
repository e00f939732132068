/**
 * txn.bench.ts's transaction section, A/B between two builds of daxstore: runs
 * `<root>/dist/bench/txn.bench.js` of build A and of build B alternately (A B, B A, ...), each in
 * a fresh node process with TXN_BENCH_SKIP=reads (and the environment given), and reads from
 * each run the figures that are already relative to a peer in the same process or thread:
 *
 *   none 1t CPU ×lmdb   daxstore 'none' ÷ lmdb noSync, transactions per thread CPU-second, 1 thread
 *   none 2t CPU ×lmdb   the same with 2 threads
 *   none 2t/1t wall     daxstore 'none' transactions per second, 2 threads ÷ 1 thread (wall)
 *   none 2t/1t CPU      per thread CPU-second, 2 threads ÷ 1 thread: what a second thread costs
 *                       each (1.00: nothing; with 2 free cores, wall scaling is at most 2× this)
 *   and the same four for 'sync' beside lmdb sync.
 *
 * Prints per figure the median of each build and B / A (above 1: B is better, for every row).
 * On a shared machine the wall figures carry the load; quote the load average printed.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/txn-ab.js --a <root of build A> [--b <root of build B, default .>] [--runs 4]
 *     [--env TXN_BENCH_MS=1000]
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { loadAverage, printMedians } from './ab-report.js';
import { arg } from './args.js';

const A = arg('a', '');
const B = arg('b', '.');
const RUNS = Number(arg('runs', '4'));
const ENV: Record<string, string> = {};
for (let i = 0; i < process.argv.length; i++)
  if (process.argv[i] === '--env') {
    const [k, ...rest] = process.argv[i + 1].split('=');
    ENV[k] = rest.join('=');
  }
if (A === '' || !(RUNS >= 1)) throw new Error('usage: txn-ab --a <root> [--b <root>] [--runs n] [--env K=V]');

/** The transaction rows of one run: "<store>, <n> thread(s)" -> [txn/s wall, txn per thread CPU-s]. */
function rows(output: string): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const line of output.split('\n')) {
    const m = /^\s*(daxstore '\w+'|lmdb \w+), (\d) thread\(s\)\s+([\d,]+)\s+([\d,]+)/.exec(line);
    if (m === null) continue;
    const n = (s: string): number => Number(s.replace(/,/g, ''));
    out.set(`${m[1]} ${m[2]}`, [n(m[3]), n(m[4])]);
  }
  return out;
}

/** The figures of one run (file header), by name. */
function figures(output: string): Map<string, number> {
  const r = rows(output);
  const f = new Map<string, number>();
  const pairs: Array<[string, string, string]> = [
    ['none', "daxstore 'none'", 'lmdb noSync'],
    ['sync', "daxstore 'sync'", 'lmdb sync'],
  ];
  for (const [name, dax, lmdb] of pairs) {
    const d1 = r.get(`${dax} 1`);
    const d2 = r.get(`${dax} 2`);
    const l1 = r.get(`${lmdb} 1`);
    const l2 = r.get(`${lmdb} 2`);
    if (d1 === undefined || d2 === undefined || l1 === undefined || l2 === undefined) continue;
    f.set(`${name} 1t CPU ×lmdb`, d1[1] / l1[1]);
    f.set(`${name} 2t CPU ×lmdb`, d2[1] / l2[1]);
    f.set(`${name} 2t/1t wall`, d2[0] / d1[0]);
    f.set(`${name} 2t/1t CPU`, d2[1] / d1[1]);
  }
  return f;
}

function runOnce(root: string): Map<string, number> {
  const output = execFileSync(process.execPath, [path.resolve(root, 'dist', 'bench', 'txn.bench.js')], {
    cwd: path.resolve(root),
    env: { ...process.env, TXN_BENCH_SKIP: 'reads', ...ENV },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return figures(output);
}

const before = loadAverage();
const results: Record<'a' | 'b', Array<Map<string, number>>> = { a: [], b: [] };
for (let r = 0; r < RUNS; r++)
  for (const which of r % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
    results[which].push(runOnce(which === 'a' ? A : B));
    process.stderr.write(`run ${r + 1}/${RUNS} ${which} done\n`);
  }
console.log(
  `A/B txn.bench (transactions): A = ${path.resolve(A)}, B = ${path.resolve(B)}, ${RUNS} runs each, alternated`,
);
console.log(`load average before ${before}, after ${loadAverage()}`);
printMedians(results, { nameWidth: 20, valueWidth: 6, unit: '' });
