/**
 * A store filled until puts fail with ENOSPC is not wedged: delete, deleteRange, a batch of
 * deletes and compact() (any maxLiveRatio) succeed in it, also after reopen; after deletes,
 * reclamation makes room and puts succeed again; every acknowledged key reads back right,
 * live and after reopen. Randomized (keys, value sizes, which keys go and how), seeded (the
 * seed and a replay command are printed on failure); each phase has a deadline, so a store
 * that spins instead of failing is reported, not left to the suite timeout.
 * Red without the reserve: DAXSTORE_TEST_BREAK=kv-no-reserve (the store then fills its last
 * extent with puts, and deletes in the full store fail with ENOSPC).
 * Seed 47853975 is kept as a case of its own: its fill leaves every segment fully live, and its
 * deletes spread over more segments than an entry's bytes are its tombstone's, so each segment
 * loses live bytes more slowly than the tombstones fill compaction's room. With a reserve of one
 * extent (DAXSTORE_TEST_BREAK=kv-one-extent-reserve, red) no segment ever fits in that room:
 * in a 16 MiB store compaction then frees nothing and no put fits again; in a 32 MiB store the
 * deletes themselves end in ENOSPC.
 * After a reopen the segment table holds recovery's estimates (winners times the segment's mean
 * entry), about half low in a store of 16-byte and 3000-byte values whose small ones were
 * deleted. Until counts replace them the reserve is kept whole; trusted
 * (DAXSTORE_TEST_BREAK=kv-trust-estimates, red), they say the priority segment's room covers
 * what compaction needs, so the reopened store gives its reserve to puts that the same store
 * refused before the close; a fill of tiny values then takes the last extent, and deleting them
 * one at a time ends in ENOSPC: each delete's tombstone takes about what it kills, so the
 * emptiest segment never fits in the room left (seed 2 of the randomized case).
 * Not covered: several threads filling the store at once (kv-space-workers).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isDaxError } from '../../src/errors.js';
import { type KvStore } from '../../src/kv/index.js';
import { open } from '../helpers/kv-bytes.js';
import { setBroken } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-space-full.test.ts';
const MiB = 2 ** 20;
/** Fills every segment fully live, then deletes across all of them (see the header). */
const SPREAD_SEED = 47853975;

function deadline(ms: number, what: string): () => void {
  const end = performance.now() + ms;
  return () => {
    if (performance.now() > end) throw new Error(`watchdog: ${what} still running after ${ms} ms`);
  };
}

/** Puts random keys until ENOSPC; returns how many landed. Every acknowledged put is in `model`. */
function fill(db: KvStore, model: Map<string, Buffer>, random: () => number, prefix: string, what: string): number {
  const tick = deadline(120_000, what);
  for (let n = 0; ; n++) {
    tick();
    const key = `${prefix}-${Math.floor(random() * 2 ** 40).toString(36)}`;
    const value = Buffer.alloc(16 + Math.floor(random() * 300), n & 0xff);
    try {
      db.put(key, value);
    } catch (e) {
      if (!isDaxError(e, 'ENOSPC')) throw e;
      return n;
    }
    model.set(key, value);
  }
}

function expectModel(db: KvStore, model: Map<string, Buffer>): void {
  expect(db.stats().keys).toBe(model.size);
  for (const [k, v] of model) {
    const got = db.get(k);
    if (got === undefined || !Buffer.from(got).equals(v))
      throw new Error(`key ${k}: ${got === undefined ? 'missing' : 'wrong value'}`);
  }
}

/** Deletes about half of the model's keys by a random mix of delete, deleteRange and batches of deletes. */
function deleteHalf(db: KvStore, model: Map<string, Buffer>, random: () => number): void {
  const tick = deadline(120_000, 'deleting half of a full store');
  const keys = [...model.keys()].sort();
  let i = 0;
  while (i < keys.length) {
    tick();
    const how = random();
    const n = 1 + Math.floor(random() * 40);
    const chunk = keys.slice(i, i + n);
    i += 2 * n; // every other chunk stays
    if (how < 0.5) for (const k of chunk) expect(db.delete(k)).toBe(true);
    else if (how < 0.8) expect(db.deleteRange({ gte: chunk[0], lte: chunk[chunk.length - 1] })).toBe(chunk.length);
    else db.batch(chunk.map((key) => ({ type: 'del' as const, key })));
    for (const k of chunk) model.delete(k);
  }
}

