/**
 * Encodings: every value encoding round-trips through put/get/getMany/range/values/batch and
 * a reopen, under every key encoding; ordered keys sort like their values (fast-check against
 * a model order: null < false < true < numbers < strings, numbers numerically, strings by
 * code point, compound keys part by part); the store records its encodings (a reopen without
 * options reads them back, other ones are EINVAL, 'binary' reads the raw bytes, a damaged
 * record is ECORRUPT); values and keys an encoding cannot hold are EINVAL and change nothing;
 * binary results have their own ArrayBuffer; another user of msgpackr in the same thread never
 * sees its buffers overwritten.
 *
 * Not covered here: crash consistency of records (the binary tests cover the record layer,
 * which encodings do not change), encodings across worker threads (kv-workers attaches).
 */
import { afterEach, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { readKey, writeKey } from 'ordered-binary';
import { rmSync } from 'node:fs';
import { createSimMedia } from '../../src/device/sim-media.js';
import { isDaxError } from '../../src/errors.js';
import { open, openMedia, type KvStore, type OrderedKey } from '../../src/kv/index.js';
import { ORDERED_SCRATCH_BYTES, readOrderedKey, writeOrderedKey } from '../../src/kv/encodings.js';
import { LARGE_VALUE_THRESHOLD_BYTES } from '../../src/kv/layout.js';
import { KV_ROOT_BYTES } from '../../src/kv/kv-root.js';
import { scaled, withSeed } from '../helpers/seed.js';
import { daxCodeOf } from '../helpers/expect-code.js';

const FILE = 'test/kv/kv-encodings.test.ts';
const MIB = 2 ** 20;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyStore = KvStore<any, any>;
const files: string[] = [];
afterEach(() => {
  for (const f of files.splice(0)) rmSync(f, { force: true });
});
function tempFile(): string {
  const f = `/dev/shm/kv-enc-${process.pid}-${files.length}-${Math.random().toString(36).slice(2)}`;
  files.push(f);
  return f;
}

const big = 'x'.repeat(LARGE_VALUE_THRESHOLD_BYTES + 100); // a large value (a DAX object of its own)
const samples = {
  binary: [Uint8Array.of(1, 2, 3), new Uint8Array(0), new Uint8Array(2000).fill(7), new Uint8Array(20_000).fill(9)],
  utf8: ['', 'ada', 'é中😀', big],
  json: [{ name: 'ada', tags: ['x', 'y'], n: 1.5 }, [1, [2, [3]]], 'text', 42, null, true, { big }],
  msgpack: [
    { name: 'ada', age: 36, nested: { ok: true, list: [1, 'two', null] } },
    new Map<unknown, unknown>([
      ['a', 1],
      [2, 'b'],
    ]),
    new Set([1, 2, 3]),
    new Date(1_700_000_000_000),
    Uint8Array.of(5, 6, 7),
    123456789012n,
    -0.5,
    'plain string',
    null,
    [{ big }],
  ],
} as const;
const keysFor = {
  binary: [Uint8Array.of(0x61), Uint8Array.of(0xff, 0), Uint8Array.of(1, 2, 3, 4)],
  utf8: ['a', 'b/é', 'z'.repeat(100)],
  ordered: ['a', 1, -2.5, true, null, ['user', 7], ['user', 'x', false]],
} as const;

function expectRoundTrip(got: unknown, want: unknown): void {
  if (want instanceof Uint8Array) {
    expect(got).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(got as Uint8Array).equals(Buffer.from(want))).toBe(true);
  } else expect(got).toEqual(want);
}

