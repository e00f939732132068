/**
 * Open time A/B: the same key-value workload written by two builds of daxstore (two package
 * roots, e.g. a worktree of main and this one), then each store opened in a fresh node
 * process, the two alternating round by round (A, B, B, A, ...), so both see the same machine
 * load. Prints per build the median wall and CPU time of open() (recovery included) and of
 * recovery's phases, and of the close() after it (which writes the next index checkpoint: CPU of every thread, and wall), and
 * the paired B/A ratios (medians over rounds).
 *
 *   node dist/bench/open-ab.js --a <root of build A> [--b <root of build B, default this package>]
 *     [--keys 1000000] [--rounds 8] [--ballast MiB] [--full | --kill]
 *   node dist/bench/open-ab.js --knob DAXSTORE_SCAN_MAPPED [--keys 1000000] [--rounds 8]
 *
 * With --knob, A is this package with the environment variable set to 1 and B the same
 * package without it (one store, opened by both). CPU times are the whole process's (every
 * thread); the phases' CPU times come from the report's phasesCpuMs where the build has it.
 * --ballast fills that many MiB of the heap with live small arrays before each open. --full opens
 * with recovery: 'full' (the whole log scanned); without it a build that writes index checkpoints
 * at close opens on the checkpoint its previous close wrote (a clean reopen). --kill: after the
 * build, a process overwrites 10% of the keys ('sync') and is killed (SIGKILL, no close); every
 * open is of a fresh copy of that killed store (the checkpoint plus a tail of 10% of the writes).
 *
 * The workload is kv.bench's store: random 16-byte keys, 100-byte values, 'none', then half as
 * many overwrites of random keys (about 1.5 log entries per key), a byte store ('binary'
 * encodings; a build from before encodings ignores those options). Each build writes its own
 * store in its own format. Stores go in /dev/shm and are removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAndDie, writeBenchStore } from './bench-store.js';
import { arg, flag, packageRoot } from './args.js';

interface OpenTiming {
  wallMs: number;
  cpuMs: number;
  /** close() after the open, CPU ms (every thread): it writes the next index checkpoint */
  closeCpu: number;
  /** the same close(), wall ms: how long the closing thread waits for it */
  closeWall: number;
  scan: number;
  sort: number;
  load: number;
  scanCpu: number;
  sortCpu: number;
  loadCpu: number;
  keys: number;
  entries: number;
  /** peers over the log's byte count (segments x 2 MiB), CPU ms, after the open in the same process */
  logMiB: number;
  memcpyCpu: number;
  preadCpu: number;
  hashCpu: number;
}

async function kvOf(root: string): Promise<typeof import('../src/kv/index.js')> {
  return (await import(
    path.join(path.resolve(root), 'dist', 'src', 'kv', 'index.js')
  )) as typeof import('../src/kv/index.js');
}

async function build(root: string, file: string, keys: number): Promise<void> {
  await writeBenchStore(await kvOf(root), file, keys, 600);
}

/** --kill: overwrites a tenth of the keys, each acknowledged ('sync'), and dies without a close. */
async function timedOpen(root: string, file: string): Promise<OpenTiming> {
  const kv = await kvOf(root);
  // --ballast: a large live heap first (a server process, or kv.bench's), for memory effects
  const ballast: Uint8Array[][] = [];
  for (let mb = 0; mb < Number(process.env['OPEN_AB_BALLAST_MB'] ?? '0'); mb++)
    ballast.push(Array.from({ length: 1024 }, () => new Uint8Array(1024).fill(mb & 0xff)));
  const t = performance.now();
  const cpu0 = process.cpuUsage();
  const full = process.env['OPEN_AB_FULL'] === '1' ? { recovery: 'full' as const } : {};
  const db = kv.open(file, { durability: 'none', keyEncoding: 'binary', valueEncoding: 'binary', ...full });
  const wallMs = performance.now() - t;
  const cpu = process.cpuUsage(cpu0);
  const r = db.recovery! as typeof db.recovery & { phasesCpuMs?: { scan: number; sort: number; load: number } };
  const close0 = process.cpuUsage();
  const closeT = performance.now();
  db.close();
  const closeWall = performance.now() - closeT;
  const closeCpu = process.cpuUsage(close0);
  if (ballast.length === -1) console.log(ballast);
  const c = r.phasesCpuMs ?? { scan: NaN, sort: NaN, load: NaN };
  const peers = await peersOver(file, r.segments);
  return {
    ...peers,
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    closeCpu: (closeCpu.user + closeCpu.system) / 1000,
    closeWall,
    ...r.phasesMs,
    scanCpu: c.scan,
    sortCpu: c.sort,
    loadCpu: c.load,
    keys: r.keys,
    entries: r.entries,
  };
}

const SEGMENT = 2 * 2 ** 20;

/**
 * The scan's peers over the same byte count as the log (segments x 2 MiB), in CPU ms: a memcpy
 * between two resident 2 MiB buffers, a pread(2) of the store file's first that many bytes
 * into one (the kernel's copy out of tmpfs: what the scan's read costs), and XXH64 over a
 * resident buffer (the records' checksum; the addon's hashRange).
 */
