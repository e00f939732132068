/**
 * Worker of test/kv/kv-reap-checks.test.ts: attaches to the store and writes one batch over keys
 * that already hold values. Once the batch's record is sealed and committed with every key held
 * (testHooks.batchSealed), it zeroes the value words of the held entries of `bad` (index
 * entries that name no entry of their key: offset 0 is the superblock), sets progress[0] to 1
 * and waits to be terminated: a dead writer whose sealed record the reaper rolls forward over
 * entries whose old values are not entries.
 */
import { workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { testHooks } from '../../src/test-break.js';
import { Lay } from '../../src/index/nodes.js';

interface Data {
  handle: KvHandle;
  progress: SharedArrayBuffer;
  puts: Array<[string, string]>;
  /** indexes into puts (ascending key order: the batch holds its keys in that order) whose entries are spoilt */
  bad: number[];
}
const { handle, progress, puts, bad } = workerData as Data;
const p = new Int32Array(progress);
const db = attach(handle);
testHooks.batchSealed = (arena, leaves) => {
  for (const i of bad) {
    arena[leaves[i] + Lay.W_VALUE_LO] = 0;
    arena[leaves[i] + Lay.W_VALUE_HI] = 0;
  }
  Atomics.store(p, 0, 1);
  for (;;) Atomics.wait(p, 0, 1, 5); // terminate() ends the thread between two waits
};
db.batch(puts.map(([key, value]) => ({ type: 'put' as const, key, value })));
