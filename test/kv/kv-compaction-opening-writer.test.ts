/**
 * Automatic compaction and a full store's reclaim list the closed segments from the segment
 * table and leave out the ones the open-segment table names. A writer that opens a segment
 * between those two reads must not have it compacted: the segment table is read first, so a
 * segment opened after that read is not listed. Two handles on one thread (attach(db.share()))
 * make the interleaving deterministic: testHooks.compactionListing lets `w2` open its first
 * segment with a put between the two reads; `w2` then puts a second key into what it still
 * takes for its open segment, and `db` fills new segments (which may reuse a freed block).
 * Every key is served right, survives a crash and reopen, and the owner table audits clean.
 * Red with DAXSTORE_TEST_BREAK=kv-compact-open-set-first (the open-segment table read first):
 * `w2`'s segment is retired under it, its later records are lost at the reopen or served from
 * another writer's reuse of the block.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { attach, type KvStore } from '../../src/kv/index.js';
import type { CompactionReport } from '../../src/kv/compaction.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { setBroken, testHooks } from '../../src/test-break.js';
import { rng, withSeed } from '../helpers/seed.js';
import { putUntilNewSegment } from './fill.js';

const FILE = 'test/kv/kv-compaction-opening-writer.test.ts';

afterEach(() => {
  testHooks.compactionListing = undefined;
  setBroken('kv-compact-open-set-first', false);
});

/** The store's automatic compaction step (what autoCompact and a full store's reclaim run). */
function compactFromTable(db: KvStore): CompactionReport {
  return (db as unknown as { compactNow(o: object): CompactionReport }).compactNow({
    maxLiveRatio: 1,
    fromTable: true,
  });
}

function value(tag: string, n: number): Uint8Array {
  return new Uint8Array(n).fill(tag.charCodeAt(tag.length - 1));
}

/** Returns the keys that were lost or served wrong, live and after a reopen. */
function scenario(seed: number): string[] {
  const random = rng(seed);
  const media = createSimMedia(24 * 2 ** 20, { name: 'opening-writer' });
  const db = openMedia(media, { autoCompact: false, durability: 'sync' });
  const model = new Map<string, Uint8Array>();
  const put = (h: KvStore, k: string, n: number): void => {
    const v = value(k, n);
    h.put(k, v);
    model.set(k, v);
  };
  const w2 = attach(db.share());
  const wrong = (h: KvStore): string[] =>
    [...model]
      .filter(([k, v]) => {
        const got = h.get(k);
        return got === undefined || !Buffer.from(got).equals(v);
      })
      .map(([k]) => k);
  let report: CompactionReport;
  try {
    // A closed segment of db's, mostly dead: something for the compaction to take.
    for (let s = 0; s < 2; s++)
      putUntilNewSegment(db, (i) => put(db, `churn-${i % 7}`, 1000 + Math.floor(random() * 3000)));
    testHooks.compactionListing = () => {
      testHooks.compactionListing = undefined;
      put(w2, 'w2-first', 16 + Math.floor(random() * 200)); // w2 opens its first segment here
    };
    report = compactFromTable(db);
    expect(testHooks.compactionListing, 'the compaction listed segments').toBeUndefined();
    for (let i = 0; i < 8; i++) put(w2, `w2-later-${i}`, 16 + Math.floor(random() * 200));
    // db's new segments: a block freed by the compaction goes back to the allocator.
    for (let s = 0; s < 3; s++) putUntilNewSegment(db, (i) => put(db, `fill-${s}-${i}`, 2000));
  } finally {
    testHooks.compactionListing = undefined;
  }
  const live = wrong(db);
  const image = media.crashImage({ mode: 'none' }); // what is durable: every put ('sync')
  db.close(); // the opener first: both handles share this thread's epoch participant
  w2.close();
  const again = openMedia(image, { formatIfEmpty: false });
  try {
    const reopened = wrong(again);
    const audit = again.dax.device.audit();
    expect(report.segmentsFreed, 'the compaction freed a segment').toBeGreaterThanOrEqual(1);
    return [...live.map((k) => `live ${k}`), ...reopened.map((k) => `reopened ${k}`), ...audit.map(String)];
  } finally {
    again.close();
  }
}

describe('automatic compaction beside a writer opening a segment', () => {
  it('a segment opened while compaction lists segments is never compacted: every key served and kept', async () => {
    await withSeed(FILE, (seed) => {
      expect(scenario(seed)).toEqual([]);
    });
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-open-set-first', async () => {
    await withSeed(FILE, (seed) => {
      setBroken('kv-compact-open-set-first', true);
      expect(scenario(seed)).not.toEqual([]);
    });
  });
});
