/**
 * msgpack shared structures kept in the store (src/kv/structures.ts):
 *   - arbitrary JS values (fast-check: Map, Set, Date, bigint, typed arrays, nested objects of
 *     many shapes, more shapes than the store shares) read back exactly as self-contained
 *     msgpack gives them, before and after a reopen; the store holds the shared set;
 *   - crash images taken at fences during puts of new shapes ('sync' and 'none'): every
 *     record that survives decodes to the value put (its structures survived with it), and
 *     with 'sync' every acknowledged one survives. DAXSTORE_TEST_BREAK=kv-structures-unpersisted
 *     (a new structure written but not persisted before its record) goes red;
 *   - two workers adding new shapes at once, each reading the other's records as they come,
 *     and the main thread's older handle reading them all;
 *   - a store of format 7 (values self-contained, no structures area) opens, reads its old
 *     values beside new ones whose shared structures use the same record ids, and becomes 8;
 *   - compaction and an index checkpoint keep every value readable;
 *   - one damaged slot of the structures area loses nothing (the other holds the same set);
 *     both damaged: values naming a shared structure and saves of new ones are ECORRUPT;
 *   - a store whose root area has no room for the area keeps values self-contained.
 * A thread that died holding the structures lock is replaced by the next saver (spin-lock.ts
 * takeover). Not covered: a real worker killed inside a save.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { Packr } from 'msgpackr';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET } from '../../src/device/layout.js';
import { FORMAT_VERSION, encodeSuperblock, readCopy } from '../../src/device/superblock.js';
import { openMedia, type KvStore } from '../../src/kv/index.js';
import { MAX_SHARED_STRUCTURES } from '../../src/kv/encodings.js';
import {
  STRUCTURES_AREA_OFFSET,
  STRUCTURES_SLOT_BYTES,
  SharedStructures,
  hasStructuresArea,
} from '../../src/kv/structures.js';
import { daxCodeOf } from '../helpers/expect-code.js';
import { setBroken } from '../../src/test-break.js';
import { claimDeadParticipantForTest, markDeadForTest } from '../../src/device/participants.js';
import { spinLockStats } from '../../src/device/spin-lock.js';
import { STRUCTURES_LOCK } from '../../src/kv/store.js';
import { replayHint, rng, scaled, testSeed, withSeed } from '../helpers/seed.js';
import { runWorker } from '../helpers/workers.js';
import { SHAPES_PER_WRITER, shapeValue } from '../helpers/shapes.js';

const FILE = 'test/kv/kv-structures.test.ts';
const MIB = 2 ** 20;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Store = KvStore<any, any>;

/** Self-contained msgpack with the store's options: what a value reads back as without shared structures. */
const plain = new Packr({ moreTypes: true, copyBuffers: true });
const roundTrip = (v: unknown): unknown => plain.unpack(plain.pack(v));

function sharedCount(db: Store): number {
  return new SharedStructures(db.dax.device, null).load().length;
}

function expectSame(got: unknown, want: unknown, what: string): void {
  if (!isDeepStrictEqual(got, want))
    throw new Error(
      `${what}: read back ${String(JSON.stringify(got))?.slice(0, 200)}, put ${String(JSON.stringify(want))?.slice(0, 200)}`,
    );
}

const anyValue = fc
  .anything({
    withMap: true,
    withSet: true,
    withDate: true,
    withBigInt: true,
    withTypedArray: true,
    maxDepth: 3,
    maxKeys: 6,
  })
  .filter((v) => v !== undefined);

