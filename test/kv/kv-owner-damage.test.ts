/**
 * One byte of the owner table never makes a key-value store unopenable or maps a block to the
 * wrong owner (the owner-table finding: ECORRUPT at open in 5 of 10 trials, a wrong large value
 * in 3). A store with log segments, large values (object pages, an object-table page) and a
 * poisoned free block is closed; one seeded byte of one of its owner records flips (xor with a
 * seeded nonzero value), durably. It opens strict, every key reads exactly as written, the
 * record is corrected in place, and the allocator agrees with the table. Damage past one byte
 * at a segment's head is salvaged from the segment's SEAL: every key is kept; a retired
 * segment's head is marked (compaction), so a freed extent is never restored as a segment, which
 * would bring back what it held (red with kv-compact-no-retired-mark). Red with
 * owner-no-correct.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { OWNER_KV_SEGMENT } from '../../src/kv/layout.js';
import { putUntilNewSegment } from './fill.js';
import { setBroken } from '../../src/test-break.js';
import { daxCodeOf } from '../helpers/expect-code.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-owner-damage.test.ts';

interface Built {
  media: SimMedia;
  model: Map<string, Uint8Array>;
  /** owned blocks: [block, owner] */
  owned: Array<[number, number]>;
  tableOffset: number;
}

function build(r: () => number): Built {
  const media = createSimMedia(16 * 2 ** 20);
  const db = openMedia(media, { durability: 'none' });
  const model = new Map<string, Uint8Array>();
  for (let i = 0; i < 3000; i++) {
    const key = `k${Math.floor(r() * 700)}`;
    const big = r() < 0.01;
    const value = new Uint8Array(big ? 17_000 + Math.floor(r() * 30_000) : 1 + Math.floor(r() * 200)).map(() =>
      Math.floor(r() * 256),
    );
    if (r() < 0.15) {
      db.delete(key);
      model.delete(key);
    } else {
      db.put(key, value);
      model.set(key, value);
    }
  }
  db.compact({ maxLiveRatio: 0.5 });
  db.dax.device.poison(db.dax.device.dataBlocks - 1);
  db.close(); // frees what compaction retired: list the owners after
  const image = media.crashImage({ mode: 'none' });
  const again = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
  const owned: Array<[number, number]> = [];
  again.dax.device.forEachOwned((block, owner) => owned.push([block, owner]));
  const tableOffset = again.dax.device.geometry.ownerTableOffset;
  again.close();
  return { media: image, model, owned, tableOffset };
}

function mismatches(db: KvStore, model: Map<string, Uint8Array>): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const [k, v] of db.range()) {
    const key = Buffer.from(k).toString();
    seen.add(key);
    const want = model.get(key);
    if (want === undefined) out.push(`${key} present, deleted`);
    else if (Buffer.compare(v, want) !== 0) out.push(`${key} wrong value`);
  }
  for (const key of model.keys()) if (!seen.has(key)) out.push(`${key} missing`);
  return out;
}

