/**
 * kv-msgpack.bench.ts's decoded get, A/B between two builds of daxstore in ONE process: both
 * builds' modules are imported (two package roots, each its own module instances, addon and
 * msgpackr), each opens its own store in /dev/shm with its defaults (keyEncoding 'ordered',
 * valueEncoding 'msgpack') and the data of msgpack-users.ts (KEYS keys ['user', n], objects
 * of about 100 bytes), and rounds alternate between them (A B, B A, ...) so the machine's load
 * and the cache pressure of other processes fall on both alike. Two rows: keys in a fixed
 * pseudo-random order over the whole store (stride 7919, as kv-msgpack.bench.ts: index nodes
 * and records mostly out of the CPU caches) and a hot set of 64 keys (the CPU work alone).
 * A third row, getMany spread: getMany of 100 keys at a time in the spread order.
 * Prints the median CPU time per get of each build and the paired B/A ratio, median and
 * quartiles over the rounds (below 1: B is faster). Run it both ways round (--a X --b Y, then
 * --a Y --b X): the order of loading leaves a small bias of its own.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/get-build-ab.js --a <root of build A> [--b <root of build B, default .>]
 *     [--keys 200000] [--ops 20000] [--rounds 40] [--warm 5]
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadAverage, median } from './ab-report.js';
import { type User, fillDax, storeBytes, userValues } from './msgpack-users.js';
import type { KvStoreOf } from '../src/kv/index.js';
import { arg } from './args.js';

const A = arg('a', '');
const B = arg('b', '.');
const KEYS = Number(arg('keys', '200000'));
const OPS = Number(arg('ops', '20000'));
const ROUNDS = Number(arg('rounds', '40'));
const WARM = Number(arg('warm', '5'));
const HOT = 64;
/** Keys per getMany call. */
const MANY = 100;
if (A === '') throw new Error('usage: get-build-ab --a <root> [--b <root>] [--rounds n] ...');

type Db = KvStoreOf<'ordered', 'msgpack'>;

const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'get-build-ab-'));

/** A build's store, filled, and its rounds of OPS gets (spread and hot). */
async function build(
  root: string,
  name: string,
): Promise<{ db: Db; spread: () => void; hot: () => void; many: () => void }> {
  const url = (p: string): string => pathToFileURL(path.resolve(root, p)).href;
  const { open } = (await import(url('dist/src/kv/index.js'))) as { open: (p: string, o: object) => Db };
  const db = open(path.join(dir, name), { size: storeBytes(KEYS), durability: 'none' });
  fillDax(db, KEYS, userValues());
  let c = 0;
  let sink = 0;
  const spread = (): void => {
    for (let i = 0; i < OPS; i++) sink += (db.get(['user', (c = (c + 7919) % KEYS)]) as User).age;
    if (sink === -1) console.log(sink);
  };
  const hot = (): void => {
    for (let i = 0; i < OPS; i++) sink += (db.get(['user', (c = (c + 7) % HOT)]) as User).age;
    if (sink === -1) console.log(sink);
  };
  const manyKeys: Array<[string, number]> = [];
  const many = (): void => {
    for (let i = 0; i < OPS; i += MANY) {
      for (let j = 0; j < MANY; j++) manyKeys[j] = ['user', (c = (c + 7919) % KEYS)];
      for (const v of db.getMany(manyKeys)) sink += (v as User).age;
    }
    if (sink === -1) console.log(sink);
  };
  return { db, spread, hot, many };
}

const quartile = (xs: number[], q: number): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length * q)];

function timed(round: () => void): number {
  const c0 = process.cpuUsage();
  round();
  const d = process.cpuUsage(c0);
  return ((d.user + d.system) * 1000) / OPS;
}

try {
  const a = await build(A, 'a');
  const b = await build(B, 'b');
  for (let i = 0; i < WARM; i++) for (const x of [a, b]) (x.spread(), x.hot(), x.many());
  const load0 = loadAverage();
  const rows = {
    spread: { a: [] as number[], b: [] as number[], ratio: [] as number[] },
    hot: { a: [] as number[], b: [] as number[], ratio: [] as number[] },
    many: { a: [] as number[], b: [] as number[], ratio: [] as number[] },
  };
  for (let r = 0; r < ROUNDS; r++) {
    for (const row of ['spread', 'hot', 'many'] as const) {
      let ta: number;
      let tb: number;
      if (r % 2 === 0) {
        ta = timed(a[row]);
        tb = timed(b[row]);
      } else {
        tb = timed(b[row]);
        ta = timed(a[row]);
      }
      rows[row].a.push(ta);
      rows[row].b.push(tb);
      rows[row].ratio.push(tb / ta);
    }
  }
  console.log(
    `decoded get A/B in one process: ${KEYS} keys ['user', n], msgpack values, ${ROUNDS} alternating rounds of ${OPS}; load average before ${load0}, after ${loadAverage()}`,
  );
  console.log(`A = ${path.resolve(A)}`);
  console.log(`B = ${path.resolve(B)}`);
  for (const row of ['spread', 'hot', 'many'] as const) {
    const x = rows[row];
    console.log(
      `${row === 'many' ? 'getMany spread' : `get ${row}`.padEnd(14)}  A ${median(x.a).toFixed(0)} ns  B ${median(x.b).toFixed(0)} ns CPU per get  B/A paired median ${median(x.ratio).toFixed(3)} (quartiles ${quartile(x.ratio, 0.25).toFixed(3)}-${quartile(x.ratio, 0.75).toFixed(3)})`,
    );
  }
  a.db.close();
  b.db.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
