/**
 * A snapshot held by a thread that ends is released. A worker takes three snapshots and leaves
 * a range iterator unfinished, then ends without closing anything: terminated, throwing,
 * calling process.exit() or returning. Meanwhile the main thread overwrites a large value the
 * snapshots can read, so its object waits for them in the deferred table. After the death the
 * main thread's next operations must reap it: stats() counts no snapshot, the large value's
 * object is removed, a new snapshot and a transaction run (nothing waits on the dead thread).
 * Each wait has a watchdog. Red with DAXSTORE_TEST_BREAK=kv-snapshot-death-kept (the reaper
 * leaves the dead thread's snapshot slot as it was): the snapshots stay counted and the object
 * stays. Deaths in the middle of writes, transactions and snapshot reads are in
 * kv-thread-death.test.ts. One death per way of ending in CI; DAXSTORE_LONG=<factor> runs that
 * many times more of them.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { open } from '../helpers/kv-bytes.js';
import { workerScript } from '../helpers/workers.js';
import { withBroken } from '../../src/test-break.js';
import type { KvStore } from '../../src/kv/index.js';
import { scaled } from '../helpers/seed.js';

type End = 'terminate' | 'throw' | 'exit' | 'return';

async function until(db: KvStore, cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    db.get('k0'); // an operation: where a handle reaps the dead
    if (cond()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** One death; what the main thread then sees. */
async function trial(
  end: End,
  watchdogMs: number,
): Promise<{ heldBefore: number; heldAfter: number; objectRemoved: boolean; released: boolean }> {
  const dir = mkdtempSync(path.join('/dev/shm', 'kv-snap-death-'));
  const db = open(path.join(dir, 'store'), { size: 16 * 2 ** 20, durability: 'none' });
  try {
    for (let i = 0; i < 20; i++) db.put(`k${i}`, `v${i}`);
    db.put('large', new Uint8Array(20_000).fill(1));
    const w = new Worker(workerScript('kv-snapshot-holder'), { workerData: { handle: db.share(), end } });
    let failed: Error | undefined;
    w.on('error', (e) => (failed = e));
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    const held = await new Promise<{ held: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the holder did not report in ${watchdogMs} ms`)), watchdogMs);
      w.once('message', (m: { held: number }) => {
        clearTimeout(timer);
        resolve(m);
      });
      w.once('error', reject);
    });
    const heldBefore = db.stats().snapshots;
    expect(held.held).toBe(4);
    const removed0 = db.stats().largeValueObjectsRemoved;
    db.put('large', new Uint8Array(20_000).fill(2)); // the old object waits for the holder's snapshots
    expect(db.stats().versionsHeldForSnapshots).toBeGreaterThan(0);
    if (end === 'terminate') await w.terminate();
    else w.postMessage('end');
    await exited;
    if (failed !== undefined && !(end === 'throw' && failed.message === 'the holder throws on purpose')) throw failed;
    const released = await until(db, () => db.stats().snapshots === 0, watchdogMs);
    const objectRemoved = await until(
      db,
      () => {
        db.put('k0', 'again'); // a write drains the large-value reaper once the epoch has moved on
        db.dax.collect();
        return db.stats().versionsHeldForSnapshots === 0 && db.stats().largeValueObjectsRemoved > removed0;
      },
      released ? watchdogMs : 1,
    );
    const heldAfter = db.stats().snapshots;
    if (released) {
      // Nothing waits on the dead thread: a snapshot and a transaction of this thread run.
      const snap = db.snapshot();
      expect(snap.get('large')?.[0]).toBe(2);
      snap.close();
      db.transactionSync((txn) => txn.put('k0', `${txn.get('k1')?.length ?? 0}`));
      expect(db.stats().snapshots).toBe(0);
    }
    return { heldBefore, heldAfter, objectRemoved, released };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('a snapshot held by a thread that ends is released', () => {
  for (const end of ['terminate', 'throw', 'exit', 'return'] as const) {
    const deaths = scaled(1);
    it(
      `holder ends by ${end}: its snapshots are released and what they held is freed`,
      async () => {
        for (let i = 0; i < deaths; i++) {
          const r = await trial(end, 30_000);
          expect(r.heldBefore, `death ${i + 1} of ${deaths}`).toBe(4);
          expect(r.heldAfter, `death ${i + 1} of ${deaths}`).toBe(0);
          expect(r.released, `death ${i + 1} of ${deaths}`).toBe(true);
          expect(r.objectRemoved, `death ${i + 1} of ${deaths}`).toBe(true);
        }
      },
      120_000 * deaths,
    );
  }

  it('goes red with DAXSTORE_TEST_BREAK=kv-snapshot-death-kept (the dead thread still holds them)', async () => {
    const r = await withBroken('kv-snapshot-death-kept', () => trial('terminate', 2_000));
    expect(r.heldBefore).toBe(4);
    expect(r.released).toBe(false);
    expect(r.heldAfter).toBe(4);
    expect(r.objectRemoved).toBe(false);
  }, 120_000);
});
