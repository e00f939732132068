import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSimMedia } from '../../src/device/sim-media.js';
import { isDaxError } from '../../src/errors.js';
import { MAX_KEY_BYTES, MAX_VALUE_BYTES } from '../../src/kv/index.js';
import { open, openMedia } from '../helpers/kv-bytes.js';
import { fillUntilError } from './fill.js';
import { daxCodeOf } from '../helpers/expect-code.js';

const td = new TextDecoder();
const shmDir = (): string => mkdtempSync(path.join(existsShm() ? '/dev/shm' : tmpdir(), 'kv-bad-'));
function existsShm(): boolean {
  try {
    return readFileSync('/proc/mounts', 'utf8').includes('/dev/shm');
  } catch {
    return false;
  }
}

describe('kv bad inputs', () => {
  it('wrong types and oversized keys and values are EINVAL and change nothing', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    db.put('k', 'v');
    const before = db.stats();
    const bad: Array<() => unknown> = [
      () => db.put('x'.repeat(MAX_KEY_BYTES + 1), 'x'),
      () => db.put('é'.repeat(MAX_KEY_BYTES / 2 + 1), 'x'),
      () => db.put(new Uint8Array(MAX_KEY_BYTES + 1), 'x'),
      () => db.put(42 as never, 'x'),
      () => db.put('k', 42 as never),
      () => db.put('k', null as never),
      () => db.put('k', new Uint8Array(MAX_VALUE_BYTES + 1)),
      () => db.get({} as never),
      () => db.delete(undefined as never),
      () => db.batch('nope' as never),
      () => db.batch([{ type: 'put', key: 'a', value: 'b' }, { type: 'zap' } as never]),
      () =>
        db.batch([
          { type: 'put', key: 'a', value: 'b' },
          { type: 'put', key: 'x'.repeat(MAX_KEY_BYTES + 1), value: 'b' },
        ]),
      () => db.range({ gt: 'a', gte: 'b' }),
      () => db.range({ limit: -1 }),
      () => db.deleteRange({ lt: 5 as never }),
      () => db.getView('k'),
      () => db.read('x' as never),
    ];
    for (const fn of bad) expect(daxCodeOf(fn)).toBe('EINVAL');
    expect(db.has('a')).toBe(false);
    expect(td.decode(db.get('k'))).toBe('v');
    expect(db.stats()).toMatchObject({ keys: before.keys, sequence: before.sequence, puts: before.puts });
    expect(db.put('x'.repeat(MAX_KEY_BYTES), 'max key is fine')).toBe(true);
    expect(db.put('', 'the empty key is a key')).toBe(true);
    expect(td.decode(db.get(new Uint8Array(0)))).toBe('the empty key is a key');
    db.close();
  });

  it('every operation after close is ECLOSED; close is idempotent', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    db.put('k', 'v');
    db.close();
    db.close();
    for (const fn of [
      () => db.put('k', 'v'),
      () => db.get('k'),
      () => db.has('k'),
      () => db.delete('k'),
      () => db.batch([]),
      () => db.range(),
      () => db.deleteRange(),
      () => db.stats(),
      () => db.read(() => 1),
      () => db.share(),
    ]) {
      expect(daxCodeOf(fn)).toBe('ECLOSED');
    }
    return expect(db.flushed()).rejects.toMatchObject({ code: 'ECLOSED' });
  });

  it('a full store fails the put with ENOSPC and keeps every earlier value, also after reopen', () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media);
    const value = (i: number): Uint8Array => new Uint8Array(100_000).fill(i & 0xff);
    const { n, err } = fillUntilError(db, value);
    expect(isDaxError(err, 'ENOSPC')).toBe(true);
    expect(n).toBeGreaterThanOrEqual(20); // 6 MiB of data blocks, one 2 MiB extent of them kept for deletes and compaction
    expect(db.has(`key-${n}`)).toBe(false);
    expect(
      daxCodeOf(() =>
        db.batch([
          { type: 'put', key: 'a', value: value(1) },
          { type: 'del', key: 'key-0' },
        ]),
      ),
    ).toBe('ENOSPC');
    expect(db.has('key-0')).toBe(true);
    for (let i = 0; i < n; i++) expect(Buffer.from(db.get(`key-${i}`)!).equals(value(i))).toBe(true);
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }));
    expect(again.stats().keys).toBe(n);
    for (let i = 0; i < n; i++) expect(Buffer.from(again.get(`key-${i}`)!).equals(value(i))).toBe(true);
    expect(again.dax.device.audit()).toEqual([]);
    again.close();
  });

  it('an injected allocation failure is ENOSPC and changes nothing', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    db.dax.device.injectFault({ allocationEnospc: 1 });
    expect(daxCodeOf(() => db.put('k', 'v'))).toBe('ENOSPC');
    expect(db.has('k')).toBe(false);
    db.put('k', 'v');
    expect(td.decode(db.get('k'))).toBe('v');
    db.close();
  });

  it('open: a file that is not a store is ENOTSTORE and left untouched; a missing directory is ENOENT', () => {
    const dir = shmDir();
    try {
      const file = path.join(dir, 'not-a-store');
      const junk = Buffer.alloc(8 * 2 ** 20, 0x5a);
      writeFileSync(file, junk);
      expect(daxCodeOf(() => open(file))).toBe('ENOTSTORE');
      expect(readFileSync(file).equals(junk)).toBe(true);
      expect(daxCodeOf(() => open(path.join(dir, 'no-such-dir', 'absent')))).toBe('ENOENT');
      expect(daxCodeOf(() => open(path.join(dir, 'x'), { size: 8 * 2 ** 20, durability: 'fast' as never }))).toBe(
        'EINVAL',
      );
      const db = open(path.join(dir, 'real'), { size: 8 * 2 ** 20 });
      db.put('a', 'b');
      db.close();
      const again = open(path.join(dir, 'real'));
      expect(td.decode(again.get('a'))).toBe('b');
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