describe('value encodings round-trip under every key encoding', () => {
  for (const ke of ['binary', 'utf8', 'ordered'] as const)
    for (const ve of ['binary', 'utf8', 'json', 'msgpack'] as const)
      test(`keys ${ke}, values ${ve}: put/get/getMany/range/values/batch, and after reopen`, () => {
        const file = tempFile();
        const keys = keysFor[ke] as readonly unknown[];
        const values = samples[ve] as readonly unknown[];
        const pairs = keys.flatMap((k, i) => values.map((v, j) => [[k, i, j].flat(), v] as const));
        const keyOf = (i: number, j: number): unknown =>
          ke === 'ordered' ? [i, j] : ke === 'utf8' ? `${String(i)}/${j}` : Uint8Array.of(i, j);
        let db: AnyStore = open(file, { size: 64 * MIB, keyEncoding: ke, valueEncoding: ve });
        try {
          for (let i = 0; i < keys.length; i++) db.put(keys[i], values[i % values.length]);
          values.forEach((v, j) => db.batch([{ type: 'put', key: keyOf(100, j), value: v }]));
          const check = (): void => {
            for (let i = 0; i < keys.length; i++) expectRoundTrip(db.get(keys[i]), values[i % values.length]);
            const many = db.getMany([...keys, keyOf(200, 0)]);
            expect(many.length).toBe(keys.length + 1);
            expect(many[keys.length]).toBeUndefined();
            for (let i = 0; i < keys.length; i++) expectRoundTrip(many[i], values[i % values.length]);
            for (let j = 0; j < values.length; j++) expectRoundTrip(db.get(keyOf(100, j)), values[j]);
            const all = [...db.range()];
            expect(all.length).toBe(keys.length + values.length);
            expect([...db.values()].length).toBe(all.length);
            expect([...db.keys()].length).toBe(all.length);
            for (const [k, v] of all) expectRoundTrip(db.get(k), v);
            expect(db.getCount()).toBe(all.length);
          };
          check();
          db.close();
          db = open(file); // no options: the store's own encodings
          expect([db.keyEncoding, db.valueEncoding]).toEqual([ke, ve]);
          check();
        } finally {
          db.close();
        }
        expect(pairs.length).toBeGreaterThan(0);
      });
});

/** Model order of ordered keys (the header's). */
function rank(p: unknown): number {
  return p === null ? 0 : p === false ? 1 : p === true ? 2 : typeof p === 'number' ? 3 : 4;
}
function compareCodePoints(a: string, b: string): number {
  const x = [...a].map((c) => c.codePointAt(0)!);
  const y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}
function comparePart(a: unknown, b: unknown): number {
  const r = rank(a) - rank(b);
  if (r !== 0) return r;
  if (typeof a === 'number') return a < (b as number) ? -1 : a > (b as number) ? 1 : 0;
  if (typeof a === 'string') return compareCodePoints(a, b as string);
  return 0;
}
/** Part by part; a scalar compares as a one-part compound key (the same bytes). */
function compareKeys(x: OrderedKey, y: OrderedKey): number {
  const a = Array.isArray(x) ? x : [x];
  const b = Array.isArray(y) ? y : [y];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = comparePart(a[i], b[i]);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}
/** The key as stored: -0 is 0, a one-part array is its part (the same bytes: encodings.ts). */
const normal = (k: OrderedKey): OrderedKey =>
  Array.isArray(k) ? (k.length === 1 ? normal(k[0]) : k.map((p) => (p === 0 ? 0 : p))) : k === 0 ? 0 : k;
const canonical = (k: OrderedKey): string =>
  JSON.stringify(Array.isArray(k) ? k.map((p) => [typeof p, String(p)]) : [typeof k, String(k)]);

const part = fc.oneof(
  fc.boolean(),
  fc.double({ noNaN: true }),
  fc.integer({ min: -1000, max: 1000 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: fc.constantFrom('\u0000', '\u0001', '\u0004', '\u0005', '\u001b', 'a', 'b'), maxLength: 5 }),
);

