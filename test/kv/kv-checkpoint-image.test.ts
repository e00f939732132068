/**
 * The tree image of an index checkpoint (src/kv/checkpoint.ts, src/index/tree-image.ts): a
 * clean close writes the index's tree of the checkpoint's keys; a clean reopen (no tail) copies
 * it into the arena instead of bulk-loading the columns.
 *
 * 1. Random workloads (puts, overwrites, deletes, batches, large values, compaction), closed and
 *    reopened several times: each reopen loads the image, passes verifyTree (structure, order,
 *    tag counts, H_COUNT) and equals `recovery: 'full'` of the same store (every key and value,
 *    keys, sequence, segments, free blocks); writes after a load go on as after a full scan.
 *    Also a store with no key and with one key, and one of long keys (900 to 1020 bytes: leaves
 *    of the 4-word size-class steps) with a tail merged over the keys in the image's leaves
 *    after a crash.
 * 2. A flipped byte of the image is found by the checkpoint's checksum: ignored, the full scan
 *    serves the model. Red with kv-checkpoint-image-unhashed (the checksum not compared): the
 *    changed key is loaded.
 * 3. An image that is not a tree (a pointer outside it) under a valid checksum (resealed): not
 *    loaded, the columns are, the model served; one whose header gives fewer words than it has
 *    (resealed): the sizes do not add up, ignored, full scan.
 * Not covered here: a tail applied to the image (kv-checkpoint-tail-image.test.ts), the
 * freed-segment path (kv-checkpoint.test.ts), which loads the columns.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { setBroken } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import {
  closedStoreOfKeys,
  expectCheckpointEqualsFull,
  expectModel,
  hex,
  openMedia,
  rewriteCheckpoint,
  snapshotWithLog,
  workload,
  type KvStore,
  type Model,
} from './kv-checkpoint-helpers.js';

const FILE = 'test/kv/kv-checkpoint-image.test.ts';
const MEDIA_BYTES = 24 * 2 ** 20;
const WATCHDOG_MS = 120_000;

/** Opens `image` with recovery: 'full' and with its checkpoint (each on its own copy): equal, the image loaded, the tree verified. */
function expectImageEqualsFull(image: SimMedia): KvStore {
  const db = expectCheckpointEqualsFull(image);
  const use = db.recovery!.checkpoint!;
  expect(use.tailEntries).toBe(0);
  expect(use.imageLoaded).toBe(true);
  return db;
}

