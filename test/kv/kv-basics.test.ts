import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';

const te = new TextEncoder();
const td = new TextDecoder();

describe('kv basics', () => {
  it('put, get, has, delete, getView inside read, reopen keeps values', () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media);
    db.put('a', 'one');
    db.put(te.encode('b'), te.encode('two'));
    db.put('a', 'uno');
    expect(td.decode(db.get('a'))).toBe('uno');
    expect(db.has('b')).toBe(true);
    expect(db.get('zz')).toBeUndefined();
    expect(db.read(() => td.decode(db.getView('b')))).toBe('two');
    expect(db.delete('b')).toBe(true);
    expect(db.delete('b')).toBe(false);
    expect(db.stats().keys).toBe(1);
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }));
    expect(td.decode(again.get('a'))).toBe('uno');
    expect(again.get('b')).toBeUndefined();
    expect(again.stats().keys).toBe(1);
    expect(again.recovery?.droppedRecords).toBe(0);
    again.close();
  });

  it('range honours bounds, prefix, reverse and limit in key-byte order', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    for (const k of ['a', 'ab', 'abc', 'b', 'ba', 'c']) db.put(k, k.toUpperCase());
    const keys = (o: object): string[] => [...db.range(o)].map(([k]) => td.decode(k));
    expect(keys({})).toEqual(['a', 'ab', 'abc', 'b', 'ba', 'c']);
    expect(keys({ prefix: 'a' })).toEqual(['a', 'ab', 'abc']);
    expect(keys({ gt: 'a', lte: 'b' })).toEqual(['ab', 'abc', 'b']);
    expect(keys({ reverse: true, limit: 2 })).toEqual(['c', 'ba']);
    expect(keys({ prefix: 'b', reverse: true })).toEqual(['ba', 'b']);
    expect([...db.range({ gte: 'c' })].map(([, v]) => td.decode(v))).toEqual(['C']);
    expect(db.deleteRange({ gte: 'ab', lt: 'b' })).toBe(2);
    expect(keys({})).toEqual(['a', 'b', 'ba', 'c']);
    db.batch([
      { type: 'put', key: 'x', value: '1' },
      { type: 'del', key: 'a' },
      { type: 'put', key: 'x', value: '2' },
    ]);
    expect(keys({})).toEqual(['b', 'ba', 'c', 'x']);
    expect(td.decode(db.get('x'))).toBe('2');
    db.close();
  });

  it('put from a view of the same store, even of the same key (R4)', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    db.put('k', 'value-bytes');
    db.read(() => db.put('k', db.getView('k')!));
    db.read(() => db.put('k2', db.getView('k')!));
    expect(td.decode(db.get('k'))).toBe('value-bytes');
    expect(td.decode(db.get('k2'))).toBe('value-bytes');
    db.close();
  });
});