/** Puts keys `${prefix}00000000`, ... with `bytes`-byte values until ENOSPC; returns how many landed. */
function fillWith(db: KvStore, model: Map<string, Buffer>, prefix: string, bytes: number, tick: () => void): number {
  for (let n = 0; ; n++) {
    tick();
    const key = `${prefix}${n.toString().padStart(8, '0')}`;
    const value = Buffer.alloc(bytes, n & 0xff);
    try {
      db.put(key, value);
    } catch (e) {
      if (!isDaxError(e, 'ENOSPC')) throw e;
      return n;
    }
    model.set(key, value);
  }
}

/**
 * A 32 MiB store of 16-byte and 3000-byte values filled until ENOSPC, every small one deleted,
 * reopened: the reopened store keeps the reserve it had before the close and refuses the puts
 * the closed one refused (nothing was deleted since its last ENOSPC); every small key (the
 * first fill's and any the second took) is then deleted, half of all keys deleted, and a fill
 * with 100-byte values must take puts; every key reads back right, also after another reopen.
 */
function reopenedFull(seed: number): void {
  const dir = mkdtempSync('/dev/shm/kv-space-full-');
  const file = path.join(dir, 'store');
  try {
    const random = rng(seed);
    const model = new Map<string, Buffer>();
    let db = open(file, { size: 32 * MiB });
    try {
      const tick = deadline(120_000, 'the reopened full store');
      for (let n = 0; ; n++) {
        tick();
        const key = `k${n.toString().padStart(8, '0')}`;
        const value = Buffer.alloc(random() < 0.5 ? 16 : 3000, n & 0xff);
        try {
          db.put(key, value);
        } catch (e) {
          if (!isDaxError(e, 'ENOSPC')) throw e;
          break;
        }
        model.set(key, value);
      }
      for (const [k, v] of [...model])
        if (v.length === 16) {
          expect(db.delete(k)).toBe(true);
          model.delete(k);
        }
      const reserve = db.stats().reserveBytes;
      expect(reserve).toBeGreaterThan(0);
      db.close();
      db = open(file);
      expect(db.stats().reserveBytes).toBe(reserve);
      const taken = fillWith(db, model, 'm', 16, tick);
      if (taken > 0) throw new Error(`the reopened full store took ${taken} puts from the reserve`);
      for (const [k, v] of [...model])
        if (v.length === 16) {
          tick();
          expect(db.delete(k)).toBe(true);
          model.delete(k);
        }
      let i = 0;
      for (const k of [...model.keys()].sort())
        if (i++ % 2 === 0) {
          tick();
          expect(db.delete(k)).toBe(true);
          model.delete(k);
        }
      expect(fillWith(db, model, 'z', 100, tick)).toBeGreaterThan(0);
      expectModel(db, model);
      db.close();
      db = open(file);
      expectModel(db, model);
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The user's side of the same: a store of random size filled until ENOSPC with a random mix
 * of small and large values, every small key deleted (one at a time or in batches), closed
 * and reopened, filled with tiny values until ENOSPC (any number, none is fine), then every
 * small key deleted again, mostly one at a time: no delete may fail, and after deleting a
 * third of the large values
 * puts succeed again. Every acknowledged key reads back right, across another reopen.
 */
function reopenedFullRandom(seed: number): void {
  const dir = mkdtempSync('/dev/shm/kv-space-full-');
  const file = path.join(dir, 'store');
  try {
    const random = rng(seed);
    const model = new Map<string, Buffer>();
    const smallMax = 8 + Math.floor(random() * 40);
    const large = 1000 + Math.floor(random() * 3000);
    const share = 0.3 + random() * 0.4; // of the puts, small ones
    const sizeMiB = [16, 24, 32, 40][Math.floor(random() * 4)];
    const put = (key: string, tiny = false): boolean => {
      const bytes = tiny ? Math.floor(random() * 13) : random() < share ? 1 + Math.floor(random() * smallMax) : large;
      const value = Buffer.alloc(bytes, random() * 256);
      try {
        db.put(key, value);
      } catch (e) {
        if (!isDaxError(e, 'ENOSPC')) throw e;
        return false;
      }
      model.set(key, value);
      return true;
    };
    const deleteWhere = (keep: (v: Buffer) => boolean, batches = 0.5): void => {
      const doomed = [...model].filter(([, v]) => !keep(v)).map(([k]) => k);
      for (let i = 0; i < doomed.length;) {
        tick();
        const chunk = doomed.slice(i, (i += 1 + Math.floor(random() * 30)));
        try {
          if (random() >= batches) for (const k of chunk) expect(db.delete(k)).toBe(true);
          else db.batch(chunk.map((key) => ({ type: 'del' as const, key })));
        } catch (e) {
          throw new Error(`a delete failed in a ${sizeMiB} MiB store after ${i} of ${doomed.length}: ${String(e)}`);
        }
        for (const k of chunk) model.delete(k);
      }
    };
    const tick = deadline(180_000, `the reopened full ${sizeMiB} MiB store`);
    let db = open(file, { size: sizeMiB * MiB });
    try {
      let n = 0;
      while (put(`a${(n++).toString(36).padStart(6, '0')}`)) tick();
      deleteWhere((v) => v.length === large);
      db.close();
      db = open(file);
      while (put(`b${(n++).toString(36).padStart(6, '0')}`, true)) tick();
      deleteWhere((v) => v.length === large, 0.1);
      let i = 0;
      deleteWhere(() => i++ % 3 !== 0);
      let again = 0;
      while (put(`c${(n++).toString(36).padStart(6, '0')}`)) {
        tick();
        again++;
      }
      expect(again).toBeGreaterThan(0);
      expectModel(db, model);
      db.close();
      db = open(file);
      expectModel(db, model);
      expect(db.dax.device.audit()).toEqual([]);
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function scenario(seed: number, maxSizeMiB: number): void {
  const dir = mkdtempSync('/dev/shm/kv-space-full-');
  const file = path.join(dir, 'store');
  try {
    const random = rng(seed);
    const model = new Map<string, Buffer>();
    let db = open(file, { size: maxSizeMiB * MiB });
    try {
      expect(fill(db, model, random, 'a', 'filling the store')).toBeGreaterThan(0);
      // Full: deletes, compaction and more deletes after reopen must all succeed.
      deleteHalf(db, model, random);
      db.compact();
      db.compact({ maxLiveRatio: 1 });
      expectModel(db, model);
      expect(fill(db, model, random, 'b', 'filling again after deletes')).toBeGreaterThan(0);
      expectModel(db, model);
      db.close();
      db = open(file);
      expectModel(db, model);
      deleteHalf(db, model, random); // full again, after reopen
      expect(fill(db, model, random, 'c', 'filling after reopen')).toBeGreaterThan(0);
      db.compact({ maxLiveRatio: 1 });
      expectModel(db, model);
      db.close();
      db = open(file);
      expectModel(db, model);
      expect(db.dax.device.audit()).toEqual([]);
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('a full store', () => {
  // Each round's phases have watchdogs of their own (deadline); the test's timeout grows with the rounds.
  it(
    'deletes, compacts, takes puts again and keeps every acknowledged key, across reopen',
    { timeout: scaled(1) * 150_000 },
    async () => {
      // CI: one 8 MiB store (three extents); DAXSTORE_LONG adds rounds in 16 and 32 MiB stores,
      // where deleting half of a full store one key at a time takes several compaction passes.
      for (let round = 0; round < scaled(1); round++) {
        await withSeed(FILE, (seed) => scenario(seed, [12, 16, 32][round % 3]));
      }
    },
  );

  it(
    'seed 47853975: deletes spread over a store of fully live segments leave compaction its room',
    { timeout: 300_000 },
    () => {
      for (const size of [16, 32]) scenario(SPREAD_SEED, size);
    },
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-one-extent-reserve: seed 47853975 then puts nothing after its deletes',
    { timeout: 300_000 },
    () => {
      setBroken('kv-one-extent-reserve', true);
      try {
        expect(() => scenario(SPREAD_SEED, 16)).toThrow(/expected 0 to be greater than 0/);
      } finally {
        setBroken('kv-one-extent-reserve', false);
      }
    },
  );

  it('after a reopen, counts replace the estimates before they let the reserve go', { timeout: 300_000 }, async () => {
    await withSeed(FILE, (seed) => reopenedFull(seed));
  });

  it(
    'a reopened full store of small and large values keeps its deletes possible',
    { timeout: scaled(2) * 200_000 },
    async () => {
      for (let round = 0; round < scaled(2); round++) await withSeed(FILE, (seed) => reopenedFullRandom(seed));
    },
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-trust-estimates: the reopened full store gives its reserve to puts, then its deletes fail',
    { timeout: 300_000 },
    () => {
      setBroken('kv-trust-estimates', true);
      try {
        expect(() => reopenedFull(7)).toThrow(/expected \+0 to be \d+|took \d+ puts from the reserve/);
        expect(() => reopenedFullRandom(2)).toThrow(/a delete failed in a 32 MiB store/);
      } finally {
        setBroken('kv-trust-estimates', false);
      }
    },
  );

  it('goes red with DAXSTORE_TEST_BREAK=kv-no-reserve: without the reserve, deletes in a full store fail', async () => {
    setBroken('kv-no-reserve', true);
    try {
      await withSeed(FILE, (seed) => {
        let failed = false;
        try {
          scenario(seed, 8);
        } catch (e) {
          failed = isDaxError(e, 'ENOSPC');
        }
        expect(failed).toBe(true);
      });
    } finally {
      setBroken('kv-no-reserve', false);
    }
  });
});
