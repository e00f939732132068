/**
 * Worker of test/kv/kv-close-misuse.test.ts: runs op 0, 1, 2, ... ('sync': durable on return)
 * over the keys w<worker>-<i>, and counts each acknowledged op in acked[worker], until the
 * store is closed under it; posts the error code that stopped it. Op i by i % 4 (closingOp):
 * a put of key i; a batch of keys i and i + 'b'; a transactionSync that reads key i - 1 and puts
 * key i; a delete of key i - 3 (a put, op i - 3).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

const { handle, worker, acked } = workerData as { handle: KvHandle; worker: number; acked: SharedArrayBuffer };
const counts = new Int32Array(acked);
const db = attach(handle);
const key = (i: number): string => `w${worker}-${i}`;
try {
  for (let i = 0; ; i++) {
    const value = `value ${i} of worker ${worker}`;
    switch (i % 4) {
      case 0:
        db.put(key(i), value);
        break;
      case 1:
        db.batch([
          { type: 'put', key: key(i), value },
          { type: 'put', key: `${key(i)}b`, value },
        ]);
        break;
      case 2:
        db.transactionSync((txn) => {
          txn.get(key(i - 1));
          txn.put(key(i), value);
        });
        break;
      default:
        db.delete(key(i - 3));
    }
    Atomics.store(counts, worker, i + 1);
  }
} catch (e) {
  parentPort!.postMessage((e as { code?: string }).code ?? String(e));
}
