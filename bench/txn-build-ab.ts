/**
 * The 4-read + 4-write transaction of txn.bench.ts (or, with --op, a plain overwrite put or
 * get of one random key, or the entries of 1,000-entry range scans from random keys), A/B
 * between two builds of daxstore in ONE process: both builds' modules are imported (two
 * package roots, each its own module instances and addon), each opens its own store in
 * /dev/shm (16-byte random keys, 100-byte values, 'binary' keys and values), and rounds of
 * transactions alternate between them (A B, B A, ...),
 * so the machine's load, the CPU's frequency and the cache pressure from other processes fall
 * on both alike, round by round. A warm-up of WARM rounds each comes first. Prints the median
 * CPU time per transaction of each build and the paired B/A ratio, median and quartiles over
 * the rounds (below 1: B is faster), and the ratio of the two builds' total CPU over every
 * round: a cost that comes in bursts (an automatic compaction step every few rounds) moves
 * the totals, not the median round. Run it both ways round (--a X --b Y, then --a Y --b X): the
 * order of loading leaves a small bias of its own (an A/A run shows it).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/txn-build-ab.js --a <root of build A> [--b <root of build B, default .>]
 *     [--keys 100000] [--ops 2000] [--rounds 60] [--warm 10] [--durability none|sync]
 *     [--op txn|put|get|range] [--a-options JSON] [--b-options JSON]
 *
 * --a-options / --b-options: more open() options for that side's store, e.g. --b-options
 * '{"autoCompact":false}' to leave automatic compaction out of a steady overwrite put (against
 * a build from before it), or, with --a and --b the same root, to compare two configurations of
 * one build.
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { median } from './ab-report.js';
import { packedKeys } from './bench-store.js';
import { arg } from './args.js';

const A = arg('a', '');
const B = arg('b', '.');
const KEYS = Number(arg('keys', '100000'));
const OPS = Number(arg('ops', '2000'));
const ROUNDS = Number(arg('rounds', '60'));
const WARM = Number(arg('warm', '10'));
const DURABILITY = arg('durability', 'none');
const OP = arg('op', 'txn');
if (OP !== 'txn' && OP !== 'put' && OP !== 'get' && OP !== 'range')
  throw new Error(`--op: txn, put, get or range, not ${OP}`);
/** Entries per scan of --op range (OPS entries a round, in scans from random keys). */
const RANGE = 1000;
const OPTIONS = { a: JSON.parse(arg('a-options', '{}')) as object, b: JSON.parse(arg('b-options', '{}')) as object };
const LABEL = OP === 'txn' ? 'txn 4r+4w' : OP;
if (A === '') throw new Error('usage: txn-build-ab --a <root> [--b <root>] [--rounds n] ...');
const VALUE = new Uint8Array(100).fill(7);

interface Txn {
  get(key: Uint8Array): Uint8Array | undefined;
  put(key: Uint8Array, value: Uint8Array): void;
}
interface Db {
  put(key: Uint8Array, value: Uint8Array): void;
  get(key: Uint8Array): Uint8Array | undefined;
  range(opts: { gte: Uint8Array; limit: number }): Iterable<[Uint8Array, Uint8Array]>;
  transactionSync(fn: (txn: Txn) => void): void;
  close(): void;
}

const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'txn-build-ab-'));

/** A build's store, filled, and a round of OPS transactions on it. */
async function build(root: string, name: 'a' | 'b'): Promise<{ db: Db; round: () => void }> {
  const url = (p: string): string => pathToFileURL(path.resolve(root, p)).href;
  const { open } = (await import(url('dist/src/kv/index.js'))) as { open: (p: string, o: object) => Db };
  const { key, pick } = await packedKeys(KEYS);
  const db = open(path.join(dir, name), {
    size: 256 * 2 ** 20,
    durability: DURABILITY,
    keyEncoding: 'binary',
    valueEncoding: 'binary',
    ...OPTIONS[name],
  });
  for (let i = 0; i < KEYS; i++) db.put(key(i), VALUE);
  let sink = 0;
  const rounds = {
    txn: (): void => {
      for (let j = 0; j < OPS; j++)
        db.transactionSync((txn) => {
          for (let i = 0; i < 4; i++) sink += txn.get(pick())?.length ?? 0;
          for (let i = 0; i < 4; i++) txn.put(pick(), VALUE);
        });
    },
    put: (): void => {
      for (let j = 0; j < OPS; j++) db.put(pick(), VALUE);
    },
    get: (): void => {
      for (let j = 0; j < OPS; j++) sink += db.get(pick())?.length ?? 0;
    },
    range: (): void => {
      for (let j = 0; j < OPS; j += RANGE)
        for (const [, v] of db.range({ gte: pick(), limit: RANGE })) sink += v.length;
    },
  };
  const op = rounds[OP as keyof typeof rounds];
  const round = (): void => {
    op();
    if (sink === -1) console.log(sink);
  };
  return { db, round };
}

const sum = (xs: number[]): number => xs.reduce((x, y) => x + y, 0);
const quartile = (xs: number[], q: number): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length * q)];

try {
  const a = await build(A, 'a');
  const b = await build(B, 'b');
  for (let i = 0; i < WARM; i++) {
    a.round();
    b.round();
  }
  const load0 = loadavg();
  const nsA: number[] = [];
  const nsB: number[] = [];
  const ratio: number[] = [];
  const timed = (round: () => void): number => {
    const c0 = process.cpuUsage();
    round();
    const d = process.cpuUsage(c0);
    return ((d.user + d.system) * 1000) / OPS;
  };
  for (let r = 0; r < ROUNDS; r++) {
    let ta: number;
    let tb: number;
    if (r % 2 === 0) {
      ta = timed(a.round);
      tb = timed(b.round);
    } else {
      tb = timed(b.round);
      ta = timed(a.round);
    }
    nsA.push(ta);
    nsB.push(tb);
    ratio.push(tb / ta);
  }
  const load1 = loadavg();
  console.log(
    `${LABEL} A/B in one process: ${KEYS} keys, durability '${DURABILITY}', ${ROUNDS} alternating rounds of ${OPS}; load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${load1.map((x) => x.toFixed(2)).join(' ')}`,
  );
  console.log(`A = ${path.resolve(A)}`);
  console.log(`B = ${path.resolve(B)}`);
  console.log(
    `${LABEL}  A ${median(nsA).toFixed(0)} ns  B ${median(nsB).toFixed(0)} ns CPU per ${OP === 'txn' ? 'transaction' : OP === 'range' ? 'entry scanned' : OP}  B/A paired median ${median(ratio).toFixed(3)} (quartiles ${quartile(ratio, 0.25).toFixed(3)}-${quartile(ratio, 0.75).toFixed(3)}), of totals ${(sum(nsB) / sum(nsA)).toFixed(3)}`,
  );
  a.db.close();
  b.db.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
