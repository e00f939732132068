/**
 * Model-based fuzz of the radix tree against a plain sorted map (single thread).
 * Ops: insert, delete, lookup, range (gt/gte/lt/lte/none, reverse, limit), prefix, count,
 * index keys with multi-order (order 9 over order 0, ZERO huge replaced by small), tags
 * through entry locks, tagged iteration, tagRange. After every sequence: verifyTree
 * (structure, tag counts, coverage) and the arena/limbo baseline after deleting all.
 *
 * A second test drives wide nodes (N48/N256 over all byte values) through growth and
 * shrinking with a seeded PRNG.
 *
 * Not covered here: concurrency (see the *-workers tests), keys longer than 5 bytes except
 * 8-byte index keys, arena growth beyond a few MiB, and lookups racing deletions.
 */
import { test, expect } from 'vitest';
import fc from 'fast-check';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { grab, setTagLocked, clearTagLocked, unlock } from '../../src/index/entry-lock.js';
import { indexKey } from '../../src/index/keys.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { compareBytes, expectBaseline, hex } from './tree-helpers.js';
import { rng, withSeed } from '../helpers/seed.js';

interface ModelEntry {
  key: Uint8Array;
  value: number;
  order: number;
  state: 'value' | 'zero';
  dirty: boolean;
  towrite: boolean;
}
type Model = Map<string, ModelEntry>;

// Small key spaces, so bounds, tags and deletes hit existing keys and prefixes overlap.
const byteKey = fc.uint8Array({ minLength: 0, maxLength: 4 }).map((k) => k.map((b) => [0, 1, 0x80, 0xff][b % 4]));
const index = fc.constantFrom(0, 1, 2, 255, 256, 511, 512, 513, 1023, 1024, 1025, 1535, 1536, 1537, 2047);
const anyKey = fc.oneof(
  byteKey,
  byteKey,
  index.map((n) => indexKey(n)),
);
const bound = fc.option(fc.record({ kind: fc.constantFrom('gt', 'gte', 'lt', 'lte'), key: anyKey }), {
  nil: undefined,
});
const rangeOpts = fc.record({
  a: bound,
  b: bound,
  reverse: fc.boolean(),
  limit: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
});
const tag = fc.constantFrom('dirty' as const, 'towrite' as const);

const op = fc.oneof(
  {
    arbitrary: fc.record({
      t: fc.constant('insert' as const),
      key: anyKey,
      value: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ t: fc.constant('delete' as const), key: anyKey }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('lookup' as const), key: anyKey }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('range' as const), r: rangeOpts }), weight: 2 },
  {
    arbitrary: fc.record({
      t: fc.constant('prefix' as const),
      p: byteKey,
      reverse: fc.boolean(),
      limit: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      t: fc.constant('huge' as const),
      n: fc.integer({ min: 0, max: 3 }),
      value: fc.nat(),
      zero: fc.boolean(),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ t: fc.constant('tag' as const), key: anyKey, tag, on: fc.boolean() }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('tagged' as const), tag, r: rangeOpts }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('tagRange' as const), r: rangeOpts }), weight: 1 },
);

type RangeArg = {
  a?: { kind: string; key: Uint8Array };
  b?: { kind: string; key: Uint8Array };
  reverse: boolean;
  limit?: number;
};

function toOpts(r: RangeArg): Record<string, unknown> {
  const o: Record<string, unknown> = { reverse: r.reverse, limit: r.limit };
  for (const b of [r.a, r.b]) if (b !== undefined) o[b.kind] = b.key;
  // Both gt and gte (or lt and lte) is an EINVAL; keep the first.
  if (o['gt'] !== undefined && o['gte'] !== undefined) delete o['gte'];
  if (o['lt'] !== undefined && o['lte'] !== undefined) delete o['lte'];
  return o;
}

function sorted(model: Model): ModelEntry[] {
  return [...model.values()].sort((x, y) => compareBytes(x.key, y.key));
}

function inRange(k: Uint8Array, o: Record<string, unknown>): boolean {
  const c = (b: unknown): number => compareBytes(k, b as Uint8Array);
  if (o['gt'] !== undefined && c(o['gt']) <= 0) return false;
  if (o['gte'] !== undefined && c(o['gte']) < 0) return false;
  if (o['lt'] !== undefined && c(o['lt']) >= 0) return false;
  if (o['lte'] !== undefined && c(o['lte']) > 0) return false;
  return true;
}

function expectList(
  got: Iterable<[Uint8Array, number, { order: number; dirty: boolean; towrite: boolean }]>,
  want: ModelEntry[],
): void {
  expect([...got].map(([k, v, i]) => [hex(k), v, i.order, i.dirty, i.towrite])).toEqual(
    want.map((e) => [hex(e.key), e.value, e.order, e.dirty, e.towrite]),
  );
}

function isIndexKey(k: Uint8Array): boolean {
  return k.length === 8;
}

/** The model entry a key resolves to: exact, or the huge entry covering an index key. */
function resolve(model: Model, key: Uint8Array): ModelEntry | undefined {
  const exact = model.get(hex(key));
  if (exact !== undefined || !isIndexKey(key)) return exact;
  const a = key.slice();
  a[6] &= 0xfe;
  a[7] = 0;
  const huge = model.get(hex(a));
  return huge?.order === 9 ? huge : undefined;
}

function modelInsert(model: Model, key: Uint8Array, value: number): boolean {
  const e = resolve(model, key);
  if (e !== undefined && e.key.length === key.length && hex(e.key) === hex(key) && e.order === 0) {
    e.value = value;
    return true;
  }
  if (e !== undefined) {
    if (e.state !== 'zero') return false;
    model.delete(hex(e.key)); // a ZERO huge entry is replaced by small ones
  }
  model.set(hex(key), { key: key.slice(), value, order: 0, state: 'value', dirty: false, towrite: false });
  return true;
}

