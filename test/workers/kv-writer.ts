/**
 * Worker for test/kv/kv-workers.test.ts: attaches to a shared store and runs a seeded random
 * mix of puts, deletes, batches and gets on a small overlapping key set. Every value written
 * is "<worker>:<n>:" padded with a byte pattern derived from (worker, n), so a reader can
 * tell a torn or foreign value. Posts the last operation it made on each key, in its own
 * program order, and how many reads it checked.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { rng } from '../helpers/seed.js';

interface Data {
  handle: KvHandle;
  worker: number;
  workers: number;
  barrier: SharedArrayBuffer;
  ops: number;
  seed: number;
  keys: number;
  putsOnly?: boolean;
  durationMs?: number;
  bigValues?: boolean;
}
const { handle, worker, workers, barrier, ops, seed, keys, putsOnly, durationMs, bigValues } = workerData as Data;
const extra = bigValues === true ? 2000 : 0; // bigger values roll segments over, for compaction tests
const rand = rng(seed + worker * 7919);
const db = attach(handle);
const td = new TextDecoder();

export function valueOf(w: number, n: number, len: number): string {
  const head = `${w}:${n}:`;
  return head + String.fromCharCode(97 + ((w * 31 + n) % 26)).repeat(Math.max(0, len - head.length));
}

function checkValue(bytes: Uint8Array): void {
  const s = td.decode(bytes);
  const [w, n] = s.split(':').map(Number);
  if (s !== valueOf(w, n, s.length)) throw new Error(`worker ${worker}: torn or foreign value ${s.slice(0, 60)}`);
}

// Start together: worker start-up takes longer than a whole run, so without this they barely overlap.
const arrived = new Int32Array(barrier);
Atomics.add(arrived, 0, 1);
Atomics.notify(arrived, 0);
for (let seen = Atomics.load(arrived, 0); seen < workers; seen = Atomics.load(arrived, 0))
  Atomics.wait(arrived, 0, seen, 10);

const last: Record<string, { n: number; value: string | null }> = {};
let reads = 0;
// durationMs: run until a deadline instead of a count, so all workers are still contending at the end.
const deadline = durationMs === undefined ? Infinity : performance.now() + durationMs;
for (let n = 0; durationMs === undefined ? n < ops : performance.now() < deadline; n++) {
  const key = `k${Math.floor(rand() * keys)}`;
  const r = putsOnly === true ? 0 : rand();
  if (r < 0.45) {
    const v = valueOf(worker, n, 8 + extra + Math.floor(rand() * (120 + extra)));
    db.put(key, v);
    last[key] = { n, value: v };
  } else if (r < 0.6) {
    db.delete(key);
    last[key] = { n, value: null };
  } else if (r < 0.75) {
    const k2 = `k${Math.floor(rand() * keys)}`;
    const v = valueOf(worker, n, 8 + Math.floor(rand() * 40));
    db.batch([
      { type: 'put', key, value: v },
      { type: 'del', key: k2 },
    ]);
    last[k2] = { n, value: null };
    if (k2 !== key) last[key] = { n, value: v };
    else last[key] = { n, value: null }; // later op on the same key wins
  } else {
    const got = db.get(key);
    if (got !== undefined) checkValue(got);
    db.read(() => {
      const view = db.getView(key);
      if (view !== undefined) checkValue(view);
    });
    reads++;
  }
}
const lostWakeups = db.stats().lostWakeups;
db.close();
parentPort!.postMessage({ last, reads, lostWakeups });
