/**
 * A clean close writes no checkpoint when the newest one already covers the whole log as it is
 * (store.ts checkpointStillCovers, checkpoint.ts logUnchangedSince): the one open loaded from
 * its image with no tail, or the one this handle last wrote while running, with nothing
 * written, compacted or freed since (a handle that wrote appends a seal to its segment at close,
 * which the close's checkpoint then covers). It says so (`lastCheckpoint.kept`), and the next open
 * loads that same checkpoint, equal to a full scan. After any write the close writes a new one,
 * which the next open loads with no tail. Red with kv-checkpoint-close-kept-unchecked (kept
 * without looking at the log): the next open replays what was written after it.
 */
import { describe, expect, it } from 'vitest';
import type { SimMedia } from '../../src/device/sim-media.js';
import { withBroken } from '../../src/test-break.js';
import { rng } from '../helpers/seed.js';
import { closedStoreOfKeys, expectCheckpointEqualsFull, expectModel, openMedia } from './kv-checkpoint-helpers.js';

const MEDIA_BYTES = 32 * 2 ** 20;

/** Opens `image`, runs `fn` on the store, closes it cleanly: what close said and the image after. */
function openRunClose(
  image: SimMedia,
  fn: (db: ReturnType<typeof openMedia>) => void,
): { said: unknown; loaded: number | undefined; after: SimMedia } {
  const db = openMedia(image, { formatIfEmpty: false, durability: 'sync', checkpointEvery: 0 });
  const loaded = db.recovery!.checkpoint!.loaded;
  fn(db);
  db.close();
  return { said: db.lastCheckpoint, loaded, after: image.crashImage({ mode: 'none' }) };
}

describe('a clean close keeps a checkpoint that covers the whole log', () => {
  it('nothing written since the loaded checkpoint, or since the last one taken while running: kept, loaded next', () => {
    const { image, model } = closedStoreOfKeys(rng(7), 3000, MEDIA_BYTES);
    const first = openRunClose(image, () => {});
    expect(first.loaded).toBeDefined();
    expect(first.said).toMatchObject({ generation: first.loaded, kept: true, keys: 3000 });
    // one taken while running (this handle writes nothing: a writer's close appends a seal to
    // its segment, which a checkpoint then covers), then nothing: the close keeps that one
    let taken = -1;
    const second = openRunClose(first.after, (db) => {
      expect(db.get(`late`)).toBeUndefined();
      taken = db.checkpoint().generation;
    });
    expect(second.loaded).toBe(first.loaded); // the kept one, loaded again
    expect(taken).toBeGreaterThan(first.loaded!);
    expect(second.said).toMatchObject({ generation: taken, kept: true });
    const db = expectCheckpointEqualsFull(second.after);
    try {
      expect(db.recovery!.checkpoint!.loaded).toBe(taken);
      expect(db.recovery!.checkpoint!.tailEntries).toBe(0);
      expectModel(db, model);
    } finally {
      db.close();
    }
  });

  it('a write after it: the close writes a new checkpoint, which the next open loads with no tail', () => {
    const { image } = closedStoreOfKeys(rng(8), 3000, MEDIA_BYTES);
    const run = openRunClose(image, (db) => db.put('new', 'value'));
    expect(run.said).not.toHaveProperty('kept');
    expect(run.said).toMatchObject({ generation: expect.any(Number) });
    const db = expectCheckpointEqualsFull(run.after);
    try {
      expect(db.recovery!.checkpoint!.loaded).toBeGreaterThan(run.loaded!);
      expect(db.recovery!.checkpoint!.tailEntries).toBe(0);
    } finally {
      db.close();
    }
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-close-kept-unchecked: the next open replays the write after it', () => {
    const { image } = closedStoreOfKeys(rng(9), 3000, MEDIA_BYTES);
    const run = withBroken('kv-checkpoint-close-kept-unchecked', () =>
      openRunClose(image, (db) => db.put('new', 'value')),
    );
    expect(run.said).toMatchObject({ generation: run.loaded, kept: true });
    const db = expectCheckpointEqualsFull(run.after); // still equal: the tail is replayed
    try {
      expect(db.recovery!.checkpoint!.loaded).toBe(run.loaded);
      expect(db.recovery!.checkpoint!.tailEntries).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  });
});