describe('owner table damage', () => {
  it('one byte of any owner record: the store opens strict and every key reads as written', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const built = build(r);
      const owners = new Set(built.owned.map(([, o]) => o));
      expect(owners.has(OWNER_KV_SEGMENT) && owners.has(1) && [...owners].some((o) => o >= 2 ** 39)).toBe(true);
      for (let trial = 0; trial < scaled(25); trial++) {
        const image = built.media.crashImage({ mode: 'none' });
        const [block] = built.owned[Math.floor(r() * built.owned.length)];
        const at = built.tableOffset + 16 * block + Math.floor(r() * 16);
        new Uint8Array(image.buffer)[at] ^= 1 + Math.floor(r() * 255);
        image.persist(at, 1);
        const db = openMedia(image, { formatIfEmpty: false });
        try {
          expect(mismatches(db, built.model), `byte ${at} (record of block ${block})`).toEqual([]);
          expect(db.recovery!.ownerRecords.corrected).toHaveLength(1);
          expect(db.dax.device.audit()).toEqual([]);
        } finally {
          db.close();
          image.dispose();
        }
      }
    });
  });

  it("a segment's owner record damaged past one byte: strict refuses, salvage restores it from the SEAL", () => {
    const built = build(rng(5));
    const [block] = built.owned.find(([, o]) => o === OWNER_KV_SEGMENT)!;
    const image = built.media.crashImage({ mode: 'none' });
    const bytes = new Uint8Array(image.buffer);
    bytes[built.tableOffset + 16 * block + 1] ^= 0x40;
    bytes[built.tableOffset + 16 * block + 12] ^= 0x08;
    image.persist(built.tableOffset + 16 * block, 16);
    expect(daxCodeOf(() => openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false }))).toBe('ECORRUPT');
    const db = openMedia(image, { formatIfEmpty: false, recovery: 'salvage' });
    expect(db.recovery!.restoredSegments).toEqual([block]);
    expect(mismatches(db, built.model)).toEqual([]);
    db.close();
    const again = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    expect(mismatches(again, built.model)).toEqual([]);
    expect(again.dax.device.audit()).toEqual([]);
    again.close();
  });

  /**
   * S0 holds PUT k = v1 and filler that later puts supersede; k is deleted (in S1); S0 is
   * compacted away, then S1 (DEL k is dropped: no older PUT of k is left). S0's freed extent
   * keeps its bytes; its (FREE) owner record is then damaged past a one-byte correction and the
   * store salvaged. Returns what k reads.
   */
  function retiredSegmentAfterSalvage(): string | undefined {
    const media = createSimMedia(32 * 2 ** 20);
    // No index checkpoint at close: its blocks could be taken from S0's freed extent.
    const db = openMedia(media, { checkpoint: false });
    const filler = (i: number): void => {
      db.put(`f${i % 4}`, new Uint8Array(4000).fill(i & 0xff));
    };
    db.put('k', 'v1');
    const s0 = db.dax.device.blockAt(db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('k')))!) & ~511;
    putUntilNewSegment(db, filler); // S0 closed; the writer is in S1
    db.delete('k');
    for (let i = 0; i < 4; i++) filler(i); // every filler value of S0 superseded
    expect(db.compact({ maxLiveRatio: 0.05 }).segmentsFreed).toBe(1); // S0 (S1 is open)
    putUntilNewSegment(db, filler); // S1 (DEL k) closed
    for (let i = 0; i < 4; i++) filler(i);
    const second = db.compact({ maxLiveRatio: 0.05 });
    expect(second.segmentsFreed).toBe(1);
    expect(second.tombstonesDropped).toBe(1); // no older PUT of k is left in the log
    const tableOffset = db.dax.device.geometry.ownerTableOffset;
    expect(db.dax.device.ownerOf(s0).state).toBe('free');
    db.close();
    const image = media.crashImage({ mode: 'none' });
    const bytes = new Uint8Array(image.buffer);
    bytes[tableOffset + 16 * s0 + 0] = 0x25; // looks like a head, owner 3 at byte 1 missing: no one byte explains it
    bytes[tableOffset + 16 * s0 + 3] = 0x11;
    image.persist(tableOffset + 16 * s0, 16);
    const again = openMedia(image, { formatIfEmpty: false, recovery: 'salvage' });
    try {
      const v = again.get('k');
      return v === undefined ? undefined : new TextDecoder().decode(v);
    } finally {
      again.close();
    }
  }

  it('a retired segment is never restored from its SEAL: deleted keys stay deleted', () => {
    expect(retiredSegmentAfterSalvage()).toBeUndefined();
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-no-retired-mark: salvage restores the freed segment, k comes back', () => {
    setBroken('kv-compact-no-retired-mark', true);
    try {
      // One build in a few leaves the freed extent so that salvage does not take it for a
      // segment (the run is not deterministic), so up to five builds.
      let got: string | undefined;
      for (let run = 0; run < 5 && got !== 'v1'; run++) got = retiredSegmentAfterSalvage();
      expect(got).toBe('v1');
    } finally {
      setBroken('kv-compact-no-retired-mark', false);
    }
  });

  it('goes red with DAXSTORE_TEST_BREAK=owner-no-correct: one byte of a segment owner record makes the store unopenable', () => {
    const built = build(rng(6));
    const [block] = built.owned.find(([, o]) => o === OWNER_KV_SEGMENT)!;
    const image = built.media.crashImage({ mode: 'none' });
    new Uint8Array(image.buffer)[built.tableOffset + 16 * block + 3] ^= 0x01;
    image.persist(built.tableOffset + 16 * block, 16);
    setBroken('owner-no-correct', true);
    try {
      expect(daxCodeOf(() => openMedia(image, { formatIfEmpty: false }))).toBe('ECORRUPT');
    } finally {
      setBroken('owner-no-correct', false);
    }
  });
});
