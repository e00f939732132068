/**
 * Worker for the snapshot and visibility tests (test/kv/kv-batch-visibility.test.ts and the
 * other kv-mvcc tests): attaches to a shared store and plays one role until the main thread
 * sets the stop word (control[1]), after a barrier (control[0] counts arrivals; every role
 * starts together). Posts its counts.
 *
 * Roles
 *   batch-writer  loops db.batch([...keys].map(put version n)): every key of batch n holds n
 *                 (an 8-byte value: u32 n, u32 n ^ 0x5a5a5a5a, so a torn value is told apart)
 *   pair-reader   loops get(first key) then get(last key): batches publish in key order, so a
 *                 reader that sees the first key at n and then the last key below n saw part
 *                 of a batch (counted as `partial`); also in read() with getView
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

export interface MvccWorkerData {
  handle: KvHandle;
  role: 'batch-writer' | 'pair-reader';
  control: SharedArrayBuffer;
  parties: number;
  keys: number;
}

export interface MvccWorkerResult {
  ops: number;
  partial: number;
  torn: number;
  detail: string[];
}

const data = workerData as MvccWorkerData;
const db = attach(data.handle);
const control = new Int32Array(data.control);
const keyName = (i: number): string => `k${String(i).padStart(4, '0')}`;
const result: MvccWorkerResult = { ops: 0, partial: 0, torn: 0, detail: [] };

function valueOf(n: number): Uint8Array {
  const v = new Uint8Array(8);
  const dv = new DataView(v.buffer);
  dv.setUint32(0, n, true);
  dv.setUint32(4, (n ^ 0x5a5a5a5a) >>> 0, true);
  return v;
}

/** The version a value holds, or -1 for absent; a torn value counts and reads as -2. */
function versionOf(v: Uint8Array | undefined): number {
  if (v === undefined) return -1;
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const n = dv.getUint32(0, true);
  if (v.byteLength !== 8 || dv.getUint32(4, true) !== (n ^ 0x5a5a5a5a) >>> 0) {
    result.torn++;
    return -2;
  }
  return n;
}

function note(s: string): void {
  if (result.detail.length < 5) result.detail.push(s);
}

const stopped = (): boolean => Atomics.load(control, 1) !== 0;

Atomics.add(control, 0, 1);
Atomics.notify(control, 0);
for (let seen = Atomics.load(control, 0); seen < data.parties; seen = Atomics.load(control, 0))
  Atomics.wait(control, 0, seen, 10);

if (data.role === 'batch-writer') {
  const names = Array.from({ length: data.keys }, (_, i) => keyName(i));
  for (let n = 1; !stopped(); n++) {
    const value = valueOf(n);
    db.batch(names.map((key) => ({ type: 'put' as const, key, value })));
    result.ops++;
  }
} else {
  const first = keyName(0);
  const last = keyName(data.keys - 1);
  while (!stopped()) {
    for (let i = 0; i < 100; i++) {
      const a = versionOf(db.get(first));
      const b = versionOf(db.get(last));
      if (b < a) {
        result.partial++;
        note(`get: ${first} at ${a}, then ${last} at ${b}`);
      }
      const [c, d] = db.read(() => [versionOf(db.getView(first)), versionOf(db.getView(last))]);
      if (d < c) {
        result.partial++;
        note(`getView: ${first} at ${c}, then ${last} at ${d}`);
      }
      result.ops += 2;
    }
  }
}
db.close();
parentPort!.postMessage(result);