describe('ordered keys sort like their values', () => {
  for (const [name, arb] of [
    ['scalars', fc.oneof(part, fc.constant(null))],
    ['compound keys', fc.array(part, { minLength: 1, maxLength: 4 })],
  ] as const)
    // DAXSTORE_LONG scales the runs and the time allowed alike
    test(`${name}: range() gives the model order, each key decoded equal`, { timeout: scaled(60_000) }, () =>
      withSeed(FILE, (seed) => {
        let stores = 0;
        let keys = 0;
        fc.assert(
          fc.property(fc.array(arb as fc.Arbitrary<OrderedKey>, { minLength: 1, maxLength: 60 }), (raw) => {
            stores++;
            keys += raw.length;
            const db = openMedia(createSimMedia(16 * MIB), { valueEncoding: 'json' });
            try {
              const unique = new Map<string, OrderedKey>();
              raw.forEach((k, i) => {
                db.put(k, i);
                unique.set(canonical(normal(k)), normal(k));
              });
              const want = [...unique.values()].sort(compareKeys);
              const got = [...db.keys()];
              expect(got).toEqual(want);
              expect([...db.keys({ reverse: true })]).toEqual([...want].reverse());
              // bounds are ordered keys too: everything >= the middle key
              const mid = want[Math.floor(want.length / 2)];
              expect([...db.keys({ gte: mid })]).toEqual(want.filter((k) => compareKeys(k, mid) >= 0));
              expect(db.getCount({ lt: mid })).toBe(want.filter((k) => compareKeys(k, mid) < 0).length);
            } finally {
              db.close();
            }
          }),
          { seed, numRuns: scaled(40) },
        );
        console.log(`ordered keys, ${name}: ${stores} stores, ${keys} keys, each in model order`);
      }),
    );

  // Strings around 64 characters and integers of every size too (each length ordered-binary
  // gives a number alone): writeOrderedKey writes numbers and short ASCII strings itself.
  const keyPart = fc.oneof(
    part,
    fc.tuple(fc.integer({ min: 1, max: 53 }), fc.maxSafeInteger()).map(([bits, n]) => n % 2 ** bits),
    fc.string({
      unit: fc.constantFrom('a', '~', '\u001c', '\u001b', '\u0004', '\u0005', '\u007f', '\u0080', 'é'),
      minLength: 60,
      maxLength: 68,
    }),
  );
  test('a key is stored as exactly the bytes ordered-binary gives its stored form', () =>
    withSeed(FILE, (seed) => {
      const scratch = new Uint8Array(ORDERED_SCRATCH_BYTES);
      const library = new Uint8Array(ORDERED_SCRATCH_BYTES);
      let keys = 0;
      fc.assert(
        fc.property(fc.oneof(keyPart, fc.constant(null), fc.array(keyPart, { maxLength: 6 })), (k) => {
          keys++;
          const n = writeOrderedKey(scratch, k, 'test');
          const end = writeKey(Array.isArray(k) ? k.map((p) => (p === 0 ? 0 : p)) : k === 0 ? 0 : k, library, 0);
          expect(Array.from(scratch.subarray(1, 1 + n))).toEqual(Array.from(library.subarray(0, end)));
        }),
        { seed, numRuns: scaled(2000) },
      );
      console.log(`ordered key bytes: ${keys} keys, each as ordered-binary writes it`);
    }));

  test('a key reads back as ordered-binary reads its bytes (the in-place reader of simple keys too)', () =>
    withSeed(FILE, (seed) => {
      const scratch = new Uint8Array(ORDERED_SCRATCH_BYTES);
      const ascii = fc.string({
        unit: fc.constantFrom('a', 'Z', '~', ' ', '\u001c', '\u0005', '\u007f'),
        maxLength: 52,
      });
      const nine = fc.double({ noNaN: true }).map((n) => (n === 0 ? 2 ** -1074 : n)); // alone, a number's ninth byte is rarely 0
      // With the characters below 0x05 that ordered-binary escapes (an escape and the byte it
      // escapes; the bytes after the key hold 0xee, which readKey's string reader must not take).
      const other = fc.string({
        unit: fc.constantFrom('a', '\u001b', '\u0080', 'é', '😀', '\u0005', '\u0000', '\u0001', '\u0003', '\u0004'),
        maxLength: 70,
      });
      const readPart = fc.oneof(ascii, nine, other, fc.boolean(), fc.integer(), fc.maxSafeInteger());
      let keys = 0;
      const check = (k: OrderedKey, at: number): void => {
        keys++;
        const n = writeOrderedKey(scratch, k, 'test');
        const bytes = new Uint8Array(at + n + 8).fill(0xee); // a non-zero byte after the key
        bytes.set(scratch.subarray(1, 1 + n), at);
        const copy = new Uint8Array(n + 8);
        copy.set(scratch.subarray(1, 1 + n));
        const want: unknown = n === 0 ? [] : readKey(copy, 0, n);
        const got = readOrderedKey(bytes, at, n);
        expect(got).toEqual(want);
        if (typeof want === 'number') expect(Object.is(got, want)).toBe(true);
      };
      for (let length = 1; length <= 70; length++) {
        const s = 'k'.repeat(length);
        for (const k of [s, [s, length], [length, s, s]]) check(k, length);
      }
      fc.assert(
        fc.property(
          fc.oneof(readPart, fc.constant(null), fc.array(readPart, { maxLength: 6 })),
          fc.integer({ min: 0, max: 64 }),
          (k, at) => check(k as OrderedKey, at),
        ),
        { seed, numRuns: scaled(3000) },
      );
      console.log(`ordered key reads: ${keys} keys, each as ordered-binary reads it`);
    }));

  test('a compound prefix selects that key and the longer keys starting with its parts, and nothing else', () => {
    const db = openMedia(createSimMedia(16 * MIB), { valueEncoding: 'utf8' });
    try {
      const keys: OrderedKey[] = [['user', 1], ['user', 2, 'x'], ['username', 1], ['users', 0], 'user', ['use', 1]];
      for (const k of keys) db.put(k, 'v');
      expect([...db.keys({ prefix: ['user'] })]).toEqual(['user', ['user', 1], ['user', 2, 'x']]);
      expect([...db.keys({ prefix: ['user', 2] })]).toEqual([['user', 2, 'x']]);
      expect(db.getCount({ prefix: ['user'] })).toBe(3);
      expect(db.getCount({ prefix: 'user' })).toBe(5); // a string prefix is a byte prefix: 'username', 'users' too
      expect(db.get(['user'])).toBe('v'); // ['user'] is the key 'user'
      expect(db.deleteRange({ prefix: ['user'] })).toBe(3);
      expect([...db.keys()]).toEqual([
        ['use', 1],
        ['username', 1],
        ['users', 0],
      ]);
    } finally {
      db.close();
    }
  });
});

