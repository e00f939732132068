/**
 * transactionSync in one thread: reads see the snapshot plus the transaction's own writes (get,
 * getView, has, range merging puts and deletes with bounds, reverse and limit); an exception,
 * a returned promise or a nested call writes nothing; a conflict (a key or a range the
 * callback read changed before the commit, here made by the callback itself through db) runs
 * the callback again, and after TXN_ATTEMPTS gives up with ECONFLICT; a committed transaction
 * is one record; large values. Across threads: kv-transaction-workers; crashes: kv-crash.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia as openEncoded, type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { TXN_ATTEMPTS } from '../../src/kv/transaction.js';
import { expectCode } from '../helpers/expect-code.js';
import { withBroken } from '../../src/test-break.js';

const td = new TextDecoder();
const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : td.decode(v));
const listing = (it: Iterable<[Uint8Array, Uint8Array]>): string[] =>
  [...it].map(([k, v]) => `${td.decode(k)}=${td.decode(v)}`);

function store(): KvStore {
  const db = openMedia(createSimMedia(32 * 2 ** 20), { durability: 'none' });
  for (const k of ['a', 'b', 'c', 'd']) db.put(k, k.toUpperCase());
  return db;
}

describe('kv transactionSync', () => {
  it('reads see the snapshot plus its own writes; commit writes them all as one record', () => {
    const db = store();
    const batches = db.stats().batches;
    const result = db.transactionSync((txn) => {
      expect(text(txn.get('a'))).toBe('A');
      txn.put('a', 'a2');
      txn.put('e', 'E');
      expect(txn.delete('b')).toBe(true);
      expect(txn.delete('zz')).toBe(false);
      expect(text(txn.get('a'))).toBe('a2');
      expect(text(txn.getView('a'))).toBe('a2');
      expect(txn.has('b')).toBe(false);
      expect(txn.has('e')).toBe(true);
      expect(text(db.get('a'))).toBe('A'); // nothing written yet
      expect(listing(txn.range())).toEqual(['a=a2', 'c=C', 'd=D', 'e=E']);
      expect(listing(txn.range({ reverse: true, limit: 3 }))).toEqual(['e=E', 'd=D', 'c=C']);
      expect(listing(txn.range({ gt: 'a', lte: 'd' }))).toEqual(['c=C', 'd=D']);
      return 42;
    });
    expect(result).toBe(42);
    expect(listing(db.range())).toEqual(['a=a2', 'c=C', 'd=D', 'e=E']);
    expect(db.stats().batches).toBe(batches + 1);
    expect(db.stats().snapshots).toBe(0);
    db.close();
  });

  it('an exception, a promise or a nested call writes nothing; the transaction ends with its callback', () => {
    const db = store();
    expect(() =>
      db.transactionSync((txn) => {
        txn.put('a', 'lost');
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expectCode(
      () =>
        db.transactionSync(async (txn) => {
          txn.put('a', 'lost');
        }),
      'EINVAL',
    );
    expectCode(() => db.transactionSync((txn) => db.transactionSync(() => txn.put('a', 'lost'))), 'EINVAL');
    let kept: { get(k: string): unknown } | undefined;
    db.transactionSync((txn) => {
      kept = txn;
    });
    expectCode(() => kept!.get('a'), 'ECLOSED');
    expectCode(() => db.transactionSync(undefined as unknown as () => void), 'EINVAL');
    expect(text(db.get('a'))).toBe('A');
    expect(db.stats().snapshots).toBe(0);
    db.close();
  });

  it('many keys (past the small sets searched linearly): own writes, rewrites, deletes and a conflict on any read', () => {
    const db = store();
    const key = (i: number): string => `k${String(i).padStart(3, '0')}`;
    for (let i = 0; i < 60; i += 2) db.put(key(i), `old${i}`);
    let runs = 0;
    db.transactionSync((txn) => {
      runs++;
      const before = (i: number): string | undefined =>
        i === 57 && runs > 1 ? 'other' : i % 2 === 0 ? `old${i}` : undefined;
      for (let i = 0; i < 60; i++) expect(text(txn.get(key(i)))).toBe(before(i));
      for (let i = 59; i >= 0; i--) txn.put(key(i), `a${i}`); // descending: the commit sorts them
      for (let i = 0; i < 60; i += 3) txn.put(key(i), `b${i}`);
      for (let i = 0; i < 60; i += 5) txn.delete(key(i));
      for (let i = 0; i < 60; i++) {
        const want = i % 5 === 0 ? undefined : i % 3 === 0 ? `b${i}` : `a${i}`;
        expect(text(txn.get(key(i)))).toBe(want);
      }
      // The read of the 58th key changes under the first run: the commit must see it.
      if (runs === 1) db.put(key(57), 'other');
    });
    expect(runs).toBe(2);
    for (let i = 0; i < 60; i++) {
      const want = i % 5 === 0 ? undefined : i % 3 === 0 ? `b${i}` : `a${i}`;
      expect(text(db.get(key(i))), key(i)).toBe(want);
    }
    db.close();
  });

  // 800 puts whose keys and values are all 17 bytes buffer 1,600 copies of one size: more than
  // two of the transaction's 16 KiB slabs, so the slab is replaced twice in the middle of the
  // transaction, and every copy after that lands at an offset a view of the old slab was made for.
  const slabFillers = (db: KvStore, round: string): void => {
    const key = (i: number): string => `key-${String(i).padStart(12, '0')}`;
    const value = (i: number): string => `${round}${String(i).padStart(16, '0')}`.slice(-17);
    db.transactionSync((txn) => {
      for (let i = 0; i < 800; i++) txn.put(key(i), value(i));
      for (let i = 0; i < 800; i += 97) expect(text(txn.get(key(i))), key(i)).toBe(value(i));
    });
    for (let i = 0; i < 800; i++) expect(text(db.get(key(i))), key(i)).toBe(value(i));
    expect(db.getCount({ gte: 'key-', lt: 'key.' })).toBe(800);
  };

  it('a transaction larger than its slab, twice: every buffered key and value commits as written', () => {
    const db = store();
    slabFillers(db, 'a'); // the views of the first slabs made
    slabFillers(db, 'b'); // and taken again by the next transaction
    db.close();
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-txn-views-kept: keys and values overwritten through old views', () => {
    const db = store();
    expect(() => withBroken('kv-txn-views-kept', () => slabFillers(db, 'a'))).toThrow();
    db.close();
  });

  it('a key read that changes before the commit runs the callback again', () => {
    const db = store();
    let runs = 0;
    db.transactionSync((txn) => {
      runs++;
      const a = text(txn.get('a'));
      if (runs === 1) db.put('a', 'changed'); // another writer, as far as the transaction knows
      txn.put('copy', a ?? '');
    });
    expect(runs).toBe(2);
    expect(text(db.get('copy'))).toBe('changed');
    db.close();
  });

  it('a key added to a range read before the commit runs the callback again (phantom)', () => {
    const db = store();
    let runs = 0;
    db.transactionSync((txn) => {
      runs++;
      const n = [...txn.range({ gte: 'b', lt: 'd' })].length;
      if (runs === 1) db.put('bb', 'new');
      txn.put('count', String(n));
    });
    expect(runs).toBe(2);
    expect(text(db.get('count'))).toBe('3');
    // A write outside the ranges and keys read is no conflict.
    runs = 0;
    db.transactionSync((txn) => {
      runs++;
      [...txn.range({ gte: 'b', lt: 'd' })].length;
      if (runs === 1) db.put('z', 'elsewhere');
      txn.put('count', 'x');
    });
    expect(runs).toBe(1);
    db.close();
  });

  it(`gives up with ECONFLICT after ${TXN_ATTEMPTS} attempts, writing nothing`, () => {
    const db = store();
    let runs = 0;
    expectCode(
      () =>
        db.transactionSync((txn) => {
          runs++;
          txn.get('a');
          db.put('a', `run ${runs}`);
          txn.put('never', 'x');
        }),
      'ECONFLICT',
    );
    expect(runs).toBe(TXN_ATTEMPTS);
    expect(db.has('never')).toBe(false);
    expect(db.stats().snapshots).toBe(0);
    db.close();
  });

  it('large values, and views of the snapshot valid until the transaction ends', () => {
    const db = store();
    const big = new Uint8Array(50_000).fill(9);
    db.put('big', big);
    let runs = 0;
    db.transactionSync((txn) => {
      runs++;
      const view = txn.getView('big')!;
      if (runs === 1) {
        db.put('big', new Uint8Array(50_000).fill(1)); // superseded: its object stays for this attempt
        expect(view.every((b) => b === 9)).toBe(true);
      } else expect(view.every((b) => b === 1)).toBe(true); // the first attempt conflicted on 'big'
      txn.put('big2', new Uint8Array(40_000).fill(2));
      txn.put('a', 'with large');
    });
    expect(runs).toBe(2);
    expect(db.get('big2')!.every((b) => b === 2)).toBe(true);
    expect(db.stats().largeValueObjects).toBeGreaterThanOrEqual(2);
    db.close();
  });

  it("with the default encodings ('ordered' keys, msgpack values): decoded reads, own writes, range; ifVersion", () => {
    const db = openEncoded(createSimMedia(16 * 2 ** 20), { durability: 'none' });
    db.put(['acct', 1], 70);
    db.put(['acct', 2], 30);
    const seen = db.transactionSync((txn) => {
      txn.put(['acct', 1], txn.get(['acct', 1]) - 25);
      txn.put(['acct', 3], { note: 'new' });
      expect(txn.get(['acct', 3])).toEqual({ note: 'new' });
      return [...txn.range({ prefix: ['acct'] })];
    });
    expect(seen).toEqual([
      [['acct', 1], 45],
      [['acct', 2], 30],
      [['acct', 3], { note: 'new' }],
    ]);
    expect(db.get(['acct', 1])).toBe(45);
    const entry = db.getEntry(['acct', 2])!;
    expect(entry.value).toBe(30);
    expect(db.put(['acct', 2], 31, { ifVersion: entry.version })).toBe(true);
    expect(db.put(['acct', 2], 32, { ifVersion: entry.version })).toBe(false);
    expect(db.delete(['acct', 2], { ifVersion: entry.version })).toBe(false);
    expect(db.get(['acct', 2])).toBe(31);
    db.close();
  });
});
