/**
 * A tail applied to an index checkpoint's tree image (src/kv/recovery.ts imageTail,
 * src/index/tree-image.ts ImageTail, addon/bulk-load.h JsPatchImageLeaves): after a crash, an
 * open whose checkpoint carries an image and whose tail adds and removes few keys copies the
 * image in, writes each replaced key's tail entry into its leaf and makes the tail's added and
 * removed keys through the tree, instead of bulk-loading the columns merged with the tail.
 *
 * 1. Seeded tails over a closed store (overwrites of its keys, new keys, deletes, batches,
 *    large values), then a crash (random lines of what was not made durable lost): the open
 *    takes that path (`tailOnImage`), passes verifyTree, equals `recovery: 'full'` of the same
 *    image (every key and value, keys, sequence, segments, free blocks, the log's counts) and
 *    serves the model; writes after it go on.
 * 2. A tail that adds more keys than the path takes (TAIL_ON_IMAGE_MIN and a 512th of the
 *    checkpoint's keys) bulk-loads the merged columns instead, equal to the full scan too.
 * 3. Red with kv-checkpoint-tail-unpatched (the replaced values not written into the leaves):
 *    the overwritten keys serve the checkpoint's values.
 * Not covered here: a tail after compaction freed covered segments (kv-checkpoint.test.ts: the
 * columns are bulk-loaded then), the merge's own rules (kv-checkpoint-merge.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { verifyTree } from '../../src/index/tree-verify.js';
import { TAIL_ON_IMAGE_MIN } from '../../src/kv/recovery.js';
import { withBroken } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import {
  crash,
  applyBatch,
  closedStoreOfKeys,
  expectCheckpointEqualsFull,
  expectModel,
  hex,
  openMedia,
  type KvStore,
  type Model,
} from './kv-checkpoint-helpers.js';

const FILE = 'test/kv/kv-checkpoint-tail-image.test.ts';
const MEDIA_BYTES = 32 * 2 ** 20;
const WATCHDOG_MS = 120_000;

/** A store of `keys` keys closed with a checkpoint (its image), reopened: the store, its keys, the model. */
function reopenedStore(r: () => number, keys: number): { db: KvStore; names: string[]; model: Model } {
  const { image, names, model } = closedStoreOfKeys(r, keys, MEDIA_BYTES);
  const again = openMedia(image, { formatIfEmpty: false, durability: 'sync' });
  expect(again.recovery!.checkpoint!.imageLoaded).toBe(true);
  return { db: again, names, model };
}

/** Seeded writes after the checkpoint: overwrites, new keys, deletes, batches, now and then a large value. */
function tail(db: KvStore, names: string[], model: Model, r: () => number, ops: number): void {
  for (let i = 0; i < ops; i++) {
    const x = r();
    const old = names[Math.floor(r() * names.length)];
    if (x < 0.6) {
      const value =
        r() < 0.01 ? 'L'.repeat(17000 + Math.floor(r() * 3000)) + i : `w${i}-${'x'.repeat(Math.floor(r() * 40))}`;
      db.put(old, value);
      model.set(hex(old), hex(value));
    } else if (x < 0.75) {
      const key = `new-${Math.floor(r() * 1e9)}-${i}`;
      db.put(key, `n${i}`);
      model.set(hex(key), hex(`n${i}`));
    } else if (x < 0.9) {
      db.delete(old);
      model.delete(hex(old));
    } else {
      const ops2 = [
        { type: 'put' as const, key: old, value: `b${i}` },
        { type: 'del' as const, key: names[Math.floor(r() * names.length)] },
        { type: 'put' as const, key: `batch-${i}`, value: `c${i}` },
      ];
      db.batch(ops2);
      applyBatch(model, ops2);
    }
  }
}

describe('a tail applied to a checkpoint tree image', () => {
  it(
    'after a crash equals a full scan and passes verifyTree: replaced, added and removed keys (seeded tails)',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const seen = { replaced: 0, added: 0, removed: 0 };
        for (let round = 0; round < scaled(4); round++) {
          const { db, names, model } = reopenedStore(r, 2000 + Math.floor(r() * 3000));
          tail(db, names, model, r, 50 + Math.floor(r() * 600));
          const again = expectCheckpointEqualsFull(crash(db, r, round === 0 ? 0 : r()));
          try {
            const use = again.recovery!.checkpoint!;
            expect(use.tailEntries).toBeGreaterThan(0);
            expect(use.tailOnImage).toBe(true);
            expect(use.imageLoaded).toBe(true);
            seen.replaced += use.tailKeys.replaced;
            seen.added += use.tailKeys.added;
            seen.removed += use.tailKeys.removed;
            if (round === 0) expectModel(again, model); // nothing lost: every write is there
            again.put('after the load', 'goes on');
            expect(again.get('after the load')).toBe('goes on');
            verifyTree(again.dax.tree);
          } finally {
            again.close();
          }
        }
        expect(seen.replaced).toBeGreaterThan(0);
        expect(seen.added).toBeGreaterThan(0);
        expect(seen.removed).toBeGreaterThan(0);
      });
    },
    WATCHDOG_MS,
  );

  it(
    'a tail that adds more keys than the path takes bulk-loads the merged columns, equal to a full scan',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const { db, names, model } = reopenedStore(r, 2000);
        for (let i = 0; i < TAIL_ON_IMAGE_MIN + 100; i++) {
          db.put(`more-${i}`, `m${i}`);
          model.set(hex(`more-${i}`), hex(`m${i}`));
        }
        tail(db, names, model, r, 100);
        const again = expectCheckpointEqualsFull(crash(db, r, 0));
        try {
          const use = again.recovery!.checkpoint!;
          expect(use.tailKeys.added).toBeGreaterThan(TAIL_ON_IMAGE_MIN);
          expect(use.tailOnImage).toBe(false);
          expect(use.imageLoaded).toBe(false);
          expectModel(again, model);
        } finally {
          again.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-tail-unpatched: overwritten keys serve the checkpoint values', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      const { db, names, model } = reopenedStore(r, 2000);
      for (let i = 0; i < 100; i++) {
        db.put(names[i], `over ${i}`);
        model.set(hex(names[i]), hex(`over ${i}`));
      }
      const image = crash(db, r, 0);
      const copy = image.crashImage({ mode: 'none' }); // opened without the switch below
      const again = withBroken('kv-checkpoint-tail-unpatched', () => openMedia(image, { formatIfEmpty: false }));
      try {
        expect(again.recovery!.checkpoint!.tailOnImage).toBe(true);
        expect(names.slice(0, 100).filter((k, i) => again.get(k) !== `over ${i}`).length).toBe(100);
      } finally {
        again.close();
      }
      // and without the switch, the same image serves the overwrites
      const fixed = openMedia(copy, { formatIfEmpty: false });
      try {
        expect(fixed.recovery!.checkpoint!.tailOnImage).toBe(true);
        expectModel(fixed, model);
      } finally {
        fixed.close();
      }
    });
  });
});