describe('the store records its encodings', () => {
  test('reopen: omitted options read the recorded ones, other ones are EINVAL naming them, binary gives the raw bytes', () => {
    const file = tempFile();
    const db = open(file, { size: 16 * MIB, keyEncoding: 'utf8', valueEncoding: 'json' });
    db.put('k', { a: 1 });
    db.close();
    const e = (() => {
      try {
        open(file, { valueEncoding: 'msgpack' });
      } catch (err) {
        return err;
      }
    })();
    expect(isDaxError(e, 'EINVAL')).toBe(true);
    expect(String(e)).toMatch(/valueEncoding 'json'/);
    expect(daxCodeOf(() => open(file, { keyEncoding: 'ordered' }))).toBe('EINVAL');
    const raw = open(file, { valueEncoding: 'binary' });
    expect(Buffer.from(raw.get('k')!).toString()).toBe('{"a":1}');
    raw.close();
    const again = open(file);
    expect(again.get('k')).toEqual({ a: 1 });
    again.close();
  });

  test('a new store without options uses ordered keys and msgpack values', () => {
    const file = tempFile();
    const db = open(file, { size: 16 * MIB });
    try {
      db.put('user:1', { name: 'ada' });
      db.put(10, 'ten');
      db.put(9, 'nine');
      db.put(100, 'hundred');
      expect(db.get('user:1')).toEqual({ name: 'ada' });
      expect([...db.keys()]).toEqual([9, 10, 100, 'user:1']);
      expect([db.keyEncoding, db.valueEncoding]).toEqual(['ordered', 'msgpack']);
    } finally {
      db.close();
    }
  });

  test('a damaged encoding record is ECORRUPT unless both encodings are given (then it is rewritten)', () => {
    const media = createSimMedia(16 * MIB);
    const db = openMedia(media, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    const root = db.dax.device.root.offset;
    db.put('k', 'v');
    db.close();
    const image = media.crashImage({ mode: 'none' });
    const u8 = new Uint8Array(image.buffer);
    u8[root + 9] ^= 0xff; // copy A
    u8[root + KV_ROOT_BYTES + 9] ^= 0xff; // copy B
    image.persist(root, 2 * KV_ROOT_BYTES); // into the durable image the next crash images start from
    expect(daxCodeOf(() => openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false }))).toBe('ECORRUPT');
    expect(
      daxCodeOf(() => openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, keyEncoding: 'utf8' })),
    ).toBe('ECORRUPT');
    const one = openMedia(image, { formatIfEmpty: false, keyEncoding: 'utf8', valueEncoding: 'utf8' });
    expect(one.get('k')).toBe('v');
    one.close();
    const two = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expect([two.keyEncoding, two.valueEncoding]).toEqual(['utf8', 'utf8']);
    expect(two.get('k')).toBe('v');
    two.close();
  });

  test('one damaged copy: the other serves', () => {
    const media = createSimMedia(16 * MIB);
    const db = openMedia(media, { keyEncoding: 'utf8', valueEncoding: 'json' });
    const root = db.dax.device.root.offset;
    db.put('k', [1]);
    db.close();
    const image = media.crashImage({ mode: 'none' });
    new Uint8Array(image.buffer)[root + 8] ^= 0xff;
    image.persist(root, KV_ROOT_BYTES);
    const again = openMedia(image, { formatIfEmpty: false });
    expect(again.get('k')).toEqual([1]);
    again.close();
  });
});

