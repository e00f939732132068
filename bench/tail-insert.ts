/**
 * After a kill, an open from a checkpoint merges the tail's winners over the checkpoint's columns
 * and bulk-loads the result. The alternative measured here: load the checkpoint's tree image (as
 * a clean reopen does) and insert the tail's keys into the loaded tree one by one
 * (RadixTree.insert, what a writer's put does to the index). Per round, in a fresh process: a
 * clean open (the image loaded: its load phase, CPU), then `tail` random new index keys
 * inserted in key order (CPU); and an open with recovery: 'full' (its bulk load of every key,
 * CPU: what the merge's bulk load costs for a store this size, plus the merge itself, which
 * reopen.js reports as "sort or merge" after a kill). Medians over rounds.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/tail-insert.js [--keys 1000000] [--tails 1000,10000,100000] [--rounds 3]
 *
 * The store: kv.bench's workload (random 16-byte keys, 100-byte values, then half as many
 * overwrites), binary encodings, in /dev/shm, removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from '../src/kv/index.js';
import { mulberry32 } from '../src/device/sim-media.js';
import { arg } from './args.js';

const BIN = { keyEncoding: 'binary', valueEncoding: 'binary' } as const;

function cpuMs(f: () => void): number {
  const c = process.cpuUsage();
  f();
  const d = process.cpuUsage(c);
  return (d.user + d.system) / 1000;
}

function child(file: string, mode: string, n: number): Record<string, number> {
  if (mode === 'build') {
    const r = mulberry32(42);
    const keys = Array.from({ length: n }, () => new Uint8Array(16).map(() => Math.floor(r() * 256)));
    const value = new Uint8Array(100).fill(7);
    const size = Math.max(256 * 2 ** 20, Math.ceil((n * 700) / 2 ** 21) * 2 ** 21);
    const db = open(file, { size, durability: 'none', checkpoint: true, ...BIN });
    for (const k of keys) db.put(k, value);
    for (let i = 0; i < n / 2; i++) db.put(keys[Math.floor(r() * n)], value);
    db.close();
    return {};
  }
  if (mode === 'full') {
    const db = open(file, { durability: 'none', recovery: 'full', ...BIN });
    const load = db.recovery!.phasesCpuMs.load;
    db.close();
    return { bulkLoadAll: load };
  }
  const db = open(file, { durability: 'none', checkpoint: false, ...BIN });
  const use = db.recovery!.checkpoint!;
  if (!use.imageLoaded) throw new Error(`tail-insert: the image was not loaded (${use.ignored.join('; ')})`);
  const keys = Array.from({ length: n }, () => {
    const k = new Uint8Array(17);
    k[0] = 1; // KV_KEY_PREFIX
    globalThis.crypto.getRandomValues(k.subarray(1));
    return k;
  }).sort(Buffer.compare);
  const tree = db.dax.tree;
  const insert = cpuMs(() => {
    for (let i = 0; i < n; i++) tree.insert(keys[i], 64 * i);
  });
  const imageLoad = db.recovery!.phasesCpuMs.load;
  return { imageLoad, insert };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function main(): void {
  const keys = Number(arg('keys', '1000000'));
  const tails = arg('tails', '1000,10000,100000').split(',').map(Number);
  const rounds = Number(arg('rounds', '3'));
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tail-insert-'));
  const file = path.join(dir, 'store');
  const run = (mode: string, n: number): Record<string, number> =>
    JSON.parse(
      execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', file, mode, String(n)], {
        encoding: 'utf8',
        maxBuffer: 1 << 20,
      }),
    ) as Record<string, number>;
  try {
    run('build', keys);
    const full: number[] = [];
    const rows = new Map<number, { imageLoad: number[]; insert: number[] }>();
    for (let round = 0; round < rounds; round++) {
      full.push(run('full', keys).bulkLoadAll);
      for (const t of tails) {
        const r = run('insert', t);
        const row = rows.get(t) ?? { imageLoad: [], insert: [] };
        row.imageLoad.push(r.imageLoad);
        row.insert.push(r.insert);
        rows.set(t, row);
      }
    }
    console.log(
      `tail insert, ${keys} keys, ${rounds} rounds in fresh processes; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    console.log(`bulk load of every key (recovery: 'full'): CPU ${median(full).toFixed(1)} ms`);
    for (const [t, row] of rows)
      console.log(
        `image load CPU ${median(row.imageLoad).toFixed(1)} ms, then ${t} inserts CPU ${median(row.insert).toFixed(1)} ms (${((median(row.insert) * 1e6) / t).toFixed(0)} ns each)`,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [, , , file, mode, n] = process.argv;
  process.stdout.write(JSON.stringify(child(file, mode, Number(n))));
  process.exit(0);
} else main();
