/**
 * Compaction's CPU per segment, two builds of daxstore A/B: each round runs build A's and build
 * B's child (two package roots, e.g. a worktree of the commit before a change and this one) in
 * fresh node processes, alternating the order round by round (A B, B A, ...) so both meet the
 * same machine load. A child opens a store with 'binary' keys and values and autoCompact off,
 * puts KEYS 16-byte random keys (100-byte values), then PASSES times overwrites every key and
 * calls compact() (default maxLiveRatio), timing the CPU of each compact() after the first:
 * measuring every closed segment (a lookup of each of its entries in the index) and moving the
 * live entries of the chosen ones. Prints per build the median over the rounds of CPU µs per
 * segment scanned, and B/A.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/compaction-ab.js --a <root of build A> [--b <root of build B, default this package>]
 *     [--keys 200000] [--passes 4] [--rounds 6]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadAverage, median } from './ab-report.js';
import { arg, packageRoot } from './args.js';

interface Store {
  put(key: Uint8Array, value: Uint8Array): void;
  compact(options?: { maxLiveRatio?: number }): { segmentsScanned: number; entriesMoved: number };
  close(): void;
}

/** Child mode: argv [root, keys, passes]; prints `us-per-segment <n> segments <n> moved <n>`. */
async function child(root: string, keys: number, passes: number): Promise<void> {
  const url = (p: string): string => pathToFileURL(path.resolve(root, p)).href;
  const { open } = (await import(url('dist/src/kv/index.js'))) as {
    open(path: string, opts: object): Store;
  };
  const { mulberry32 } = (await import(url('dist/src/device/sim-media.js'))) as {
    mulberry32(seed: number): () => number;
  };
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'compaction-ab-'));
  try {
    const all = new Uint8Array(keys * 16);
    const rand = mulberry32(42);
    for (let i = 0; i < all.length; i++) all[i] = (rand() * 256) | 0;
    const value = new Uint8Array(100).fill(7);
    const db = open(path.join(dir, 'dax'), {
      size: Math.max(256 * 2 ** 20, Math.ceil((keys * 1600) / 2 ** 21) * 2 ** 21),
      durability: 'none',
      keyEncoding: 'binary',
      valueEncoding: 'binary',
      autoCompact: false,
    });
    let cpuUs = 0;
    let segments = 0;
    let moved = 0;
    for (let pass = 0; pass <= passes; pass++) {
      for (let i = 0; i < keys; i++) db.put(all.subarray(i * 16, i * 16 + 16), value);
      const c0 = process.cpuUsage();
      const report = db.compact();
      const d = process.cpuUsage(c0);
      if (pass === 0) continue; // the first compact() compiles its code
      cpuUs += d.user + d.system;
      segments += report.segmentsScanned;
      moved += report.entriesMoved;
    }
    db.close();
    console.log(`us-per-segment ${cpuUs / segments} segments ${segments} moved ${moved}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runOnce(root: string, keys: string, passes: string): { us: number; segments: number; moved: number } {
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', root, keys, passes], {
    encoding: 'utf8',
  });
  const m = /us-per-segment ([\d.]+) segments (\d+) moved (\d+)/.exec(out);
  if (m === null) throw new Error(`${root}: no result in the child's output:\n${out}`);
  return { us: Number(m[1]), segments: Number(m[2]), moved: Number(m[3]) };
}

const childAt = process.argv.indexOf('--child');
if (childAt >= 0) {
  const [root, keys, passes] = process.argv.slice(childAt + 1);
  await child(root, Number(keys), Number(passes));
} else {
  const roots = { A: path.resolve(arg('a')), B: path.resolve(arg('b', packageRoot)) };
  const keys = arg('keys', '200000');
  const passes = arg('passes', '4');
  const rounds = Number(arg('rounds', '6'));
  const loadBefore = loadAverage();
  const us: Record<'A' | 'B', number[]> = { A: [], B: [] };
  const ratios: number[] = [];
  let last = { segments: 0, moved: 0 };
  for (let r = 0; r < rounds; r++) {
    const got: Partial<Record<'A' | 'B', number>> = {};
    for (const build of r % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)) {
      const run = runOnce(roots[build], keys, passes);
      us[build].push(run.us);
      got[build] = run.us;
      last = run;
    }
    ratios.push(got.B! / got.A!);
  }
  console.log(
    `compaction A/B: ${keys} keys of 16 B, 100 B values, ${passes} overwrite passes + compact() each (${last.segments} segments scanned, ${last.moved} entries moved a run), ${rounds} alternating rounds in fresh processes; load average before ${loadBefore}, after ${loadAverage()}`,
  );
  console.log(`A = ${roots.A}\nB = ${roots.B}`);
  console.log(
    `CPU per segment scanned: A ${median(us.A).toFixed(0)} us  B ${median(us.B).toFixed(0)} us  B/A paired median ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`,
  );
}
