/**
 * bulkLoad against a sorted-map model and against the insert path: random sorted key sets
 * (short keys that are prefixes of each other, the empty key, 0 and 1 keys, dense 8-byte
 * integer keys, 16-byte random keys with wide nodes, keys up to 1024 B sharing long
 * prefixes) are bulk loaded; the result must be node for node the tree that inserting the
 * same keys one by one builds (same types, prefixes, end leaves, tag counts, same live
 * words), pass verifyTree, and then every lookup/range/prefix/insert/delete/grab/tag must
 * match the model. Also: bulk loading into a non-empty (unshared) tree keeps its entries
 * and tags. Ends at the arena/limbo baseline, which also checks every block's size class.
 *
 * Not covered: concurrency (bulkLoad is for unshared trees only; see bulk-load-misuse),
 * huge (order 9) entries among the loaded keys (bulkLoad loads order 0 values only).
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { grab, replace, setTagLocked, unlock } from '../../src/index/entry-lock.js';
import { indexKey } from '../../src/index/keys.js';
import { Ew } from '../../src/index/entry-word.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { Hw } from '../../src/index/arena.js';
import { countOf, gatherChildren, typeOf, Lay } from '../../src/index/nodes.js';
import type { BulkEntries } from '../../src/index/bulk-load.js';
import { compareBytes, drainLimbo, expectBaseline, hex } from './tree-helpers.js';
import { rng, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/bulk-load-model.test.ts';

/** Sorted unique copies of keys, packed as BulkEntries with random values. */
export function pack(keys: Uint8Array[], random: () => number): { entries: BulkEntries; sorted: Uint8Array[] } {
  const uniq = new Map<string, Uint8Array>();
  for (const k of keys) uniq.set(hex(k), k);
  const sorted = [...uniq.values()].sort(compareBytes);
  // Keys stored in the buffer in reverse order, with gaps: starts need not follow the buffer.
  const starts = new Uint32Array(sorted.length);
  const lengths = Uint16Array.from(sorted, (k) => k.length);
  let at = 0;
  for (let i = sorted.length - 1; i >= 0; i--) {
    starts[i] = at;
    at += sorted[i].length + (i % 3);
  }
  const buf = new Uint8Array(at);
  sorted.forEach((k, i) => buf.set(k, starts[i]));
  const values = Float64Array.from(sorted, () => Math.floor(random() * 2 ** 48));
  return { entries: { count: sorted.length, keys: buf, starts, lengths, values }, sorted };
}

/** Structural dump (types, prefixes, end leaves, children, tag counts, leaf keys/entries/values). */
function dump(tree: RadixTree): unknown {
  const { i32, u8 } = tree.arena;
  const walk = (node: number): unknown => {
    const hdr = i32[node];
    if (typeOf(hdr) === Lay.LEAF) {
      const kb = (node + Lay.LEAF_HEADER_WORDS) << 2;
      return [
        'L',
        hex(u8.subarray(kb, kb + countOf(hdr))),
        i32[node + Lay.W_ENTRY] & ~Ew.SEQ_MASK,
        i32[node + 2],
        i32[node + 3],
      ];
    }
    const plen = i32[node + Lay.W_PREFIX_LEN];
    const pb = (node + Lay.INNER_HEADER_WORDS) << 2;
    const bytes = new Uint8Array(257);
    const kids = new Int32Array(257);
    const n = gatherChildren(i32, u8, node, bytes, kids);
    const end = i32[node + Lay.W_END_LEAF];
    const children = Array.from({ length: n }, (_, i) => [bytes[i], walk(kids[i])]);
    return [
      typeOf(hdr),
      hex(u8.subarray(pb, pb + plen)),
      i32[node + Lay.W_DIRTY],
      i32[node + Lay.W_TOWRITE],
      end === 0 ? null : walk(end),
      children,
    ];
  };
  const root = i32[Hw.ROOT];
  return root === 0 ? null : walk(root);
}

type KeyGen = (random: () => number) => Uint8Array[];
const int = (random: () => number, n: number): number => Math.floor(random() * n);
const randomBytes = (random: () => number, len: number, alphabet?: number[]): Uint8Array =>
  Uint8Array.from({ length: len }, () =>
    alphabet === undefined ? int(random, 256) : alphabet[int(random, alphabet.length)],
  );

