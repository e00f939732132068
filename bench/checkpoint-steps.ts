/**
 * The steps of background checkpoints, each timed by the opener's thread's own CPU (addon
 * threadCpuMs: on a loaded machine the wall time of a step holds whatever ran meanwhile): per
 * round, `--puts` random overwrites, then one background checkpoint stepped to its end as the
 * event loop steps it (a step whose native work has not ended is looked at again in 1 ms). Prints
 * per round the steps, their CPU in all, the longest eight (step index: CPU ms) and with
 * `--all 1` every step's CPU in order (the walk's steps first, then the columns' copy, the body's
 * write, the header).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/checkpoint-steps.js [--keys 1000000] [--rounds 3] [--puts 20000] [--all 0]
 *
 * The store: random 16-byte keys, 100-byte values, binary encodings, in /dev/shm, removed at the end.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { open } from '../src/kv/index.js';
import { mulberry32 } from '../src/device/sim-media.js';
import { native } from '../src/native/addon.js';
import { arg } from './args.js';

const VALUE = new Uint8Array(100).fill(7);
const BIN = { keyEncoding: 'binary', valueEncoding: 'binary' } as const;
const sleep = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function main(): void {
  const keys = Number(arg('keys', '1000000'));
  const rounds = Number(arg('rounds', '3'));
  const puts = Number(arg('puts', '20000'));
  const all = arg('all', '0') === '1';
  const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ckpt-steps-'));
  try {
    const file = path.join(dir, 'store');
    const r = mulberry32(42);
    const key = (): Uint8Array => new Uint8Array(16).map(() => Math.floor(r() * 256));
    const size = Math.max(512 * 2 ** 20, Math.ceil((keys * 1400) / 2 ** 21) * 2 ** 21);
    const db = open(file, { size, durability: 'none', checkpoint: false, checkpointEvery: 0, ...BIN });
    const written: Uint8Array[] = [];
    for (let i = 0; i < keys; i++) {
      const k = key();
      written.push(k);
      db.put(k, VALUE);
    }
    const store = db as unknown as { backgroundCheckpointReady(): boolean };
    console.log(
      `background checkpoint steps, ${keys} keys, ${puts} puts before each; load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < puts; i++) db.put(written[Math.floor(r() * keys)], VALUE);
      db.startBackgroundCheckpoint();
      const steps: number[] = [];
      for (;;) {
        if (!store.backgroundCheckpointReady()) {
          sleep(1);
          continue;
        }
        const c = native().threadCpuMs();
        const more = db.stepBackgroundCheckpoint();
        steps.push(native().threadCpuMs() - c);
        if (!more) break;
      }
      const top = steps
        .map((ms, i) => [i, ms] as const)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([i, ms]) => `#${i}: ${ms.toFixed(1)}`);
      const total = steps.reduce((a, b) => a + b, 0);
      console.log(
        `round ${round}: ${steps.length} steps, ${total.toFixed(0)} ms CPU in all; longest ${top.join(', ')}`,
      );
      if (all) console.log(steps.map((ms) => ms.toFixed(1)).join(' '));
    }
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
