/**
 * kv-msgpack.bench.ts of two builds of daxstore, A/B: each round runs build A's and build B's
 * compiled kv-msgpack bench (two package roots, e.g. a worktree of the commit before a change
 * and this one) in fresh node processes, alternating the order round by round (A B, B A, ...)
 * so both meet the same machine load. Each run measures daxstore against lmdb-js in the same
 * process, so its rows are ratios to a peer measured beside it; this prints per row and build
 * the median over the rounds of those ratios (by wall time and by CPU time).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/kv-msgpack-ab.js --a <root of build A> [--b <root of build B, default this package>]
 *     [--keys 20000] [--rounds 3]
 */
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import path from 'node:path';
import { median } from './ab-report.js';
import { arg, packageRoot } from './args.js';

const roots = { A: path.resolve(arg('a')), B: path.resolve(arg('b', packageRoot)) };
const KEYS = arg('keys', '20000');
const ROUNDS = Number(arg('rounds', '3'));
const ROWS = ['put (none / noSync)', 'durable put (sync)', 'random get (decoded)', 'range 1000'] as const;

type Ratios = Record<string, { wall: number; cpu: number }>;

function runOnce(root: string): Ratios {
  const out = execFileSync(process.execPath, [path.join(root, 'dist', 'bench', 'kv-msgpack.bench.js')], {
    env: { ...process.env, KV_MSGPACK_KEYS: KEYS },
    encoding: 'utf8',
    maxBuffer: 16 * 2 ** 20,
  });
  const ratios: Ratios = {};
  for (const row of ROWS) {
    const line = out.split('\n').find((l) => l.startsWith(row));
    const m = line === undefined ? null : /ratio ([\d.]+)x, by CPU time ([\d.]+)x/.exec(line);
    if (m === null) throw new Error(`${root}: no row '${row}' in the bench output:\n${out}`);
    ratios[row] = { wall: Number(m[1]), cpu: Number(m[2]) };
  }
  return ratios;
}

const runs: Record<'A' | 'B', Ratios[]> = { A: [], B: [] };
const loads: string[] = [];
for (let r = 0; r < ROUNDS; r++) {
  for (const build of r % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const))
    runs[build].push(runOnce(roots[build]));
  loads.push(loadavg()[0].toFixed(1));
}
console.log(
  `kv-msgpack A/B, ${ROUNDS} rounds of ${KEYS} keys, daxstore/lmdb-js ratios (medians over rounds); A = ${roots.A}, B = ${roots.B}; load average after each round ${loads.join(', ')}`,
);
for (const row of ROWS) {
  const m = (build: 'A' | 'B', k: 'wall' | 'cpu'): string => median(runs[build].map((x) => x[row][k])).toFixed(2);
  console.log(
    `${row.padEnd(22)} A ${m('A', 'cpu')}x by CPU (${m('A', 'wall')}x wall)   B ${m('B', 'cpu')}x by CPU (${m('B', 'wall')}x wall)`,
  );
}