const KEY_SETS: Record<string, KeyGen> = {
  empty: () => [],
  'one key': (r) => [randomBytes(r, int(r, 6))],
  'only the empty key': () => [new Uint8Array(0)],
  'empty key and one more': (r) => [new Uint8Array(0), randomBytes(r, 1 + int(r, 4))],
  'short keys, prefixes of each other': (r) =>
    Array.from({ length: 1 + int(r, 200) }, () => randomBytes(r, int(r, 5), [0, 1, 0x80, 0xff])),
  'dense integer keys': (r) => {
    const start = int(r, 2 ** 30);
    return Array.from({ length: 1 + int(r, 3000) }, (_, i) => indexKey(start + i));
  },
  'sparse integer keys': (r) => Array.from({ length: 1 + int(r, 500) }, () => indexKey(int(r, 2 ** 40))),
  '16-byte random keys (wide nodes)': (r) => Array.from({ length: 2000 + int(r, 8000) }, () => randomBytes(r, 16)),
  'fan-out 5..256 per level (every node type)': (r) => {
    const out: Uint8Array[] = [];
    for (let a = 0; a < 6; a++) {
      const fan = [5, 17, 33, 49, 200, 256][a];
      for (let b = 0; b < fan; b++) out.push(Uint8Array.of(a, b, int(r, 3)));
    }
    return out;
  },
  'huge keys up to 1024 B with long shared prefixes': (r) => {
    const base = randomBytes(r, 1024);
    return Array.from({ length: 1 + int(r, 60) }, () => {
      const k = base.slice(0, int(r, 1025));
      if (k.length > 0 && r() < 0.5) k[int(r, k.length)] ^= 1 + int(r, 255);
      return k;
    });
  },
};

function incremental(keys: Uint8Array[], values: Float64Array): { tree: RadixTree; epoch: EpochDomain } {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { poisonReclaimed: true });
  keys.forEach((k, i) => expect(tree.insert(k, values[i])).toBe(true));
  drainLimbo(epoch);
  return { tree, epoch };
}

for (const [name, gen] of Object.entries(KEY_SETS)) {
  test(`bulkLoad of ${name} builds the tree inserts build and then behaves like the model`, async () => {
    await withSeed(FILE, (seed) => {
      const random = rng(seed);
      for (let round = 0; round < 3; round++) {
        const { entries, sorted } = pack(gen(random), random);
        const epoch = EpochDomain.create();
        const tree = RadixTree.create(epoch, { poisonReclaimed: true });
        tree.bulkLoad(entries);
        verifyTree(tree);
        expect(tree.count()).toBe(sorted.length);
        const peer = incremental(sorted, entries.values as Float64Array);
        expect(dump(tree)).toEqual(dump(peer.tree));
        expect(tree.arena.liveWords()).toBe(peer.tree.arena.liveWords());
        for (const k of sorted) peer.tree.delete(k);
        expectBaseline(peer.tree, peer.epoch);
        peer.epoch.close();
        const model = new Map<string, [Uint8Array, number]>(sorted.map((k, i) => [hex(k), [k, entries.values[i]]]));
        exercise(tree, model, random, sorted);
        verifyTree(tree);
        for (const [k] of model.values()) expect(tree.delete(k)).toBe(true);
        expectBaseline(tree, epoch);
        epoch.close();
      }
    });
  });
}

