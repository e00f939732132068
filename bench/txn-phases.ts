/**
 * Where a transaction's time goes: the 4-read + 4-write transaction of txn.bench.ts taken
 * apart in one thread, each part timed in rounds alternated with the others (CPU ns per
 * transaction, median over rounds), beside the plain operations it is made of:
 *
 *   empty txn        transactionSync with an empty callback: the snapshot taken and released
 *   4 reads          a callback of 4 txn.get (read set, snapshot reads; nothing to commit)
 *   4 writes         a callback of 4 txn.put: buffering and the commit (locks, one record)
 *   4r+4w            the whole transaction
 *   4 get + 4 put    the same keys through db.get and db.put (no transaction)
 *   lmdb 4r+4w       lmdb-js transactionSync of the same, noSync (the peer)
 *
 *   npx tsc -p tsconfig.json && node dist/bench/txn-phases.js [--keys 20000] [--rounds 7]
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { open as lmdbOpen } from 'lmdb';
import { open } from '../src/kv/index.js';
import { packedKeys } from './bench-store.js';
import { arg } from './args.js';

const KEYS = Number(arg('keys', '20000'));
const ROUNDS = Number(arg('rounds', '7'));
const OPS = 4000;
const VALUE = new Uint8Array(100).fill(7);

const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'txn-phases-'));
try {
  const { key, pick } = await packedKeys(KEYS);
  const db = open(path.join(dir, 'dax'), {
    size: 256 * 2 ** 20,
    durability: 'none',
    keyEncoding: 'binary',
    valueEncoding: 'binary',
  });
  const lm = lmdbOpen<Uint8Array, Uint8Array>({
    path: path.join(dir, 'lmdb'),
    keyEncoding: 'binary',
    encoding: 'binary',
    noSync: true,
  });
  for (let i = 0; i < KEYS; i++) db.put(key(i), VALUE);
  await lm.transaction(() => {
    for (let i = 0; i < KEYS; i++) lm.put(key(i), VALUE);
  });
  let sink = 0;
  const parts: Record<string, () => void> = {
    'empty txn': () => db.transactionSync(() => undefined),
    '4 reads': () =>
      db.transactionSync((txn) => {
        for (let i = 0; i < 4; i++) sink += txn.get(pick())?.length ?? 0;
      }),
    '4 writes': () =>
      db.transactionSync((txn) => {
        for (let i = 0; i < 4; i++) txn.put(pick(), VALUE);
      }),
    '4r+4w': () =>
      db.transactionSync((txn) => {
        for (let i = 0; i < 4; i++) sink += txn.get(pick())?.length ?? 0;
        for (let i = 0; i < 4; i++) txn.put(pick(), VALUE);
      }),
    '4 get + 4 put': () => {
      for (let i = 0; i < 4; i++) sink += db.get(pick())?.length ?? 0;
      for (let i = 0; i < 4; i++) db.put(pick(), VALUE);
    },
    'lmdb 4r+4w': () =>
      lm.transactionSync(() => {
        for (let i = 0; i < 4; i++) sink += lm.get(pick())?.length ?? 0;
        for (let i = 0; i < 4; i++) lm.put(pick(), VALUE);
      }),
  };
  const names = Object.keys(parts);
  const ns: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (const n of names) for (let i = 0; i < OPS; i++) parts[n](); // warm-up
  const load0 = loadavg();
  for (let r = 0; r < ROUNDS; r++)
    for (const n of r % 2 === 0 ? names : [...names].reverse()) {
      const c0 = process.cpuUsage();
      for (let i = 0; i < OPS; i++) parts[n]();
      const d = process.cpuUsage(c0);
      ns[n].push(((d.user + d.system) * 1000) / OPS);
    }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  console.log(
    `txn-phases: ${KEYS} keys, ${ROUNDS} rounds of ${OPS}; load average ${load0.map((x) => x.toFixed(2)).join(' ')}`,
  );
  const lmdb = median(ns['lmdb 4r+4w']);
  for (const n of names)
    console.log(
      `  ${n.padEnd(16)} ${median(ns[n]).toFixed(0).padStart(7)} ns CPU per transaction  (lmdb 4r+4w / this ${(lmdb / median(ns[n])).toFixed(2)}x)`,
    );
  if (sink === -1) console.log(sink);
  db.close();
  await lm.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
