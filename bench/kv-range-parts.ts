/**
 * Where a decoded range's time goes: range() over kv-msgpack.bench.ts's data (KV_MSGPACK_KEYS
 * keys ['user', n], default 200,000; msgpack objects of about 91 B), from a fixed pseudo-random
 * start (stride 7919) for `--limit` entries, four ways: keys and values, keys only
 * (values: false), values only (keys: false), neither (the walk, the snapshot resolution and the
 * iterator alone). Prints the median CPU ns per entry over the rounds of each.
 *
 * With --ab <root of build A>, an A/B of two builds instead: this script runs in fresh node
 * processes against build A's compiled daxstore and this package's (B), alternating the order
 * round by round (A B, B A, ...), and prints each build's medians over the rounds.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/kv-range-parts.js [--limit 1000] [--rounds 5]
 *   node dist/bench/kv-range-parts.js --ab <root of build A> [--ab-rounds 4] [--limit 1000]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './ab-report.js';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { KvStoreOf } from '../src/kv/index.js';
import { type User, fillDax, storeBytes, userValues } from './msgpack-users.js';
import { arg, flag, packageRoot } from './args.js';

const KEYS = Number(process.env['KV_MSGPACK_KEYS'] ?? 200_000);
const LIMIT = Number(arg('limit', '1000'));
const ROUNDS = Number(arg('rounds', '5'));
const TASKS = ['keys and values', 'keys only', 'values only', 'neither'] as const;

/** One build's rounds: CPU ns per entry of each task (medians), as JSON on the last line. */
async function measure(root: string): Promise<Record<string, number>> {
  const { open } = (await import(pathToFileURL(path.join(root, 'dist/src/api/daxstore.js')).href)) as {
    open: (p: string, o: object) => KvStoreOf<'ordered', 'msgpack'>;
  };
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-range-parts-'));
  try {
    const dax = open(path.join(dir, 'dax'), { size: storeBytes(KEYS), durability: 'none' });
    fillDax(dax, KEYS, userValues());
    let c = 0;
    const from = (): number => (c = (c + 7919) % Math.max(1, KEYS - LIMIT));
    let sink = 0;
    const run: Record<(typeof TASKS)[number], () => void> = {
      'keys and values': () => {
        for (const [k, v] of dax.range({ gte: ['user', from()], limit: LIMIT }))
          sink += (v as User).age + ((k as [string, number])[1] & 1);
      },
      'keys only': () => {
        for (const [k] of dax.range({ gte: ['user', from()], limit: LIMIT, values: false }))
          sink += (k as [string, number])[1] & 1;
      },
      'values only': () => {
        for (const [, v] of dax.range({ gte: ['user', from()], limit: LIMIT, keys: false })) sink += (v as User).age;
      },
      neither: () => {
        for (const e of dax.range({ gte: ['user', from()], limit: LIMIT, keys: false, values: false }))
          sink += e.length;
      },
    };
    const ranges = Math.max(1, Math.round(1_000_000 / LIMIT)); // about a million entries per sample
    const samples = new Map<string, number[]>(TASKS.map((t) => [t, []]));
    for (const t of TASKS) run[t](); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of r % 2 === 0 ? TASKS : [...TASKS].reverse()) {
        const c0 = process.cpuUsage();
        for (let i = 0; i < ranges; i++) run[t]();
        const d = process.cpuUsage(c0);
        samples.get(t)!.push(((d.user + d.system) * 1000) / (ranges * LIMIT));
      }
    }
    if (sink === -1) console.log(sink);
    dax.close();
    return Object.fromEntries(TASKS.map((t) => [t, median(samples.get(t)!)]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const abRoot = flag('ab') ? arg('ab') : undefined;
if (process.env['KV_RANGE_PARTS_CHILD'] !== undefined) {
  console.log(JSON.stringify(await measure(process.env['KV_RANGE_PARTS_CHILD'])));
} else if (abRoot === undefined) {
  const ns = await measure(packageRoot);
  console.log(
    `decoded range taken apart: ${KEYS} keys ['user', n], msgpack objects, ranges of ${LIMIT} from spread starts, ${ROUNDS} rounds, CPU ns per entry (medians); load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  for (const t of TASKS) console.log(`${t.padEnd(16)} ${ns[t].toFixed(0).padStart(6)} ns`);
} else {
  const roots = { A: path.resolve(abRoot), B: packageRoot };
  const runs: Record<'A' | 'B', Array<Record<string, number>>> = { A: [], B: [] };
  const loads: string[] = [];
  const abRounds = Number(arg('ab-rounds', '4'));
  for (let r = 0; r < abRounds; r++) {
    for (const build of r % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
        env: { ...process.env, KV_RANGE_PARTS_CHILD: roots[build] },
        encoding: 'utf8',
      });
      runs[build].push(JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>);
    }
    loads.push(loadavg()[0].toFixed(1));
  }
  console.log(
    `kv-range-parts A/B, ${abRounds} rounds alternated, ranges of ${LIMIT}, CPU ns per entry (medians over rounds); A = ${roots.A}, B = ${roots.B}; load average after each round ${loads.join(', ')}`,
  );
  for (const t of TASKS) {
    const a = median(runs.A.map((x) => x[t]));
    const b = median(runs.B.map((x) => x[t]));
    const paired = median(runs.A.map((x, i) => runs.B[i][t] / x[t]));
    console.log(
      `${t.padEnd(16)} A ${a.toFixed(0).padStart(5)} ns   B ${b.toFixed(0).padStart(5)} ns   paired B/A ${paired.toFixed(3)}`,
    );
  }
}