/** Random ops against the model; keys come from the loaded set (hits) and mutations of it (misses, prefixes). */
function exercise(
  tree: RadixTree,
  model: Map<string, [Uint8Array, number]>,
  random: () => number,
  loaded: Uint8Array[],
): void {
  const someKey = (): Uint8Array => {
    if (loaded.length === 0 || random() < 0.2) return randomBytes(random, int(random, 4));
    const k = loaded[int(random, loaded.length)];
    const roll = random();
    if (roll < 0.5) return k;
    if (roll < 0.75) return k.slice(0, int(random, k.length + 1));
    const m = Uint8Array.from([...k, int(random, 256)]);
    m[int(random, m.length)] ^= 1;
    return m;
  };
  const sortedModel = (): [Uint8Array, number][] => [...model.values()].sort((a, b) => compareBytes(a[0], b[0]));
  for (let i = 0; i < 300; i++) {
    const op = int(random, 7);
    const k = someKey();
    const want = model.get(hex(k));
    if (op === 0) expect(tree.lookup(k)).toBe(want?.[1]);
    else if (op === 1) {
      const v = int(random, 2 ** 40);
      expect(tree.insert(k, v)).toBe(true);
      model.set(hex(k), [k, v]);
    } else if (op === 2) {
      expect(tree.delete(k)).toBe(want !== undefined);
      model.delete(hex(k));
    } else if (op === 3) {
      const hi = someKey();
      const reverse = random() < 0.5;
      const got = [...tree.range({ gte: k, lt: hi, reverse })].map(([key, v]) => [hex(key), v]);
      const exp = sortedModel().filter(([key]) => compareBytes(key, k) >= 0 && compareBytes(key, hi) < 0);
      if (reverse) exp.reverse();
      expect(got).toEqual(exp.map(([key, v]) => [hex(key), v]));
    } else if (op === 4) {
      const p = k.slice(0, int(random, Math.min(k.length, 3) + 1));
      const got = [...tree.prefix(p)].map(([key, v]) => [hex(key), v]);
      const exp = sortedModel().filter(
        ([key]) => key.length >= p.length && compareBytes(key.subarray(0, p.length), p) === 0,
      );
      expect(got).toEqual(exp.map(([key, v]) => [hex(key), v]));
    } else if (op === 5) {
      const ref = grab(tree, k);
      expect(ref.state).toBe(want === undefined ? 'empty' : 'value');
      if (want !== undefined) expect(ref.value).toBe(want[1]);
      if (random() < 0.5) {
        const v = int(random, 2 ** 40);
        replace(tree, ref, v);
        model.set(hex(k), [k, v]);
      }
      unlock(tree, ref);
    } else {
      if (want === undefined) continue;
      const ref = grab(tree, k);
      setTagLocked(tree, ref, random() < 0.5 ? 'dirty' : 'towrite');
      unlock(tree, ref);
      expect([...tree.tagged('dirty')].length + [...tree.tagged('towrite')].length).toBeGreaterThan(0);
    }
  }
  expect(tree.count()).toBe(model.size);
}

test('bulkLoad into a non-empty unshared tree keeps its entries, states and tags', async () => {
  await withSeed(FILE, (seed) => {
    const random = rng(seed);
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch, { poisonReclaimed: true });
    const model = new Map<string, [Uint8Array, number]>();
    const before = Array.from({ length: 300 }, () => Uint8Array.from([0, ...randomBytes(random, int(random, 10))]));
    for (const k of before) {
      const v = int(random, 2 ** 40);
      tree.insert(k, v);
      model.set(hex(k), [k, v]);
    }
    const tagged = before[0];
    const ref = grab(tree, tagged);
    setTagLocked(tree, ref, 'dirty');
    unlock(tree, ref);
    // New keys interleave with the old ones (first byte 0 too) but never equal one.
    const fresh = Array.from({ length: 2000 }, () =>
      Uint8Array.from([int(random, 2), ...randomBytes(random, 1 + int(random, 12))]),
    ).filter((k) => !model.has(hex(k)));
    const { entries, sorted } = pack(fresh, random);
    tree.bulkLoad(entries);
    sorted.forEach((k, i) => model.set(hex(k), [k, entries.values[i]]));
    verifyTree(tree);
    expect(tree.count()).toBe(model.size);
    expect(tree.entryInfo(tagged)?.dirty).toBe(true);
    expect([...tree.tagged('dirty')].map(([k]) => hex(k))).toEqual([hex(tagged)]);
    exercise(
      tree,
      model,
      random,
      [...model.values()].map(([k]) => k),
    );
    verifyTree(tree);
    for (const [k] of model.values()) expect(tree.delete(k)).toBe(true);
    expectBaseline(tree, epoch);
    epoch.close();
  });
});
