/**
 * Worker for test/kv/kv-space-short-workers.test.ts: attaches to a shared store, puts one key
 * (its own: `key`, value `bytes` bytes of `fill`), closes its handle and ends. Posts 'done', or the error's code and message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

interface Data {
  handle: KvHandle;
  key: string;
  bytes: number;
  fill: number;
}
const { handle, key, bytes, fill } = workerData as Data;
const db = attach(handle);
try {
  db.put(key, new Uint8Array(bytes).fill(fill));
  parentPort!.postMessage('done');
} catch (e) {
  parentPort!.postMessage(`${(e as { code?: string }).code ?? 'error'}: ${(e as Error).message}`);
} finally {
  db.close();
}
