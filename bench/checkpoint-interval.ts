/**
 * The background checkpoints' interval (checkpointEvery) on one store, a setting per child:
 * what the checkpoints cost sustained writes (write amplification: the log plus the checkpoints'
 * bytes over the log) and what they save an open after a kill (the tail it replays).
 *
 * The store: `--keys` random 16-byte keys, 100-byte values, binary encodings, in /dev/shm, built
 * once and copied for each setting. A child opens the copy with the setting, overwrites random
 * keys from the opener's own thread ('none': the log is the same), a batch per turn of the event
 * loop so that the background checkpoints run as they do in an application, until `--log` MiB of
 * log were written and the log after the last checkpoint is one segment short of the next one
 * being due (the longest tail the setting leaves), and is killed (SIGKILL). Fresh processes then
 * open it with the checkpoint and with recovery: 'full' (alternated, `--rounds` each): CPU of
 * open(), and the paired ratio.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/checkpoint-interval.js [--keys 1000000] [--log 512] [--rounds 3]
 *
 * Settings: checkpointEvery 64 MiB (the old default) and the default (64 MiB or twice the next
 * checkpoint's size, whichever is more). The load average is printed with the figures.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as kv from '../src/kv/index.js';
import { open } from '../src/kv/index.js';
import { mulberry32 } from '../src/device/sim-media.js';
import { median } from './ab-report.js';
import { arg } from './args.js';
import { timedReopen } from './bench-store.js';

const VALUE = new Uint8Array(100).fill(7);
const BIN = { keyEncoding: 'binary', valueEncoding: 'binary' } as const;
const SELF = fileURLToPath(import.meta.url);
const SEGMENT = 2 * 2 ** 20;
const BATCH = 2000;

function keysOf(n: number): Uint8Array[] {
  const r = mulberry32(42);
  return Array.from({ length: n }, () => new Uint8Array(16).map(() => Math.floor(r() * 256)));
}

/** The store's internals the bench reads (segments opened by every handle, the last checkpoint's mark). */
interface Internals {
  i32: Int32Array;
  checkpointMark: number;
  background: unknown;
  checkpointDueSegments(): number;
}
const SEGMENTS_OPENED = 15; // store.ts

function child(...args: string[]): string {
  return execFileSync(process.execPath, [SELF, '--child', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
}

async function write(file: string, keys: number, every: string, logMiB: number): Promise<void> {
  const db = open(file, {
    durability: 'none',
    checkpoint: false,
    ...(every === 'default' ? {} : { checkpointEvery: Number(every) }),
    ...BIN,
  });
  const s = db as unknown as Internals;
  const all = keysOf(keys);
  const r = mulberry32(5);
  const opened0 = Atomics.load(s.i32, SEGMENTS_OPENED);
  let checkpointBytes = 0;
  let last = db.lastCheckpoint;
  const dues: number[] = [];
  await new Promise<void>((resolve) => {
    const turn = (): void => {
      for (let i = 0; i < BATCH; i++) db.put(all[Math.floor(r() * keys)], VALUE);
      if (db.lastCheckpoint !== last) {
        last = db.lastCheckpoint;
        if (last !== undefined && 'bytes' in last) checkpointBytes += last.bytes;
        dues.push(s.checkpointDueSegments());
      }
      const opened = Atomics.load(s.i32, SEGMENTS_OPENED);
      const written = (opened - opened0) * SEGMENT;
      const tail = opened - s.checkpointMark;
      if (written >= logMiB * 2 ** 20 && s.background === undefined && tail >= s.checkpointDueSegments() - 1) {
        const logBytes = written;
        process.stdout.write(
          JSON.stringify({
            logBytes,
            checkpoints: db.checkpointsTaken,
            checkpointBytes,
            dueMiB: (s.checkpointDueSegments() * SEGMENT) / 2 ** 20,
            tailMiB: (tail * SEGMENT) / 2 ** 20,
          }),
        );
        resolve();
        return;
      }
      setImmediate(turn);
    };
    setImmediate(turn);
  });
  process.kill(process.pid, 'SIGKILL');
}

function reopen(file: string, mode: string): void {
  const { wallMs, cpuMs, recovery: r } = timedReopen(kv, file, mode === 'full');
  process.stdout.write(
    JSON.stringify({
      wallMs,
      cpuMs,
      loaded: r.checkpoint?.loaded !== undefined,
      tail: r.checkpoint?.tailEntries ?? 0,
    }),
  );
}

function main(): void {
  const keys = Number(arg('keys', '1000000'));
  const logMiB = Number(arg('log', '512'));
  const rounds = Number(arg('rounds', '3'));
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ckpt-interval-'));
  const built = path.join(dir, 'built');
  const file = path.join(dir, 'store');
  const load = (): string =>
    loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  try {
    child('build', built, String(keys), '0', '0');
    console.log(`checkpoint interval, ${keys} keys, ${logMiB} MiB of overwrites each; load average ${load()}`);
    for (const every of [String(64 * 2 ** 20), 'default']) {
      execFileSync('cp', ['--sparse=always', built, file]); // sparse: the file's holes stay holes
      let w = '';
      try {
        child('write', file, String(keys), every, String(logMiB));
      } catch (e) {
        const err = e as { signal?: string; stdout?: string };
        if (err.signal !== 'SIGKILL') throw e;
        w = err.stdout ?? '';
      }
      const out = JSON.parse(w) as {
        logBytes: number;
        checkpoints: number;
        checkpointBytes: number;
        dueMiB: number;
        tailMiB: number;
      };
      type Open = { wallMs: number; cpuMs: number; loaded: boolean; tail: number };
      const full: Open[] = [];
      const cp: Open[] = [];
      for (let round = 0; round < rounds; round++) {
        full.push(JSON.parse(child('open', file, String(keys), 'full', '0')) as Open);
        cp.push(JSON.parse(child('open', file, String(keys), 'checkpoint', '0')) as Open);
      }
      const name = every === 'default' ? 'default' : `${Number(every) / 2 ** 20} MiB`;
      console.log(
        `checkpointEvery ${name}: ${(out.logBytes / 2 ** 20).toFixed(0)} MiB of log, ${out.checkpoints} checkpoints of ${(out.checkpointBytes / 2 ** 20).toFixed(0)} MiB in all, write amplification ${((out.logBytes + out.checkpointBytes) / out.logBytes).toFixed(2)}; interval at the end ${out.dueMiB} MiB; killed with ${out.tailMiB} MiB of log after the last checkpoint (${cp.every((o) => o.loaded) ? 'loaded' : 'NOT always loaded'}, tail ${median(cp.map((o) => o.tail))} entries): open CPU ${median(cp.map((o) => o.cpuMs)).toFixed(0)} ms, full scan ${median(full.map((o) => o.cpuMs)).toFixed(0)} ms, paired ${median(cp.map((o, i) => o.cpuMs / full[i].cpuMs)).toFixed(3)}; load average ${load()}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [, , , mode, file, keys, a, b] = process.argv;
  if (mode === 'build') {
    const n = Number(keys);
    const db = open(file, {
      size: Math.max(2 ** 30, Math.ceil((n * 2000) / SEGMENT) * SEGMENT),
      durability: 'none',
      checkpoint: false,
      ...BIN,
    });
    for (const k of keysOf(n)) db.put(k, VALUE);
    db.close();
  } else if (mode === 'write') await write(file, Number(keys), a, Number(b));
  else reopen(file, a);
} else main();
