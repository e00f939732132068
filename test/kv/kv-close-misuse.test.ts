/**
 * close() misused: inside read() or inside a transactionSync() callback it refuses with EBUSY and
 * changes nothing (the store stays open, usable and locked by this process only until a real
 * close; the transaction commits); every method after close()
 * is ECLOSED; closing from the main thread while workers are in the middle of writes gives them
 * ECLOSED and loses no write they had acknowledged.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type KvStore } from '../../src/kv/index.js';
import { open } from '../helpers/kv-bytes.js';
import { expectCode } from '../helpers/expect-code.js';
import { workerScript } from '../helpers/workers.js';

function tempStore(): { file: string; done: () => void } {
  const dir = mkdtempSync(path.join('/dev/shm', 'kv-close-'));
  return { file: path.join(dir, 'store'), done: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('kv close() misuse', () => {
  it('close() inside read() is EBUSY and leaves the store open, usable and reopenable after a real close', () => {
    const { file, done } = tempStore();
    try {
      const db = open(file, { size: 16 * 2 ** 20 });
      db.put('a', 'one');
      db.read(() => {
        const view = db.getView('a')!;
        expectCode(() => db.close(), 'EBUSY');
        expect(db.closed).toBe(false);
        expect(Buffer.from(view).toString()).toBe('one');
        db.put('a', 'two');
        expect(Buffer.from(db.get('a')!).toString()).toBe('two');
      });
      expect(db.closed).toBe(false);
      db.put('b', 'three');
      db.close();
      const again = open(file); // the file lock was given back by the real close
      expect(Buffer.from(again.get('a')!).toString()).toBe('two');
      expect(Buffer.from(again.get('b')!).toString()).toBe('three');
      again.close();
    } finally {
      done();
    }
  });

  it('close() inside transactionSync() is EBUSY: the store stays open and the transaction commits', async () => {
    const { file, done } = tempStore();
    try {
      const db = open(file, { size: 16 * 2 ** 20 });
      const attached = (await import('../../src/kv/index.js')).attach(db.share());
      db.put('a', 'one');
      let attempts = 0;
      const result = db.transactionSync((txn) => {
        attempts++;
        txn.put('b', `${Buffer.from(txn.get('a')!).toString()} and two`);
        expectCode(() => db.close(), 'EBUSY');
        expect(db.closed).toBe(false);
        txn.delete('a');
        return 'committed';
      });
      expect(result).toBe('committed');
      expect(attempts).toBe(1);
      expect(db.closed).toBe(false);
      expect(db.get('a')).toBeUndefined();
      expect(Buffer.from(db.get('b')!).toString()).toBe('one and two');
      // An attached handle's transaction the same; closing another handle is no misuse.
      attached.transactionSync((txn) => {
        txn.put('c', 'three');
        expectCode(() => attached.close(), 'EBUSY');
        expect(attached.closed).toBe(false);
      });
      db.transactionSync((txn) => {
        txn.put('d', 'four');
        attached.close();
      });
      expect(attached.closed).toBe(true);
      expect(Buffer.from(db.get('c')!).toString()).toBe('three');
      // A transaction that throws after a refused close writes nothing; the store is still usable.
      expect(() =>
        db.transactionSync((txn) => {
          txn.put('e', 'five');
          expectCode(() => db.close(), 'EBUSY');
          throw new Error('the callback fails');
        }),
      ).toThrow('the callback fails');
      db.put('f', 'six');
      db.close();
      const again = open(file); // the file lock was given back by the real close
      expect(Buffer.from(again.get('b')!).toString()).toBe('one and two');
      expect(Buffer.from(again.get('c')!).toString()).toBe('three');
      expect(Buffer.from(again.get('d')!).toString()).toBe('four');
      expect(again.get('e')).toBeUndefined();
      expect(Buffer.from(again.get('f')!).toString()).toBe('six');
      expect(again.get('a')).toBeUndefined();
      again.close();
    } finally {
      done();
    }
  });

  it('every method after close() is ECLOSED, on the opener and on an attached handle', async () => {
    const { file, done } = tempStore();
    try {
      const db = open(file, { size: 16 * 2 ** 20 });
      const attached = (await import('../../src/kv/index.js')).attach(db.share());
      db.put('a', 'one');
      db.put('b', 'two');
      db.put('c', 'three');
      // Opened before close(), each with entries already read that it has not yet handed out.
      const iterators = [db.range(), db.keys(), db.values(), attached.range()];
      for (const it of iterators) it.next();
      const snap = db.snapshot();
      const snapIterator = snap.range();
      snapIterator.next();
      attached.close();
      db.close();
      db.close(); // idempotent
      for (const h of [db, attached] as KvStore[]) {
        expectCode(() => h.get('a'), 'ECLOSED');
        expectCode(() => h.has('a'), 'ECLOSED');
        expectCode(() => h.read(() => 0), 'ECLOSED');
        expectCode(() => h.getView('a'), 'ECLOSED');
        expectCode(() => h.put('a', 'x'), 'ECLOSED');
        expectCode(() => h.delete('a'), 'ECLOSED');
        expectCode(() => h.batch([{ type: 'put', key: 'a', value: 'x' }]), 'ECLOSED');
        expectCode(() => h.range(), 'ECLOSED');
        expectCode(() => h.deleteRange(), 'ECLOSED');
        expectCode(() => h.compact(), 'ECLOSED');
        expectCode(() => h.stats(), 'ECLOSED');
        expectCode(() => h.share(), 'ECLOSED');
        expectCode(() => h.getMany(['a']), 'ECLOSED');
        expectCode(() => h.getEntry('a'), 'ECLOSED');
        expectCode(() => h.snapshot(), 'ECLOSED');
        expectCode(() => h.put('a', 'x', { ifVersion: 1 }), 'ECLOSED');
        expectCode(() => h.delete('a', { ifVersion: 1 }), 'ECLOSED');
        expectCode(() => h.transactionSync(() => 0), 'ECLOSED');
        expectCode(() => h.keys(), 'ECLOSED');
        expectCode(() => h.values(), 'ECLOSED');
        expectCode(() => h.getCount(), 'ECLOSED');
        expectCode(() => h.clear(), 'ECLOSED');
        await expect(h.batchAsync([{ type: 'put', key: 'a', value: 'x' }])).rejects.toMatchObject({ code: 'ECLOSED' });
        await expect(h.putAsync('a', 'x')).rejects.toMatchObject({ code: 'ECLOSED' });
        await expect(h.deleteAsync('a')).rejects.toMatchObject({ code: 'ECLOSED' });
        await expect(h.flushed()).rejects.toMatchObject({ code: 'ECLOSED' });
        expect(h.closed).toBe(true);
      }
      // Iterators and snapshots taken before close() serve nothing after it, not even what they had read.
      for (const it of [...iterators, snapIterator]) expectCode(() => it.next(), 'ECLOSED');
      expectCode(() => snap.get('a'), 'ECLOSED');
      expectCode(() => snap.range(), 'ECLOSED');
      snap.close(); // releasing what close() released already is no error
    } finally {
      done();
    }
  });

  it('closing from the main thread while workers put, batch, transact and delete gives them ECLOSED and loses no acknowledged write', async () => {
    const { file, done } = tempStore();
    try {
      const db = open(file, { size: 64 * 2 ** 20 });
      const workers = 3;
      const acked = new Int32Array(new SharedArrayBuffer(4 * workers));
      const runs = Array.from({ length: workers }, (_, w) => {
        const worker = new Worker(workerScript('kv-closing-writer'), {
          workerData: { handle: db.share(), worker: w, acked: acked.buffer },
        });
        return new Promise<string>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
        });
      });
      while (Array.from({ length: workers }, (_, w) => Atomics.load(acked, w)).some((n) => n < 50))
        await new Promise((r) => setTimeout(r, 2));
      db.close();
      const ends = await Promise.all(runs);
      expect(ends).toEqual(ends.map(() => 'ECLOSED'));
      const again = open(file);
      try {
        for (let w = 0; w < workers; w++) {
          const n = Atomics.load(acked, w);
          expect(n).toBeGreaterThan(0);
          const has = (k: string): boolean => again.get(k) !== undefined;
          // Op n was in flight at the close: what it touched may be either way (all or nothing is kv-thread-death's).
          const maybe = new Set([`w${w}-${n}`, `w${w}-${n}b`, ...(n % 4 === 3 ? [`w${w}-${n - 3}`] : [])]);
          for (let i = 0; i < n; i++) {
            const k = `w${w}-${i}`;
            const what = `worker ${w} op ${i} of ${n}`;
            if (i % 4 === 3 || maybe.has(k)) continue;
            const deleted = i % 4 === 0 && i + 3 < n;
            expect(has(k), what).toBe(!deleted);
            if (i % 4 === 1) expect(has(`${k}b`), what).toBe(true);
          }
          for (const k of [`w${w}-${n + 1}`, `w${w}-${n + 2}`])
            expect(has(k), `worker ${w}: ${k} after the close`).toBe(false);
        }
      } finally {
        again.close();
      }
    } finally {
      done();
    }
  });
});
