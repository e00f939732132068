/**
 * Object-table records carry two check bytes per word (object-table.ts): one wrong byte of an
 * object's id or size is corrected exactly when the space opens, so no object disappears or
 * changes size (and its pages are not freed as a dead object's). A word damaged past one byte
 * is ECORRUPT, or with salvage its record is cleared (the object is gone, its pages freed,
 * reported). Red with object-record-no-correct.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { DaxSpace } from '../../src/dax/space.js';
import { OWNER_OBJECT_TABLE } from '../../src/dax/layout.js';
import { setBroken } from '../../src/test-break.js';
import { daxCodeOf } from '../helpers/expect-code.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/dax/object-table-damage.test.ts';

/** A closed space with objects 100..104 (sizes 4096 * (i + 1) - 7, filled); the offsets of their table records. */
function build(): { media: SimMedia; records: number[] } {
  const media = createSimMedia(8 * 2 ** 20);
  const space = DaxSpace.create(media);
  for (let i = 0; i < 5; i++) {
    const obj = space.object(100 + i, { create: true, size: 4096 * (i + 1) - 7 });
    obj.write(0, new Uint8Array(4096 * (i + 1) - 7).fill(i + 1));
  }
  let table = -1;
  space.device.forEachOwned((block, owner) => {
    if (owner === OWNER_OBJECT_TABLE) table = space.device.blockOffset(block);
  });
  space.close();
  const records: number[] = [];
  const image = media.crashImage({ mode: 'none' });
  for (let at = table; at < table + 4096; at += 16)
    if (new BigUint64Array(image.buffer, at, 1)[0] !== 0n) records.push(at);
  return { media: image, records };
}

function objects(space: DaxSpace): string[] {
  return [100, 101, 102, 103, 104].map((id) => {
    if (!space.has(id)) return `${id} gone`;
    const obj = space.object(id);
    const bytes = obj.read(0, obj.size);
    return `${id}:${obj.size}:${bytes.every((b) => b === id - 99) ? 'ok' : 'bad'}`;
  });
}

describe('object-table damage', () => {
  it('one wrong byte of any object record is corrected at open: every object intact', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const { media, records } = build();
      expect(records).toHaveLength(5);
      const clean = DaxSpace.openMedia(media.crashImage({ mode: 'none' }));
      const want = objects(clean);
      clean.close();
      expect(want).toEqual(['100:4089:ok', '101:8185:ok', '102:12281:ok', '103:16377:ok', '104:20473:ok']);
      for (let trial = 0; trial < scaled(20); trial++) {
        const image = media.crashImage({ mode: 'none' });
        const at = records[Math.floor(r() * records.length)] + Math.floor(r() * 16);
        new Uint8Array(image.buffer)[at] ^= 1 + Math.floor(r() * 255);
        image.persist(at, 1);
        const space = DaxSpace.openMedia(image);
        try {
          expect(objects(space), `byte ${at}`).toEqual(want);
          expect(space.recovery!.objectRecordsCorrected).toHaveLength(1);
          expect(space.device.audit()).toEqual([]);
        } finally {
          space.close();
        }
      }
    });
  });

  it('a word damaged past one byte is ECORRUPT; salvage clears the record and frees the object', () => {
    const { media, records } = build();
    const image = media.crashImage({ mode: 'none' });
    const bytes = new Uint8Array(image.buffer);
    bytes[records[2] + 0] ^= 0x11;
    bytes[records[2] + 2] ^= 0x40;
    image.persist(records[2], 16);
    expect(daxCodeOf(() => DaxSpace.openMedia(image.crashImage({ mode: 'none' })))).toBe('ECORRUPT');
    const space = DaxSpace.openMedia(image, { salvage: true });
    expect(objects(space)).toEqual(['100:4089:ok', '101:8185:ok', '102 gone', '103:16377:ok', '104:20473:ok']);
    expect(space.recovery!.objectRecordsCleared).toHaveLength(1);
    expect(space.recovery!.freedDeadObject).toBe(3);
    expect(space.device.audit()).toEqual([]);
    space.close();
  });

  it('goes red with DAXSTORE_TEST_BREAK=object-record-no-correct: one wrong byte makes the space unopenable', () => {
    const { media, records } = build();
    const image = media.crashImage({ mode: 'none' });
    new Uint8Array(image.buffer)[records[1] + 1] ^= 0x02;
    image.persist(records[1], 16);
    setBroken('object-record-no-correct', true);
    try {
      expect(daxCodeOf(() => DaxSpace.openMedia(image))).toBe('ECORRUPT');
    } finally {
      setBroken('object-record-no-correct', false);
    }
  });
});
