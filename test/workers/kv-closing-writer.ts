/**
 * Worker of test/kv/kv-close-misuse.test.ts: puts w<worker>-0, -1, ... ('sync': durable on
 * return) and counts each acknowledged put in acked[worker], until the store is closed under
 * it; posts the error code that stopped it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

const { handle, worker, acked } = workerData as { handle: KvHandle; worker: number; acked: SharedArrayBuffer };
const counts = new Int32Array(acked);
const db = attach(handle);
try {
  for (let i = 0; ; i++) {
    db.put(`w${worker}-${i}`, `value ${i} of worker ${worker}`);
    Atomics.store(counts, worker, i + 1);
  }
} catch (e) {
  parentPort!.postMessage((e as { code?: string }).code ?? String(e));
}