describe('msgpack shared structures kept in the store', () => {
  it('arbitrary values round-trip, before and after a reopen (fast-check)', { timeout: 240_000 }, async () => {
    await withSeed(FILE, (seed) => {
      let stores = 0;
      fc.assert(
        fc.property(fc.array(anyValue, { minLength: 1, maxLength: 40 }), (values) => {
          const media = createSimMedia(16 * MIB, { name: 'kv-structures-fc' });
          let db: Store = openMedia(media, { durability: 'none' });
          // Shapes beyond what the store shares, as well, so own (in-value) structures mix in.
          const all = [...values, ...Array.from({ length: 2 * SHAPES_PER_WRITER }, (_, j) => shapeValue(j % 2, j))];
          all.forEach((v, i) => db.put(i, v));
          const check = (when: string): void =>
            all.forEach((v, i) => expectSame(db.get(i), roundTrip(v), `${when}: key ${i}`));
          check('before reopen');
          expect([...db.range()].length).toBe(all.length);
          db.close();
          db = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
          check('after reopen');
          expect(sharedCount(db)).toBe(MAX_SHARED_STRUCTURES);
          db.close();
          stores++;
        }),
        { seed, numRuns: scaled(25) },
      );
      console.log(`structures round trip: ${stores} stores`);
    });
  });

  /**
   * Puts values of new shapes (and some fast-check-free random objects) with crash images at
   * fences; throws when an image recovers a record that does not decode to its value, or loses
   * an acknowledged one under 'sync'. Returns the images checked.
   */
  function crashRun(durability: 'sync' | 'none', seed: number, puts: number): number {
    const rand = rng(seed);
    const media = createSimMedia(16 * MIB, { name: `kv-structures-crash-${durability}` });
    const db: Store = openMedia(media, { durability });
    const values: unknown[] = [];
    let acked = 0;
    const pending: Array<{ image: SimMedia; acked: number }> = [];
    const unhook = media.onFence(() => {
      // 'none' fences only at structure saves and segment switches: an image at each of them
      if (durability === 'none' || rand() < 0.5)
        pending.push({
          image: media.crashImage(
            durability === 'sync' && rand() < 0.5
              ? { mode: 'none' }
              : { mode: 'random', seed: (rand() * 2 ** 32) >>> 0, probability: rand() },
          ),
          acked,
        });
    });
    let images = 0;
    const checkPending = (): void => {
      for (const { image, acked: before } of pending.splice(0)) {
        const again: Store = openMedia(image, { formatIfEmpty: false });
        try {
          for (let i = 0; i < values.length; i++) {
            let got: unknown;
            try {
              got = again.get(i);
            } catch (e) {
              throw new Error(`crash image: key ${i} is there but does not decode: ${String(e)}`);
            }
            if (got === undefined) {
              if (durability === 'sync' && i < before) throw new Error(`crash image: acknowledged key ${i} lost`);
              continue;
            }
            expectSame(got, roundTrip(values[i]), `crash image: key ${i}`);
          }
        } finally {
          again.close();
          image.dispose();
        }
        images++;
      }
    };
    try {
      for (let i = 0; i < puts; i++) {
        const v =
          rand() < 0.7
            ? shapeValue((rand() * 3) | 0, (rand() * 1000) | 0)
            : { [`r${(rand() * 200) | 0}`]: i, [`q${(rand() * 50) | 0}`]: { d: new Date(i) } };
        values.push(v);
        db.put(i, v);
        acked = i + 1;
        // 'none' fences rarely: crash images between fences too (any subset of what is pending)
        if (durability === 'none' && i % 4 === 0)
          pending.push({
            image: media.crashImage({ mode: 'random', seed: (rand() * 2 ** 32) >>> 0, probability: rand() }),
            acked,
          });
        if (pending.length > 8) checkPending();
      }
      checkPending();
    } finally {
      unhook();
      for (const p of pending) p.image.dispose();
      db.close();
    }
    return images;
  }

  for (const durability of ['sync', 'none'] as const) {
    it(`${durability}: every record a crash image keeps decodes to its value`, { timeout: 240_000 }, () => {
      const seed = testSeed();
      try {
        const images = crashRun(durability, seed, scaled(120));
        expect(images).toBeGreaterThan(durability === 'sync' ? 40 : 30);
        console.log(`structures crash (${durability}): ${images} images`);
      } catch (e) {
        console.error(`structures crash (${durability}) failed with ${replayHint(seed, FILE)}`);
        throw e;
      }
    });
  }

  it('goes red with DAXSTORE_TEST_BREAK=kv-structures-unpersisted', { timeout: 240_000 }, () => {
    setBroken('kv-structures-unpersisted', true);
    try {
      let failure = '';
      try {
        crashRun('sync', testSeed(), 120);
      } catch (e) {
        failure = String(e);
      }
      console.log(`kv-structures-unpersisted: ${failure.slice(0, 200)}`);
      expect(failure).toMatch(/does not decode|read back/);
    } finally {
      setBroken('kv-structures-unpersisted', false);
    }
  });

  it('two workers adding new shapes at once read each other’s records', { timeout: 240_000 }, async () => {
    const media = createSimMedia(32 * MIB, { name: 'kv-structures-workers' });
    const db: Store = openMedia(media, { durability: 'none' });
    db.put('before', { a: 1 }); // the main handle loads its set now: it is stale once the workers save
    const count = scaled(300);
    const barrier = new SharedArrayBuffer(8);
    const run = (worker: number): Promise<{ read: number; mismatches: string[]; saved: number; conflicts: number }> =>
      runWorker(
        'kv-shapes',
        { handle: db.share(), worker, other: 1 - worker, barrier, count, deadlineMs: 120_000 },
        180_000,
      );
    const results = await Promise.all([run(0), run(1)]);
    for (const r of results) {
      expect(r.mismatches).toEqual([]);
      expect(r.read).toBe(count);
    }
    const sum = (k: 'saved' | 'conflicts'): number => results[0][k] + results[1][k];
    console.log(
      `structures workers: ${sum('saved')} sets saved, ${sum('conflicts')} saves refused (another was first)`,
    );
    const checkAll = (s: Store): void => {
      for (let w = 0; w < 2; w++)
        for (let j = 0; j < count; j++) expectSame(s.get(['w', w, j]), shapeValue(w, j), `['w', ${w}, ${j}]`);
    };
    checkAll(db);
    expect(sharedCount(db)).toBe(MAX_SHARED_STRUCTURES);
    db.close();
    const again: Store = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    checkAll(again);
    again.close();
  });

  it('a format-7 store opens: its self-contained values read beside new shared ones, and it becomes 8', () => {
    const first = createSimMedia(16 * MIB, { name: 'kv-structures-v7' });
    openMedia(first).close(); // a msgpack store (its kv root says so)
    // What format 7 wrote: self-contained values (own record definitions, ids from 0x40 on).
    const second = first.crashImage({ mode: 'none' });
    const raw = openMedia(second, { valueEncoding: 'binary', formatIfEmpty: false });
    const old = Array.from({ length: 20 }, (_, j) => shapeValue(2, j));
    old.forEach((v, j) => raw.put(`old${j}`, plain.pack(v)));
    raw.close();
    const media = second.crashImage({ mode: 'none' });
    for (const at of [SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET]) {
      const c = readCopy(media, at);
      if (c.status !== 'ok') throw new Error(`superblock copy at ${at}: ${c.status}`);
      new Uint8Array(media.buffer, at).set(encodeSuperblock({ ...c.superblock, formatVersion: 7 }));
      media.persist(at, 4096);
    }
    expect(readCopy(media, SUPERBLOCK_A_OFFSET)).toMatchObject({ superblock: { formatVersion: 7 } });
    let db: Store = openMedia(media, { formatIfEmpty: false });
    expect(sharedCount(db)).toBe(0);
    for (let j = 0; j < 40; j++) db.put(`new${j}`, shapeValue(j % 2, j)); // shared ids 0x40.. as well
    expect(sharedCount(db)).toBeGreaterThan(0);
    const check = (): void => {
      old.forEach((v, j) => expectSame(db.get(`old${j}`), roundTrip(v), `old${j}`));
      for (let j = 0; j < 40; j++) expectSame(db.get(`new${j}`), shapeValue(j % 2, j), `new${j}`);
    };
    check();
    db.close();
    const after = media.crashImage({ mode: 'none' });
    expect(readCopy(after, SUPERBLOCK_A_OFFSET)).toMatchObject({ superblock: { formatVersion: FORMAT_VERSION } });
    db = openMedia(after, { formatIfEmpty: false });
    check();
    db.close();
  });

  it('compaction and an index checkpoint keep every value readable (the structures stay in the root area)', () => {
    const media = createSimMedia(32 * MIB, { name: 'kv-structures-compact' });
    let db: Store = openMedia(media, { durability: 'none', checkpoint: true, autoCompact: false });
    const value = (j: number, round: number): unknown => ({ ...shapeValue(j % 2, j), round, pad: 'p'.repeat(400) });
    const keys = 3000;
    for (let round = 0; round < 3; round++) for (let j = 0; j < keys; j++) db.put(j, value(j, round));
    const report = db.compact({ maxLiveRatio: 0.9 });
    expect(report.segmentsFreed).toBeGreaterThan(0);
    const check = (when: string): void => {
      for (let j = 0; j < keys; j++) expectSame(db.get(j), value(j, 2), `${when}: key ${j}`);
    };
    check('after compaction');
    db.close(); // writes an index checkpoint
    db = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expect(db.recovery?.checkpoint?.loaded).toBeDefined();
    check('reopened from the checkpoint');
    db.close();
  });

  it('a thread that died holding the structures lock: the next save takes the lock over', { timeout: 120_000 }, () => {
    const media = createSimMedia(16 * MIB, { name: 'kv-structures-dead-holder' });
    const db: Store = openMedia(media, { durability: 'none' });
    db.put(0, shapeValue(0, 0));
    const dead = claimDeadParticipantForTest();
    const words = new Int32Array(db.share().shared);
    Atomics.store(words, STRUCTURES_LOCK, dead.holderBits | 1); // held by it
    markDeadForTest(dead.id);
    const stolen = spinLockStats.stolen;
    db.put(1, shapeValue(1, 1)); // new shapes: a save, which waits for the lock until it sees the holder dead
    expect(spinLockStats.stolen).toBe(stolen + 1);
    expect(Atomics.load(words, STRUCTURES_LOCK)).toBe(0);
    expectSame(db.get(1), shapeValue(1, 1), 'key 1');
    db.close();
    const again: Store = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expectSame(again.get(0), shapeValue(0, 0), 'key 0 after reopen');
    expectSame(again.get(1), shapeValue(1, 1), 'key 1 after reopen');
    again.close();
  });

  it('one damaged slot loses nothing; both damaged: values of shared shapes and new shapes are ECORRUPT', () => {
    const media = createSimMedia(16 * MIB, { name: 'kv-structures-damage' });
    let db: Store = openMedia(media);
    for (let j = 0; j < 40; j++) db.put(j, shapeValue(j % 2, j));
    const area = db.dax.device.root.offset + STRUCTURES_AREA_OFFSET;
    db.close();
    const damage = (m: SimMedia, slots: number[]): void => {
      for (const slot of slots) new Uint8Array(m.buffer)[area + slot * STRUCTURES_SLOT_BYTES + 40] ^= 0x55;
    };
    for (const slot of [0, 1]) {
      const image = media.crashImage({ mode: 'none' });
      damage(image, [slot]);
      db = openMedia(image, { formatIfEmpty: false });
      for (let j = 0; j < 40; j++) expectSame(db.get(j), shapeValue(j % 2, j), `slot ${slot} damaged: key ${j}`);
      db.put('new', shapeValue(2, 3)); // a new shape: saved to both slots again
      db.close();
      db = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
      expectSame(db.get('new'), shapeValue(2, 3), `slot ${slot} damaged, after the next save`);
      expect(sharedCount(db)).toBeGreaterThan(2);
      db.close();
    }
    const image = media.crashImage({ mode: 'none' });
    damage(image, [0, 1]);
    db = openMedia(image, { formatIfEmpty: false });
    expect(daxCodeOf(() => db.get(0))).toBe('ECORRUPT');
    expect(daxCodeOf(() => db.put('new', shapeValue(2, 3)))).toBe('ECORRUPT');
    expect(db.get('new')).toBeUndefined();
    db.put('bytes', 'a string needs no structure');
    db.close();
  });

  it('a root area without room for the area: values stay self-contained and round-trip', () => {
    const media = createSimMedia(16 * MIB, { name: 'kv-structures-small-root' });
    const device = Device.format(media, { rootBytes: 4096 });
    const image = media.crashImage({ mode: 'all' });
    device.close();
    let db: Store = openMedia(image, { formatIfEmpty: false });
    expect(hasStructuresArea(db.dax.device)).toBe(false);
    for (let j = 0; j < 40; j++) db.put(j, shapeValue(j % 2, j));
    db.close();
    db = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    for (let j = 0; j < 40; j++) expectSame(db.get(j), shapeValue(j % 2, j), `key ${j}`);
    db.close();
  });
});
