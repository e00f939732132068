/**
 * The segment table's counts (segment-table.ts, kept by writers as they go: an entry's cost
 * joins BORN when it is published and DIED when it is superseded or deleted; a DEL's joins
 * DELS and never BORN) of every closed segment equal what the segment holds:
 *   - live bytes (BORN - DIED) = the PUT entries the index points at in it (a walk of the index)
 *     = what measureSegment reads from it (which replaces recovery's estimates);
 *   - live + tombstone bytes (moveBytes) = measureSegment's live and DEL bytes.
 * A seeded mix on one store: puts of random sizes (2% large values, 10% empty), overwrites,
 * deletes (30% while a snapshot is held, so the index keeps a tombstone), batches with repeated
 * keys and deletes, transactions (a read, a put and a delete), now and then a compaction;
 * checked after each phase, then the store is reopened (its segments start as recovery's
 * estimates), measured (measureGuesses) and checked again before the next phase.
 * Red with kv-measure-tombstones-live: measureSegment counts a tombstone the index points at as
 * live too (the probe that found it took that for a DIED count too high). Red with
 * kv-dead-marks-kept: a compacted extent that becomes a segment again keeps its dead marks
 * (segment-table.ts), and measureSegment skips live entries that start where dead ones did.
 * Not covered: DIED counted by other threads (workers), by reapers of dead writers, or moved by
 * compaction while writers run; large values' retirement.
 * DAXSTORE_SEED replays a run; DAXSTORE_LONG=<factor> runs more operations per phase.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import type { DaxSpace } from '../../src/dax/space.js';
import { HUGE_BLOCKS } from '../../src/device/layout.js';
import { openMedia as openKv } from '../../src/kv/index.js';
import { measureSegment } from '../../src/kv/compaction.js';
import { ENTRY_DEL, KV_KEY_PREFIX, SEGMENT_BYTES } from '../../src/kv/layout.js';
import { entryKeyLength, entryOp, entryValueLength, type MediaViews } from '../../src/kv/records.js';
import { entryCost, type SegmentTable } from '../../src/kv/segment-table.js';
import { withBroken } from '../../src/test-break.js';
import { mixedValue } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-segment-counts.test.ts';
const MEDIA_BYTES = 96 * 2 ** 20;
const WATCHDOG_MS = 60_000;

function openMedia(media: SimMedia, formatIfEmpty = true) {
  return openKv(media, { autoCompact: false, durability: 'none', formatIfEmpty });
}
type KvStore = ReturnType<typeof openMedia>;

interface Internals {
  space: DaxSpace;
  views: MediaViews;
  table: SegmentTable;
  openExtents(): ReadonlySet<number>;
  withPriorityWriter<T>(fn: () => T): T;
  measureGuesses(): void;
}

/** Per closed segment: the table's figures beside the index walk's and measureSegment's; and the tombstone bytes the index points at in closed segments. */
function counts(db: KvStore): { rows: object[]; tombstoneBytes: number } {
  const s = db as unknown as Internals;
  return s.withPriorityWriter(() => {
    const live = new Map<number, number>();
    const tombstones = new Map<number, number>();
    s.space.epoch.guard(() =>
      s.space.tree.scanPinned({ gte: Uint8Array.of(KV_KEY_PREFIX), lt: Uint8Array.of(KV_KEY_PREFIX + 1) }, (at) => {
        const e = s.table.extentOf(at);
        const cost = entryCost(entryKeyLength(s.views, at), entryValueLength(s.views, at));
        const into = entryOp(s.views, at) === ENTRY_DEL ? tombstones : live;
        into.set(e, (into.get(e) ?? 0) + cost);
      }),
    );
    const rows: object[] = [];
    let tombstoneBytes = 0;
    for (const seg of s.table.closedSegments(s.openExtents())) {
      const m = measureSegment(s.space, s.views, s.table, seg.extent * HUGE_BLOCKS);
      if (m === undefined) continue;
      tombstoneBytes += tombstones.get(seg.extent) ?? 0;
      rows.push({
        extent: seg.extent,
        table: seg.liveBytes,
        walk: live.get(seg.extent) ?? 0,
        measured: m.liveBytes,
        tableMove: seg.moveBytes,
        measuredMove: Math.min(SEGMENT_BYTES, m.liveBytes + m.delBytes),
      });
    }
    return { rows, tombstoneBytes };
  });
}