describe('index checkpoint tree images', () => {
  it(
    'a reopen from the tree image equals a full scan and passes verifyTree (random workloads)',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        for (let round = 0; round < scaled(3); round++) {
          let image = createSimMedia(MEDIA_BYTES, { name: `image-${round}` });
          const model: Model = new Map();
          let db = openMedia(image, { durability: 'sync' });
          for (let cycle = 0; cycle < 3; cycle++) {
            workload(db, model, r, 400 + Math.floor(r() * 800), 300 + Math.floor(r() * 1500));
            db.close();
            image = image.crashImage({ mode: 'none' });
            db = expectImageEqualsFull(image);
            expectModel(db, model);
          }
          db.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it('a store with no key left and with one key reopens from its image', async () => {
    for (const keys of [0, 1]) {
      const media = createSimMedia(MEDIA_BYTES);
      const db = openMedia(media, { durability: 'none' });
      db.put('gone', 'soon');
      db.delete('gone');
      for (let i = 0; i < keys; i++) db.put(`only ${i}`, 'one');
      db.close();
      const again = expectImageEqualsFull(media.crashImage({ mode: 'none' }));
      expect(again.stats().keys).toBe(keys);
      again.put('after', 'load');
      expect(again.get('after')).toBe('load');
      verifyTree(again.dax.tree);
      again.close();
    }
  });

  it(
    'long keys: the image loads, and a tail merges over the keys in its leaves',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const media = createSimMedia(64 * 2 ** 20);
        const model: Model = new Map();
        const db = openMedia(media, { durability: 'sync' });
        const keyOf = (i: number) => `${i}-${Math.floor(r() * 1e9)}-`.padEnd(900 + Math.floor(r() * 120), 'k');
        const keys = Array.from({ length: 3000 }, (_, i) => keyOf(i));
        for (const [i, key] of keys.entries()) {
          db.put(key, `v${i}`);
          model.set(hex(key), hex(`v${i}`));
        }
        db.close();
        const clean = expectImageEqualsFull(media.crashImage({ mode: 'none' }));
        expectModel(clean, model);
        // a tail after the checkpoint, then a crash: merged over the checkpoint's columns
        for (let i = 0; i < 200; i++) {
          const key = r() < 0.5 ? keys[Math.floor(r() * keys.length)] : keyOf(10_000 + i);
          clean.put(key, `w${i}`);
          model.set(hex(key), hex(`w${i}`));
        }
        const crashed = (clean.dax.device.media as SimMedia).crashImage({ mode: 'none' });
        clean.close();
        const full = openMedia(crashed.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
        const want = snapshotWithLog(full);
        full.close();
        const again = openMedia(crashed, { formatIfEmpty: false });
        try {
          expect(again.recovery!.checkpoint!.loaded).toBeDefined();
          expect(again.recovery!.checkpoint!.tailEntries).toBeGreaterThan(0);
          expect(snapshotWithLog(again)).toEqual(want);
          expectModel(again, model);
          verifyTree(again.dax.tree);
        } finally {
          again.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it(
    'a flipped byte of the tree image is found by the checksum; red with kv-checkpoint-image-unhashed',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const { image, model } = closedStoreOfKeys(r, 2000, MEDIA_BYTES);
        // the first leaf's last key byte: the key changes, the tree's shape does not
        const spoil = (b: Uint8Array, at: number) => {
          const keyLength = (new DataView(b.buffer, b.byteOffset).getUint32(at, true) >>> 12) & 0x1fff;
          b[at + 16 + keyLength - 1] ^= 1 << Math.floor(r() * 8);
          return false;
        };
        const spoiled = rewriteCheckpoint(image, spoil);
        const db = openMedia(spoiled.crashImage({ mode: 'none' }), { formatIfEmpty: false });
        try {
          const use = db.recovery!.checkpoint!;
          expect(use.loaded).toBeUndefined();
          expect(use.ignored.some((s) => /checksum mismatch/.test(s))).toBe(true);
          expectModel(db, model);
        } finally {
          db.close();
        }
        setBroken('kv-checkpoint-image-unhashed', true);
        try {
          const broken = openMedia(spoiled.crashImage({ mode: 'none' }), { formatIfEmpty: false });
          try {
            expect(broken.recovery!.checkpoint!.imageLoaded).toBe(true);
            // each key looked up (a range reads the keys from their entries in the log)
            let wrong = 0;
            for (const [k, v] of model) if (hex(broken.get(Buffer.from(k, 'hex').toString()) ?? '') !== v) wrong++;
            expect(wrong).not.toBe(0);
          } finally {
            broken.close();
          }
        } finally {
          setBroken('kv-checkpoint-image-unhashed', false);
        }
      });
    },
    WATCHDOG_MS,
  );

  it('an image that is not a tree (resealed) loads the columns; a short one (resealed) is ignored', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const { image, model } = closedStoreOfKeys(r, 2000, MEDIA_BYTES);
      // the root's endLeaf word pointed far outside the image
      const notATree = rewriteCheckpoint(image, (b, at) => {
        const dv = new DataView(b.buffer, b.byteOffset);
        const root = dv.getFloat64(112, true) - dv.getFloat64(104, true);
        dv.setUint32(at + root * 4 + 16, 0x7fff_fff0, true);
        return true;
      });
      const db = openMedia(notATree, { formatIfEmpty: false });
      try {
        const use = db.recovery!.checkpoint!;
        expect(use.loaded).toBeDefined();
        expect(use.imageLoaded).toBe(false);
        expect(use.ignored.some((s) => /tree image is not a tree/.test(s))).toBe(true);
        verifyTree(db.dax.tree);
        expectModel(db, model);
      } finally {
        db.close();
      }
      const short = rewriteCheckpoint(image.crashImage({ mode: 'none' }), (b) => {
        const dv = new DataView(b.buffer, b.byteOffset);
        dv.setFloat64(96, dv.getFloat64(96, true) - 1, true);
        return true;
      });
      const db2 = openMedia(short, { formatIfEmpty: false });
      try {
        const use = db2.recovery!.checkpoint!;
        expect(use.loaded).toBeUndefined();
        expect(use.ignored.some((s) => /do not add up/.test(s))).toBe(true);
        expectModel(db2, model);
      } finally {
        db2.close();
      }
    });
  });
});
