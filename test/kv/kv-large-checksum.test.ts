/**
 * A large value (> 16 KiB, a DAX object) carries the xxh64 of its bytes in its log entry, and
 * every read checks it: after a seeded byte of the object's pages flips (durably), get, getView
 * (zero-copy or copy) and range throw ECORRUPT, never the wrong bytes; the other keys read as
 * written; overwriting the key clears it. Red with kv-large-no-verify (the flipped bytes come
 * back as the value).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { KV_OBJECT_ID_BASE } from '../../src/kv/large-values.js';
import { setBroken } from '../../src/test-break.js';
import { daxCodeOf } from '../helpers/expect-code.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-large-checksum.test.ts';

/** A closed store; `pages`: the device offset of each page of the value of 'big'. */
function build(r: () => number): { media: SimMedia; big: Uint8Array; pages: number[] } {
  const media = createSimMedia(8 * 2 ** 20);
  const db = openMedia(media);
  const big = new Uint8Array(20_000 + Math.floor(r() * 200_000)).map(() => Math.floor(r() * 256));
  db.put('small', 'fine');
  db.put('big', big);
  db.put('other', new Uint8Array(40_000).fill(3));
  const pages: number[] = [];
  const device = db.dax.device;
  device.forEachOwned((block, owner, index) => {
    if (owner === KV_OBJECT_ID_BASE) pages[index] = device.blockOffset(block); // 'big' is the first large value: the first kv object
  });
  expect(pages.length).toBe(Math.ceil(big.length / 4096));
  db.close();
  return { media, big, pages };
}

/** A copy of the closed store with byte `at` of the value of 'big' flipped, durably. */
function flipValueByte(media: SimMedia, pages: number[], at: number, r: () => number): SimMedia {
  const image = media.crashImage({ mode: 'none' });
  const offset = pages[Math.floor(at / 4096)] + (at % 4096);
  new Uint8Array(image.buffer)[offset] ^= 1 + Math.floor(r() * 255);
  image.persist(offset, 1);
  return image;
}

describe('large values are checked', () => {
  it('a flipped byte of a large value is ECORRUPT on get, getView and range; never returned', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const { media, big, pages } = build(r);
      for (let trial = 0; trial < scaled(8); trial++) {
        const image = flipValueByte(media, pages, Math.floor(r() * big.length), r);
        const db = openMedia(image, { formatIfEmpty: false });
        expect(daxCodeOf(() => db.get('big'))).toBe('ECORRUPT');
        expect(daxCodeOf(() => db.read(() => db.getView('big')))).toBe('ECORRUPT');
        expect(daxCodeOf(() => [...db.range()])).toBe('ECORRUPT');
        expect(new TextDecoder().decode(db.get('small'))).toBe('fine');
        expect(Buffer.compare(db.get('other')!, new Uint8Array(40_000).fill(3))).toBe(0); // not toEqual: slow on 40k elements
        db.put('big', big);
        expect(Buffer.compare(db.get('big')!, big)).toBe(0);
        db.close();
        image.dispose();
      }
    });
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-large-no-verify: the damaged bytes are returned', () => {
    const r = rng(7);
    const { media, big, pages } = build(r);
    const image = flipValueByte(media, pages, 5000, r);
    setBroken('kv-large-no-verify', true);
    try {
      const db = openMedia(image, { formatIfEmpty: false });
      const got = db.get('big')!;
      expect(got.length).toBe(big.length);
      expect(Buffer.compare(got, big)).not.toBe(0);
      db.close();
    } finally {
      setBroken('kv-large-no-verify', false);
    }
  });
});