/** Rows whose figures disagree. */
function disagreeing(rows: object[]): object[] {
  return rows.filter((r) => {
    const x = r as { table: number; walk: number; measured: number; tableMove: number; measuredMove: number };
    return x.table !== x.walk || x.measured !== x.walk || x.tableMove !== x.measuredMove;
  });
}

/** `ops` random writes (the mix in the header) of keys k0..k<keys>. */
function mixedWrites(db: KvStore, random: () => number, ops: number, keys: number, deadline: number): void {
  const key = (): string => `k${Math.floor(random() * keys)}`;
  const value = (i: number): Buffer => mixedValue(random, i, 0.12);
  for (let i = 0; i < ops; i++) {
    if ((i & 255) === 0 && performance.now() > deadline)
      throw new Error(`watchdog: ${i} of ${ops} operations after ${WATCHDOG_MS / 1000} s`);
    const r = random();
    if (r < 0.7) db.put(key(), value(i));
    else if (r < 0.85) {
      const snap = random() < 0.3 ? db.snapshot() : undefined; // the DEL stays in the index as a tombstone
      db.delete(key());
      snap?.close();
    } else if (r < 0.93) {
      const repeated = key();
      const ops2 = Array.from({ length: 1 + Math.floor(random() * 6) }, () => {
        const k = random() < 0.3 ? repeated : key(); // the same key more than once in one batch
        return random() < 0.2 ? { type: 'del' as const, key: k } : { type: 'put' as const, key: k, value: value(i) };
      });
      db.batch(ops2);
    } else if (r < 0.998) {
      const a = key();
      const b = key();
      const va = value(i);
      db.transactionSync((txn) => {
        txn.get(b);
        txn.put(a, va);
        if (a !== b) txn.delete(b);
      });
    } else db.compact({ maxLiveRatio: 0.3 }); // leaves the fuller segments closed, for the check
  }
}

function run(seed: number): void {
  const random = rng(seed);
  let media: SimMedia = createSimMedia(MEDIA_BYTES);
  let db = openMedia(media);
  const deadline = performance.now() + WATCHDOG_MS;
  const keys = 4000 + Math.floor(random() * 3000); // live data of a few segments: some stay closed
  const ops = scaled(10_000);
  let tombstoneBytes = 0;
  let segments = 0;
  try {
    for (let phase = 0; phase < 2; phase++) {
      mixedWrites(db, random, ops, keys, deadline);
      const c = counts(db);
      expect(disagreeing(c.rows), `phase ${phase}`).toEqual([]);
      tombstoneBytes += c.tombstoneBytes;
      segments += c.rows.length;
      db.close();
      media = media.crashImage({ mode: 'none' }); // the image of the closed store
      db = openMedia(media, false);
      (db as unknown as Internals).measureGuesses();
      expect(disagreeing(counts(db).rows), `phase ${phase}, reopened`).toEqual([]);
    }
  } finally {
    db.close();
  }
  // The runs check something: closed segments, some of them holding tombstones the index points at.
  expect(segments).toBeGreaterThanOrEqual(2);
  expect(tombstoneBytes).toBeGreaterThan(0);
}

describe("the segment table's counts", () => {
  it('equal the index and a read of each closed segment after puts, deletes, batches, transactions and compactions', async () => {
    await withSeed(FILE, run);
  }, 120_000);

  it('goes red with DAXSTORE_TEST_BREAK=kv-measure-tombstones-live: a measured segment counts its tombstones twice', async () => {
    await withSeed(FILE, (seed) =>
      withBroken('kv-measure-tombstones-live', () => expect(() => run(seed)).toThrow(/phase 0/)),
    );
  }, 120_000);

  it('goes red with DAXSTORE_TEST_BREAK=kv-dead-marks-kept: an extent segment again keeps the dead marks of its earlier life', async () => {
    // A kept mark shows only when a reused extent holds an entry where its earlier life had a
    // marked one, which a run's writes may not bring about: up to four runs (seeds derived from
    // this one), the first that fails ending it.
    await withSeed(FILE, (seed) =>
      withBroken('kv-dead-marks-kept', () => {
        const problems: string[] = [];
        for (let attempt = 0; attempt < 4 && problems.length === 0; attempt++)
          try {
            run((seed + attempt * 7919) >>> 0);
          } catch (e) {
            problems.push(String(e));
          }
        expect(problems.join('\n')).toMatch(/phase \d/);
      }),
    );
  }, 240_000);
});
