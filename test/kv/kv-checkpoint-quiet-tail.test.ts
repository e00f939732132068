/**
 * A reopen on an index checkpoint scans a segment the checkpoint covers only when something lies
 * after what it covers (src/kv/recovery.ts quietTails, addon JsEndMarkersAt): the end marker at
 * `used`, or no room for a record after it, means the scan would end there at once, and it is
 * not run; anything else there is scanned as before.
 * 1. Records appended after a clean close into a segment the checkpoint covers (the writer
 *    resumes in one), then a crash: they are found, the reopen equals the full scan. Red with
 *    kv-checkpoint-tail-unread (every covered segment taken to end at `used`: the writes lost).
 * 2. A clean reopen: nothing scanned, and what the scans would have noted (where appending
 *    resumes, each segment's estimate, the log's counts) equals the full scan's.
 * 3. Bytes that are not a record at `used` of a covered segment (a write torn by a crash after
 *    the checkpoint): scanned and cut as a torn tail, as the full scan does.
 * Not covered here: a media error at `used` (the mapped media only; the scan then reports it).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { withBroken } from '../../src/test-break.js';
import { rng, withSeed } from '../helpers/seed.js';
import {
  expectModel,
  hex,
  openMedia,
  snapshotWithLog,
  workload,
  type KvStore,
  type Model,
} from './kv-checkpoint-helpers.js';

const FILE = 'test/kv/kv-checkpoint-quiet-tail.test.ts';
const MEDIA_BYTES = 24 * 2 ** 20;
const WATCHDOG_MS = 120_000;

/** A store closed with a checkpoint after a random workload (no compaction); the model. */
function closedStore(r: () => number): { image: SimMedia; model: Model } {
  const media = createSimMedia(MEDIA_BYTES);
  const model: Model = new Map();
  const db = openMedia(media, { durability: 'none', autoCompact: false });
  workload(db, model, () => r() * 0.99, 1500 + Math.floor(r() * 1500), 800 + Math.floor(r() * 1500));
  db.close();
  return { image: media.crashImage({ mode: 'none' }), model };
}

/** What a reopen notes beside the index: where appending resumes, and the log's counts. */
function noted(db: KvStore): unknown {
  const r = db.recovery!;
  return { resume: r.resume, records: r.records, entries: r.entries, segments: r.segments, log: snapshotWithLog(db) };
}

/** Opens `image` with recovery: 'full' (on a copy) and with its checkpoint: equal, the checkpoint loaded. */
function expectEqualsFull(image: SimMedia): KvStore {
  const full = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
  const want = noted(full);
  full.close();
  const db = openMedia(image, { formatIfEmpty: false });
  expect(db.recovery!.checkpoint!.loaded).toBeDefined();
  expect(noted(db)).toEqual(want);
  return db;
}

/** Reopens `image` on its checkpoint, writes `puts` small keys ('sync') and crashes: the image after, and whether they went into a covered segment. */
function appendAndCrash(
  image: SimMedia,
  model: Model,
  r: () => number,
  puts: number,
): { crashed: SimMedia; intoCovered: boolean } {
  const db = openMedia(image, { formatIfEmpty: false, durability: 'sync', autoCompact: false });
  const use = db.recovery!.checkpoint!;
  expect(use.loaded).toBeDefined();
  const resume = db.recovery!.resume!;
  const intoCovered = use.coveredSegments.some(
    (s) => db.dax.device.blockOffset(s.block) === resume.base && s.used === resume.used,
  );
  for (let i = 0; i < puts; i++) {
    const key = `after-${Math.floor(r() * 1e6)}-${i}`;
    db.put(key, `v${i}`);
    model.set(hex(key), hex(`v${i}`));
  }
  const crashed = (db.dax.device.media as SimMedia).crashImage({ mode: 'none' });
  db.close();
  return { crashed, intoCovered };
}

describe('a reopen scans a covered segment only when something lies after what the checkpoint covers', () => {
  it(
    'records appended after a clean close into a covered segment are found after a crash',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        for (let round = 0; round < 3; round++) {
          const { image, model } = closedStore(r);
          const { crashed, intoCovered } = appendAndCrash(image, model, r, 1 + Math.floor(r() * 40));
          expect(intoCovered).toBe(true);
          const db = expectEqualsFull(crashed);
          expect(db.recovery!.checkpoint!.tailRecords).toBeGreaterThan(0);
          expectModel(db, model);
          db.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-tail-unread: the records after the checkpoint are lost',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const { image, model } = closedStore(r);
        const { crashed } = appendAndCrash(image, model, r, 5);
        withBroken('kv-checkpoint-tail-unread', () => {
          const db = openMedia(crashed, { formatIfEmpty: false });
          try {
            expect(db.recovery!.checkpoint!.loaded).toBeDefined();
            expect(db.recovery!.checkpoint!.tailRecords).toBe(0);
            expect(() => expectModel(db, model)).toThrow();
          } finally {
            db.close();
          }
        });
      });
    },
    WATCHDOG_MS,
  );

  it(
    'a clean reopen scans nothing and notes what the full scan notes (resume point, counts, estimates)',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        for (let round = 0; round < 3; round++) {
          const { image, model } = closedStore(r);
          const db = expectEqualsFull(image);
          expect(db.recovery!.checkpoint!.tailRecords).toBe(0);
          expectModel(db, model);
          db.close();
        }
      });
    },
    WATCHDOG_MS,
  );

  it(
    'bytes that are not a record at the end of what a covered segment holds are scanned and cut as a torn tail',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        const { image, model } = closedStore(r);
        const probe = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false });
        const covered = probe.recovery!.checkpoint!.coveredSegments.filter((s) => s.used + 64 <= 2 ** 21);
        const at = covered.map((s) => probe.dax.device.blockOffset(s.block) + s.used);
        probe.close();
        expect(at.length).toBeGreaterThan(0);
        const torn = image.crashImage({ mode: 'none' });
        const bytes = new Uint8Array(torn.buffer);
        const where = at[Math.floor(r() * at.length)];
        for (let i = 0; i < 40; i++) bytes[where + i] = 1 + Math.floor(r() * 255);
        torn.persist(where, 40);
        const db = expectEqualsFull(torn);
        expect(db.recovery!.droppedRecords).toBeGreaterThan(0);
        expectModel(db, model);
        db.close();
      });
    },
    WATCHDOG_MS,
  );
});
