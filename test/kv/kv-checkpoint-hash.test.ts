/**
 * What vouches for the records an index checkpoint covers: per segment, the XXH3-64 of its bytes
 * [0, used), taken when its records were checked whole (src/kv/checkpoint.ts hashSegments) and
 * compared at open (src/kv/recovery.ts verifyCovered). A byte of a covered record flipped
 * durably, anywhere:
 * 1. after a clean close: the reopen finds the mismatch and scans the whole log, which refuses
 *    exactly as `recovery: 'full'` does. Red with kv-checkpoint-hash-unchecked (hashes not
 *    compared: the checkpoint is loaded over the damage and the flipped value served).
 * 2. while a store that loaded a checkpoint runs, in a segment that checkpoint lists under the
 *    same block with another `used` (the log after it extended the segment) or another nonce
 *    (compaction freed it, a new segment took the block): the close checks that segment's
 *    records again, finds the damage and writes no checkpoint, so the next open refuses as the
 *    full scan does. Red with kv-checkpoint-carry-changed (such a segment hashed unchecked:
 *    the new checkpoint vouches for the damaged record and the flipped value is served).
 * The flips are of a value byte (the record's xxh64 fails); seeded flips anywhere in a record
 * are kv-damage-rollback.test.ts's, through the same hashes.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { HUGE_BLOCKS } from '../../src/device/layout.js';
import { openMedia as openKv } from '../../src/kv/index.js';
import type { OpenMediaOptions } from '../../src/kv/store.js';
import { KvDamageError } from '../../src/kv/recovery.js';
import { OWNER_KV_SEGMENT } from '../../src/kv/layout.js';
import { withBroken } from '../../src/test-break.js';

function openMedia(media: SimMedia, opts: OpenMediaOptions = {}) {
  return openKv(media, { ...opts, keyEncoding: 'binary', valueEncoding: 'binary' });
}
type KvStore = ReturnType<typeof openMedia>;

const MEDIA_BYTES = 32 * 2 ** 20;
const MARKER = 'MARKER-0123456789';
const bytes = (s: string): Uint8Array => Buffer.from(s);

/** The device offset of the first value byte of `key`'s newest entry. */
function valueAt(db: KvStore, key: string): number {
  const entry = db.dax.tree.lookup(Uint8Array.of(1, ...bytes(key)));
  expect(entry, key).toBeDefined();
  return entry! + 24 + bytes(key).length;
}

/** Flips a bit of the byte at `at`, durably (the store may have it mapped: it sees the flip). */
function flip(media: SimMedia, at: number): void {
  new Uint8Array(media.buffer)[at] ^= 0x10;
  media.persist(at, 1);
}

type Outcome = { refused: string; code: string } | { value: string | undefined; loaded: number | undefined };

/** Opens a copy of `media` and reads `key`: what a user sees. */
function outcome(media: SimMedia, key: string, opts: OpenMediaOptions = {}): Outcome {
  let db: KvStore;
  try {
    db = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false, ...opts });
  } catch (e) {
    if (!(e instanceof KvDamageError)) throw e;
    return { refused: e.message, code: e.code };
  }
  try {
    let value: string | undefined;
    try {
      const v = db.get(bytes(key));
      value = v === undefined ? undefined : Buffer.from(v).toString();
    } catch (e) {
      value = `threw ${(e as Error).message}`;
    }
    return { value, loaded: db.recovery!.checkpoint?.loaded };
  } finally {
    db.close();
  }
}

/** The strict reopen refuses naming `key`, exactly as the full scan of the same image. */
function expectRefusedAsFullScan(media: SimMedia, key: string): void {
  const full = outcome(media, key, { recovery: 'full' });
  expect(full).toMatchObject({ code: 'ECORRUPT' });
  expect((full as { refused: string }).refused).toContain(`"${key}"`);
  expect(outcome(media, key)).toEqual(full);
}

/** An image of a closed store whose close wrote a checkpoint covering z's record; the device offset of z's value. */
function closedStore(): { media: SimMedia; z: number } {
  const media = createSimMedia(MEDIA_BYTES);
  const db = openMedia(media, { checkpoint: true });
  for (let i = 0; i < 200; i++) db.put(bytes(`k${i}`), bytes(`v${i}`));
  db.put(bytes('z'), bytes(MARKER));
  for (let i = 0; i < 200; i++) db.put(bytes(`k${i}`), bytes(`w${i}`));
  const z = valueAt(db, 'z');
  db.close();
  return { media: media.crashImage({ mode: 'none' }), z };
}

