/**
 * A checkpoint taken while running carries a tree image (src/kv/checkpoint.ts ImageBuild, built
 * on a thread of its own once the index walk has ended; store.ts checkpointSteps), and the
 * background one writes its body over several steps (checkpoint.ts CheckpointWrite, named in
 * the shared CHECKPOINT_WRITING word meanwhile).
 *
 * 1. Seeded random workloads, a checkpoint taken while running (checkpoint(), or the background
 *    one's steps with writes between them), a tail, then a crash (random lines of what was not
 *    made durable lost): the open loads the checkpoint's image and applies the tail to it
 *    (`imageLoaded`, `tailOnImage`), passes verifyTree and equals `recovery: 'full'` of the same
 *    image (every key and value, keys, sequence, segments, free blocks, the log's counts).
 * 2. A background checkpoint whose body takes several steps, another handle's checkpoint taken
 *    between them, crash images before and after that one: the partial one alone is ignored (a
 *    full scan serves the model); beside the other handle's, that one serves, equal to a full
 *    scan. The background one is spared by the other handle's removal of older checkpoints,
 *    finds that newer one when it ends and removes itself. Red with
 *    kv-checkpoint-writing-unspared: the other handle removes it under it.
 * 3. A background checkpoint's covered segments are checked and hashed on a thread of their own
 *    (checkpoint.ts SegmentHashes) under its snapshot: a compaction run while that thread reads
 *    them frees segments the checkpoint covers, and gives back none of their blocks until the
 *    checkpoint has ended (the snapshot held until the thread is joined); the checkpoint is
 *    written and the next open loads it. Red with kv-checkpoint-hash-unheld (the snapshot
 *    released once the thread has started): the blocks are given back under the read.
 * 4. The same for the background checkpoint's coverage hopped on ahead of its capture
 *    (checkpoint.ts CoverAhead) under a snapshot of its own: red with
 *    kv-checkpoint-cover-ahead-unheld (hopped without it).
 * 4. A compaction between two passes of that hop (the second hops what writers appended during
 *    the first, from where it stopped, under a newer snapshot registered before the older one is
 *    released): nothing it frees is given back; red with kv-checkpoint-ahead-pass-gap.
 * 4. A compaction that retires covered segments of overwritten versions only (nothing moves)
 *    after the capture and before the hash thread reads them: retiring marks the segment's head,
 *    the read finds the mark, and the checkpoint captures again and is written. Red with
 *    kv-checkpoint-retired-unretried (ECORRUPT, bad magic, for a segment nothing damaged).
 * 5. A compaction after every capture that retires covered segments before they are read: the
 *    checkpoint gives up after CHECKPOINT_CAPTURES captures with EBUSY (checkpoint(), and the
 *    background one's lastCheckpoint with its code) instead of capturing for as long as
 *    compaction goes on. Red with kv-checkpoint-recaptures-unbounded (it captures again until
 *    the test's compactions stop, and is written).
 * Not covered here: the running checkpoint's coverage and walk (kv-checkpoint-running.test.ts),
 * the tail's application to an image (kv-checkpoint-tail-image.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { attach } from '../../src/kv/index.js';
import { checkpointIds, CHECKPOINT_ID_FIRST } from '../../src/kv/checkpoint.js';
import { CHECKPOINT_CAPTURES } from '../../src/kv/store.js';
import { testHooks, withBroken } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import {
  crash,
  expectCheckpointEqualsFull,
  expectModel,
  hex,
  openMedia,
  snapshotWithLog,
  workload,
  type KvStore,
  type Model,
} from './kv-checkpoint-helpers.js';

const FILE = 'test/kv/kv-checkpoint-running-image.test.ts';
const WATCHDOG_MS = 150_000;

/** The background checkpoint's steps run to its end, `between` called before each (the writes the event loop serves meanwhile). */
function runBackground(db: KvStore, between: () => void): number {
  db.startBackgroundCheckpoint();
  let steps = 0;
  for (;;) {
    between();
    steps++;
    if (!db.stepBackgroundCheckpoint()) break;
  }
  const last = db.lastCheckpoint;
  if (last === undefined || 'error' in last) throw new Error(`background checkpoint: ${JSON.stringify(last)}`);
  return steps;
}

