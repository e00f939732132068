/**
 * Operations while iterating, inside read(), and nested: all work and leave the store
 * consistent (iteration is not a snapshot: see radix-tree.ts; every key present for the
 * whole iteration is returned exactly once).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';

const td = new TextDecoder();

describe('kv misuse matrix', () => {
  it('writes, deletes and deleteRange while iterating a range', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    for (let i = 0; i < 500; i++) db.put(`k${String(i).padStart(4, '0')}`, `v${i}`);
    const seen: string[] = [];
    for (const [k] of db.range({ lt: 'l' })) {
      const key = td.decode(k);
      seen.push(key);
      db.put(key, 'rewritten');
      if (key === 'k0100') db.deleteRange({ gte: 'k0400' });
      db.put(`z-${key}`, 'added beyond the range end');
    }
    // The range is a snapshot of the store as of its creation: every key then, none written since.
    expect(seen).toEqual(Array.from({ length: 500 }, (_, i) => `k${String(i).padStart(4, '0')}`));
    expect(db.stats().keys).toBe([...db.range()].length);
    // deleteRange removed k0400..k0499, and each was rewritten when the iteration reached it.
    expect([...db.range({ lt: 'l' })].length).toBe(500);
    expect(db.stats().snapshots).toBe(0);
    db.close();
  });

  it('every operation inside read(), with views held across writes of the same key', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    db.put('a', 'first');
    db.read(() => {
      const view = db.getView('a')!;
      db.put('a', 'second');
      db.batch([{ type: 'put', key: 'b', value: view }]);
      expect(td.decode(view)).toBe('first'); // the old record is never reused while pinned (R6)
      expect(db.delete('a')).toBe(true);
      expect(db.deleteRange({})).toBe(1);
      expect(db.read(() => db.has('b'))).toBe(false);
      expect(td.decode(view)).toBe('first');
    });
    expect(db.stats().keys).toBe(0);
    db.close();
  });
});
