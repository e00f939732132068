/**
 * Values above LARGE_VALUE_THRESHOLD_BYTES live in DAX objects: put/get/getView/overwrite/
 * delete/batch/reopen, R4 and R6 with object-backed values, ENOSPC, and no object left behind
 * (every live kv object is referenced by exactly one live key; device audit clean).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { LARGE_VALUE_THRESHOLD_BYTES, MAX_KEY_BYTES } from '../../src/kv/layout.js';
import { DaxError } from '../../src/errors.js';
import { setBroken, type SwitchName } from '../../src/test-break.js';
import { fillUntilError } from './fill.js';

function withBreak(name: SwitchName, fn: () => void): void {
  setBroken(name, true);
  try {
    fn();
  } finally {
    setBroken(name, false);
  }
}

const big = (n: number, seed: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return out;
};
const same = (a: Uint8Array | undefined, b: Uint8Array): boolean =>
  a !== undefined && Buffer.from(a).equals(Buffer.from(b));

/** Collects retired objects (no reader pinned) and returns the live kv object count. */
function settledObjects(db: KvStore): number {
  db.dax.collect();
  db.put('__settle', 'x'); // drains the reaper
  db.delete('__settle');
  return db.stats().largeValueObjects;
}

describe('kv large values', () => {
  it('put, get, overwrite, delete and reopen of large values; superseded objects are removed', () => {
    const media = createSimMedia(32 * 2 ** 20);
    const db = openMedia(media);
    const a1 = big(LARGE_VALUE_THRESHOLD_BYTES + 1, 1);
    const a2 = big(300_000, 2);
    const b = big(1_000_000, 3);
    db.put('a', a1);
    db.put('b', b);
    db.put('small', 'tiny');
    expect(same(db.get('a'), a1)).toBe(true);
    expect(db.stats().largeValueObjects).toBe(2);
    db.put('a', a2); // overwrite large with large
    expect(same(db.get('a'), a2)).toBe(true);
    expect(settledObjects(db)).toBe(2);
    db.put('b', 'now small'); // large -> inline
    expect(Buffer.from(db.get('b')!).toString()).toBe('now small');
    expect(settledObjects(db)).toBe(1);
    db.put('small', b); // inline -> large
    expect(db.delete('a')).toBe(true);
    expect(settledObjects(db)).toBe(1);
    expect([...db.range()].map(([k, v]) => [Buffer.from(k).toString(), v.length])).toEqual([
      ['b', 9],
      ['small', 1_000_000],
    ]);
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }));
    expect(same(again.get('small'), b)).toBe(true);
    expect(again.get('a')).toBeUndefined();
    expect(again.stats().largeValueObjects).toBe(1);
    expect(again.stats().largeValueOrphansRemoved).toBe(0);
    expect(again.dax.device.audit()).toEqual([]);
    again.close();
  });

  it('a string value above the threshold round-trips as UTF-8', () => {
    const db = openMedia(createSimMedia(16 * 2 ** 20));
    const s = 'é-large-'.repeat(5000);
    db.put('s', s);
    expect(Buffer.from(db.get('s')!).toString('utf8')).toBe(s);
    db.close();
  });

  const pinnedObjectSurvives = (): void => {
    const db = openMedia(createSimMedia(16 * 2 ** 20));
    const v = big(100_000, 4);
    db.put('k', v);
    const media = db.dax.device.media;
    db.read(() => {
      const view = db.getView('k')!;
      expect(same(view, v)).toBe(true);
      expect(view.buffer).toBe(media.buffer); // fresh device: consecutive blocks, so a view
      db.put('k', big(50_000, 5)); // supersedes: the old object is retired, not removed
      db.dax.collect();
      db.put('other', 'x'); // drain point: must not remove what a pinned reader sees
      expect(same(view, v)).toBe(true);
      expect(db.stats().largeValueObjects).toBe(2);
    });
    expect(settledObjects(db)).toBe(1);
    db.close();
  };

  it(
    'getView of a large value is a zero-copy view over the object pages when they are one page run, and stays valid after an overwrite while pinned (R6)',
    pinnedObjectSurvives,
  );

  it('goes red with kv-large-remove-now (superseded object removed without the grace period)', () => {
    withBreak('kv-large-remove-now', () => expect(pinnedObjectSurvives).toThrow());
  });

  it('batch with large values applies all or nothing; a failing batch leaves no object behind', () => {
    const db = openMedia(createSimMedia(16 * 2 ** 20));
    const v = big(40_000, 6);
    db.batch([
      { type: 'put', key: 'x', value: v },
      { type: 'put', key: 'y', value: 'small' },
      { type: 'put', key: 'z', value: v },
    ]);
    expect(same(db.get('x'), v)).toBe(true);
    expect(same(db.get('z'), v)).toBe(true);
    expect(db.stats().largeValueObjects).toBe(2);
    expect(() =>
      db.batch([
        { type: 'put', key: 'w', value: v },
        { type: 'put', key: 'k'.repeat(MAX_KEY_BYTES + 1), value: 'bad' },
      ]),
    ).toThrow(DaxError);
    db.dax.device.injectFault({ allocationEnospc: 15 }); // fails inside the second object's pages
    expect(() =>
      db.batch([
        { type: 'put', key: 'p', value: v },
        { type: 'put', key: 'q', value: v },
      ]),
    ).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    expect(db.has('p') || db.has('q')).toBe(false);
    expect(db.stats().largeValueObjects).toBe(2);
    db.close();
  });

  it('put from a view of a large value of the same store, even of the same key (R4)', () => {
    const db = openMedia(createSimMedia(16 * 2 ** 20));
    const v = big(70_000, 7);
    db.put('k', v);
    db.read(() => db.put('k', db.getView('k')!));
    db.read(() => db.put('k2', db.getView('k')!));
    expect(same(db.get('k'), v)).toBe(true);
    expect(same(db.get('k2'), v)).toBe(true);
    db.close();
  });

  it('a full store fails a large put with ENOSPC, keeps every earlier value, and leaks no object', () => {
    const media = createSimMedia(16 * 2 ** 20);
    const db = openMedia(media);
    const value = (i: number): Uint8Array => big(200_000, i);
    const { n, err } = fillUntilError(db, value);
    expect(err).toMatchObject({ code: 'ENOSPC' });
    expect(n).toBeGreaterThan(10);
    expect(db.has(`key-${n}`)).toBe(false);
    expect(db.stats().largeValueObjects).toBe(n);
    for (let i = 0; i < n; i++) expect(same(db.get(`key-${i}`), value(i))).toBe(true);
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }));
    expect(again.stats().keys).toBe(n);
    expect(again.stats().largeValueObjects).toBe(n);
    for (let i = 0; i < n; i++) expect(same(again.get(`key-${i}`), value(i))).toBe(true);
    expect(again.dax.device.audit()).toEqual([]);
    again.close();
  });

  const orphanRemovedAtOpen = (): void => {
    const media = createSimMedia(16 * 2 ** 20);
    const db = openMedia(media);
    db.put('kept', big(30_000, 8));
    // A crash between the object write and the record: stand in by writing an object in the kv id range directly.
    const orphanId = 2 ** 39 + 1000;
    db.dax.object(orphanId, { create: true, size: 20_000 }).write(0, big(20_000, 9));
    expect(db.stats().largeValueObjects).toBe(2);
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }));
    expect(again.stats().largeValueOrphansRemoved).toBe(1);
    expect(again.stats().largeValueObjects).toBe(1);
    expect(again.dax.has(orphanId)).toBe(false);
    expect(same(again.get('kept'), big(30_000, 8))).toBe(true);
    again.put('next', big(30_000, 10)); // ids continue past every id seen
    expect(same(again.get('next'), big(30_000, 10))).toBe(true);
    again.close();
  };

  it('open removes a large-value object no record points at (written, never published)', orphanRemovedAtOpen);

  it('goes red with kv-large-no-orphan-scan', () => {
    withBreak('kv-large-no-orphan-scan', () => expect(orphanRemovedAtOpen).toThrow());
  });
});
