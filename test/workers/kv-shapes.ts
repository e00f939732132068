/**
 * Worker for test/kv/kv-structures.test.ts: attaches to a shared msgpack store and, after a
 * barrier (every worker starts together), puts `count` values of its own shapes
 * (helpers/shapes.ts) under ['w', worker, j], reading after each put the next record of the
 * other worker it has not read yet, and at the end every record of the other worker (waiting
 * for it, bounded). Every read must decode to exactly the value its writer put: a record whose
 * shapes were saved by the other thread decodes only if the structures it names reached this
 * thread. Posts { read, mismatches, saved, conflicts } (structures.ts structuresStats).
 */
import { isDeepStrictEqual } from 'node:util';
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { shapeValue } from '../helpers/shapes.js';
import { structuresStats } from '../../src/kv/structures.js';

interface Data {
  handle: KvHandle;
  worker: number;
  other: number;
  barrier: SharedArrayBuffer;
  count: number;
  deadlineMs: number;
}
const { handle, worker, other, barrier, count, deadlineMs } = workerData as Data;
const db = attach(handle);
const arrived = new Int32Array(barrier);
Atomics.add(arrived, 0, 1);
Atomics.notify(arrived, 0);
for (let seen = Atomics.load(arrived, 0); seen < 2; seen = Atomics.load(arrived, 0)) Atomics.wait(arrived, 0, seen, 10);

const mismatches: string[] = [];
let read = 0;
const readNext = (): boolean => {
  const got: unknown = db.get(['w', other, read]);
  if (got === undefined) return false;
  if (!isDeepStrictEqual(got, shapeValue(other, read)))
    mismatches.push(`['w', ${other}, ${read}]: ${JSON.stringify(got)?.slice(0, 200)}`);
  read++;
  return true;
};
for (let j = 0; j < count; j++) {
  db.put(['w', worker, j], shapeValue(worker, j));
  readNext();
}
const deadline = Date.now() + deadlineMs;
while (read < count && Date.now() < deadline) if (!readNext()) Atomics.wait(arrived, 1, 0, 1);
db.close();
parentPort!.postMessage({ read, mismatches: mismatches.slice(0, 5), ...structuresStats });
