/**
 * Worker of test/kv/kv-snapshot-death.test.ts: attaches to the store, takes three snapshots and
 * leaves a range iterator unfinished (a fourth, implicit snapshot), reads through each, posts
 * 'held', then, told to, ends as `end` says without closing anything: 'terminate' (it waits for the test
 * to terminate it), 'throw', 'exit' (process.exit) or 'return'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

const { handle, end } = workerData as { handle: KvHandle; end: 'terminate' | 'throw' | 'exit' | 'return' };
const db = attach(handle);
const kept: unknown[] = [];
let sum = 0;
for (let i = 0; i < 3; i++) {
  const snap = db.snapshot();
  sum += snap.get('large')?.length ?? 0;
  kept.push(snap);
}
const it = db.range()[Symbol.iterator]();
sum += it.next().done === true ? 0 : 1;
kept.push(it);
parentPort!.postMessage({ held: db.stats().snapshots, sum });
// Ends when the test says so (or is terminated meanwhile): the test first writes what the snapshots hold back.
parentPort!.once('message', () => {
  parentPort!.close();
  if (end === 'throw') throw new Error('the holder throws on purpose');
  if (end === 'exit') process.exit(0);
});
