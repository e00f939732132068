/**
 * Worker of test/kv/kv-growth-random.test.ts: attaches to a store that starts small and, with
 * the other worker, writes it past several growths with seeded random operations on its own
 * keys ("r<worker>/<n>"): puts of new keys, overwrites, deletes, batches of them, and some
 * large values (DAX objects). A key's value is randomValue(worker, n, version): the model is
 * the version of each key acknowledged last (0: deleted or never written). Between operations
 * it reads back a random key of its own and checks it against the model. Posts the model and
 * how many reads were wrong.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { rng } from '../helpers/seed.js';
import { growKey, randomValue } from '../helpers/grow.js';

interface Data {
  handle: KvHandle;
  worker: number;
  seed: number;
  ops: number;
}
const { handle, worker, seed, ops } = workerData as Data;

const rand = rng(seed ^ (worker * 0x9e3779b1));
const db = attach(handle);
const versions: number[] = []; // acknowledged version per key index (0: absent)
let next = 1; // versions are unique per worker: the value says which write it was
let wrong = 0;
const firstWrong: string[] = [];
const check = (n: number): void => {
  const got = db.get(growKey(worker, n)) as Uint8Array | undefined;
  const want = versions[n] === 0 ? undefined : randomValue(worker, n, versions[n]);
  const ok = want === undefined ? got === undefined : got !== undefined && Buffer.from(got).equals(want);
  if (!ok) {
    wrong++;
    if (firstWrong.length < 5)
      firstWrong.push(`r${worker}/${n} (version ${versions[n]}): got ${got?.length ?? 'none'}`);
  }
};
const existing = (): number => {
  for (let tries = 0; tries < 8 && versions.length > 0; tries++) {
    const n = Math.floor(rand() * versions.length);
    if (versions[n] !== 0) return n;
  }
  return -1;
};
try {
  for (let i = 0; i < ops; i++) {
    const r = rand();
    if (r < 0.55 || versions.length === 0) {
      const n = versions.length;
      const v = next++;
      db.put(growKey(worker, n), randomValue(worker, n, v));
      versions.push(v);
    } else if (r < 0.75) {
      const n = existing();
      if (n < 0) continue;
      const v = next++;
      db.put(growKey(worker, n), randomValue(worker, n, v));
      versions[n] = v;
    } else if (r < 0.9) {
      const n = existing();
      if (n < 0) continue;
      db.delete(growKey(worker, n));
      versions[n] = 0;
    } else {
      // a batch: new keys, overwrites and deletes in one record, acknowledged together
      const staged = new Map<number, number>();
      const batch: Array<{ type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }> = [];
      for (let k = 0; k < 2 + Math.floor(rand() * 6); k++) {
        const n = rand() < 0.5 || versions.length === 0 ? versions.length + staged.size : existing();
        if (n < 0 || staged.has(n)) continue;
        if (n < versions.length && rand() < 0.3) {
          batch.push({ type: 'del', key: growKey(worker, n) });
          staged.set(n, 0);
        } else {
          const v = next++;
          batch.push({ type: 'put', key: growKey(worker, n), value: randomValue(worker, n, v) });
          staged.set(n, v);
        }
      }
      db.batch(batch);
      for (const [n, v] of [...staged].sort((a, b) => a[0] - b[0])) {
        while (versions.length < n) versions.push(0);
        versions[n] = v;
      }
    }
    if (versions.length > 0) check(Math.floor(rand() * versions.length));
  }
  for (let n = 0; n < versions.length; n++) check(n);
} finally {
  db.close();
}
parentPort!.postMessage({ versions, wrong, firstWrong });
