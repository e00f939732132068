/**
 * Index checkpoints (src/kv/checkpoint.ts): a clean close of a store opened with
 * { checkpoint: true } writes one; the next open loads it and scans only the log after it.
 *
 * 1. Random workloads (puts, overwrites, deletes, batches, large values, compaction): after a
 *    clean close, the open that loads the checkpoint equals `recovery: 'full'` of the same
 *    image (every key and value, keys, sequence, segments, free blocks); then more writes and
 *    a crash (SimMedia's crash image: only what was made durable), and the open that replays
 *    the tail over the checkpoint equals the full scan and the model of acknowledged writes.
 * 2. Compacted since: after the checkpoint, compaction frees segments it lists and new records
 *    reuse them, then a crash: the checkpoint is loaded without those segments (their keys come
 *    from the tail, where compaction moved them) and serves the model, equal to a full scan.
 *    With kv-checkpoint-trust-stale (coverage unchecked) the open serves wrong data.
 * 3. Damaged (a flipped byte), another store's, another version's: ignored with the reason in
 *    stats().recovery.checkpoint.ignored, removed, the whole log scanned, the model served.
 * 4. A crash inside checkpoint writing (crash images at each step of it, random lines of
 *    the write lost): every image opens to the model, on the previous checkpoint or a full scan.
 * 5. A store that runs out of space removes its checkpoint before a put gets ENOSPC.
 * 6. A checkpoint of more than one 2 MiB extent is read in place from the mapping (no copy):
 *    equal to a full scan, and a flipped byte anywhere past its header is found by its
 *    checksum; red with kv-checkpoint-in-place-unhashed (the in-place read not checksummed).
 * 7. A checkpoint that lists a segment under another life than its own (forged) while that life's
 *    records predate it: the segment is scanned as tail, and the PUTs there of keys deleted
 *    before the checkpoint stay out. Red with kv-checkpoint-stale-tail (the deleted keys back).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { DaxSpace } from '../../src/dax/space.js';
import { CHECKPOINT_ID_FIRST, CHECKPOINT_VERSION, checkpointIds } from '../../src/kv/checkpoint.js';
import { OWNER_KV_SEGMENT } from '../../src/kv/layout.js';
import { HUGE_BLOCKS } from '../../src/device/layout.js';
import { setBroken, testHooks } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import {
  checkpointBytes,
  checkpointImageAt,
  dump,
  expectModel,
  hex,
  openMedia,
  rewriteCheckpoint,
  snapshot,
  snapshotWithLog,
  workload,
  type KvStore,
  type Model,
  type Snapshot,
} from './kv-checkpoint-helpers.js';

const FILE = 'test/kv/kv-checkpoint.test.ts';

const MEDIA_BYTES = 24 * 2 ** 20;

/** Opens the image with the checkpoint and with recovery: 'full' (each on its own copy) and expects them equal. */
function expectCheckpointEqualsFull(image: SimMedia): { db: KvStore; loaded: number | undefined; tail: number } {
  const full = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
  const want = snapshotWithLog(full);
  expect(full.recovery!.checkpoint!.loaded).toBeUndefined();
  expect(full.recovery!.checkpoint!.forcedFull).toBe(true);
  full.close();
  const db = openMedia(image, { formatIfEmpty: false });
  expect(snapshotWithLog(db)).toEqual(want);
  const use = db.recovery!.checkpoint!;
  return { db, loaded: use.loaded, tail: use.tailEntries };
}

