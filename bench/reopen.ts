/**
 * Reopen with an index checkpoint vs the full scan, in fresh node processes on one store:
 * each round opens with recovery: 'full', opens again as a clean reopen (the checkpoint the
 * previous close wrote), then a process overwrites 10% of the keys ('sync') and is killed
 * (SIGKILL, no close) and the store is opened again (the checkpoint plus a tail of 10% of the
 * writes). Prints per kind the median wall and CPU time of open() and of recovery's phases,
 * and the paired ratios to the full scan of the same round.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/reopen.js [--keys 1000000] [--rounds 3] [--pause-ms 4000]
 *
 * --pause-ms: each round also reopens clean once more after that many ms of nothing (row
 * "pause"), as a user's process opens after a quiet spell: on a virtual machine that reports
 * free memory to its host, fresh memory then costs more to fault in (fresh-huge-pages.ts).
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

const VALUE = new Uint8Array(100).fill(7);
const BIN = { keyEncoding: 'binary', valueEncoding: 'binary' } as const;

interface Timing {
  wallMs: number;
  cpuMs: number;
  scanCpu: number;
  sortCpu: number;
  loadCpu: number;
  tail: number;
  /** checking the records the checkpoint covers (wall) */
  verifyMs: number;
  /** the same in CPU time (both threads), and reading the checkpoint */
  verifyCpu: number;
  readCpu: number;
  loaded: boolean;
  /** the index came from the checkpoint's tree image, not bulk-loaded from its columns */
  image: boolean;
  /** the image run's populate on the check's thread: CPU ms, and whether it went on in 4 KiB pages (recovery.checkpoint.runFill) */
  fillCpu: number;
  fillSmall: boolean;
  keys: number;
  /** close() after it, which writes the next checkpoint */
  closeCpu: number;
  /** open()'s wall time outside recovery (recovery.openMs) and recovery's listing phase (phasesMs.list) */
  deviceMs: number;
  spaceMs: number;
  listMs: number;
  setupMs: number;
  mapMs: number;
  /** the space's volatile structures (openMs.structures) and recovery's segment estimate after the load (phasesMs.estimate) */
  structuresMs: number;
  estimateMs: number;
  /** wall ms of open() that no named phase accounts for */
  otherMs: number;
}

function keysOf(n: number): Uint8Array[] {
  const r = mulberry32(42);
  return Array.from({ length: n }, () => new Uint8Array(16).map(() => Math.floor(r() * 256)));
}

function child(...args: string[]): string {
  return execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
}

