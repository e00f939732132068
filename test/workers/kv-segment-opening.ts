/**
 * Worker of test/kv/kv-segment-open-death.test.ts: attaches and writes until its first new
 * segment is being opened, stops there at `stage` (testHooks.segmentOpening: the extent is the
 * writer's, or the segment table lists it too, and the open-segment table does not name it
 * yet) and waits to be terminated. `deletes` non-empty: it deletes those keys of a full store,
 * whose deletes go through the priority writer (its segment from the reserve); else it puts
 * new keys through its own writer. progress (Int32): [0] 1 once stopped, [1] 1 if it ran out
 * of operations without stopping.
 */
import { workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { testHooks } from '../../src/test-break.js';

interface Data {
  handle: KvHandle;
  stage: 'allocated' | 'listed' | 'named';
  deletes: string[];
  progress: SharedArrayBuffer;
}
const { handle, stage, deletes, progress } = workerData as Data;
const p = new Int32Array(progress);
const db = attach(handle);
testHooks.segmentOpening = (at) => {
  if (at !== stage) return;
  Atomics.store(p, 0, 1);
  for (;;) Atomics.wait(p, 0, 1, 5); // terminate() ends the thread between two waits
};
if (deletes.length > 0) for (const k of deletes) db.delete(k);
else for (let i = 0; i < 100_000; i++) db.put(`w${i}`, 'v'.repeat(200));
Atomics.store(p, 1, 1);
