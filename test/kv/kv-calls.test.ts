/**
 * The calls users of lmdb-js and level look for: getMany, keys-only and values-only iteration
 * (keys()/values() and range({ keys: false }) / range({ values: false })), getCount (exact,
 * bounded by the range and the limit), clear, Symbol.dispose / Symbol.asyncDispose on the
 * store and its iterators, and putAsync / deleteAsync resolving once durable ('group': not
 * before the group commit that covers the write, checked on a simulated device's durable image).
 */
import { describe, expect, test } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia, type KvStore } from '../../src/kv/index.js';
import { setBroken } from '../../src/test-break.js';
import { daxCodeOf } from '../helpers/expect-code.js';

const MIB = 2 ** 20;

function filled(n: number): KvStore<number | string, string> {
  const db = openMedia(createSimMedia(16 * MIB), { valueEncoding: 'utf8' }) as unknown as KvStore<
    number | string,
    string
  >;
  for (let i = 0; i < n; i++) db.put(i, `v${i}`);
  return db;
}

describe('reads', () => {
  test('getMany: values in the order asked, undefined for absent keys, duplicates allowed; bad keys EINVAL', () => {
    const db = filled(600);
    try {
      const asked = [5, 599, 1000, 5, -1, ...Array.from({ length: 700 }, (_, i) => i)];
      const got = db.getMany(asked);
      expect(got.slice(0, 5)).toEqual(['v5', 'v599', undefined, 'v5', undefined]);
      expect(got.slice(5)).toEqual(Array.from({ length: 700 }, (_, i) => (i < 600 ? `v${i}` : undefined)));
      expect(db.getMany([])).toEqual([]);
      expect(daxCodeOf(() => db.getMany('nope' as never))).toBe('EINVAL');
      expect(daxCodeOf(() => db.getMany([1, NaN]))).toBe('EINVAL');
    } finally {
      db.close();
    }
  });

  test('keys-only and values-only iteration agree with range()', () => {
    const db = filled(300);
    try {
      const all = [...db.range({ gte: 10, lt: 250, reverse: true, limit: 100 })];
      expect([...db.keys({ gte: 10, lt: 250, reverse: true, limit: 100 })]).toEqual(all.map(([k]) => k));
      expect([...db.values({ gte: 10, lt: 250, reverse: true, limit: 100 })]).toEqual(all.map(([, v]) => v));
      expect([...db.range({ gte: 10, lt: 250, reverse: true, limit: 100, values: false })]).toEqual(
        all.map(([k]) => [k, undefined]),
      );
      expect([...db.range({ gte: 10, lt: 250, reverse: true, limit: 100, keys: false })]).toEqual(
        all.map(([, v]) => [undefined, v]),
      );
      expect(all.length).toBe(100);
      expect(all[0]).toEqual([249, 'v249']);
    } finally {
      db.close();
    }
  });

  test('getCount: every key, a range, a prefix, a limit; exact after writes and deletes', () => {
    const db = filled(10_000);
    try {
      expect(db.getCount()).toBe(10_000);
      expect(db.getCount({ gte: 100, lt: 9_100 })).toBe(9_000);
      expect(db.getCount({ gt: 100, lte: 9_100, reverse: true })).toBe(9_000);
      expect(db.getCount({ limit: 7 })).toBe(7);
      expect(db.getCount({ gte: 5_000, limit: 6_000 })).toBe(5_000);
      expect(db.deleteRange({ lt: 1_000 })).toBe(1_000);
      db.put('text', 'x');
      expect(db.getCount()).toBe(9_001);
      expect(db.getCount({ prefix: 'te' })).toBe(1);
      expect(daxCodeOf(() => db.getCount({ limt: 3 } as never))).toBe('EINVAL');
    } finally {
      db.close();
    }
  });
});

describe('writes', () => {
  test('clear() deletes every key (or a range) and returns how many; a typo is EINVAL and deletes nothing', () => {
    const db = filled(500);
    try {
      expect(daxCodeOf(() => db.clear({ gtee: 10 } as never))).toBe('EINVAL');
      expect(daxCodeOf(() => db.clear({ gte: undefined }))).toBe('EINVAL');
      expect(db.getCount()).toBe(500);
      expect(db.clear({ gte: 400 })).toBe(100);
      expect(db.clear()).toBe(400);
      expect(db.getCount()).toBe(0);
      expect([...db.keys()]).toEqual([]);
    } finally {
      db.close();
    }
  });

  test("putAsync/deleteAsync resolve once durable: with 'group', not before the commit that covers them", async () => {
    const media = createSimMedia(16 * MIB);
    const db = openMedia(media, { durability: 'group', keyEncoding: 'utf8', valueEncoding: 'utf8' });
    try {
      const durableHas = (s: string): boolean => Buffer.from(media.durableBytes()).includes(Buffer.from(s));
      const p = db.putAsync('k1', 'value-one');
      expect(db.get('k1')).toBe('value-one'); // applied at once
      expect(durableHas('value-one')).toBe(false); // not durable before the group commit
      let settled = false;
      void p.then(() => (settled = true));
      await p;
      expect(settled).toBe(true);
      expect(durableHas('value-one')).toBe(true);
      await db.putAsync('k2', 'value-two');
      expect(await db.deleteAsync('k2')).toBe(true);
      expect(await db.deleteAsync('absent')).toBe(false);
      expect(db.get('k2')).toBeUndefined();
      await expect(db.putAsync(5 as never, 'x')).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(db.deleteAsync(undefined as never)).rejects.toMatchObject({ code: 'EINVAL' });
    } finally {
      db.close();
    }
    // a durable image (no pending words) holds what the promises acknowledged
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expect(again.get('k1')).toBe('value-one');
    expect(again.get('k2')).toBeUndefined();
    again.close();
  });

  test('with DAXSTORE_TEST_BREAK=kv-group-resolve-early the promise resolves before the write is durable (red)', async () => {
    const media = createSimMedia(16 * MIB);
    const db = openMedia(media, { durability: 'group', keyEncoding: 'utf8', valueEncoding: 'utf8' });
    setBroken('kv-group-resolve-early', true);
    try {
      await db.putAsync('k', 'early-value');
      expect(Buffer.from(media.durableBytes()).includes(Buffer.from('early-value'))).toBe(false);
    } finally {
      setBroken('kv-group-resolve-early', false);
      db.close();
    }
  });

  test('close() rejects putAsync promises still waiting for the group commit', async () => {
    const db = openMedia(createSimMedia(16 * MIB), { durability: 'group' });
    const p = db.putAsync('k', 1);
    db.close(); // commits first: the write is durable, so the promise resolves
    await expect(p).resolves.toBeUndefined();
    await expect(db.putAsync('k', 2)).rejects.toMatchObject({ code: 'ECLOSED' });
  });
});

describe('dispose', () => {
  test('using closes the store; await using too; iterators end on dispose', async () => {
    const media = createSimMedia(16 * MIB);
    let outer: KvStore<unknown, unknown> | undefined;
    {
      using db = openMedia(media);
      outer = db;
      db.put('a', 1);
      db.put('b', 2);
      {
        using it = db.keys();
        expect(it.next().value).toBe('a');
      }
      const it2 = db.range();
      it2.next();
      it2[Symbol.dispose]();
      expect(it2.next().done).toBe(true);
    }
    expect(outer.closed).toBe(true);
    {
      await using db = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
      outer = db;
      expect(db.get('b')).toBe(2);
    }
    expect(outer.closed).toBe(true);
    outer[Symbol.dispose](); // idempotent, as close()
  });
});