async function peersOver(
  file: string,
  segments: number,
): Promise<{ logMiB: number; memcpyCpu: number; preadCpu: number; hashCpu: number }> {
  const { native } = (await import(path.join(packageRoot, 'dist', 'src', 'native', 'addon.js'))) as {
    native: () => { hashRange(b: Uint8Array, o: number, l: number, out: Uint32Array): number };
  };
  const src = new Uint8Array(SEGMENT).fill(1);
  const dst = new Uint8Array(SEGMENT).fill(2);
  const out = new Uint32Array(2);
  const cpu = (f: () => void): number => {
    f(); // warm
    const c0 = process.cpuUsage();
    for (let i = 0; i < segments; i++) f();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000;
  };
  const fd = openSync(file, 'r');
  try {
    let at = 0;
    const preadCpu = cpu(() => {
      readSync(fd, dst, 0, SEGMENT, at);
      at += SEGMENT;
    });
    return {
      logMiB: (segments * SEGMENT) / 2 ** 20,
      memcpyCpu: cpu(() => dst.set(src)),
      preadCpu,
      hashCpu: cpu(() => native().hashRange(src, 0, SEGMENT, out)),
    };
  } finally {
    closeSync(fd);
  }
}

function child(
  mode: 'build' | 'open' | 'write-and-die',
  root: string,
  file: string,
  keys: number,
  env?: NodeJS.ProcessEnv,
): string {
  return execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, root, file, String(keys)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
    env: env ?? process.env,
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main(): void {
  const knob = arg('knob', '');
  const self = packageRoot;
  const a = knob === '' ? arg('a', '') : self;
  if (a === '') throw new Error('--a <root of build A> (or --knob <environment variable>) is required');
  const b = arg('b', self);
  const keys = Number(arg('keys', '1000000'));
  const rounds = Number(arg('rounds', '8'));
  process.env['OPEN_AB_BALLAST_MB'] = arg('ballast', '0');
  process.env['OPEN_AB_FULL'] = flag('full') ? '1' : '0';
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'open-ab-'));
  try {
    const files =
      knob === ''
        ? { A: path.join(dir, 'a'), B: path.join(dir, 'b') }
        : { A: path.join(dir, 'a'), B: path.join(dir, 'a') };
    const roots = { A: a, B: b };
    const without: NodeJS.ProcessEnv = { ...process.env };
    if (knob !== '') delete without[knob];
    const envs = { A: knob === '' ? process.env : { ...process.env, [knob]: '1' }, B: without };
    child('build', roots.A, files.A, keys);
    if (knob === '') child('build', roots.B, files.B, keys);
    const kill = flag('kill');
    if (kill)
      for (const side of knob === '' ? (['A', 'B'] as const) : (['A'] as const)) {
        try {
          child('write-and-die', roots[side], files[side], keys);
        } catch {
          // killed, as meant
        }
        copyFileSync(files[side], `${files[side]}.killed`);
      }
    const runs: Record<'A' | 'B', OpenTiming[]> = { A: [], B: [] };
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const);
      for (const side of order) {
        if (kill) copyFileSync(`${files[side]}.killed`, files[side]);
        runs[side].push(
          JSON.parse(child('open', roots[side], files[side], keys, envs[side]), (_k, x: unknown) =>
            x === null ? NaN : x,
          ) as OpenTiming,
        );
      }
    }
    const fields = [
      'wallMs',
      'cpuMs',
      'scan',
      'sort',
      'load',
      'scanCpu',
      'sortCpu',
      'loadCpu',
      'memcpyCpu',
      'preadCpu',
      'hashCpu',
      'closeCpu',
      'closeWall',
    ] as const;
    console.log(
      `open A/B, ${keys} keys (${runs.A[0].entries} / ${runs.B[0].entries} log entries), ${rounds} alternating rounds in fresh processes; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    console.log(knob === '' ? `A = ${a}\nB = ${b}` : `A = ${knob}=1, B = without (${a})`);
    for (const f of fields) {
      if (runs.A.some((r) => !Number.isFinite(r[f])) || runs.B.some((r) => !Number.isFinite(r[f]))) continue;
      const ma = median(runs.A.map((r) => r[f]));
      const mb = median(runs.B.map((r) => r[f]));
      const paired = median(runs.A.map((r, i) => runs.B[i][f] / r[f]));
      console.log(
        `${f.padEnd(9)}  A ${ma.toFixed(1).padStart(8)} ms  B ${mb.toFixed(1).padStart(8)} ms  B/A paired median ${paired.toFixed(3)}`,
      );
    }
    const shown = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
    const ratio = (side: 'A' | 'B', f: 'memcpyCpu' | 'preadCpu' | 'hashCpu'): string =>
      shown(median(runs[side].map((r) => r.scanCpu / r[f])), 2);
    console.log(
      `log ${runs.B[0].logMiB} MiB; scan CPU / peer CPU (paired medians): A memcpy ${ratio('A', 'memcpyCpu')} pread ${ratio('A', 'preadCpu')} xxh64 ${ratio('A', 'hashCpu')}; B memcpy ${ratio('B', 'memcpyCpu')} pread ${ratio('B', 'preadCpu')} xxh64 ${ratio('B', 'hashCpu')}`,
    );
    const gbps = (side: 'A' | 'B'): string =>
      shown(median(runs[side].map((r) => (r.logMiB * 2 ** 20) / (r.scanCpu * 1e6))), 2);
    console.log(`scan rate over CPU time: A ${gbps('A')} GB/s, B ${gbps('B')} GB/s`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [, , , mode, root, file, keys] = process.argv;
  if (mode === 'build') await build(root, file, Number(keys));
  else if (mode === 'write-and-die') await writeAndDie(await kvOf(root), file, Number(keys));
  else process.stdout.write(JSON.stringify(await timedOpen(root, file)));
} else main();
