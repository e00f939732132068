/**
 * Poison found during recovery: a record whose header is readable but whose bytes run into a
 * poisoned block ends its segment's scan BEFORE it is hashed (recovery copies each segment
 * into the verifier only up to its first poisoned block: reading poisoned pmem faults). The
 * records before it are recovered, the segment is reported in poisonedSegments, nothing after
 * it is applied. Red when the scan checks the record's span only after hashing it (the hash
 * would read past the copied window: an assertion, on real pmem a machine check).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../../src/kv/index.js';

const td = new TextDecoder();

describe('kv recovery over a poisoned block', () => {
  it('a record running into a poisoned block ends the scan before it is hashed; earlier records recover', () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'none' });
    db.put('before', 'kept');
    db.put('victim', new Uint8Array(5000).fill(1)); // header in one block, value runs into the next
    db.put('after', 'lost with the rest of the segment');
    const offset = db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('victim')))!;
    const device = db.dax.device;
    const headerBlock = device.blockAt(offset);
    const tailBlock = device.blockAt(offset + 4200);
    expect(tailBlock).not.toBe(headerBlock);
    db.close();
    const image = media.crashImage({ mode: 'none' });
    const again0 = openMedia(image, { formatIfEmpty: false, durability: 'none' });
    again0.dax.device.poison(tailBlock); // recorded in the bad-block list: the next open knows it
    again0.close();
    const again = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    try {
      expect(again.recovery?.poisonedSegments).toBe(1);
      expect([...again.range()].map(([k, v]) => `${td.decode(k)}=${td.decode(v)}`)).toEqual(['before=kept']);
    } finally {
      again.close();
    }
  });
});
