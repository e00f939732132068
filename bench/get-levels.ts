/**
 * Where a spread decoded get waits, level by level: kv-msgpack.bench.ts's store (KEYS keys
 * ['user', n], msgpack objects of about 100 bytes, then 3 overwrites per key in the bench's
 * stride order, as its put rows leave it) is read in two orders, over every key (stride 7919:
 * index nodes, leaves and records mostly out of the CPU caches) and over a hot set of 64 keys
 * (the CPU work alone). Rows, each timed in alternated rounds (CPU ns per key, medians):
 *   key         the ordered key encoded (writeOrderedKey) into a scratch
 *   walk L      the key, then the index descent stopped after L nodes: each node's header
 *               read and its child for the key's byte found (nodes.ts findChild). A level's
 *               child load is the walk's last, independent of the next key's walk, so the
 *               processor overlaps it; the row after it waits for it (its header read needs
 *               the address). So walk L+1 - walk L is what the child load of node L costs
 *               when the next node needs it, plus the CPU of node L+1.
 *   lookup      the key and RadixTree.lookupPinned (the descent, the leaf's seqlock read)
 *   get         db.get(): the lookup, the entry's header and value, msgpackr's decode
 * It also prints the node types on the path of one key, so each level can be named, and how
 * much of the log mapping and of the anonymous huge-page mappings (the index arena) is in 2 MiB
 * pages.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/get-levels.js [--keys 200000] [--rounds 11] [--ops 50000]
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { arg } from './args.js';
import { median } from './ab-report.js';
import { type User, fillDax, storeBytes, userValues } from './msgpack-users.js';
import { open } from '../src/api/daxstore.js';
import { ORDERED_SCRATCH_BYTES, writeOrderedKey } from '../src/kv/encodings.js';
import { KV_KEY_PREFIX } from '../src/kv/layout.js';
import { Hw } from '../src/index/arena.js';
import { Lay, bodyOffset, findChild, typeOf } from '../src/index/nodes.js';

const KEYS = Number(arg('keys', '200000'));
const ROUNDS = Number(arg('rounds', '11'));
const OPS = Number(arg('ops', '50000'));
const HOT = 64;
const MAX_LEVELS = 7;
const TYPE_NAMES = ['?', 'leaf', 'N4', 'N16', 'N32', 'N48', 'N256'];

/**
 * How much of the store's log mapping (a file under `dir`) and of this process's anonymous
 * mappings advised for huge pages (the index arena among them) is mapped in 2 MiB pages, from
 * /proc/self/smaps (kB).
 */
function hugePageCoverage(dir: string): string {
  if (!existsSync('/proc/self/smaps')) return 'huge pages: no /proc/self/smaps';
  const parts: string[] = [];
  let head = '';
  let rss = 0;
  const flush = (fields: Map<string, number>): void => {
    if (head === '') return;
    if (head.includes(dir)) parts.push(`log ${fields.get('ShmemPmdMapped') ?? 0} of ${rss} kB resident PMD-mapped`);
    else if (/ rw-p 00000000 00:00 0\s*$/.test(head) && (fields.get('AnonHugePages') ?? 0) > 0)
      parts.push(`anonymous ${(fields.get('AnonHugePages') ?? 0).toString()} of ${rss} kB resident in huge pages`);
  };
  let fields = new Map<string, number>();
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      flush(fields);
      head = line;
      fields = new Map();
      continue;
    }
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m === null) continue;
    fields.set(m[1], Number(m[2]));
    if (m[1] === 'Rss') rss = Number(m[2]);
  }
  flush(fields);
  return `huge pages: ${parts.join('; ')}`;
}

