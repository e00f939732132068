/**
 * Owner records carry two check bytes (a Reed-Solomon code over the record's 16 bytes,
 * owner-table.ts): any one wrong byte of an OWNED or POISONED record is corrected exactly when
 * the device opens, and a FREE record with one byte set is read as FREE. Exhaustive over every
 * byte and every nonzero xor of records of each kind (order 0, an extent head, POISONED with and
 * without an owner). Damage no single byte explains is ECORRUPT and changes nothing, unless the
 * open salvages: then the record is cleared and reported. Red with owner-no-correct (one wrong
 * byte makes the device unopenable: the owner-table finding).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { checkHolds, correctOneByte, encodeMeta, sealMeta } from '../../src/device/owner-table.js';
import { setBroken } from '../../src/test-break.js';
import { daxCodeOf } from '../helpers/expect-code.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/device/owner-table-damage.test.ts';
const MiB = 2 ** 20;

/** A closed device with: block 3 owned (object 77, index 5), an extent at 512 (owner 3, index 2^39 + 7), block 9 owned and poisoned, block 11 poisoned free. */
function build(): { media: SimMedia; records: number[]; offsetOf: (block: number) => number } {
  const media = createSimMedia(8 * MiB);
  const device = Device.format(media);
  const owned: number[] = [];
  for (let i = 0; i < 12; i++) owned.push(device.allocate(77, i));
  const extent = device.allocate(3, 2 ** 39 + 7, 9);
  device.poison(owned[9]);
  device.free(owned[11]);
  device.poison(owned[11]);
  const table = device.geometry.ownerTableOffset;
  device.close();
  return {
    media: media.crashImage({ mode: 'none' }),
    records: [owned[3], extent, owned[9], owned[11]],
    offsetOf: (block) => table + 16 * block,
  };
}

function ownerRecord(media: SimMedia, offset: number): [bigint, bigint] {
  const w = new BigUint64Array(media.buffer, offset, 2);
  return [w[0], w[1]];
}

describe('owner record check bytes', () => {
  it('every single-byte error of a sealed record is corrected to the record', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const wrong: string[] = [];
      for (let n = 0; n < scaled(4); n++) {
        const index = BigInt(Math.floor(r() * 2 ** 53));
        const word0 = sealMeta(encodeMeta(1, r() < 0.5 ? 0 : 9, 1 + Math.floor(r() * (2 ** 40 - 1))), index);
        expect(checkHolds(word0, index)).toBe(true);
        const bytes = new Uint8Array(new BigUint64Array([word0, index]).buffer);
        for (let at = 0; at < 16; at++)
          for (let x = 1; x < 256; x++) {
            const damaged = bytes.slice();
            damaged[at] ^= x;
            const w = new BigUint64Array(damaged.buffer);
            const fixed = correctOneByte(w[0], w[1]);
            if (checkHolds(w[0], w[1]) || fixed?.[0] !== word0 || fixed[1] !== index) wrong.push(`byte ${at} ^ ${x}`);
          }
      }
      expect(wrong).toEqual([]);
    });
  });

  it('a device opens with any one byte of an owner record wrong, the record corrected in place and reported', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const { media, records, offsetOf } = build();
      for (let trial = 0; trial < scaled(24); trial++) {
        const image = media.crashImage({ mode: 'none' });
        const block = records[Math.floor(r() * records.length)];
        const offset = offsetOf(block);
        const before = ownerRecord(image, offset);
        const at = offset + Math.floor(r() * 16);
        new Uint8Array(image.buffer)[at] ^= 1 + Math.floor(r() * 255);
        image.persist(at, 1);
        const device = Device.open(image);
        expect(ownerRecord(image, offset)).toEqual(before);
        expect(device.ownerRepairs.corrected.map((c) => c.block)).toEqual([block]);
        expect(device.audit()).toEqual([]);
        device.close();
      }
    });
  });

  it('a FREE record with one byte of word0 set opens as FREE', () => {
    const { media, offsetOf } = build();
    const image = media.crashImage({ mode: 'none' });
    new Uint8Array(image.buffer)[offsetOf(100) + 3] = 0x40;
    image.persist(offsetOf(100), 16);
    const device = Device.open(image);
    expect(device.ownerOf(100).state).toBe('free');
    expect(device.ownerRepairs.corrected.map((c) => c.block)).toEqual([100]);
    device.close();
  });

  it('two wrong bytes are ECORRUPT naming the block, nothing changed; salvage clears the record', () => {
    const { media, records, offsetOf } = build();
    const image = media.crashImage({ mode: 'none' });
    const bytes = new Uint8Array(image.buffer);
    bytes[offsetOf(records[0]) + 1] ^= 0x21;
    bytes[offsetOf(records[0]) + 9] ^= 0x02;
    image.persist(offsetOf(records[0]), 16);
    const working = bytes.slice();
    let message = '';
    try {
      Device.open(image);
    } catch (e) {
      message = String(e);
    }
    expect(message).toMatch(new RegExp(`ECORRUPT: .*owner record of block ${records[0]} `));
    expect(Buffer.compare(bytes, working)).toBe(0);
    const device = Device.open(image, { salvage: true });
    expect(device.ownerOf(records[0]).state).toBe('free');
    expect(device.ownerRepairs.cleared.map((c) => c.block)).toEqual([records[0]]);
    expect(device.audit()).toEqual([]);
    device.close();
  });

  it('goes red with DAXSTORE_TEST_BREAK=owner-no-correct: one wrong byte makes the device unopenable', () => {
    const { media, records, offsetOf } = build();
    const image = media.crashImage({ mode: 'none' });
    new Uint8Array(image.buffer)[offsetOf(records[1]) + 2] ^= 0x10;
    image.persist(offsetOf(records[1]), 16);
    setBroken('owner-no-correct', true);
    try {
      expect(daxCodeOf(() => Device.open(image))).toBe('ECORRUPT');
    } finally {
      setBroken('owner-no-correct', false);
    }
  });
});