/** A store of `keys` keys written with durability 'none' (values `value <i>`): the store and the model. */
function storeOfKeys(media: SimMedia, keys: number): { db: KvStore; model: Model } {
  const db = openMedia(media, { durability: 'none', checkpoint: false, checkpointEvery: 0 });
  const model: Model = new Map();
  for (let i = 0; i < keys; i++) {
    const key = `key-${(i * 7919) % 1000003}-${i}`;
    db.put(key, `value ${i}`);
    model.set(hex(key), hex(`value ${i}`));
  }
  return { db, model };
}

describe('checkpoints taken while running carry a tree image', () => {
  it(
    'a crash after one: the open loads its image, applies the tail and equals a full scan (random workloads)',
    async () => {
      await withSeed(FILE, (seed) => {
        const r = rng(seed);
        let loaded = 0;
        const rounds = scaled(6);
        for (let round = 0; round < rounds; round++) {
          const durability = (['sync', 'group', 'none'] as const)[Math.floor(r() * 3)];
          const db = openMedia(createSimMedia(32 * 2 ** 20), { durability, checkpoint: false, checkpointEvery: 0 });
          const model: Model = new Map();
          const keySpace = 500 + Math.floor(r() * 3000);
          workload(db, model, r, 1000 + Math.floor(r() * 2000), keySpace);
          if (round % 2 === 0) db.checkpoint();
          else runBackground(db, () => workload(db, model, r, Math.floor(r() * 20), keySpace));
          workload(db, model, r, 50 + Math.floor(r() * 400), keySpace);
          const again = expectCheckpointEqualsFull(crash(db, r, round === 0 ? 0 : r()));
          try {
            const use = again.recovery!.checkpoint!;
            // A compaction in the workload that freed a covered segment loads the columns instead.
            if (use.segmentsGone === 0) {
              expect(use.imageLoaded).toBe(true);
              expect(use.tailOnImage).toBe(use.tailEntries > 0);
              loaded++;
            }
            if (round === 0 && durability === 'sync') expectModel(again, model); // every write acknowledged durable
            again.put('after the load', 'goes on');
            expect(again.get('after the load')).toBe('goes on');
            verifyTree(again.dax.tree);
          } finally {
            again.close();
          }
        }
        expect(loaded).toBeGreaterThan(rounds / 2);
      });
    },
    WATCHDOG_MS,
  );

  /**
   * A background checkpoint of 70,000 keys (three 2 MiB extents: its body written over two
   * steps) on `db`, another handle's checkpoint() taken between the steps of its body, a crash
   * image before it (`partial`) and after it. Returns those and the background checkpoint's outcome.
   */
  function interleaved(): {
    partial: SimMedia;
    image: SimMedia;
    model: Model;
    error: unknown;
    ids: number[];
    other: number;
  } {
    const { db, model } = storeOfKeys(createSimMedia(96 * 2 ** 20), 70_000);
    const other = attach(db.share());
    let stage = '';
    testHooks.checkpointWrite = (s) => void (stage = s);
    let image: SimMedia | undefined;
    let partial: SimMedia | undefined;
    let error: unknown;
    let otherGeneration = -1;
    try {
      db.startBackgroundCheckpoint();
      try {
        while (db.stepBackgroundCheckpoint())
          if (stage === 'created' && image === undefined) {
            // Its body is part written: another handle writes one whole meanwhile.
            stage = '';
            testHooks.checkpointWrite = undefined;
            partial = (db.dax.device.media as SimMedia).crashImage({ mode: 'none' });
            otherGeneration = other.checkpoint().generation;
            image = (db.dax.device.media as SimMedia).crashImage({ mode: 'none' });
          }
      } catch (e) {
        error = e;
      }
    } finally {
      testHooks.checkpointWrite = undefined;
    }
    const ids = checkpointIds(db.dax).map((id) => id - CHECKPOINT_ID_FIRST);
    other.close();
    db.close();
    expect(image).toBeDefined();
    return { partial: partial!, image: image!, model, error, ids, other: otherGeneration };
  }

  it(
    "a background checkpoint's body over several steps, another handle's checkpoint and a crash between them: spared, then removed for the newer one; the open equals a full scan",
    () => {
      const { partial, image, model, error, ids, other } = interleaved();
      expect(error).toBeUndefined();
      expect(ids).toEqual([other]); // the background one ended after the newer one: removed itself
      // A crash with only its body part written: ignored (its header page not written), the full scan serves.
      const torn = openMedia(partial, { formatIfEmpty: false });
      try {
        expect(torn.recovery!.checkpoint!.loaded).toBeUndefined();
        expect(torn.recovery!.checkpoint!.ignored).toEqual([expect.stringMatching(/bad magic/)]);
        expectModel(torn, model);
      } finally {
        torn.close();
      }
      const full = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
      const want = snapshotWithLog(full);
      full.close();
      const again = openMedia(image, { formatIfEmpty: false });
      try {
        const use = again.recovery!.checkpoint!;
        expect(use.loaded).toBe(other);
        expect(use.imageLoaded).toBe(true);
        verifyTree(again.dax.tree);
        expect(snapshotWithLog(again)).toEqual(want);
        expectModel(again, model);
      } finally {
        again.close();
      }
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-writing-unspared: the other handle removes the checkpoint being written',
    () => {
      const { error } = withBroken('kv-checkpoint-writing-unspared', () => interleaved());
      // its next step writes into an object removed under it
      expect(error).toMatchObject({ code: 'ENOENT', message: expect.stringMatching(/fault: object/) });
    },
    WATCHDOG_MS,
  );

  /**
   * A store whose first segments hold only overwritten versions, and a background checkpoint
   * during whose segment hashing (on its thread) a compaction runs: the blocks that compaction
   * gave back while the hashing ran, what it freed, and the generation the next open loads.
   */
  function compactWhileHashing(
    hook: 'checkpointHashing' | 'checkpointCoveringAhead' = 'checkpointHashing',
    call = 1,
  ): {
    given: number;
    freed: number;
    checked: number;
    loaded: number | undefined;
    calls: number;
  } {
    const media = createSimMedia(48 * 2 ** 20);
    const db = openMedia(media, { durability: 'none', checkpoint: false, checkpointEvery: 0 });
    let given = NaN;
    let freed = 0;
    let checked = 0;
    let calls = 0;
    let after: SimMedia;
    try {
      for (let round = 0; round < 3; round++)
        for (let i = 0; i < 3000; i++) db.put(`key-${i}`, `${round}:${i}:`.padEnd(600, 'v'));
      testHooks[hook] = () => {
        if (++calls !== call) return; // the `call`th only (checkpointCoveringAhead: each pass of the hop)
        const free0 = db.stats().freeBlocks;
        freed = db.compact({ maxLiveRatio: 1 }).segmentsFreed;
        given = db.stats().freeBlocks - free0;
      };
      try {
        runBackground(db, () => {});
        const last = db.lastCheckpoint;
        checked = last !== undefined && 'segmentsChecked' in last ? last.segmentsChecked : 0;
      } finally {
        testHooks[hook] = undefined;
      }
      after = media.crashImage({ mode: 'none' }); // what is durable once the checkpoint has ended
    } finally {
      db.close();
    }
    const again = openMedia(after, { formatIfEmpty: false });
    try {
      return { given, freed, checked, loaded: again.recovery!.checkpoint!.loaded, calls };
    } finally {
      again.close();
    }
  }

  it(
    "compaction while a background checkpoint's segments are hashed on their thread: nothing it frees is given back until the checkpoint ends",
    () => {
      const { given, freed, checked, loaded } = compactWhileHashing();
      expect(checked).toBeGreaterThan(0); // segments were read on the thread
      expect(freed).toBeGreaterThan(0);
      expect(given).toBeLessThanOrEqual(0);
      expect(loaded).toBeDefined();
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-hash-unheld: the freed blocks are given back under the read',
    () => {
      const { given, freed } = withBroken('kv-checkpoint-hash-unheld', () => compactWhileHashing());
      expect(freed).toBeGreaterThan(0);
      expect(given).toBeGreaterThan(0);
    },
    WATCHDOG_MS,
  );

  it(
    'compaction while a background checkpoint hops its coverage on ahead of its capture: nothing it frees is given back until the checkpoint ends',
    () => {
      const { given, freed, loaded } = compactWhileHashing('checkpointCoveringAhead');
      expect(freed).toBeGreaterThan(0);
      expect(given).toBeLessThanOrEqual(0);
      expect(loaded).toBeDefined();
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-cover-ahead-unheld: the freed blocks are given back under the hop',
    () => {
      const { given, freed } = withBroken('kv-checkpoint-cover-ahead-unheld', () =>
        compactWhileHashing('checkpointCoveringAhead'),
      );
      expect(freed).toBeGreaterThan(0);
      expect(given).toBeGreaterThan(0);
    },
    WATCHDOG_MS,
  );

  it(
    'compaction between two passes of the hop ahead: nothing it frees is given back until the checkpoint ends',
    () => {
      const { given, freed, loaded, calls } = compactWhileHashing('checkpointCoveringAhead', 2);
      expect(calls).toBeGreaterThanOrEqual(2); // a second pass ran
      expect(freed).toBeGreaterThan(0);
      expect(given).toBeLessThanOrEqual(0);
      expect(loaded).toBeDefined();
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-ahead-pass-gap: the freed blocks are given back between the passes',
    () => {
      const { given, freed, calls } = withBroken('kv-checkpoint-ahead-pass-gap', () =>
        compactWhileHashing('checkpointCoveringAhead', 2),
      );
      expect(calls).toBeGreaterThanOrEqual(2);
      expect(freed).toBeGreaterThan(0);
      expect(given).toBeGreaterThan(0);
    },
    WATCHDOG_MS,
  );
  /**
   * Compaction retires a covered segment that holds no live version after the capture and
   * before the hash thread reads it: retiring marks the segment's head (compaction.ts
   * markRetired), bytes the snapshot does not keep. The read finds that mark where the head's
   * SEAL was; the checkpoint captures again instead of failing. Returns what it ended with.
   */
  function retiredBeforeHash(): { result: ReturnType<KvStore['checkpoint']> | Error; freed: number; loaded?: number } {
    const media = createSimMedia(48 * 2 ** 20);
    const db = openMedia(media, { durability: 'none', checkpoint: false, checkpointEvery: 0 });
    let freed = 0;
    let result: ReturnType<KvStore['checkpoint']> | Error;
    let after: SimMedia | undefined;
    try {
      for (let round = 0; round < 3; round++)
        for (let i = 0; i < 3000; i++) db.put(`key-${i}`, `${round}:${i}:`.padEnd(600, 'v'));
      testHooks.checkpointCaptured = () => {
        testHooks.checkpointCaptured = undefined; // the first capture only
        freed = db.compact({ maxLiveRatio: 0 }).segmentsFreed; // segments of overwritten versions only: nothing moves
      };
      try {
        result = db.checkpoint();
        after = media.crashImage({ mode: 'none' });
      } catch (e) {
        result = e as Error;
      } finally {
        testHooks.checkpointCaptured = undefined;
      }
    } finally {
      db.close();
    }
    if (after === undefined) return { result, freed };
    const again = openMedia(after, { formatIfEmpty: false, checkpoint: false });
    try {
      return { result, freed, loaded: again.recovery!.checkpoint!.loaded };
    } finally {
      again.close();
    }
  }

  it(
    'a covered segment retired by compaction before its read: the checkpoint captures again and is written',
    () => {
      const { result, freed, loaded } = retiredBeforeHash();
      expect(freed).toBeGreaterThan(0);
      expect(result).not.toBeInstanceOf(Error);
      expect(loaded).toBeDefined();
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-retired-unretried: ECORRUPT for a segment nothing damaged',
    () => {
      const { result, freed } = withBroken('kv-checkpoint-retired-unretried', () => retiredBeforeHash());
      expect(freed).toBeGreaterThan(0);
      expect(result).toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/bad magic/) });
    },
    WATCHDOG_MS,
  );

  /**
   * After each capture, a compaction retires the covered segments of the round overwritten
   * before it (nothing moves), then a new round of overwrites makes the last round's segments
   * dead for the next capture's compaction: every capture loses a covered segment before the
   * hash thread reads it. The compactions stop after `rounds` captures (under the switch the
   * checkpoint is then written). Returns the captures and what the checkpoint ended with.
   */
  function compactedEveryCapture(
    background: boolean,
    rounds: number,
  ): { captures: number; result: unknown; last: KvStore['lastCheckpoint'] } {
    const media = createSimMedia(128 * 2 ** 20);
    const db = openMedia(media, { durability: 'none', checkpoint: false, checkpointEvery: 0 });
    let captures = 0;
    let round = 0;
    const overwrite = (): void => {
      for (let i = 0; i < 4000; i++) db.put(`key-${i}`, `${round}:${i}:`.padEnd(600, 'v'));
      round++;
    };
    let result: unknown;
    try {
      overwrite();
      overwrite();
      testHooks.checkpointCaptured = () => {
        if (++captures > rounds) return;
        expect(db.compact({ maxLiveRatio: 0 }).segmentsFreed).toBeGreaterThan(0);
        overwrite();
      };
      try {
        if (!background) result = db.checkpoint();
        else {
          db.startBackgroundCheckpoint();
          while (db.stepBackgroundCheckpoint() && captures <= 4 * rounds);
          result = db.lastCheckpoint;
        }
      } catch (e) {
        result = e;
      } finally {
        testHooks.checkpointCaptured = undefined;
      }
      return { captures, result, last: db.lastCheckpoint };
    } finally {
      db.close();
    }
  }

  it(
    'a compaction after every capture: checkpoint() and the background one give up with EBUSY after CHECKPOINT_CAPTURES',
    () => {
      const fg = compactedEveryCapture(false, 3 * CHECKPOINT_CAPTURES);
      expect(fg.captures).toBe(CHECKPOINT_CAPTURES);
      expect(fg.result).toMatchObject({ code: 'EBUSY', message: expect.stringMatching(/captures/) });
      const bg = compactedEveryCapture(true, 3 * CHECKPOINT_CAPTURES);
      expect(bg.captures).toBe(CHECKPOINT_CAPTURES);
      expect(bg.result).toMatchObject({ code: 'EBUSY' });
      expect(bg.last).toMatchObject({
        code: 'EBUSY',
        error: expect.stringMatching(/background checkpoint: .*captures/),
      });
    },
    WATCHDOG_MS,
  );

  it(
    'goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-recaptures-unbounded: it captures for as long as compaction goes on',
    () => {
      const r = withBroken('kv-checkpoint-recaptures-unbounded', () =>
        compactedEveryCapture(false, 3 * CHECKPOINT_CAPTURES),
      );
      expect(r.captures).toBe(3 * CHECKPOINT_CAPTURES + 1);
      expect(r.result).not.toBeInstanceOf(Error);
      expect(r.result).toMatchObject({ keys: 4000 });
    },
    WATCHDOG_MS,
  );
});