const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'get-levels-'));
try {
  const values = userValues();
  const db = open(path.join(dir, 'db'), { size: storeBytes(KEYS), durability: 'none' });
  fillDax(db, KEYS, values);
  let c = 0;
  for (let i = 0; i < 3 * KEYS; i++) {
    const n = (c = (c + 7919) % KEYS);
    db.put(['user', n], values[n % values.length]);
  }
  const space = db.dax;
  const tree = space.tree;
  const epoch = space.epoch;
  const scratch = new Uint8Array(ORDERED_SCRATCH_BYTES);
  const views: Uint8Array[] = [];
  /** The index key of ['user', n] (prefix byte, then the ordered key), in `scratch` (a view cached by length, as the store does). */
  const indexKey = (n: number): Uint8Array => {
    const len = writeOrderedKey(scratch, ['user', n], 'get-levels');
    scratch[0] = KV_KEY_PREFIX;
    return (views[len] ??= scratch.subarray(0, len + 1));
  };
  /** The descent of `key` stopped after `levels` nodes; returns a sum of what it read. */
  const walk = (key: Uint8Array, levels: number): number => {
    const { i32, u8 } = tree.arena;
    let node = i32[Hw.ROOT];
    let depth = 0;
    let acc = 0;
    for (let l = 0; l < levels && node !== 0; l++) {
      const hdr = i32[node];
      if (typeOf(hdr) === Lay.LEAF) return acc + i32[node + Lay.W_VALUE_LO];
      const plen = i32[node + Lay.W_PREFIX_LEN];
      depth += plen;
      node = findChild(i32, u8, hdr, bodyOffset(node, plen), key[depth++]);
      acc += node;
    }
    return acc;
  };
  const path1 = (key: Uint8Array): string[] => {
    const { i32, u8 } = tree.arena;
    const types: string[] = [];
    let node = i32[Hw.ROOT];
    let depth = 0;
    while (node !== 0) {
      const hdr = i32[node];
      types.push(TYPE_NAMES[typeOf(hdr)] ?? '?');
      if (typeOf(hdr) === Lay.LEAF) break;
      const plen = i32[node + Lay.W_PREFIX_LEN];
      depth += plen;
      node = findChild(i32, u8, hdr, bodyOffset(node, plen), key[depth++]);
    }
    return types;
  };

  let sink = 0;
  const spread = (): number => (c = (c + 7919) % KEYS);
  const hot = (): number => (c = (c + 7) % HOT);
  const rows: Array<[string, (next: () => number) => void]> = [
    [
      'key',
      (next) => {
        for (let i = 0; i < OPS; i++) sink += indexKey(next()).length;
      },
    ],
  ];
  for (let levels = 1; levels <= MAX_LEVELS; levels++)
    rows.push([
      `walk ${levels}`,
      (next) => {
        for (let i = 0; i < OPS; i++) sink += walk(indexKey(next()), levels);
      },
    ]);
  rows.push(
    [
      'lookup',
      (next) => {
        for (let i = 0; i < OPS; i++) {
          const k = indexKey(next());
          epoch.pin();
          sink += tree.lookupPinned(k) ?? 0;
          epoch.unpin();
        }
      },
    ],
    [
      'get',
      (next) => {
        for (let i = 0; i < OPS; i++) sink += (db.get(['user', next()]) as User).age;
      },
    ],
  );
  const samples = new Map<string, number[]>();
  for (const [name, fn] of rows) {
    samples.set(`${name} spread`, []);
    samples.set(`${name} hot`, []);
    (fn(spread), fn(hot)); // warm-up
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of r % 2 === 0 ? rows : [...rows].reverse()) {
      for (const [order, next] of [
        ['spread', spread],
        ['hot', hot],
      ] as const) {
        const c0 = process.cpuUsage();
        fn(next);
        const d = process.cpuUsage(c0);
        samples.get(`${name} ${order}`)!.push(((d.user + d.system) * 1000) / OPS);
      }
    }
  }
  console.log(
    `a get taken apart by index level: ${KEYS} keys ['user', n] after 3 overwrites each, ${ROUNDS} rounds of ${OPS} keys, CPU ns per key (medians); load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  console.log(`path of ['user', ${KEYS - 1}]: ${path1(indexKey(KEYS - 1)).join(' -> ')}`);
  let before = 0;
  for (const [name] of rows) {
    const s = median(samples.get(`${name} spread`)!);
    const h = median(samples.get(`${name} hot`)!);
    const step = name.startsWith('walk') ? `   spread step ${(s - before).toFixed(0).padStart(5)}` : '';
    console.log(
      `${name.padEnd(8)} spread ${s.toFixed(0).padStart(5)}  hot ${h.toFixed(0).padStart(5)}  misses (spread - hot) ${(s - h).toFixed(0).padStart(5)}${step}`,
    );
    before = s;
  }
  console.log(hugePageCoverage(dir));
  if (sink === -1) console.log(sink);
  db.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
