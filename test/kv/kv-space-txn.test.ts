/**
 * A transaction's commit that finds no room reclaims as a put does (store.ts transactionSync,
 * commitWithRoom): a few keys overwritten with large values (17-200 KiB, random) through
 * transactionSync, each reading the keys it writes, run indefinitely in an 8 MiB store and in
 * one of the minimum size; some transactions delete keys, some write several at once. Values
 * read back right, also after reopen. A transaction of deletes alone commits in a store that
 * puts have filled (ENOSPC for a put), through the priority writer as deletes do. Seeded; a
 * watchdog ends a run that stops making progress.
 * Red with DAXSTORE_TEST_BREAK=kv-no-reclaim (a failed allocation is reported at once).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isDaxError } from '../../src/errors.js';
import { MIN_STORE_BYTES } from '../../src/kv/index.js';
import { expectStoreMatches, open } from '../helpers/kv-bytes.js';
import { modelRun, withReopenedModel } from '../helpers/model-run.js';
import { setBroken, withBroken } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-space-txn.test.ts';

function run(seed: number, transactions: number, size: number): void {
  modelRun(
    {
      tag: 'kv-space-txn',
      unit: 'transactions',
      seed,
      steps: transactions,
      size,
      watchdogMs: 90_000,
      keys: (r) => 2 + Math.floor(r() * 3),
    },
    (db, i, random, key, model) => {
      const a = key();
      const b = key();
      const del = random() < 0.05;
      const value = Buffer.alloc(17 * 1024 + Math.floor(random() * 183 * 1024), i & 0xff);
      value.writeUInt32LE(i, 0);
      const small = Buffer.from(`t${i}`);
      db.transactionSync((txn) => {
        const seen = txn.get(a);
        expect(seen === undefined ? undefined : Buffer.from(seen).equals(model.get(a)!)).toBe(
          model.has(a) ? true : undefined,
        );
        if (del) txn.delete(a);
        else txn.put(a, value);
        if (b !== a) txn.put(b, small);
      });
      if (del) model.delete(a);
      else model.set(a, value);
      if (b !== a) model.set(b, small);
    },
  );
}

/** Fills a store with small puts until ENOSPC, then deletes keys through transactions of deletes alone. */
function deletesInFullStore(seed: number): void {
  const dir = mkdtempSync('/dev/shm/kv-space-txn-');
  try {
    const file = path.join(dir, 'store');
    const random = rng(seed);
    const db = open(file, { size: 8 * 2 ** 20, autoCompact: false });
    try {
      const written: string[] = [];
      const end = performance.now() + 90_000;
      for (let n = 0; ; n++) {
        if (performance.now() > end) throw new Error('watchdog: the store did not fill in 90 s');
        const key = `f${n}`;
        try {
          db.put(key, Buffer.alloc(100 + Math.floor(random() * 400), n & 0xff));
        } catch (e) {
          if (!isDaxError(e, 'ENOSPC')) throw e;
          break;
        }
        written.push(key);
      }
      expect(written.length).toBeGreaterThan(1000);
      for (let i = 0; i < 200; i++) {
        const k1 = written[Math.floor(random() * written.length)];
        const k2 = written[Math.floor(random() * written.length)];
        db.transactionSync((txn) => {
          txn.get(k1);
          txn.delete(k1);
          txn.delete(k2);
        });
        expect(db.has(k1) || db.has(k2)).toBe(false);
      }
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('transactions in a store out of room', () => {
  it('large values overwritten through transactionSync never run out of space (8 MiB)', async () => {
    await withSeed(FILE, (seed) => run(seed, scaled(300), 8 * 2 ** 20));
  });

  it('the same in the smallest store (MIN_STORE_BYTES: two extents, no reserve)', async () => {
    await withSeed(FILE, (seed) => run(seed, scaled(300), MIN_STORE_BYTES));
  });

  it('transactions of deletes alone commit in a store puts have filled', async () => {
    await withSeed(FILE, deletesInFullStore);
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-no-reclaim', async () => {
    setBroken('kv-no-reclaim', true);
    try {
      await withSeed(FILE, (seed) => {
        let error: unknown;
        try {
          run(seed, 300, 8 * 2 ** 20);
        } catch (e) {
          error = e;
        }
        expect(isDaxError(error, 'ENOSPC')).toBe(true);
      });
    } finally {
      setBroken('kv-no-reclaim', false);
    }
  });
});

/**
 * One transaction whose large values (random sizes, 2-8 MiB each, 200 MiB in all) need more room
 * than the reclaim rounds give a growable store of 8 MiB of data (each grows it one step at most:
 * eight steps from there make about 175 MiB, Device.grow), and a key written small: it commits,
 * the store grows as the values need, and every value reads back, also after reopen.
 */
function bigTransaction(seed: number): void {
  withReopenedModel('kv-space-txn', { maxSize: 1024 * 2 ** 20 }, ({ db }) => {
    const random = rng(seed);
    const model = new Map<string, Buffer>();
    const start = db.stats().sizeBytes;
    let total = 0;
    for (let i = 0; total < 200 * 2 ** 20; i++) {
      const value = Buffer.alloc(2 * 2 ** 20 + Math.floor(random() * 6 * 2 ** 20), i & 0xff);
      value.writeUInt32LE(i, 0);
      model.set(`big${i}`, value);
      total += value.length;
    }
    model.set('small', Buffer.from('s'));
    db.transactionSync((txn) => {
      for (const [k, v] of model) txn.put(k, v);
    });
    expect(db.stats().sizeBytes).toBeGreaterThan(start + total - 32 * 2 ** 20);
    expectStoreMatches(db, model);
    return model;
  });
}

describe('a transaction in a store that can grow', () => {
  it('commits values larger than the reclaim rounds make room for: the store grows as they need', async () => {
    await withSeed(FILE, bigTransaction);
  }, 120_000);

  it('goes red with DAXSTORE_TEST_BREAK=kv-txn-no-last-try: the same transaction is ENOSPC', async () => {
    await withSeed(FILE, (seed) => {
      let error: unknown;
      try {
        withBroken('kv-txn-no-last-try', () => bigTransaction(seed));
      } catch (e) {
        error = e;
      }
      expect(isDaxError(error, 'ENOSPC'), String(error)).toBe(true);
    });
  }, 120_000);
});
