/**
 * Where an open's fixed costs go, per build: one store (kv.bench's workload, written by this
 * package, closed with an index checkpoint) opened in fresh node processes by two builds (two
 * package roots), alternating round by round (A, B, B, A, ...). Each child wraps the functions an
 * open runs once (device open, allocator rebuild, the space's structures, the object table, the
 * addon's calls) and prints the CPU ms of each (process CPU time over the call: every thread) and
 * the wall ms of the addon's calls, beside the open's wall and CPU and recovery's phase timers.
 * Prints each item's median per build and the paired B/A ratio of the open's wall and CPU.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/open-parts.js --a <root of build A>
 *     [--b <root of build B, default this package>] [--keys 1000000] [--rounds 6] [--full | --kill]
 *     [--pause-ms 4000]
 *
 * --full opens with recovery: 'full'. --kill: after the build, a process of this package
 * overwrites 10% of the keys ('sync') and is killed (SIGKILL, no close); every open is of a fresh
 * copy of that killed store (the checkpoint plus a tail of 10% of the writes), as open-ab.js --kill. A function a build does not have is left out of its rows.
 * --pause-ms: each open comes after that many ms of nothing, as a user's process opens after a
 * quiet spell (on a virtual machine that reports free memory to its host, fresh memory then
 * costs more to fault in: fresh-huge-pages.ts).
 * The store goes in /dev/shm and is removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './ab-report.js';
import { writeAndDie, writeBenchStore } from './bench-store.js';
import { arg, flag, packageRoot } from './args.js';

type Parts = Record<string, number>;

/** This package's kv module (the build the store is written and killed with). */
async function kvHere(): Promise<typeof import('../src/kv/index.js')> {
  return (await import(path.join(packageRoot, 'dist', 'src', 'kv', 'index.js'))) as typeof import('../src/kv/index.js');
}

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** The child: wraps the open's one-off functions in build `root`, opens `file`, prints the parts as JSON. */
async function timedOpen(root: string, file: string, full: boolean): Promise<void> {
  const parts: Parts = {};
  let recording = true; // the open's calls only, not the close's
  const add = (name: string, ms: number): void => {
    if (recording) parts[name] = (parts[name] ?? 0) + ms;
  };
  const mod = async (p: string): Promise<Record<string, any>> =>
    (await import(path.join(root, 'dist', 'src', p))) as Record<string, any>;
  const wrap = (owner: Record<string, any> | undefined, name: string, label: string): void => {
    const f = owner?.[name] as ((...a: unknown[]) => unknown) | undefined;
    if (owner === undefined || typeof f !== 'function') return;
    owner[name] = function (this: unknown, ...a: unknown[]): unknown {
      const c0 = cpuNow();
      try {
        return f.apply(this, a);
      } finally {
        add(label, cpuNow() - c0);
      }
    };
  };
  const { Allocator } = await mod('device/allocator.js');
  const { Device } = await mod('device/device.js');
  const { EpochDomain } = await mod('index/epoch.js');
  const { RadixTree } = await mod('index/radix-tree.js');
  const { WaitTable } = await mod('index/wait-table.js');
  const { ObjectTable } = await mod('dax/object-table.js');
  const { native } = await mod('native/addon.js');
  wrap(Device, 'open', 'Device.open');
  wrap(Allocator?.prototype, 'rebuild', 'Allocator.rebuild');
  wrap(EpochDomain, 'create', 'EpochDomain.create');
  wrap(RadixTree, 'create', 'RadixTree.create');
  wrap(WaitTable, 'create', 'WaitTable.create');
  wrap(ObjectTable, 'create', 'ObjectTable.create');
  wrap(ObjectTable?.prototype, 'liveIds', 'ObjectTable.liveIds');
  const addon = native() as Record<string, any>;
  for (const name of Object.keys(addon)) {
    const f = addon[name] as unknown;
    if (typeof f !== 'function') continue;
    addon[name] = function (this: unknown, ...a: unknown[]): unknown {
      const c0 = cpuNow();
      const t0 = performance.now();
      try {
        return (f as (...x: unknown[]) => unknown).apply(this, a);
      } finally {
        add(`native.${name}`, cpuNow() - c0);
        add(`native.${name} (wall)`, performance.now() - t0);
      }
    };
  }
  const kv = await mod('kv/index.js');
  const t = performance.now();
  const c0 = cpuNow();
  const db = kv.open(file, {
    durability: 'none',
    keyEncoding: 'binary',
    valueEncoding: 'binary',
    ...(full ? { recovery: 'full' } : {}),
  });
  const wallMs = performance.now() - t;
  const cpuMs = cpuNow() - c0;
  recording = false;
  const r = db.recovery as {
    openMs: Parts;
    phasesMs: Parts;
    checkpoint?: { verifyMs: number; verifyCpuMs: number; runFill?: { cpuMs: number; smallFromBytes: number } };
  };
  const out: Parts = { 'open (wall)': wallMs, open: cpuMs };
  for (const [k, v] of Object.entries(r.openMs)) if (k !== 'total') out[`openMs.${k} (wall)`] = v;
  for (const [k, v] of Object.entries(r.phasesMs)) out[`phasesMs.${k} (wall)`] = v;
  if (r.checkpoint !== undefined) {
    out['checkpoint.verify (wall)'] = r.checkpoint.verifyMs;
    out['checkpoint.verify'] = r.checkpoint.verifyCpuMs;
    if (r.checkpoint.runFill !== undefined) {
      out['checkpoint.runFill'] = r.checkpoint.runFill.cpuMs;
      out['checkpoint.runFill small (1: yes)'] = r.checkpoint.runFill.smallFromBytes >= 0 ? 1 : 0;
    }
  }
  db.close();
  process.stdout.write(JSON.stringify({ ...out, ...parts }));
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') {
    if (process.argv[3] === 'build')
      return writeBenchStore(await kvHere(), process.argv[4], Number(process.argv[5]), 700);
    if (process.argv[3] === 'write-and-die')
      return writeAndDie(await kvHere(), process.argv[4], Number(process.argv[5]));
    return timedOpen(process.argv[4], process.argv[5], process.argv[6] === 'full');
  }
  const a = path.resolve(arg('a', ''));
  const b = path.resolve(arg('b', packageRoot));
  if (arg('a', '') === '') throw new Error('--a <root of build A> is required');
  const keys = Number(arg('keys', '1000000'));
  const rounds = Number(arg('rounds', '6'));
  const full = flag('full');
  const kill = flag('kill');
  const pauseMs = Number(arg('pause-ms', '0'));
  const me = fileURLToPath(import.meta.url);
  const run = (...args: string[]): string =>
    execFileSync(process.execPath, [me, '--child', ...args], { encoding: 'utf8', maxBuffer: 1 << 22 });
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'open-parts-'));
  const file = path.join(dir, 'store');
  try {
    run('build', file, String(keys));
    if (kill) {
      try {
        run('write-and-die', file, String(keys));
      } catch {
        // killed, as meant
      }
      copyFileSync(file, `${file}.killed`);
    }
    const runs: { a: Parts[]; b: Parts[] } = { a: [], b: [] };
    const loads: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const order: Array<'a' | 'b'> = round % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
      for (const which of order) {
        if (kill) copyFileSync(`${file}.killed`, file);
        if (pauseMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pauseMs);
        runs[which].push(JSON.parse(run('open', which === 'a' ? a : b, file, full ? 'full' : 'clean')) as Parts);
      }
      loads.push(loadavg()[0]);
    }
    console.log(
      `open-parts, ${keys} keys, ${full ? "recovery: 'full'" : kill ? 'reopen after a kill (checkpoint and a tail)' : 'clean reopen (checkpoint)'}, ${rounds} rounds alternated${pauseMs > 0 ? `, each open after ${pauseMs} ms of nothing` : ''}; ` +
        `A ${a}, B ${b}; load average ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}`,
    );
    console.log('ms (median; CPU unless "wall")'.padEnd(44) + 'A'.padStart(9) + 'B'.padStart(9));
    const names = [...new Set([...runs.a, ...runs.b].flatMap((p) => Object.keys(p)))];
    for (const name of names) {
      const col = (ps: Parts[]): string => {
        const xs = ps.map((p) => p[name]).filter((x) => x !== undefined);
        return xs.length === 0 ? '-'.padStart(9) : median(xs).toFixed(2).padStart(9);
      };
      console.log(name.padEnd(44) + col(runs.a) + col(runs.b));
    }
    for (const which of ['a', 'b'] as const)
      console.log(
        `${which.toUpperCase()} open wall by round: ${runs[which].map((p) => p['open (wall)'].toFixed(1)).join(', ')} ms`,
      );
    const paired = (key: string): number => median(runs.a.map((p, i) => runs.b[i][key] / p[key]));
    console.log(`paired B/A: open CPU ${paired('open').toFixed(3)}, open wall ${paired('open (wall)').toFixed(3)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
