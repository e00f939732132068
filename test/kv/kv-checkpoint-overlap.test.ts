/**
 * The check of the records an index checkpoint covers runs alongside the rest of a clean reopen
 * (src/kv/recovery.ts coveredCheck, startCoveredCheck): started on threads of its own as soon as
 * the newest checkpoint's segment list is read, before its checksum is taken; its verdict is
 * waited for once the tree image is copied into its run and before the image is grafted.
 * 1. A covered record damaged after close: the overlapped check finds it, the copied image is
 *    given back and the reopen refuses exactly as the full scan does. Red with
 *    kv-checkpoint-graft-unchecked (the image grafted without the verdict: the flipped value
 *    served).
 * 2. A newer checkpoint that fails its checksum and lists a covered segment with another `used`:
 *    the check started on its list is not the older checkpoint's; the older one is checked
 *    afresh and loaded. Red with kv-checkpoint-early-list-unmatched (its verdicts judged against
 *    the older checkpoint's hashes: a false mismatch, the whole log scanned).
 * 3. Segment lists of anything (random doubles, offsets past the device, `used` past a segment,
 *    real segments with random `used`), checksummed or not: no crash; unsealed, ignored; sealed,
 *    its coverage checked as any checkpoint's (a last record listed outside its segment makes it
 *    ignored, nothing read there); the index always equals the full scan's.
 * 4. The arena run reserved for the image before the checksum (its pages populated by the
 *    check's thread) and not used (a tail too big to apply to the image: the columns are
 *    bulk-loaded) is given back: the arena holds what a full scan's does.
 * Not covered here: the check's own verdicts (kv-checkpoint-hash.test.ts, kv-damage-rollback),
 * the tree side of giving a copied image back (test/index/tree-image-confirm.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { CHECKPOINT_ID_FIRST } from '../../src/kv/checkpoint.js';
import { KvDamageError } from '../../src/kv/recovery.js';
import { SEGMENT_BYTES } from '../../src/kv/layout.js';
import { withBroken } from '../../src/test-break.js';
import { rng, withSeed } from '../helpers/seed.js';
import { expectModel, hex, openMedia, rewriteCheckpoint, workload, type Model } from './kv-checkpoint-helpers.js';

const FILE = 'test/kv/kv-checkpoint-overlap.test.ts';
const MEDIA_BYTES = 24 * 2 ** 20;
const WATCHDOG_MS = 120_000;
const SEGMENT_SLOTS = 10;

/** A store closed with a checkpoint (generation 0, with a tree image) over a few segments; the model. */
function closedStore(r: () => number): { image: SimMedia; model: Model } {
  const media = createSimMedia(MEDIA_BYTES);
  const model: Model = new Map();
  const db = openMedia(media, { durability: 'none', autoCompact: false });
  workload(db, model, () => r() * 0.99, 3000, 1500);
  for (let i = 0; i < 3000; i++) {
    db.put(`pad${i}`, 'p'.repeat(600));
    model.set(hex(`pad${i}`), hex('p'.repeat(600)));
  }
  db.close();
  return { image: media.crashImage({ mode: 'none' }), model };
}

/** The checkpoint's segment list, as [block, nonce, used, ...] slots (a view of `bytes`). */
function segmentSlots(bytes: Uint8Array): Float64Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  return new Float64Array(bytes.buffer, bytes.byteOffset + 128, dv.getFloat64(72, true) * SEGMENT_SLOTS);
}

/** The image with checkpoint 0's bytes, edited (sealed when `seal`), planted as generation 7: read first. */
function plantNewer(image: SimMedia, edit: (bytes: Uint8Array) => void, seal: boolean): SimMedia {
  return rewriteCheckpoint(
    image,
    (bytes) => {
      edit(bytes);
      return seal;
    },
    { id: CHECKPOINT_ID_FIRST + 7, generation: 7 },
  );
}

/** Flips a bit of the first value byte of `key`'s entry, durably. */
function flipValue(image: SimMedia, key: string): void {
  const db = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, checkpoint: false });
  const entry = db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from(key)));
  db.close();
  expect(entry, key).toBeDefined();
  const at = entry! + 24 + Buffer.from(key).length;
  new Uint8Array(image.buffer)[at] ^= 0x10;
  image.persist(at, 1);
}

type Outcome = { refused: string } | { value: string | undefined; loaded: number | undefined; image: boolean };

function outcome(image: SimMedia, key: string, opts: { recovery?: 'full' } = {}): Outcome {
  let db;
  try {
    db = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, checkpoint: false, ...opts });
  } catch (e) {
    if (!(e instanceof KvDamageError)) throw e;
    return { refused: e.message };
  }
  try {
    const use = db.recovery!.checkpoint!;
    return { value: db.get(key), loaded: use.loaded, image: use.imageLoaded };
  } finally {
    db.close();
  }
}