describe('index checkpoints', () => {
  it('checkpoint + reopen equals a full scan after clean closes and after crashes with a tail (random workloads)', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      let cleanLoads = 0;
      let tailLoads = 0;
      for (let round = 0; round < scaled(4); round++) {
        const media = createSimMedia(MEDIA_BYTES, { name: `ckpt-${round}` });
        const model: Model = new Map();
        let db = openMedia(media, { durability: 'sync' });
        let image: SimMedia = media;
        for (let cycle = 0; cycle < 3; cycle++) {
          workload(db, model, r, 400 + Math.floor(r() * 800), 300 + Math.floor(r() * 1500));
          if (r() < 0.6) {
            // clean close: a checkpoint; the next open loads it and equals the full scan
            db.close();
            expect(db.lastCheckpoint).toMatchObject({ keys: expect.any(Number) });
            const next = image.crashImage({ mode: 'none' });
            const opened = expectCheckpointEqualsFull(next);
            expect(opened.loaded).toBeDefined();
            cleanLoads++;
            db = opened.db;
            image = next;
          } else {
            // a crash after writes past the last checkpoint: the tail replays over it
            const next = image.crashImage({ mode: 'random', seed: (r() * 2 ** 32) >>> 0, probability: r() });
            db.close();
            const opened = expectCheckpointEqualsFull(next);
            if (opened.loaded !== undefined && opened.tail > 0) tailLoads++;
            db = opened.db;
            image = next;
          }
          expectModel(db, model);
        }
        db.close();
      }
      expect(cleanLoads).toBeGreaterThan(0);
      expect(tailLoads + cleanLoads).toBeGreaterThan(1);
    });
  });

  it('replays the tail over a checkpoint after a crash: only the tail is scanned, acknowledged writes all there', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const media = createSimMedia(MEDIA_BYTES);
      const model: Model = new Map();
      const db = openMedia(media, { durability: 'sync' });
      workload(db, model, () => r() * 0.99, 1500, 800); // no compaction
      db.close();
      const a = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
      expect(a.recovery!.checkpoint!.loaded).toBe(0);
      workload(a, model, () => r() * 0.99, 300, 1200);
      const crashed = a.dax.device.media as SimMedia;
      const image = crashed.crashImage({ mode: 'random', seed: (r() * 2 ** 32) >>> 0, probability: 0.5 });
      a.close();
      const { db: b, loaded, tail } = expectCheckpointEqualsFull(image);
      expect(loaded).toBe(0);
      expect(tail).toBeGreaterThan(0);
      expect(b.recovery!.checkpoint!.tailEntries).toBe(tail); // the entries scanned: the tail's alone
      expect(b.recovery!.entries).toBeGreaterThan(tail); // the log's: the covered ones' too
      expectModel(b, model);
      b.close();
    });
  });

  it('loads a checkpoint without the segments compaction freed and reused since (then a crash); red with kv-checkpoint-trust-stale', async () => {
    await withSeed(FILE, (seed) => {
      const run = (): { gone: number; loaded: number | undefined; matches: boolean } => {
        const r = rng(seed);
        const media = createSimMedia(MEDIA_BYTES);
        const model: Model = new Map();
        const db = openMedia(media, { durability: 'sync', autoCompact: false });
        // three segments of records (2 MiB each): compaction frees all but the open one
        for (let i = 0; i < 12000; i++) {
          db.put(`k${i}`, `first ${i} ${'y'.repeat(300)}`);
          model.set(hex(`k${i}`), hex(`first ${i} ${'y'.repeat(300)}`));
        }
        db.close();
        const a = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false, autoCompact: false });
        expect(a.recovery!.checkpoint!.loaded).toBe(0);
        // most keys deleted, the segments compacted away, their blocks reused by new records
        for (let i = 0; i < 12000; i++)
          if (r() < 0.9) {
            a.delete(`k${i}`);
            model.delete(hex(`k${i}`));
          }
        expect(a.compact({ maxLiveRatio: 1 }).segmentsFreed).toBeGreaterThan(0);
        // new records until one of the freed segments' extents holds a segment again (the
        // allocator may take other free extents first)
        const freed = new Set(a.recovery!.checkpoint!.coveredSegments.map((s) => s.block));
        a.dax.device.forEachOwned((block, owner) => {
          if (owner === OWNER_KV_SEGMENT) freed.delete(block);
        });
        const reused = (): boolean => {
          let any = false;
          a.dax.device.forEachOwned((block, owner) => {
            if (owner === OWNER_KV_SEGMENT && freed.has(block)) any = true;
          });
          return any;
        };
        for (let i = 0; i < 8000 || ((i % 500 !== 0 || !reused()) && i < 40000); i++) {
          a.put(`n${i}`, `second ${i} ${'z'.repeat(300)}`);
          model.set(hex(`n${i}`), hex(`second ${i} ${'z'.repeat(300)}`));
        }
        expect(reused()).toBe(true);
        const image = (a.dax.device.media as SimMedia).crashImage({ mode: 'none' });
        a.close();
        let b: KvStore;
        try {
          b = openMedia(image, { formatIfEmpty: false });
        } catch {
          return { gone: 0, loaded: undefined, matches: false };
        }
        try {
          let matches = false;
          try {
            const got = dump(b);
            matches = got.size === model.size && [...model].every(([k, v]) => got.get(k) === v);
          } catch {
            // wrong offsets read as damaged entries: not the model either
          }
          const use = b.recovery!.checkpoint!;
          return { gone: use.segmentsGone, loaded: use.loaded, matches };
        } finally {
          b.close();
        }
      };
      const good = run();
      expect(good.loaded).toBe(0);
      expect(good.gone).toBeGreaterThan(0);
      expect(good.matches).toBe(true);
      setBroken('kv-checkpoint-trust-stale', true);
      try {
        expect(run().matches).toBe(false);
      } finally {
        setBroken('kv-checkpoint-trust-stale', false);
      }
    });
  });

  /** A store with a checkpoint written by a clean close: its image (closed), and the model. */
  function closedStore(r: () => number, keys: number): { image: SimMedia; model: Model } {
    const media = createSimMedia(MEDIA_BYTES);
    const model: Model = new Map();
    const db = openMedia(media, { durability: 'none' });
    workload(db, model, () => r() * 0.99, keys, keys);
    db.close();
    return { image: media.crashImage({ mode: 'none' }), model };
  }

  /**
   * A checkpoint that lists a segment under another life than the one it has now (forged: the
   * segment's nonce in it changed, resealed) while that life's records predate the checkpoint:
   * open leaves the segment out and scans it as tail, where the PUTs of keys deleted before the
   * checkpoint (their DELs covered, in a later segment) have covered sequences whose keys the
   * checkpoint lacks. The image, the keys deleted, and the model.
   */
  function listedUnderOtherLife(): { image: SimMedia; deleted: string[]; model: Model } {
    const media = createSimMedia(MEDIA_BYTES);
    const db = openMedia(media, { durability: 'sync', autoCompact: false });
    const model: Model = new Map();
    // more than one segment of records: the first full, the next one taking the deletes
    for (let i = 0; i < 8000; i++) {
      db.put(`k${i}`, `v ${i} ${'y'.repeat(300)}`);
      model.set(hex(`k${i}`), hex(`v ${i} ${'y'.repeat(300)}`));
    }
    const entry = db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('k1')));
    expect(entry).toBeDefined();
    const b = db.dax.device.blockAt(entry!);
    const first = b - (b % HUGE_BLOCKS);
    const deleted: string[] = [];
    for (let i = 0; i < 200; i += 10) {
      db.delete(`k${i}`);
      model.delete(hex(`k${i}`));
      deleted.push(`k${i}`);
    }
    db.close();
    const image = rewriteCheckpoint(media.crashImage({ mode: 'none' }), (bytes) => {
      const dv = new DataView(bytes.buffer, bytes.byteOffset);
      const segments = dv.getFloat64(72, true);
      for (let i = 0; i < segments; i++) {
        const at = 128 + i * 10 * 8;
        if (dv.getFloat64(at, true) === first) dv.setFloat64(at + 8, dv.getFloat64(at + 8, true) + 1, true);
      }
      return true;
    });
    return { image, deleted, model };
  }

  it('a tail entry of a covered sequence whose key the checkpoint lacks stays out: deleted keys stay deleted', () => {
    const { image, model } = listedUnderOtherLife();
    const db = openMedia(image, { formatIfEmpty: false });
    try {
      expect(db.recovery!.checkpoint).toMatchObject({ segmentsGone: 1 });
      expect(db.recovery!.checkpoint!.loaded).toBeDefined();
      expectModel(db, model);
    } finally {
      db.close();
    }
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-stale-tail: the deleted keys come back', () => {
    const { image, deleted } = listedUnderOtherLife();
    setBroken('kv-checkpoint-stale-tail', true);
    try {
      const db = openMedia(image, { formatIfEmpty: false });
      try {
        expect(db.recovery!.checkpoint!.loaded).toBeDefined();
        expect(deleted.filter((k) => db.get(k) !== undefined).length).toBeGreaterThan(0);
      } finally {
        db.close();
      }
    } finally {
      setBroken('kv-checkpoint-stale-tail', false);
    }
  });

  it('ignores and removes a damaged checkpoint, one of another format version, and one of another store', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const cases: Array<[string, RegExp, (image: SimMedia) => SimMedia]> = [
        [
          'damaged',
          /checksum mismatch|bad magic|header gives size|version \d+/,
          (image) =>
            rewriteCheckpoint(image, (b) => {
              b[8 + Math.floor(r() * (b.length - 8))] ^= 1 << Math.floor(r() * 8);
              return false;
            }),
        ],
        [
          'version',
          new RegExp(`version ${CHECKPOINT_VERSION - 1}, this build reads ${CHECKPOINT_VERSION}`),
          (image) =>
            rewriteCheckpoint(image, (b) => {
              // an older build's (a newer one's is refused alike)
              new DataView(b.buffer, b.byteOffset).setUint32(12, CHECKPOINT_VERSION - 1, true);
              return true;
            }),
        ],
        [
          'foreign',
          /another store/,
          (image) => {
            const other = closedStore(r, 500).image;
            const space = DaxSpace.openMedia(other, { formatIfEmpty: false });
            const bytes = checkpointBytes(space, checkpointIds(space)[0]);
            space.close();
            // planted under a higher generation than the store's own: it is read first
            return rewriteCheckpoint(image, () => true, { id: CHECKPOINT_ID_FIRST + 7, generation: 7, from: bytes });
          },
        ],
      ];
      for (const [name, reason, spoil] of cases) {
        const { image, model } = closedStore(r, 1500);
        const db = openMedia(spoil(image), { formatIfEmpty: false });
        try {
          const use = db.recovery!.checkpoint!;
          expect(
            use.ignored.some((s) => reason.test(s)),
            `${name}: ${use.ignored.join('; ')}`,
          ).toBe(true);
          // the store's own checkpoint still serves the foreign case; the others scan whole
          if (name === 'foreign') expect(use.loaded).toBe(0);
          else expect(use.loaded).toBeUndefined();
          expectModel(db, model);
          expect(checkpointIds(db.dax).length).toBe(name === 'foreign' ? 1 : 0);
        } finally {
          db.close();
        }
      }
    });
  });

  it('reads a checkpoint of several 2 MiB extents in place, equal to a full scan; a flipped byte in any of it is found', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const { image, model, keys } = bigClosedStore(r);
      const { db, loaded } = expectCheckpointEqualsFull(image.crashImage({ mode: 'none' }));
      expect(loaded).toBeDefined();
      expect(db.recovery!.checkpoint!.readInPlace).toBe(true);
      expectModel(db, model);
      db.close();
      for (let round = 0; round < scaled(3); round++) {
        let at = 0;
        const spoiled = rewriteCheckpoint(image.crashImage({ mode: 'none' }), (b) => {
          at = 2 ** 20 + Math.floor(r() * (b.length - 2 ** 20)); // past the header, often in the second extent
          b[at] ^= 1 << Math.floor(r() * 8);
          return false;
        });
        const opened = openMedia(spoiled, { formatIfEmpty: false });
        try {
          const use = opened.recovery!.checkpoint!;
          expect(use.loaded, `byte ${at} of ${keys} keys' checkpoint flipped`).toBeUndefined();
          expect(use.ignored.some((x) => /checksum mismatch/.test(x))).toBe(true);
          expectModel(opened, model);
        } finally {
          opened.close();
        }
      }
    });
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-in-place-unhashed: a flipped key byte of a checkpoint read in place is loaded', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const { image, model } = bigClosedStore(r);
      // the last key byte of the tree image's first leaf: past the header, in a later extent;
      // the key changes (the image is what a clean open loads)
      const spoiled = rewriteCheckpoint(image.crashImage({ mode: 'none' }), (b) => {
        b[firstImageKeyByte(b)] ^= 1;
        return false;
      });
      setBroken('kv-checkpoint-in-place-unhashed', true);
      try {
        // Each key looked up (the index's keys; a range reads each key from its entry in the log).
        let wrong = 0;
        try {
          const db = openMedia(spoiled, { formatIfEmpty: false });
          expect(db.recovery!.checkpoint!.readInPlace).toBe(true);
          for (const [k, v] of model) if (hex(db.get(Buffer.from(k, 'hex').toString()) ?? '') !== v) wrong++;
          db.close();
        } catch {
          wrong = -1; // the changed key out of order: the bulk load refuses the open
        }
        expect(wrong).not.toBe(0);
      } finally {
        setBroken('kv-checkpoint-in-place-unhashed', false);
      }
    });
  });

  /** The offset in checkpoint bytes `b` of the last key byte of its tree image's first block (a leaf). */
  function firstImageKeyByte(b: Uint8Array): number {
    const dv = new DataView(b.buffer, b.byteOffset);
    const at = checkpointImageAt(b);
    const keyLength = (dv.getUint32(at, true) >>> 12) & 0x1fff;
    return at + 16 + keyLength - 1;
  }

  /** A closed store whose checkpoint spans more than one 2 MiB extent (long keys), its model. */
  function bigClosedStore(r: () => number): { image: SimMedia; model: Model; keys: number } {
    const media = createSimMedia(64 * 2 ** 20);
    const model: Model = new Map();
    const db = openMedia(media, { durability: 'none' });
    const keys = 30_000 + Math.floor(r() * 5000);
    for (let i = 0; i < keys; i++) {
      const key = `k${i}-${Math.floor(r() * 1e9)}`.padEnd(100, 'x');
      const value = `${i}`;
      db.put(key, value);
      model.set(hex(key), hex(value));
    }
    db.close();
    return { image: media.crashImage({ mode: 'none' }), model, keys };
  }

  it('a crash inside checkpoint writing: every image opens to the model (previous checkpoint or full scan)', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      for (let round = 0; round < scaled(3); round++) {
        const media = createSimMedia(MEDIA_BYTES);
        const model: Model = new Map();
        const db = openMedia(media, { durability: 'sync' });
        workload(db, model, () => r() * 0.99, 800, 600);
        db.close(); // generation 0
        const a = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
        workload(a, model, () => r() * 0.99, 400, 900);
        const live = a.dax.device.media as SimMedia;
        const images: Array<[string, SimMedia]> = [];
        testHooks.checkpointWrite = (stage) =>
          images.push([stage, live.crashImage({ mode: 'random', seed: (r() * 2 ** 32) >>> 0, probability: r() })]);
        try {
          a.close(); // generation 1, crash images inside it
        } finally {
          testHooks.checkpointWrite = undefined;
        }
        images.push(['closed', live.crashImage({ mode: 'none' })]);
        expect(images.map(([s]) => s)).toEqual(['created', 'body-written', 'closed']);
        for (const [stage, image] of images) {
          const { db: b, loaded } = expectCheckpointEqualsFull(image);
          try {
            expectModel(b, model);
            if (stage === 'closed') expect(loaded).toBe(1);
            else expect(loaded === undefined || loaded === 0, `${stage}: loaded ${loaded}`).toBe(true);
          } finally {
            b.close();
          }
        }
      }
    });
  });

  it('a store that runs out of space removes its checkpoint before it gives up with ENOSPC', async () => {
    await withSeed(FILE, (seed) => {
      const { image, model } = closedStore(rng(seed), 1500);
      const db = openMedia(image, { formatIfEmpty: false, autoCompact: false, durability: 'none' });
      try {
        expect(checkpointIds(db.dax).length).toBe(1);
        let error: unknown;
        for (let i = 0; i < 200_000 && error === undefined; i++)
          try {
            db.put(`fill${i}`, 'f'.repeat(500));
            model.set(hex(`fill${i}`), hex('f'.repeat(500)));
          } catch (e) {
            error = e;
          }
        expect(error).toMatchObject({ code: 'ENOSPC' });
        expect(checkpointIds(db.dax)).toEqual([]);
        expectModel(db, model);
      } finally {
        db.close();
      }
    });
  });

  it('a close with tombstones in the index (deletes under snapshots) stores those keys as absent; red with kv-checkpoint-ignore-tombstones', async () => {
    await withSeed(FILE, (seed) => {
      /** Writes with snapshots held over some deletes, closes, reopens on the checkpoint: it and the full scan. */
      const trial = (r: () => number): { got: Snapshot; want: Snapshot; model: Model } => {
        const media = createSimMedia(MEDIA_BYTES);
        const model: Model = new Map();
        const db = openMedia(media, { durability: 'sync' });
        workload(db, model, r, 300 + Math.floor(r() * 300), 200);
        const snaps = [];
        for (let round = 0; round < 3; round++) {
          snaps.push(db.snapshot());
          workload(db, model, r, 100 + Math.floor(r() * 200), 200);
        }
        for (const s of snaps) s.close();
        expect(db.stats().tombstones).toBeGreaterThan(0);
        db.close(); // the tombstones are not swept yet: the checkpoint walks them
        const full = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
        const want = snapshot(full);
        full.close();
        const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
        expect(again.recovery!.checkpoint!.loaded).toBeDefined();
        const got = snapshot(again);
        again.close();
        return { got, want, model };
      };
      const r = rng(seed);
      for (let i = 0; i < scaled(3); i++) {
        const { got, want, model } = trial(r);
        expect(got).toEqual(want);
        expect(got.content).toEqual(model);
      }
      setBroken('kv-checkpoint-ignore-tombstones', true);
      try {
        const { got, want } = trial(r);
        expect(got).not.toEqual(want); // the deleted keys count as live
      } finally {
        setBroken('kv-checkpoint-ignore-tombstones', false);
      }
    });
  });

  it("recovery: 'full' scans the whole log and keeps the checkpoint; salvage scans whole; bad modes are EINVAL", async () => {
    await withSeed(FILE, (seed) => {
      const { image, model } = closedStore(rng(seed), 800);
      const full = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
      expect(full.recovery!.checkpoint).toMatchObject({ loaded: undefined, forcedFull: true, ignored: [] });
      expect(checkpointIds(full.dax).length).toBe(1);
      expectModel(full, model);
      full.close();
      const salvage = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'salvage' });
      expect(salvage.recovery!.checkpoint!.forcedFull).toBe(true);
      salvage.close();
      expect(() => openMedia(image, { formatIfEmpty: false, recovery: 'fast' as never })).toThrow(
        /option recovery must be one of "strict", "salvage", "full"/,
      );
    });
  });
});
