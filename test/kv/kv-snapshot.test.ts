/**
 * Snapshots in one thread: db.snapshot() and range() read the store as of their creation
 * (overwrites, deletes, batches, new keys, deleteRange after it are not seen); views of a
 * snapshot stay valid until it closes, across overwrites and compaction (R6); deleted keys stay
 * visible to older snapshots as tombstones, removed once none is older; superseded large values
 * and compacted segments are kept while a snapshot can read them and freed after; close,
 * `using`, a closed store, abandoned ranges, snapshots and iterators dropped without close
 * (released when collected). Across threads: kv-snapshot-workers; the hold
 * itself red: kv-snapshot-hold.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia as openEncoded, type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { expectCode } from '../helpers/expect-code.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const td = new TextDecoder();
const key = (i: number): string => `k${String(i).padStart(5, '0')}`;
const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : td.decode(v));
const listing = (it: Iterable<[Uint8Array, Uint8Array]>): string[] =>
  [...it].map(([k, v]) => `${td.decode(k)}=${td.decode(v)}`);

function store(): KvStore {
  return openMedia(createSimMedia(32 * 2 ** 20), { durability: 'none' });
}

describe('kv snapshots', () => {
  it('a snapshot and a range read the store as of their creation, whatever is written after', () => {
    const db = store();
    for (let i = 0; i < 300; i++) db.put(key(i), `v${i}`);
    const before = listing(db.range());
    const snap = db.snapshot();
    const range = db.range({ gte: key(100), lt: key(200) });
    db.put(key(1), 'overwritten');
    db.delete(key(2));
    db.put(key(1000), 'new');
    db.batch([
      { type: 'put', key: key(3), value: 'batch' },
      { type: 'del', key: key(150) },
    ]);
    db.deleteRange({ gte: key(200), lt: key(250) });
    expect(listing(snap.range())).toEqual(before);
    expect(listing(range)).toEqual(before.slice(100, 200));
    expect(text(snap.get(key(1)))).toBe('v1');
    expect(text(snap.get(key(2)))).toBe('v2');
    expect(snap.has(key(2))).toBe(true);
    expect(snap.has(key(1000))).toBe(false);
    expect(snap.get(key(1000))).toBeUndefined();
    expect(text(snap.getView(key(3)))).toBe('v3');
    expect(listing(snap.range({ gte: key(148), lt: key(152), reverse: true }))).toEqual(
      [148, 149, 150, 151].reverse().map((i) => `${key(i)}=v${i}`),
    );
    expect(snap.getEntry(key(1))!.version).toBeLessThanOrEqual(snap.sequence);
    // The newest reads see everything.
    expect(text(db.get(key(1)))).toBe('overwritten');
    expect(db.has(key(2))).toBe(false);
    expect(db.has(key(150))).toBe(false);
    expect(db.getEntry(key(1))!.version).toBeGreaterThan(snap.sequence);
    expect([...db.range()].length).toBe(300 - 1 - 1 - 50 + 1);
    expect(db.stats().keys).toBe(300 - 1 - 1 - 50 + 1);
    expect(db.stats().snapshots).toBe(1); // the range ran out: only snap is left
    snap.close();
    expect(db.stats().snapshots).toBe(0);
    db.close();
  });

  it('views of a snapshot stay valid until it closes, across overwrites and compaction (R6)', () => {
    const db = openMedia(createSimMedia(32 * 2 ** 20), { durability: 'none' });
    const big = (i: number, round: number): string => `${round}:${i}:`.padEnd(1000, String.fromCharCode(97 + round));
    for (let i = 0; i < 2000; i++) db.put(key(i), big(i, 0));
    const snap = db.snapshot();
    const views = Array.from({ length: 2000 }, (_, i) => snap.getView(key(i))!);
    for (let round = 1; round <= 3; round++) for (let i = 0; i < 2000; i++) db.put(key(i), big(i, round));
    const free0 = db.stats().freeBlocks;
    const report = db.compact({ maxLiveRatio: 0.9 });
    expect(report.segmentsFreed).toBeGreaterThan(0);
    const held = db.stats().versionsHeldForSnapshots;
    // every freed segment waits for the snapshot (automatic compaction may have freed more before)
    expect(held).toBeGreaterThanOrEqual(report.segmentsFreed);
    for (let round = 4; round <= 6; round++) for (let i = 0; i < 2000; i++) db.put(key(i), big(i, round));
    views.forEach((v, i) => expect(td.decode(v)).toBe(big(i, 0)));
    for (let i = 0; i < 2000; i += 97) expect(text(snap.get(key(i)))).toBe(big(i, 0));
    snap.close();
    expect(db.stats().versionsHeldForSnapshots).toBe(0);
    db.compact({ maxLiveRatio: 0.9 });
    expect(db.stats().freeBlocks).toBeGreaterThan(free0);
    expect(text(db.get(key(7)))).toBe(big(7, 6));
    db.close();
  });

  it('a tombstone still in the index at close is no key of the index checkpoint', () => {
    const media = createSimMedia(32 * 2 ** 20);
    const db = openMedia(media, { durability: 'none', checkpoint: true });
    for (let i = 0; i < 10; i++) db.put(key(i), `v${i}`);
    db.snapshot(); // held until close: the delete below leaves a tombstone
    db.delete(key(3));
    expect(db.stats().tombstones).toBe(1);
    db.close();
    expect(db.lastCheckpoint !== undefined && !('error' in db.lastCheckpoint)).toBe(true);
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    try {
      expect(again.stats().recovery?.checkpoint?.loaded).toBeDefined();
      expect(again.has(key(3))).toBe(false);
      expect(again.stats().keys).toBe(9);
      expect(listing(again.range()).length).toBe(9);
      again.put(key(3), 'back');
      expect(again.stats().keys).toBe(10);
      expect(text(again.get(key(3)))).toBe('back');
    } finally {
      again.close();
    }
  });

  it('deleted keys stay visible to older snapshots as tombstones, removed once none is older', () => {
    const db = store();
    for (let i = 0; i < 3000; i++) db.put(key(i), `v${i}`);
    db.delete(key(0)); // no snapshot held: removed from the index at once
    expect(db.stats().tombstones).toBe(0);
    const snap = db.snapshot();
    for (let i = 1; i < 1500; i++) db.delete(key(i));
    db.deleteRange({ gte: key(1500), lt: key(2000) });
    db.batch([{ type: 'del', key: key(2000) }]);
    expect(db.stats().tombstones).toBe(2000);
    expect(db.stats().keys).toBe(999);
    expect(db.has(key(5))).toBe(false);
    expect(db.delete(key(5))).toBe(false);
    expect(db.deleteRange({ lt: key(2001) })).toBe(0);
    expect([...db.range()].length).toBe(999);
    expect(snap.has(key(5))).toBe(true);
    expect([...snap.range()].length).toBe(2999);
    db.put(key(5), 'again'); // over a tombstone: present again, the tombstone gone
    expect(db.stats().tombstones).toBe(1999);
    expect(text(snap.get(key(5)))).toBe('v5');
    expect(text(db.get(key(5)))).toBe('again');
    snap.close(); // the tombstones' sweep is due (more than SWEEP_MIN): it runs at the release
    expect(db.stats().tombstones).toBe(0);
    expect(db.stats().keys).toBe(1000);
    expect([...db.range()].length).toBe(1000);
    db.close();
    const again = openMedia(createSimMedia(8 * 2 ** 20)); // (a separate store: nothing carried over)
    again.close();
  });

  it('a superseded large value is kept for an older snapshot and removed once it closes', () => {
    const db = store();
    const large = (c: number): Uint8Array => new Uint8Array(40_000).fill(c);
    db.put('big', large(1));
    const snap = db.snapshot();
    db.put('big', large(2));
    db.put('big', large(3));
    db.delete('big');
    expect(db.stats().largeValueObjects).toBe(3); // two superseded, one deleted: all kept for snap
    expect(snap.get('big')).toEqual(large(1));
    expect(snap.getView('big')).toEqual(large(1));
    snap.close();
    db.compact();
    expect(db.stats().largeValueObjects).toBe(0);
    expect(db.get('big')).toBeUndefined();
    db.close();
  });

  it('close, using, and a closed store: snapshots and ranges are released', () => {
    const db = store();
    db.put('a', '1');
    const snap = db.snapshot();
    snap.close();
    snap.close(); // idempotent
    expect(snap.closed).toBe(true);
    expectCode(() => snap.get('a'), 'ECLOSED');
    expectCode(() => snap.range(), 'ECLOSED');
    {
      using inner = db.snapshot();
      expect(text(inner.get('a'))).toBe('1');
      expect(db.stats().snapshots).toBe(1);
    }
    expect(db.stats().snapshots).toBe(0);
    const r = db.range();
    expect(db.stats().snapshots).toBe(1);
    r.return();
    expect(db.stats().snapshots).toBe(0);
    for (const _ of db.range()) break; // a for-of that breaks ends the range
    expect(db.stats().snapshots).toBe(0);
    const held = db.snapshot();
    const heldRange = held.range();
    db.close();
    expectCode(() => held.get('a'), 'ECLOSED');
    expectCode(() => heldRange.next(), 'ECLOSED');
    expectCode(() => db.snapshot(), 'ECLOSED');
    held.close(); // after the store: nothing to release, no error
  });

  it('a snapshot of a range in progress: the range ends with ECLOSED when its snapshot closes', () => {
    const db = store();
    for (let i = 0; i < 2000; i++) db.put(key(i), 'x');
    const snap = db.snapshot();
    const it = snap.range();
    expect(it.next().done).toBe(false);
    snap.close();
    expectCode(() => {
      for (;;) if (it.next().done === true) break;
    }, 'ECLOSED');
    db.close();
  });

  it("with the default encodings ('ordered' keys, msgpack values): decoded reads as of the snapshot; keys(), values() and getCount() skip tombstones", () => {
    const db = openEncoded(createSimMedia(16 * 2 ** 20), { durability: 'none' });
    db.batch([
      { type: 'put', key: ['acct', 1], value: { balance: 70 } },
      { type: 'put', key: ['acct', 2], value: { balance: 30 } },
      { type: 'put', key: ['acct', 3], value: { balance: 0 } },
    ]);
    using snap = db.snapshot();
    const keys = db.keys({ prefix: ['acct'] });
    db.batch([
      { type: 'put', key: ['acct', 1], value: { balance: 50 } },
      { type: 'put', key: ['acct', 2], value: { balance: 50 } },
      { type: 'del', key: ['acct', 3] },
    ]);
    expect(snap.get(['acct', 1])).toEqual({ balance: 70 });
    expect(snap.getEntry(['acct', 2])?.value).toEqual({ balance: 30 });
    expect(snap.has(['acct', 3])).toBe(true);
    expect([...snap.range({ prefix: ['acct'] })]).toEqual([
      [['acct', 1], { balance: 70 }],
      [['acct', 2], { balance: 30 }],
      [['acct', 3], { balance: 0 }],
    ]);
    expect([...keys]).toEqual([
      ['acct', 1],
      ['acct', 2],
      ['acct', 3],
    ]);
    // The store now: ['acct', 3] is a tombstone kept for the snapshot, and no key.
    expect(db.get(['acct', 3])).toBeUndefined();
    expect(db.has(['acct', 3])).toBe(false);
    expect(
      db.getMany([
        ['acct', 1],
        ['acct', 3],
      ]),
    ).toEqual([{ balance: 50 }, undefined]);
    expect([...db.values({ prefix: ['acct'] })]).toEqual([{ balance: 50 }, { balance: 50 }]);
    expect(db.getCount({ prefix: ['acct'] })).toBe(2);
    expect(db.getEntry(['acct', 1])?.value).toEqual({ balance: 50 });
    expect(db.stats().snapshots).toBe(1);
    db.close();
  });
});

describe('kv snapshots dropped without close', () => {
  it('snapshots and iterators the program drops are released when collected, young or registered', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const db = store();
    for (let i = 0; i < 50; i++) db.put(key(i), `v${i}`);
    const drop = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const snap = db.snapshot();
        expect(text(snap.get(key(i % 50)))).toBe(`v${i % 50}`);
        const it = db.range()[Symbol.iterator]();
        expect(it.next().done).toBe(false);
      }
    };
    drop(10); // fewer than the young list holds: registered at the end of this job
    await Promise.resolve();
    drop(300); // more: registered synchronously, 64 at a time
    expect(db.stats().snapshots).toBe(620);
    const closed = db.snapshot();
    closed.close(); // closed while young: never registered, released once
    const deadline = Date.now() + 30_000;
    while (db.stats().snapshots !== 0 && Date.now() < deadline) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(db.stats().snapshots).toBe(0);
    db.close();
  }, 60_000);
});