describe('what an encoding cannot hold is EINVAL and changes nothing', () => {
  test('values and keys of the wrong kind', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const cases: Array<[string, string, (db: AnyStore) => unknown]> = [
      ['utf8', 'binary', (db) => db.put(Uint8Array.of(1), 5)],
      ['json', 'binary', (db) => db.put(Uint8Array.of(1), undefined)],
      ['json', 'binary', (db) => db.put(Uint8Array.of(1), () => 1)],
      ['json', 'binary', (db) => db.put(Uint8Array.of(1), cycle)],
      ['json', 'binary', (db) => db.put(Uint8Array.of(1), 5n)],
      ['msgpack', 'binary', (db) => db.put(Uint8Array.of(1), undefined)],
      ['msgpack', 'binary', (db) => db.put(Uint8Array.of(1), () => 1)],
      ['msgpack', 'ordered', (db) => db.batch([{ type: 'put', key: 'a', value: () => 1 }])],
      ['msgpack', 'ordered', (db) => db.put(NaN, 1)],
      ['msgpack', 'ordered', (db) => db.put(Uint8Array.of(1), 1)],
      ['msgpack', 'ordered', (db) => db.put({ a: 1 }, 1)],
      ['msgpack', 'ordered', (db) => db.put(['a', ['nested']], 1)],
      ['msgpack', 'ordered', (db) => db.put(['a', null], 1)],
      ['msgpack', 'ordered', (db) => db.put('x'.repeat(1100), 1)],
      [
        'msgpack',
        'ordered',
        (db) =>
          db.put(
            Array.from({ length: 200 }, () => 1.5),
            1,
          ),
      ],
      [
        'msgpack',
        'ordered',
        (db) =>
          db.batch([
            { type: 'put', key: 'a', value: 1 },
            { type: 'put', key: NaN, value: 2 },
          ]),
      ],
      [
        'msgpack',
        'ordered',
        (db) =>
          db.batch([
            { type: 'put', key: 'a', value: 1 },
            { type: 'put', key: 'b', value: undefined },
          ]),
      ],
      ['msgpack', 'ordered', (db) => [...db.range({ gt: {} })]],
      ['msgpack', 'ordered', (db) => [...db.range({ prefix: 5 })]],
      ['msgpack', 'utf8', (db) => db.put(5, 1)],
      ['msgpack', 'utf8', (db) => db.get(Uint8Array.of(1))],
    ];
    for (const [ve, ke, fn] of cases) {
      const db = openMedia(createSimMedia(16 * MIB), {
        keyEncoding: ke as 'binary',
        valueEncoding: ve as 'binary',
      }) as AnyStore;
      try {
        expect(
          daxCodeOf(() => fn(db)),
          `${ke}/${ve}: ${fn}`,
        ).toBe('EINVAL');
        expect(db.stats().keys).toBe(0);
        expect(db.stats().puts).toBe(0);
      } finally {
        db.close();
      }
    }
  });
});

describe('results', () => {
  test('binary values and keys are plain Uint8Arrays over their own ArrayBuffer (get, getMany, range, values, large)', () => {
    const db = openMedia(createSimMedia(64 * MIB), { keyEncoding: 'binary', valueEncoding: 'binary' });
    try {
      const sizes = [1, 100, 1500, 9000, LARGE_VALUE_THRESHOLD_BYTES + 1];
      sizes.forEach((n, i) => db.put(Uint8Array.of(i), new Uint8Array(n).fill(i + 1)));
      const results: Uint8Array[] = [
        ...sizes.map((_, i) => db.get(Uint8Array.of(i))!),
        ...(db.getMany(sizes.map((_, i) => Uint8Array.of(i))) as Uint8Array[]),
        ...[...db.range()].flat(),
        ...db.values(),
        ...db.keys(),
      ];
      for (const r of results) {
        expect(r.constructor).toBe(Uint8Array);
        expect(r.buffer).toBeInstanceOf(ArrayBuffer);
        expect(r.buffer).not.toBeInstanceOf(SharedArrayBuffer);
      }
      const typed: Uint8Array<ArrayBuffer> | undefined = db.get(Uint8Array.of(0)); // compiles: typed as such
      expect(new Blob([typed!]).size).toBe(1);
    } finally {
      db.close();
    }
  });

  test("another msgpackr user's buffers are never overwritten by the store's packing", () => {
    const db = openMedia(createSimMedia(16 * MIB));
    try {
      const mine = Array.from({ length: 50 }, (_, i) => pack({ i, text: `value ${i}` }));
      for (let i = 0; i < 50; i++) {
        db.put(`k${i}`, { i, filler: 'y'.repeat(i * 10) });
        mine.push(pack({ i: 100 + i, text: `after put ${i}` }));
        db.batch([{ type: 'put', key: `b${i}`, value: [i, 'z'.repeat(i)] }]);
      }
      mine.forEach((bytes, j) => expect(unpack(bytes).i).toBe(j < 50 ? j : 100 + (j - 50)));
      for (let i = 0; i < 50; i++) {
        expect(db.get(`k${i}`)).toEqual({ i, filler: 'y'.repeat(i * 10) });
        expect(db.get(`b${i}`)).toEqual([i, 'z'.repeat(i)]);
      }
    } finally {
      db.close();
    }
  });
});
