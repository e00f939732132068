/**
 * Worker of test/kv/kv-large-store.test.ts and test/kv/kv-growth.test.ts: attaches to the store
 * and reads the given keys; posts how many were missing or wrong.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

const { handle, expect } = workerData as { handle: KvHandle; expect: Array<[Uint8Array, Uint8Array]> };
const db = attach(handle);
let bad = 0;
try {
  for (const [key, value] of expect) {
    const got = db.get(Buffer.from(key)) as Uint8Array | undefined;
    if (got === undefined || !Buffer.from(got).equals(Buffer.from(value))) bad++;
  }
} finally {
  db.close();
}
parentPort!.postMessage(bad);