function runChild(mode: string, file: string, keys: number, round: number): void {
  const all = keysOf(keys);
  if (mode === 'build') {
    const size = Math.max(256 * 2 ** 20, Math.ceil((keys * 700) / 2 ** 21) * 2 ** 21);
    const db = open(file, { size, durability: 'none', checkpoint: true, ...BIN });
    const r = mulberry32(1);
    for (const k of all) db.put(k, VALUE);
    for (let i = 0; i < keys / 2; i++) db.put(all[Math.floor(r() * keys)], VALUE);
    db.close();
  } else if (mode === 'write-and-die') {
    const db = open(file, { durability: 'sync', ...BIN });
    const r = mulberry32(100 + round);
    for (let i = 0; i < keys / 10; i++) db.put(all[Math.floor(r() * keys)], VALUE);
    process.kill(process.pid, 'SIGKILL');
  } else {
    const t = performance.now();
    const c0 = process.cpuUsage();
    const db = open(file, {
      durability: 'none',
      checkpoint: true,
      ...BIN,
      ...(mode === 'full' ? { recovery: 'full' as const } : {}),
    });
    const wallMs = performance.now() - t;
    const c = process.cpuUsage(c0);
    const r = db.recovery!;
    const c1 = process.cpuUsage();
    db.close();
    const cc = process.cpuUsage(c1);
    const out: Timing = {
      wallMs,
      cpuMs: (c.user + c.system) / 1000,
      scanCpu: r.phasesCpuMs.scan,
      sortCpu: r.phasesCpuMs.sort,
      loadCpu: r.phasesCpuMs.load,
      tail: r.checkpoint?.tailEntries ?? 0,
      verifyMs: r.checkpoint?.verifyMs ?? 0,
      verifyCpu: r.checkpoint?.verifyCpuMs ?? 0,
      readCpu: r.checkpoint?.readCpuMs ?? 0,
      loaded: r.checkpoint?.loaded !== undefined,
      image: r.checkpoint?.imageLoaded === true,
      fillCpu: r.checkpoint?.runFill?.cpuMs ?? 0,
      fillSmall: (r.checkpoint?.runFill?.smallFromBytes ?? -1) >= 0,
      keys: r.keys,
      closeCpu: (cc.user + cc.system) / 1000,
      deviceMs: r.openMs.device,
      spaceMs: r.openMs.space,
      listMs: r.phasesMs.list,
      setupMs: r.openMs.setup,
      mapMs: r.openMs.map,
      structuresMs: r.openMs.structures,
      estimateMs: r.phasesMs.estimate,
      otherMs:
        wallMs -
        (r.openMs.map +
          r.openMs.device +
          r.openMs.structures +
          r.openMs.space +
          r.openMs.setup +
          r.phasesMs.list +
          r.phasesMs.scan +
          r.phasesMs.sort +
          r.phasesMs.load +
          r.phasesMs.estimate),
    };
    process.stdout.write(JSON.stringify(out));
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main(): void {
  const keys = Number(arg('keys', '1000000'));
  const rounds = Number(arg('rounds', '3'));
  const pauseMs = Number(arg('pause-ms', '0'));
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'reopen-'));
  const file = path.join(dir, 'store');
  try {
    child('build', file, String(keys), '0');
    const runs: Record<'full' | 'clean' | 'pause' | 'kill', Timing[]> = { full: [], clean: [], pause: [], kill: [] };
    for (let round = 0; round < rounds; round++) {
      runs.full.push(JSON.parse(child('full', file, String(keys), String(round))) as Timing);
      runs.clean.push(JSON.parse(child('clean', file, String(keys), String(round))) as Timing);
      if (pauseMs > 0) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pauseMs);
        runs.pause.push(JSON.parse(child('clean', file, String(keys), String(round))) as Timing);
      }
      try {
        child('write-and-die', file, String(keys), String(round));
      } catch (e) {
        if ((e as { signal?: string }).signal !== 'SIGKILL') throw e;
      }
      runs.kill.push(JSON.parse(child('kill', file, String(keys), String(round))) as Timing);
    }
    console.log(
      `reopen, ${keys} keys, ${rounds} rounds in fresh processes${pauseMs > 0 ? `, pause ${pauseMs} ms before the "pause" row's clean reopen` : ''}; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    for (const kind of ['full', 'clean', 'pause', 'kill'] as const) {
      const rs = runs[kind];
      if (rs.length === 0) continue;
      const ratio = (f: 'wallMs' | 'cpuMs'): string => median(rs.map((r, i) => r[f] / runs.full[i][f])).toFixed(3);
      console.log(
        `${kind.padEnd(5)} checkpoint ${rs.every((r) => r.loaded) ? 'loaded' : rs.some((r) => r.loaded) ? 'SOMETIMES' : 'no'}${rs.every((r) => r.image) ? ' (tree image)' : rs.some((r) => r.image) ? ' (tree image SOMETIMES)' : ''}, tail ${median(rs.map((r) => r.tail))} entries: wall ${median(rs.map((r) => r.wallMs)).toFixed(0)} ms, CPU ${median(rs.map((r) => r.cpuMs)).toFixed(0)} ms (scan or checkpoint read and record check ${median(rs.map((r) => r.scanCpu)).toFixed(0)}, of which the checkpoint read ${median(rs.map((r) => r.readCpu)).toFixed(0)} and the check ${median(rs.map((r) => r.verifyCpu)).toFixed(0)} (${median(rs.map((r) => r.verifyMs)).toFixed(0)} wall), sort or merge ${median(rs.map((r) => r.sortCpu)).toFixed(0)}, bulk load or image ${median(rs.map((r) => r.loadCpu)).toFixed(0)}); close after it (a checkpoint written, or the loaded one kept) CPU ${median(rs.map((r) => r.closeCpu)).toFixed(0)} ms; / full scan paired: wall ${ratio('wallMs')}, CPU ${ratio('cpuMs')}; each round's wall ${rs.map((r) => r.wallMs.toFixed(0)).join(', ')} ms`,
      );
      const m = (f: keyof Timing): string => median(rs.map((r) => r[f] as number)).toFixed(1);
      if (rs.some((r) => r.fillCpu > 0))
        console.log(
          `      image run populated on the check's thread: CPU ${rs.map((r) => r.fillCpu.toFixed(1)).join(', ')} ms, went on in 4 KiB pages in ${rs.filter((r) => r.fillSmall).length} of ${rs.length}`,
        );
      console.log(
        `      wall ms outside the log's phases: map ${m('mapMs')}, device ${m('deviceMs')}, structures ${m('structuresMs')}, space ${m('spaceMs')}, segment and checkpoint list ${m('listMs')}, segment estimate ${m('estimateMs')}, setup after recovery ${m('setupMs')}, unaccounted ${m('otherMs')}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [, , , mode, file, keys, round] = process.argv;
  runChild(mode, file, Number(keys), Number(round));
} else main();
