/**
 * DaxLevel's snapshots are the store's: an iterator holds one store snapshot from creation to
 * close (seek() included), db.snapshot() holds one until closed, and the database's close
 * releases what is still open. Checked through the store's own count (stats().snapshots), so a
 * leaked snapshot — versions kept forever — is red here even where the suite's reads pass.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { DaxLevel } from '../../src/level/dax-level.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync('/dev/shm/daxlevel-snap-');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('an iterator reads as of its creation, seek() too, and releases its snapshot when closed', async () => {
  const db = new DaxLevel<string, string>(path.join(dir, 'db'), { size: 16 * 2 ** 20 });
  await db.batch(['a', 'b', 'c'].map((key) => ({ type: 'put' as const, key, value: '1' })));
  const it = db.iterator();
  expect(db.kv.stats().snapshots).toBe(1);
  await db.put('b', '2');
  await db.put('d', '2');
  await db.del('a');
  expect(await it.next()).toEqual(['a', '1']);
  it.seek('b');
  expect(await it.all()).toEqual([
    ['b', '1'],
    ['c', '1'],
  ]);
  expect(db.kv.stats().snapshots).toBe(0); // all() closed it
  expect(await db.iterator().all()).toEqual([
    ['b', '2'],
    ['c', '1'],
    ['d', '2'],
  ]);
  expect(db.kv.stats().snapshots).toBe(0);
  await db.close();
});

test('db.snapshot() is read by get, getMany, has, iterators and clear, and released by its close or by db.close() before the store closes', async () => {
  const db = new DaxLevel<string, string>(path.join(dir, 'db'), { size: 16 * 2 ** 20 });
  await db.put('k', 'old');
  const snapshot = db.snapshot();
  await db.put('k', 'new');
  await db.put('later', 'x');
  expect(await db.get('k', { snapshot })).toBe('old');
  expect(db.getSync('later', { snapshot })).toBeUndefined();
  expect(await db.getMany(['k', 'later'], { snapshot })).toEqual(['old', undefined]);
  expect(await db.hasMany(['k', 'later'], { snapshot })).toEqual([true, false]);
  expect(await db.keys({ snapshot }).all()).toEqual(['k']);
  await db.clear({ snapshot }); // the keys the snapshot holds: 'later' stays
  expect(await db.keys().all()).toEqual(['later']);
  expect(db.kv.stats().snapshots).toBe(1);
  await snapshot.close();
  expect(db.kv.stats().snapshots).toBe(0);
  const kv = db.kv;
  const open = [db.snapshot(), db.iterator()];
  expect(kv.stats().snapshots).toBe(2);
  let atStoreClose = -1;
  const close = kv.close.bind(kv);
  kv.close = () => {
    atStoreClose = kv.stats().snapshots;
    close();
  };
  await db.close(); // closes the snapshot and the iterator, then the store
  expect(atStoreClose).toBe(0);
  expect(open).toHaveLength(2);
});
