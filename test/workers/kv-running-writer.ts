/**
 * Worker for test/kv/kv-compaction-running-writer.test.ts: attaches to a 'none' store and
 * overwrites keys k-0..k-(keys-1) round robin with increasing versions ("<n>:" + padding)
 * until flags[1] is set, pausing ~1 ms every `burst` puts so the store does not fill faster
 * than the main thread compacts. Its records become durable only when its open segment fills
 * (the writer commits as it leaves a segment) or when another thread's compaction flushes
 * them. After each put returns it raises published[i] to that version. flags[0]: rounds done.
 * Posts how many puts it made.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';

interface Data {
  handle: KvHandle;
  flags: SharedArrayBuffer;
  published: SharedArrayBuffer;
  keys: number;
  burst: number;
  valueBytes: number;
}
const { handle, flags, published, keys, burst, valueBytes } = workerData as Data;
const f = new Int32Array(flags);
const pub = new Int32Array(published);
const db = attach(handle);
const pause = new Int32Array(new SharedArrayBuffer(4));
let puts = 0;
for (let n = 1; Atomics.load(f, 1) === 0; n++) {
  for (let i = 0; i < keys; i++) {
    const head = `${n}:`;
    db.put(`k-${i}`, head + 'x'.repeat(valueBytes - head.length));
    Atomics.store(pub, i, n);
    if (++puts % burst === 0) Atomics.wait(pause, 0, 0, 1);
  }
  Atomics.store(f, 0, n);
}
db.close();
parentPort!.postMessage(puts);
