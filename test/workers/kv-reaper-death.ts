/**
 * Worker of test/kv/kv-reaper-death.test.ts (the writer also of kv-reap-closed-handle), in one
 * of two roles.
 *   writer: writes one batch (inside read(), pinned, when `pinned`); once its record is sealed and committed with every key held and
 *     none published (testHooks.batchSealed), sets progress[0] to 1 and waits to be
 *     terminated: a dead writer whose record the reaper must roll forward.
 *   reaper: attached before that death; on its message 'go' makes one operation, whose start
 *     reaps the dead writer. The roll-forward stops at `stop` (testHooks.reapRollForward),
 *     sets progress[1] to 1 and waits to be terminated: a reaper that dies in the middle. If
 *     the roll-forward never reaches `stop`, progress[1] becomes 2.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { testHooks } from '../../src/test-break.js';

interface Data {
  role: 'writer' | 'reaper';
  handle: KvHandle;
  progress: SharedArrayBuffer;
  ops?: Array<{ type: 'put'; key: string; value: string } | { type: 'del'; key: string }>;
  stop?: { stage: 'held' | 'opened' | 'finished'; done: number };
  probe?: string;
  pinned?: boolean;
}
const { role, handle, progress, ops, stop, probe, pinned } = workerData as Data;
const p = new Int32Array(progress);
const db = attach(handle);

function stay(word: number): never {
  Atomics.store(p, word, 1);
  for (;;) Atomics.wait(p, word, 1, 5); // terminate() ends the thread between two waits
}

if (role === 'writer') {
  testHooks.batchSealed = () => stay(0);
  if (pinned) db.read(() => db.batch(ops!));
  else db.batch(ops!);
} else {
  testHooks.reapRollForward = (stage, done) => {
    if (stage === stop!.stage && done === stop!.done) stay(1);
  };
  parentPort!.once('message', () => {
    db.get(probe!); // checkOpen reaps the dead writer
    Atomics.store(p, 1, 2);
  });
  parentPort!.postMessage('ready');
}