describe('a checkpoint vouches for the records it covers by their segments’ hashes', () => {
  it('a covered record damaged after close: the reopen refuses exactly as the full scan does', () => {
    const { media, z } = closedStore();
    const clean = outcome(media, 'z');
    expect(clean).toEqual({ value: MARKER, loaded: 0 });
    flip(media, z + 3);
    expectRefusedAsFullScan(media, 'z');
    const db = (() => {
      try {
        return openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
      } catch (e) {
        return e as KvDamageError;
      }
    })();
    expect(db).toBeInstanceOf(KvDamageError);
    expect((db as KvDamageError).report.checkpoint!.ignored.join()).toMatch(
      /checkpoint 0: the segment at block \d+ it covers does not hash to what it stores/,
    );
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-hash-unchecked: the checkpoint is loaded over the damage, z served flipped', () => {
    const { media, z } = closedStore();
    flip(media, z + 3);
    const got = withBroken('kv-checkpoint-hash-unchecked', () => outcome(media, 'z'));
    expect(got).toMatchObject({ loaded: 0 });
    expect((got as { value: string }).value).not.toBe(MARKER);
  });

  /**
   * A checkpoint taken while running covers z's record and part of its segment; more records
   * follow in that segment and the process is killed. The next open loads the checkpoint (the
   * segment's `used` there is below its end now), z's value is flipped while it runs, and it
   * closes. Returns the image and what the close said about its checkpoint.
   */
  function extendedSegment(): { media: SimMedia; closeSaid: unknown } {
    const media = createSimMedia(MEDIA_BYTES);
    const a = openMedia(media, { checkpoint: false });
    for (let i = 0; i < 100; i++) a.put(bytes(`k${i}`), bytes(`v${i}`));
    a.put(bytes('z'), bytes(MARKER));
    a.checkpoint();
    for (let i = 0; i < 100; i++) a.put(bytes(`m${i}`), bytes(`v${i}`));
    const killed = media.crashImage({ mode: 'none' });
    a.close();
    const b = openMedia(killed, { formatIfEmpty: false, checkpoint: true });
    const use = b.recovery!.checkpoint!;
    expect(use.loaded).toBeDefined();
    expect(use.tailRecords).toBeGreaterThan(0);
    const z = valueAt(b, 'z');
    const at = b.dax.device.blockAt(z);
    const listed = use.coveredSegments.find((s) => s.block === at - (at % HUGE_BLOCKS));
    expect(listed).toBeDefined();
    flip(killed, z + 3);
    b.close();
    return { media: killed, closeSaid: b.lastCheckpoint };
  }

  it('a segment whose used changed since the loaded checkpoint is checked again at close: damage while open is refused', () => {
    const { media, closeSaid } = extendedSegment();
    expect(closeSaid).toMatchObject({
      error: expect.stringMatching(/checkpoint: a record in the segment .* checksum/),
    });
    expectRefusedAsFullScan(media, 'z');
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-carry-changed: a segment extended since is hashed unchecked, z served flipped', () => {
    const { media, closeSaid } = withBroken('kv-checkpoint-carry-changed', extendedSegment);
    expect(closeSaid).not.toHaveProperty('error');
    const got = outcome(media, 'z');
    expect(got).toHaveProperty('loaded');
    expect((got as { value: string }).value).not.toBe(MARKER);
  });

  /**
   * A closed store with a checkpoint; reopened, most keys deleted and compacted away, and new
   * records until a segment under another nonce takes a block the loaded checkpoint lists; a
   * value in that segment flipped while it runs; closed. The image, the key flipped and what
   * the close said.
   */
  function reusedBlock(): { media: SimMedia; key: string; closeSaid: unknown } {
    const media = createSimMedia(16 * 2 ** 20); // little room: the allocator soon takes a freed extent again
    const db = openMedia(media, { autoCompact: false, checkpoint: true });
    for (let i = 0; i < 12000; i++) db.put(bytes(`k${i}`), bytes(`first ${i} ${'y'.repeat(300)}`));
    db.close();
    const image = media.crashImage({ mode: 'none' });
    const a = openMedia(image, { formatIfEmpty: false, autoCompact: false, checkpoint: true });
    expect(a.recovery!.checkpoint!.loaded).toBe(0);
    for (let i = 0; i < 12000; i++) if (i % 10 !== 0) a.delete(bytes(`k${i}`));
    expect(a.compact({ maxLiveRatio: 1 }).segmentsFreed).toBeGreaterThan(0);
    const listed = new Map(a.recovery!.checkpoint!.coveredSegments.map((s) => [s.block, s.nonce]));
    const reused = (): number | undefined => {
      let found: number | undefined;
      a.dax.device.forEachOwned((block, owner, nonce) => {
        if (owner === OWNER_KV_SEGMENT && listed.has(block) && listed.get(block) !== nonce) found = block;
      });
      return found;
    };
    let i = 0;
    // new records until a new segment takes one of the freed extents (the allocator may take
    // other free extents first), and no more: the close needs room for its checkpoint
    for (; (i % 100 !== 0 || reused() === undefined) && i < 40000; i++)
      a.put(bytes(`n${i}`), bytes(`second ${i} ${'z'.repeat(300)}`));
    const block = reused();
    expect(block).toBeDefined();
    // room for the close's checkpoint: the other new segments emptied and compacted away
    for (let j = 0; j < i; j++) {
      const at = a.dax.device.blockAt(valueAt(a, `n${j}`));
      if (at - (at % HUGE_BLOCKS) !== block) a.delete(bytes(`n${j}`));
    }
    a.compact({ maxLiveRatio: 1 });
    expect(reused()).toBe(block);
    let key: string | undefined;
    for (let j = i - 1; j >= 0 && key === undefined; j--) {
      if (a.get(bytes(`n${j}`)) === undefined) continue;
      const at = a.dax.device.blockAt(valueAt(a, `n${j}`));
      if (at - (at % HUGE_BLOCKS) === block) key = `n${j}`;
    }
    expect(key).toBeDefined();
    flip(image, valueAt(a, key!) + 3);
    a.close();
    return { media: image, key: key!, closeSaid: a.lastCheckpoint };
  }

  it('a block reused under another nonce since the loaded checkpoint is checked at close: damage while open is refused', () => {
    const { media, key, closeSaid } = reusedBlock();
    expect(closeSaid).toMatchObject({
      error: expect.stringMatching(/checkpoint: a record in the segment .* checksum/),
    });
    expectRefusedAsFullScan(media, key);
  }, 60_000);

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-carry-changed: the reused block is hashed unchecked, the flipped value served', () => {
    const { media, key, closeSaid } = withBroken('kv-checkpoint-carry-changed', reusedBlock);
    expect(closeSaid).not.toHaveProperty('error');
    const got = outcome(media, key);
    expect(got).toHaveProperty('loaded');
    expect((got as { value: string }).value).not.toMatch(/^second /);
  }, 60_000);
});
