/**
 * Where a decoded get's time goes, daxstore beside lmdb-js, both with their defaults and the
 * data of kv-msgpack.bench.ts (KV_MSGPACK_KEYS keys ['user', n], default 200,000; msgpack
 * objects of about 91 B). Each read is timed two ways: over every key in a fixed pseudo-random
 * order (stride 7919: index nodes, records and pages mostly out of the CPU caches) and over a
 * hot set of 64 keys (everything cached: the CPU work alone). Also has() (key encoding, index
 * lookup and the entry's header: no value decoded) and msgpackr's decode of one value alone.
 * Tasks run in short rounds, alternated, and each prints the median CPU ns per operation over
 * the rounds (process CPU time: lmdb's threads included), then the lmdb-js/daxstore ratios.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/kv-get-parts.js [--rounds 9] [--ops 100000]
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './ab-report.js';
import { arg } from './args.js';
import { Packr } from 'msgpackr';
import { open as lmdbOpen } from 'lmdb';
import { open } from '../src/api/daxstore.js';
import { type User, fillDax, fillLmdb, storeBytes, userValues } from './msgpack-users.js';

const KEYS = Number(process.env['KV_MSGPACK_KEYS'] ?? 200_000);
const HOT = 64;

const ROUNDS = Number(arg('rounds', '9'));
const OPS = Number(arg('ops', '100000'));

const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kv-get-parts-'));
try {
  const values = userValues();
  const dax = open(path.join(dir, 'dax'), { size: storeBytes(KEYS), durability: 'none' });
  const lm = lmdbOpen<User, [string, number]>({ path: path.join(dir, 'lmdb'), noSync: true });
  fillDax(dax, KEYS, values);
  await fillLmdb(lm, KEYS, values);

  let c = 0;
  const spread = (): number => (c = (c + 7919) % KEYS);
  const hot = (): number => (c = (c + 7) % HOT);
  const structures: object[] = [];
  const packr = new Packr({ structures, moreTypes: true, copyBuffers: true });
  const packed = Buffer.from(packr.pack(values[1]));
  const copy = Buffer.allocUnsafeSlow(1024);
  const range = { start: 0, end: packed.length };
  let sink = 0;
  const tasks: Record<string, (n: number) => void> = {
    'dax get, spread': (n) => {
      for (let i = 0; i < n; i++) sink += (dax.get(['user', spread()]) as User).age;
    },
    'lmdb get, spread': (n) => {
      for (let i = 0; i < n; i++) sink += lm.get(['user', spread()])!.age;
    },
    'dax get, hot': (n) => {
      for (let i = 0; i < n; i++) sink += (dax.get(['user', hot()]) as User).age;
    },
    'lmdb get, hot': (n) => {
      for (let i = 0; i < n; i++) sink += lm.get(['user', hot()])!.age;
    },
    'dax has, spread': (n) => {
      for (let i = 0; i < n; i++) sink += dax.has(['user', spread()]) ? 1 : 0;
    },
    'dax has, hot': (n) => {
      for (let i = 0; i < n; i++) sink += dax.has(['user', hot()]) ? 1 : 0;
    },
    'msgpackr decode alone': (n) => {
      for (let i = 0; i < n; i++) {
        packed.copy(copy);
        sink += (packr.unpack(copy, range) as User).age;
      }
    },
  };
  const names = Object.keys(tasks);
  const samples = new Map<string, number[]>(names.map((n) => [n, []]));
  for (const name of names) tasks[name](OPS / 4); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const c0 = process.cpuUsage();
      tasks[name](OPS);
      const d = process.cpuUsage(c0);
      samples.get(name)!.push(((d.user + d.system) * 1000) / OPS);
    }
  }
  const ns = (name: string): number => median(samples.get(name)!);
  console.log(
    `decoded get taken apart: ${KEYS} keys ['user', n], msgpack objects (${packed.length} B with shared structures), ${ROUNDS} rounds of ${OPS} ops, CPU ns per op (medians); load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  for (const name of names) console.log(`${name.padEnd(24)} ${ns(name).toFixed(0).padStart(6)} ns`);
  console.log(
    `lmdb-js / daxstore by CPU: get spread ${(ns('lmdb get, spread') / ns('dax get, spread')).toFixed(2)}x, get hot ${(ns('lmdb get, hot') / ns('dax get, hot')).toFixed(2)}x; daxstore's cache misses (spread - hot): get ${(ns('dax get, spread') - ns('dax get, hot')).toFixed(0)} ns, has ${(ns('dax has, spread') - ns('dax has, hot')).toFixed(0)} ns`,
  );
  if (sink === -1) console.log(sink);
  dax.close();
  await lm.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
