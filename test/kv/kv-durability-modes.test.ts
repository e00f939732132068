/**
 * What each durability mode promises, observed on the simulated device's durable image:
 * 'sync' durable on return; 'group' durable after flushed() or the group-commit timer (a few
 * ms) without any call; 'none' only at close.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { type Durability } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';

const td = new TextDecoder();
function durableValue(media: ReturnType<typeof createSimMedia>, key: string): string | undefined {
  const db = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
  try {
    const v = db.get(key);
    return v === undefined ? undefined : td.decode(v);
  } finally {
    db.close();
  }
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('kv durability modes', () => {
  it("'sync': durable when put, delete and batch return", () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'sync' });
    db.put('a', '1');
    expect(durableValue(media, 'a')).toBe('1');
    db.batch([
      { type: 'put', key: 'b', value: '2' },
      { type: 'del', key: 'a' },
    ]);
    expect(durableValue(media, 'a')).toBeUndefined();
    expect(durableValue(media, 'b')).toBe('2');
    db.close();
  });

  it("'group': visible at once, durable after flushed() resolves", async () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'group' });
    db.put('a', '1');
    expect(td.decode(db.get('a'))).toBe('1');
    expect(durableValue(media, 'a')).toBeUndefined();
    await db.flushed();
    expect(durableValue(media, 'a')).toBe('1');
    db.close();
  });

  it("'group': the group commit makes writes durable within a few ms without flushed()", async () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'group' });
    db.put('a', '1');
    db.put('a', '2');
    await sleep(30);
    expect(durableValue(media, 'a')).toBe('2');
    db.close();
  });

  it("'none': durable only at close", async () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'none' });
    db.put('a', '1');
    await sleep(30);
    expect(durableValue(media, 'a')).toBeUndefined();
    db.close();
    expect(durableValue(media, 'a')).toBe('1');
  });

  it('stats says how durability is achieved on this media', () => {
    for (const durability of ['sync', 'group', 'none'] as Durability[]) {
      const db = openMedia(createSimMedia(8 * 2 ** 20), { durability });
      expect(db.stats()).toMatchObject({ durability, persistMethod: 'simulated flush + fence', mediaKind: 'sim' });
      db.close();
    }
  });
});
