/**
 * Worker of test/kv/kv-growth.test.ts: attaches to a growable store and writes its own keys
 * ("w<worker>/<n>", values of a length and byte pattern derived from (worker, n)) while other
 * workers do the same, so the store grows under all of them. Between writes it re-reads a
 * random earlier key of its own, and inside one read() it holds zero-copy views of its first
 * keys across the whole run's growths and checks them at the end. Posts how many keys it
 * wrote and how many reads were wrong.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attach, type KvHandle } from '../../src/kv/index.js';
import { rng } from '../helpers/seed.js';
import { growValue } from '../helpers/grow.js';

interface Data {
  handle: KvHandle;
  worker: number;
  seed: number;
  keys: number;
}
const { handle, worker, seed, keys } = workerData as Data;

const rand = rng(seed + worker * 7919);
const db = attach(handle);
let wrong = 0;
let written = 0;
try {
  const key = (n: number): Buffer => Buffer.from(`w${worker}/${n}`);
  // Views of the first keys, taken before the growths and held across them.
  for (let n = 0; n < 8; n++) db.put(key(n), growValue(worker, n));
  written = 8;
  db.read(() => {
    const views = Array.from({ length: 8 }, (_, n) => db.getView(key(n))!);
    for (let n = 8; n < keys; n++) {
      db.put(key(n), growValue(worker, n));
      written = n + 1;
      const back = Math.floor(rand() * written);
      const got = db.get(key(back)) as Uint8Array | undefined;
      if (got === undefined || !Buffer.from(got).equals(growValue(worker, back))) wrong++;
    }
    views.forEach((v, n) => {
      if (!Buffer.from(v).equals(growValue(worker, n))) wrong++;
    });
  });
} finally {
  db.close();
}
parentPort!.postMessage({ written, wrong });
