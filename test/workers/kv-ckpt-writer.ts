/**
 * Worker for test/kv/kv-checkpoint-running.test.ts: attaches to a utf8 store and writes random
 * puts (now and then a large value), deletes and batches over a key space shared with the other
 * writers, seeded, until flags[0] is set, pausing ~1 ms every `burst` operations. flags[1 + i]:
 * operations done by writer i. Posts how many it made. With `compact`, it compacts instead
 * (maxLiveRatio 0.7, every ~2 ms) and posts how many compactions it ran and the segments they freed.
 * With `checkpointOps`, a writer also takes a checkpoint every that many operations.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { rng } from '../helpers/seed.js';

interface Data {
  handle: KvHandle;
  flags: SharedArrayBuffer;
  index: number;
  seed: number;
  keySpace: number;
  burst: number;
  compact?: boolean;
  /** take a checkpoint (checkpoint() on this handle) every this many operations */
  checkpointOps?: number;
}
const { handle, flags, index, seed, keySpace, burst, compact, checkpointOps } = workerData as Data;
const f = new Int32Array(flags);
const r = rng(seed);
const db = attach<string, string>(handle);
const pause = new Int32Array(new SharedArrayBuffer(4));
let ops = 0;
let freed = 0;
while (compact === true && Atomics.load(f, 0) === 0) {
  freed += db.compact({ maxLiveRatio: 0.7 }).segmentsFreed;
  Atomics.store(f, 1 + index, ++ops);
  Atomics.wait(pause, 0, 0, 2);
}
while (compact !== true && Atomics.load(f, 0) === 0) {
  const key = `k${Math.floor(r() * keySpace)}`;
  const x = r();
  if (x < 0.6) {
    const large = r() < 0.003;
    db.put(
      key,
      large
        ? 'L'.repeat(17000 + Math.floor(r() * 3000)) + ops
        : `w${index}-${ops}-${'x'.repeat(100 + Math.floor(r() * 700))}`,
    );
  } else if (x < 0.8) db.delete(key);
  else
    db.batch(
      Array.from({ length: 1 + Math.floor(r() * 4) }, (_, j) =>
        r() < 0.8
          ? { type: 'put' as const, key: `${key}.${j}`, value: `b${index}-${ops}.${j}` }
          : { type: 'del' as const, key: `${key}.${j}` },
      ),
    );
  ops++;
  if (checkpointOps !== undefined && ops % checkpointOps === 0)
    try {
      db.checkpoint();
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOSPC') throw e; // no room for one now: nothing written
    }
  Atomics.store(f, 1 + index, ops);
  if (ops % burst === 0) Atomics.wait(pause, 0, 0, 1);
}
db.close();
parentPort!.postMessage(compact === true ? [ops, freed] : ops);
