/**
 * Tombstones (DEL entries) and compaction: a DEL is copied forward only while another
 * segment still holds an older PUT of its key (rule at the top of src/kv/compaction.ts),
 * so deleted keys never come back (after reopen, and in every crash image taken during
 * compaction) and tombstones do not travel forward forever. Red with DAXSTORE_TEST_BREAK=
 * kv-compact-drop-tombstones (every tombstone dropped: an older PUT in a segment that stays
 * resurrects). A tombstone sweep (at the close of the last snapshot) runs under entry locks
 * only, beside compaction: a DEL whose key was present when the rule ran (its tombstone kept in
 * the index for a snapshot) and absent when it is moved is copied forward; red with
 * DAXSTORE_TEST_BREAK=kv-compact-swept-tombstone-dropped. Not covered: compaction racing writers
 * in workers (kv-workers).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { setBroken, testHooks } from '../../src/test-break.js';
import { LARGE_VALUE_THRESHOLD_BYTES } from '../../src/kv/layout.js';
import { SWEEP_MIN } from '../../src/kv/snapshots.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-tombstones.test.ts';

const big = (tag: number): Uint8Array => new Uint8Array(LARGE_VALUE_THRESHOLD_BYTES).fill(tag);
const listing = (db: KvStore): string =>
  [...db.range()].map(([k, v]) => `${Buffer.from(k).toString()}=${v.length}:${v[0]}`).join(',');
/** Throws naming what differs (a resurrected key shows up by name) when got is not expected. */
function expectSame(got: string, expected: string, what: string): void {
  if (got === expected) return;
  const g = new Set(got.split(','));
  const e = new Set(expected.split(','));
  throw new Error(
    `${what}: extra [${[...g].filter((x) => !e.has(x)).join(',')}] missing [${[...e].filter((x) => !g.has(x)).join(',')}]`,
  );
}

/**
 * Segment A: PUTs of 'victim-*' among many values that stay live (A is never compacted at
 * ratio 0.5). Then the victims are deleted and dead churn fills segments B.. whose only
 * live-ish content is those DELs: compaction frees B.., and must keep the DELs that shadow
 * A's PUTs. 'doomed-*' keys are put and deleted inside B..: their DELs shadow nothing left.
 */
function shadowing(): { media: SimMedia; db: KvStore } {
  const media = createSimMedia(40 * 2 ** 20);
  const db = openMedia(media, { durability: 'sync', autoCompact: false });
  for (let i = 0; i < 120; i++) db.put(`stay-${i}`, big(i)); // segment A, ~all live
  for (let i = 0; i < 5; i++) db.put(`victim-${i}`, `v${i}`);
  for (let i = 0; i < 150; i++) db.put(`churn-${i % 10}`, big(i)); // A fills; B.. mostly dead
  for (let i = 0; i < 5; i++) db.delete(`victim-${i}`);
  for (let i = 0; i < 5; i++) {
    db.put(`doomed-${i}`, 'x');
    db.delete(`doomed-${i}`);
  }
  for (let i = 0; i < 300; i++) db.put(`churn-${i % 10}`, big(i)); // close the DELs' segment
  return { media, db };
}

/**
 * Victims' PUTs among values that stay live (their segment is never compacted), a snapshot,
 * the victims deleted (their DELs kept in the index as tombstones for the snapshot, more than a
 * sweep waits for), some put again, churn closing the DELs' segments; then a compaction whose
 * tombstone rule runs while the tombstones are in the index, and the snapshot closed right
 * after the rule (its release sweeps the tombstones), before any entry is moved. The listing
 * before the close and after a reopen that reads the log alone (recovery: 'full').
 */
function sweptDuringCompaction(r: () => number): { before: string; after: string; swept: boolean } {
  const media = createSimMedia(40 * 2 ** 20);
  const db = openMedia(media, { durability: 'sync', autoCompact: false });
  const victims = SWEEP_MIN + 100 + Math.floor(r() * 400);
  for (let i = 0; i < 60; i++) db.put(`stay-${i}`, big(i));
  for (let i = 0; i < victims; i++) db.put(`victim-${i}`, `v${i}`);
  for (let i = 60; i < 120; i++) db.put(`stay-${i}`, big(i));
  for (let i = 0; i < 150; i++) db.put(`churn-${i % 10}`, big(i));
  const snap = db.snapshot();
  for (let i = 0; i < victims; i++) db.delete(`victim-${i}`);
  for (let i = 0; i < 100; i++) if (r() < 0.3) db.put(`victim-${i}`, `again${i}`); // present again
  for (let i = 0; i < 250 + Math.floor(r() * 100); i++) db.put(`churn-${i % 10}`, big(i)); // close the DELs' segments
  expect(db.stats().tombstones).toBeGreaterThanOrEqual(SWEEP_MIN); // the release sweeps them
  let swept = false;
  testHooks.tombstonesWeighed = () => {
    testHooks.tombstonesWeighed = undefined;
    snap.close(); // the last snapshot: its release sweeps every tombstone
    swept = db.stats().tombstones === 0;
  };
  try {
    expect(db.compact().segmentsFreed).toBeGreaterThan(0);
  } finally {
    testHooks.tombstonesWeighed = undefined;
  }
  const before = listing(db);
  db.close();
  const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
  try {
    return { before, after: listing(again), swept };
  } finally {
    again.close();
  }
}

