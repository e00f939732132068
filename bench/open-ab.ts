/**
 * Open time A/B: the same key-value workload written by two builds of daxstore (two package
 * roots, e.g. a worktree of main and this one), then each store opened in a fresh node
 * process, the two alternating round by round (A, B, B, A, ...), so both see the same machine
 * load. Prints per build the median wall and CPU time of open() (recovery included) and of
 * recovery's phases, and the paired B/A ratios (medians over rounds).
 *
 *   node dist/bench/open-ab.js --a <root of build A> [--b <root of build B, default this package>]
 *     [--keys 1000000] [--rounds 8]
 *
 * The workload is kv.bench's store: random 16-byte keys, 100-byte values, 'none', then half as
 * many overwrites of random keys (about 1.5 log entries per key), a byte store ('binary'
 * encodings; a build from before encodings ignores those options). Each build writes its own
 * store in its own format. Stores go in /dev/shm and are removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface OpenTiming {
  wallMs: number;
  cpuMs: number;
  scan: number;
  sort: number;
  load: number;
  keys: number;
  entries: number;
}

const VALUE = new Uint8Array(100).fill(7);

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

async function kvOf(root: string): Promise<typeof import('../src/kv/index.js')> {
  return (await import(
    path.join(path.resolve(root), 'dist', 'src', 'kv', 'index.js')
  )) as typeof import('../src/kv/index.js');
}

/** mulberry32: the same keys for both builds. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function build(root: string, file: string, keys: number): Promise<void> {
  const kv = await kvOf(root);
  const r = random(42);
  const all: Uint8Array[] = [];
  for (let i = 0; i < keys; i++) all.push(new Uint8Array(16).map(() => Math.floor(r() * 256)));
  const size = Math.max(256 * 2 ** 20, Math.ceil((keys * 600) / 2 ** 21) * 2 ** 21);
  const db = kv.open(file, { size, durability: 'none', keyEncoding: 'binary', valueEncoding: 'binary' });
  for (const k of all) db.put(k, VALUE);
  for (let i = 0; i < keys / 2; i++) db.put(all[Math.floor(r() * keys)], VALUE);
  db.close();
}

async function timedOpen(root: string, file: string): Promise<OpenTiming> {
  const kv = await kvOf(root);
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  const db = kv.open(file, { durability: 'none', keyEncoding: 'binary', valueEncoding: 'binary' });
  const wallMs = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  const r = db.recovery!;
  db.close();
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, ...r.phasesMs, keys: r.keys, entries: r.entries };
}

function child(mode: 'build' | 'open', root: string, file: string, keys: number): string {
  return execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, root, file, String(keys)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main(): void {
  const a = arg('a', '');
  if (a === '') throw new Error('--a <root of build A> is required');
  const b = arg('b', path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..'));
  const keys = Number(arg('keys', '1000000'));
  const rounds = Number(arg('rounds', '8'));
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'open-ab-'));
  try {
    const files = { A: path.join(dir, 'a'), B: path.join(dir, 'b') };
    const roots = { A: a, B: b };
    for (const side of ['A', 'B'] as const) child('build', roots[side], files[side], keys);
    const runs: Record<'A' | 'B', OpenTiming[]> = { A: [], B: [] };
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const);
      for (const side of order)
        runs[side].push(JSON.parse(child('open', roots[side], files[side], keys)) as OpenTiming);
    }
    const fields = ['wallMs', 'cpuMs', 'scan', 'sort', 'load'] as const;
    console.log(
      `open A/B, ${keys} keys (${runs.A[0].entries} / ${runs.B[0].entries} log entries), ${rounds} alternating rounds in fresh processes; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    console.log(`A = ${a}\nB = ${b}`);
    for (const f of fields) {
      const ma = median(runs.A.map((r) => r[f]));
      const mb = median(runs.B.map((r) => r[f]));
      const paired = median(runs.A.map((r, i) => runs.B[i][f] / r[f]));
      console.log(
        `${f.padEnd(6)}  A ${ma.toFixed(1).padStart(8)} ms  B ${mb.toFixed(1).padStart(8)} ms  B/A paired median ${paired.toFixed(3)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [, , , mode, root, file, keys] = process.argv;
  if (mode === 'build') await build(root, file, Number(keys));
  else process.stdout.write(JSON.stringify(await timedOpen(root, file)));
} else main();
