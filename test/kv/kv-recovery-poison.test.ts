/**
 * Poison found during recovery: a poisoned block of a segment loses only the records that
 * overlap it. The scan never reads the block (a record running into it is bad before it is
 * hashed; reading poisoned pmem faults), resyncs after it, and keeps every record after it.
 * Their keys are unknown (the block cannot be read): strict open refuses with EIO naming the
 * block and the sequence range lost; salvage serves every other key, reports the range,
 * evacuates the segment (its readable live entries moved, the segment retired), and a strict
 * reopen afterwards opens clean. Red with kv-no-resync (the segment ends at the block: the
 * records after it are lost, quietly).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { KvDamageError } from '../../src/kv/recovery.js';
import { setBroken } from '../../src/test-break.js';
import { openMedia } from '../helpers/kv-bytes.js';

const td = new TextDecoder();
const listing = (db: ReturnType<typeof openMedia>): string[] =>
  [...db.range()].map(([k, v]) => `${td.decode(k)}=${v.length}`);

/** before, victim (header in one block, value into the next), after (lost with it), filler, after2 (past the block). */
function build(): { image: SimMedia; poisoned: number } {
  const media = createSimMedia(8 * 2 ** 20);
  const db = openMedia(media, { durability: 'none' });
  db.put('before', 'kept');
  db.put('victim', new Uint8Array(5000).fill(1));
  db.put('after', 'lost with the block');
  db.put('filler', new Uint8Array(6000).fill(2));
  db.put('after2', 'kept past the block');
  const offset = db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('victim')))!;
  const device = db.dax.device;
  const poisoned = device.blockAt(offset + 4200);
  expect(poisoned).not.toBe(device.blockAt(offset));
  expect(device.blockAt(db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('after')))!)).toBe(poisoned);
  expect(device.blockAt(db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('after2')))!)).toBeGreaterThan(poisoned);
  db.close();
  const image = media.crashImage({ mode: 'none' });
  const again = openMedia(image, { formatIfEmpty: false, durability: 'none' });
  again.dax.device.poison(poisoned); // recorded in the bad-block list: the next open knows it
  again.close();
  return { image: image.crashImage({ mode: 'none' }), poisoned };
}

describe('kv recovery over a poisoned block', () => {
  it('strict open refuses with EIO; salvage keeps every record outside the block; a strict reopen is clean', () => {
    const { image, poisoned } = build();
    let refusal: KvDamageError | undefined;
    try {
      openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false }).close();
    } catch (e) {
      refusal = e as KvDamageError;
    }
    expect(refusal).toBeInstanceOf(KvDamageError);
    expect(refusal!.code).toBe('EIO');
    expect(refusal!.report.damage).toHaveLength(1);
    expect(refusal!.report.damage[0].kind).toBe('poison');
    expect(refusal!.report.unknownSequences).toEqual([{ after: 1, before: 5 }]); // victim..filler are 2..4
    expect(refusal!.message).toMatch(/poison at offset/);

    const db = openMedia(image, { formatIfEmpty: false, recovery: 'salvage' });
    expect(listing(db)).toEqual(['after2=19', 'before=4']);
    expect(db.recovery!.salvaged).toMatchObject({ evacuatedSegments: 1 });
    expect(db.dax.device.isPoisoned(poisoned)).toBe(true);
    db.close();
    const again = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expect(listing(again)).toEqual(['after2=19', 'before=4']);
    expect(again.recovery!.damage).toEqual([]);
    expect(again.dax.device.audit()).toEqual([]);
    again.close();
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-no-resync: the segment ends at the block, after2 is lost quietly', () => {
    const { image } = build();
    setBroken('kv-no-resync', true);
    try {
      const db = openMedia(image, { formatIfEmpty: false });
      expect(listing(db)).toEqual(['before=4']);
      db.close();
    } finally {
      setBroken('kv-no-resync', false);
    }
  });
});