describe('kv tombstones in compaction', () => {
  it('a tombstone swept between the rule and its move is copied forward: deleted keys stay deleted (seeded)', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      for (let round = 0; round < scaled(2); round++) {
        const { before, after, swept } = sweptDuringCompaction(r);
        expect(swept, 'the sweep ran inside the compaction').toBe(true);
        expectSame(after, before, `round ${round}: reopened after compaction`);
      }
    });
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-swept-tombstone-dropped: swept victims come back', async () => {
    await withSeed(FILE, (seed) => {
      setBroken('kv-compact-swept-tombstone-dropped', true);
      try {
        const { before, after } = sweptDuringCompaction(rng(seed));
        expect(() => expectSame(after, before, 'reopened after compaction')).toThrow(/extra \[victim/);
      } finally {
        setBroken('kv-compact-swept-tombstone-dropped', false);
      }
    });
  });

  const keepsDeletedKeysDeleted = (): { kept: number; dropped: number } => {
    const { media, db } = shadowing();
    const before = listing(db);
    expect(before).not.toContain('victim');
    const r = db.compact();
    expect(r.segmentsFreed).toBeGreaterThan(0);
    db.close();
    // The log alone decides (the close's index checkpoint would serve the index as it was).
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
    try {
      expectSame(listing(again), before, 'reopened after compaction');
    } finally {
      again.close();
    }
    return { kept: r.tombstonesKept, dropped: r.tombstonesDropped };
  };

  it('keeps the tombstones that shadow an older PUT, drops the others; deleted keys stay deleted after reopen', () => {
    const { kept, dropped } = keepsDeletedKeysDeleted();
    expect(kept).toBe(5); // the victims: their PUTs are still in segment A
    expect(dropped).toBeGreaterThanOrEqual(5); // the doomed keys: their PUTs left with their segment
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-drop-tombstones', () => {
    setBroken('kv-compact-drop-tombstones', true);
    try {
      expect(keepsDeletedKeysDeleted).toThrow(/victim/);
    } finally {
      setBroken('kv-compact-drop-tombstones', false);
    }
  });

  it('a kept tombstone is dropped once the older PUT it shadows has been compacted away', () => {
    const { media, db } = shadowing();
    expect(db.compact().tombstonesKept).toBe(5);
    db.dax.collect();
    for (let i = 0; i < 120; i++) db.put(`stay-${i}`, big(200 + (i % 50))); // segment A becomes dead
    let dropped = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 130; i++) db.put(`churn-${i % 10}`, big(i)); // closes the segments holding the copies
      // Compaction's copies (the kept tombstones among them) share the priority segment with the
      // live entries it moved in the same pass: those die too, so that segment is compacted.
      for (let i = 0; i < 120; i++) db.put(`stay-${i}`, big(round * 50 + (i % 50)));
      const r = db.compact({ maxLiveRatio: 0.9 });
      dropped += r.tombstonesDropped;
      db.dax.collect(); // freed segments back to the allocator
    }
    expect(dropped).toBeGreaterThanOrEqual(5); // the victims' tombstones did not travel forever
    const final = listing(db);
    expect(final).not.toContain('victim');
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
    expect(listing(again)).toBe(final);
    expect(again.dax.device.audit()).toEqual([]);
    again.close();
  });

  const crashImagesDuringCompaction = (): number => {
    const { media, db } = shadowing();
    const before = listing(db);
    let images = 0;
    const unhook = media.onFence(() => {
      for (const probability of [0, 0.3, 0.7, 1]) {
        const image = media.crashImage({ mode: 'random', seed: images, probability });
        const again = openMedia(image, { formatIfEmpty: false });
        try {
          expectSame(listing(again), before, `crash image ${images} during compaction`);
          expect(again.dax.device.audit()).toEqual([]);
        } finally {
          again.close();
          image.dispose();
        }
        images++;
      }
    });
    try {
      db.compact();
      db.dax.collect();
    } finally {
      unhook();
      db.close();
    }
    return images;
  };

  it('every crash image taken during a compaction that drops tombstones recovers exactly the state before it', () => {
    expect(crashImagesDuringCompaction()).toBeGreaterThan(8);
  });

  it('the crash check goes red with DAXSTORE_TEST_BREAK=kv-compact-drop-tombstones', () => {
    setBroken('kv-compact-drop-tombstones', true);
    try {
      expect(crashImagesDuringCompaction).toThrow(/victim/);
    } finally {
      setBroken('kv-compact-drop-tombstones', false);
    }
  });
});