function modelHuge(model: Model, n: number, value: number, zero: boolean): boolean {
  const key = indexKey(n * 512);
  const e = model.get(hex(key));
  if (e?.order === 9) {
    e.value = value;
    e.state = zero ? 'zero' : 'value';
    return true;
  }
  for (const m of model.values())
    if (m.key.length === 8 && Math.floor(Number(Buffer.from(m.key).readBigUInt64BE()) / 512) === n) return false;
  model.set(hex(key), { key, value, order: 9, state: zero ? 'zero' : 'value', dirty: false, towrite: false });
  return true;
}

type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function run(tree: RadixTree, model: Model, o: Op): void {
  switch (o.t) {
    case 'insert':
      expect(tree.insert(o.key, o.value)).toBe(modelInsert(model, o.key, o.value));
      break;
    case 'delete': {
      const had = model.has(hex(o.key));
      model.delete(hex(o.key));
      expect(tree.delete(o.key)).toBe(had);
      break;
    }
    case 'lookup':
      expect(tree.lookup(o.key)).toBe(resolve(model, o.key)?.value);
      break;
    case 'range': {
      const opts = toOpts(o.r);
      const want = sorted(model).filter((e) => inRange(e.key, opts));
      if (o.r.reverse) want.reverse();
      expectList(tree.range(opts), want.slice(0, o.r.limit ?? Infinity));
      break;
    }
    case 'prefix': {
      const want = sorted(model).filter(
        (e) => e.key.length >= o.p.length && hex(e.key.subarray(0, o.p.length)) === hex(o.p),
      );
      if (o.reverse) want.reverse();
      expectList(tree.prefix(o.p, { reverse: o.reverse, limit: o.limit }), want.slice(0, o.limit ?? Infinity));
      break;
    }
    case 'huge':
      expect(tree.insertIndex(o.n * 512, o.value, { order: 9, state: o.zero ? 'zero' : 'value' })).toBe(
        modelHuge(model, o.n, o.value, o.zero),
      );
      break;
    case 'tag': {
      const e = resolve(model, o.key);
      const ref = grab(tree, o.key);
      if (e === undefined) expect(ref.state).toBe('empty');
      else {
        expect(hex(ref.key)).toBe(hex(e.key));
        if (o.on) setTagLocked(tree, ref, o.tag);
        else clearTagLocked(tree, ref, o.tag);
        e[o.tag] = o.on;
      }
      unlock(tree, ref);
      break;
    }
    case 'tagged': {
      const opts = toOpts(o.r);
      const want = sorted(model).filter((e) => e[o.tag] && inRange(e.key, opts));
      if (o.r.reverse) want.reverse();
      expectList(tree.tagged(o.tag, opts), want.slice(0, o.r.limit ?? Infinity));
      break;
    }
    case 'tagRange': {
      const opts = toOpts(o.r);
      delete opts['reverse'];
      delete opts['limit'];
      const hit = sorted(model).filter((e) => e.dirty && inRange(e.key, opts));
      for (const e of hit) e.towrite = true;
      expect(tree.tagRange(opts, 'dirty', 'towrite')).toBe(hit.length);
      break;
    }
  }
}

test('radix tree matches a sorted-map model over random op sequences', async () => {
  await withSeed('test/index/radix-tree-model.test.ts', (seed) => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 5, maxLength: 100, size: 'max' }), (ops) => {
        const epoch = EpochDomain.create();
        const tree = RadixTree.create(epoch, { poisonReclaimed: true });
        const model: Model = new Map();
        for (const o of ops) run(tree, model, o);
        verifyTree(tree);
        expect(tree.count()).toBe(model.size);
        for (const e of sorted(model)) expect(tree.delete(e.key)).toBe(true);
        verifyTree(tree);
        expectBaseline(tree, epoch);
        epoch.close();
      }),
      { seed, numRuns: 300 },
    );
  });
});

test('wide nodes (N48/N256) grow and shrink in step with the model', async () => {
  await withSeed('test/index/radix-tree-model.test.ts', (seed) => {
    const random = rng(seed);
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch, { poisonReclaimed: true });
    const model = new Map<string, number>();
    const key = (): Uint8Array => {
      // First byte b < 16 picks a fan-out of (b + 1) * 16 second bytes, so second-level
      // nodes of every size class exist at once; third bytes over all 256 values.
      const len = 1 + Math.floor(random() * 3);
      const k = new Uint8Array(len);
      k[0] = Math.floor(random() * 16);
      if (len > 1) k[1] = Math.floor(random() * (k[0] + 1) * 16);
      if (len > 2) k[2] = Math.floor(random() * 256);
      return k;
    };
    const typesSeen = new Set<string>();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 6000; i++) {
        const k = key();
        if (random() < 0.6 - round * 0.2) {
          tree.insert(k, i);
          model.set(hex(k), i);
        } else expect(tree.delete(k)).toBe(model.delete(hex(k)));
      }
      const shape = verifyTree(tree);
      for (const t of Object.keys(shape.types)) typesSeen.add(t);
      expect(shape.leaves).toBe(model.size);
      const want = [...model.entries()].sort(([a], [b]) => compareBytes(Buffer.from(a, 'hex'), Buffer.from(b, 'hex')));
      expect([...tree.range()].map(([k, v]) => [hex(k), v])).toEqual(want);
    }
    expect([...typesSeen].sort()).toEqual(['N16', 'N256', 'N32', 'N4', 'N48']);
    for (const h of model.keys()) expect(tree.delete(Buffer.from(h, 'hex'))).toBe(true);
    expectBaseline(tree, epoch);
  });
});