describe('the covered-record check overlaps the reopen, and counts only once it passed', () => {
  it(
    'a covered record damaged after close: the copied image is given back, the reopen refuses as the full scan',
    async () => {
      await withSeed(FILE, (seed) => {
        const { image } = closedStore(rng(seed));
        const clean = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, checkpoint: false });
        const use = clean.recovery!.checkpoint!;
        expect([use.loaded, use.imageLoaded, use.checkOverlapped, use.ignored]).toEqual([0, true, true, []]);
        const want = clean.get('pad7');
        clean.close();
        flipValue(image, 'pad7');
        const full = outcome(image, 'pad7', { recovery: 'full' });
        expect(full).toMatchObject({ refused: expect.stringContaining('"pad7"') });
        expect(outcome(image, 'pad7')).toEqual(full);
        expect(want).toBe('p'.repeat(600));
      });
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-graft-unchecked: the image is grafted over the damage, the flipped value served',
    async () => {
      await withSeed(FILE, (seed) => {
        const { image } = closedStore(rng(seed));
        flipValue(image, 'pad7');
        const got = withBroken('kv-checkpoint-graft-unchecked', () => outcome(image, 'pad7'));
        expect(got).toMatchObject({ loaded: 0, image: true });
        expect((got as { value: string }).value).not.toBe('p'.repeat(600));
      });
    },
    WATCHDOG_MS,
  );

  /** checkpoint 0 planted as generation 7 with one covered segment's `used` 8 bytes short, unsealed (its checksum fails). */
  function newerWithOtherList(image: SimMedia): SimMedia {
    return plantNewer(
      image,
      (bytes) => {
        const slots = segmentSlots(bytes);
        const i = slots.findIndex((_, j) => j % SEGMENT_SLOTS === 2 && slots[j] > 8);
        expect(i).toBeGreaterThan(0);
        slots[i] -= 8;
      },
      false,
    );
  }

  it(
    'a newer checkpoint failing its checksum with another segment list: the older one is checked afresh and loaded',
    async () => {
      await withSeed(FILE, (seed) => {
        const { image, model } = closedStore(rng(seed));
        const db = openMedia(newerWithOtherList(image), { formatIfEmpty: false });
        try {
          const use = db.recovery!.checkpoint!;
          expect(use.ignored.join()).toMatch(/checkpoint 7: checksum mismatch/);
          expect([use.loaded, use.imageLoaded, use.checkOverlapped]).toEqual([0, true, false]);
          expectModel(db, model);
        } finally {
          db.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-early-list-unmatched: the other list’s verdicts refuse the older checkpoint',
    async () => {
      await withSeed(FILE, (seed) => {
        const { image, model } = closedStore(rng(seed));
        const planted = newerWithOtherList(image);
        const db = withBroken('kv-checkpoint-early-list-unmatched', () => openMedia(planted, { formatIfEmpty: false }));
        try {
          const use = db.recovery!.checkpoint!;
          expect(use.loaded).toBeUndefined();
          expect(use.ignored.join()).toMatch(/checkpoint 0: the segment at block \d+ it covers does not hash/);
          expectModel(db, model); // the full scan after the false alarm
        } finally {
          db.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it(
    'the run reserved for the image before the checksum is given back when the columns are bulk-loaded instead',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const { image, model } = closedStore(r);
        // a tail adding more keys than the image path takes: the merged columns are bulk-loaded
        const db = openMedia(image, { formatIfEmpty: false, durability: 'sync', checkpoint: false });
        for (let i = 0; i < 3000; i++) {
          db.put(`tail${i}`, `t${i}`);
          model.set(hex(`tail${i}`), hex(`t${i}`));
        }
        const killed = image.crashImage({ mode: 'none' });
        db.close();
        const full = openMedia(killed.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
        const fullWords = full.dax.tree.arena.liveWords();
        full.close();
        const reopened = openMedia(killed, { formatIfEmpty: false, checkpoint: false });
        try {
          const use = reopened.recovery!.checkpoint!;
          expect([use.loaded, use.imageLoaded, use.tailOnImage]).toEqual([0, false, false]);
          expect(reopened.dax.tree.arena.liveWords()).toBe(fullWords);
          expectModel(reopened, model);
        } finally {
          reopened.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it(
    'segment lists of anything, checksummed or not: no crash, the model served',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const { image, model } = closedStore(r);
        const garbage: Array<(slots: Float64Array, i: number) => void> = [
          (slots, i) => (slots[i] = (r() - 0.5) * 2 ** (r() * 80)),
          (slots, i) => (slots[i] = [NaN, Infinity, -1, 2 ** 53, MEDIA_BYTES, MEDIA_BYTES * 4][Math.floor(r() * 6)]),
          (slots, i) => {
            if (i % SEGMENT_SLOTS === 2) slots[i] = Math.floor(r() * (SEGMENT_BYTES + 4096));
          },
        ];
        for (let round = 0; round < 9; round++) {
          const spoil = garbage[round % garbage.length];
          const seal = round % 2 === 1;
          const planted = plantNewer(
            image.crashImage({ mode: 'none' }),
            (bytes) => {
              const slots = segmentSlots(bytes);
              for (let i = 0; i < slots.length; i++) if (r() < 0.5) spoil(slots, i);
            },
            seal,
          );
          const db = openMedia(planted, { formatIfEmpty: false, checkpoint: false });
          try {
            const use = db.recovery!.checkpoint!;
            // Unsealed, the planted one fails its checksum. Sealed, its checksum vouches for the
            // list, whose coverage is then checked as any checkpoint's: a segment listed under
            // another life is left out (scanned as tail), a last record not where the list says
            // makes it stale. Either way the index equals the full scan's.
            if (!seal) expect(use.ignored.join(), `round ${round}`).toMatch(/checkpoint 7: checksum mismatch/);
            expectModel(db, model);
          } finally {
            db.close();
          }
        }
      });
    },
    WATCHDOG_MS,
  );
});
