/**
 * Index checkpoints taken while the store runs (checkpoint(), and the opener's background ones
 * every checkpointEvery bytes of log): src/kv/checkpoint.ts coverRunning/walkStep, store.ts
 * checkpointSteps.
 *
 * 1. One thread: random workloads ('sync', 'group', 'none'), checkpoint() at random points, then
 *    a crash (SimMedia's crash image: only what was made durable, and random pending words):
 *    the open that loads the last checkpoint and replays the log after it equals
 *    `recovery: 'full'` of the same image (every key and value, keys, sequence, segments, free
 *    blocks, the log's records and entries).
 * 2. Worker threads write ('none': their records are durable only when a segment fills or
 *    someone flushes them) while a worker compacts and the main thread takes checkpoints, by
 *    checkpoint() and in the background, and one writer takes them too (its own handle's
 *    checkpoint(), beside the main thread's); crash images taken after each checkpoint, inside its
 *    writing (testHooks.checkpointWrite) and at random moments, each opened both ways: equal.
 *    Red with kv-checkpoint-uncovered (the checkpoint names each key's newest entry, not its
 *    version at the snapshot: records its coverage does not hold), which the threads' timing
 *    must expose: up to four runs.
 * 3. The same without threads or timing: puts and deletes between the checkpoint's snapshot and
 *    its walk (testHooks.checkpointCaptured, where a background checkpoint yields), not durable
 *    at the crash. Red with kv-checkpoint-uncovered on every seed.
 * 4. Options: checkpointEvery is checked strictly; checkpoint() inside read() is EBUSY. Its
 *    default scales with the store: 64 MiB of log, or twice the size of a checkpoint of the
 *    store as it is, whichever is more; an explicit value is kept whatever the store's size.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { openMedia as openKv } from '../../src/kv/index.js';
import type { OpenMediaOptions } from '../../src/kv/store.js';
import { removeCheckpoint } from '../../src/kv/checkpoint.js';
import { setBroken, testHooks } from '../../src/test-break.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { runWorker } from '../helpers/workers.js';

const FILE = 'test/kv/kv-checkpoint-running.test.ts';

function openMedia(media: SimMedia, opts: OpenMediaOptions = {}) {
  return openKv(media, { checkpoint: false, ...opts, keyEncoding: 'utf8', valueEncoding: 'utf8' });
}
type KvStore = ReturnType<typeof openMedia>;
type Model = Map<string, string>;
const WATCHDOG_MS = 150_000;
/** Runs of the red case before it must have found a problem (see the test). */
const RED_ATTEMPTS = 4;
const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Every key and value, by range(). A key met twice is an error: an index that a bad checkpoint
 * left out of order can make the scan come round again and again (the red case below), which
 * must be a problem found, not a test that never ends.
 */
function dump(db: KvStore): Model {
  const m: Model = new Map();
  for (const [k, v] of db.range()) {
    if (m.has(k)) throw new Error(`range() returned key ${k} twice: the index is out of order`);
    m.set(k, v);
  }
  return m;
}

interface State {
  content: Model;
  keys: number;
  sequence: number;
  segments: number;
  freeBlocks: number;
  records: number;
  entries: number;
  objects: string;
}

function state(db: KvStore): State {
  const s = db.stats();
  return {
    content: dump(db),
    keys: s.keys,
    sequence: s.sequence,
    segments: s.segments,
    // Blocks of a removed object wait in the epoch's limbo until it advances (truncate.ts
    // retireBlock): the torn checkpoints removed at open, or after it, are free blocks either way.
    freeBlocks: s.freeBlocks + db.dax.stats().limboBlocks,
    records: db.recovery!.records,
    entries: db.recovery!.entries,
    objects: db.dax.objects
      .liveIds()
      .map((id) => `${id}:${db.dax.object(id).size}`)
      .sort()
      .join(' '),
  };
}

/** The first difference between two states, undefined when equal. */
function difference(a: State, b: State): string | undefined {
  for (const [k, v] of b.content)
    if (a.content.get(k) !== v)
      return `key ${k}: checkpoint ${a.content.get(k)?.slice(0, 24)}, full scan ${v.slice(0, 24)}`;
  for (const [k, v] of a.content)
    if (!b.content.has(k)) return `key ${k}: checkpoint ${v.slice(0, 24)}, full scan absent`;
  for (const k of ['keys', 'sequence', 'segments', 'freeBlocks', 'records', 'entries'] as const)
    if (a[k] !== b[k]) return `${k}: checkpoint ${a[k]}, full scan ${b[k]} (objects ${a.objects} / ${b.objects})`;
  return undefined;
}

/**
 * Opens the image with the checkpoint and with recovery: 'full' (each on its own copy): the
 * difference (or the open's error), and which checkpoint was loaded.
 */
function compareOpens(image: SimMedia): { problem: string | undefined; loaded: number | undefined; tail: number } {
  const copy = image.crashImage({ mode: 'none' });
  let db: KvStore;
  try {
    db = openMedia(image, { formatIfEmpty: false, checkpointEvery: 0 });
  } catch (e) {
    copy.dispose();
    image.dispose();
    return { problem: `open with the checkpoint: ${(e as Error).message}`, loaded: undefined, tail: 0 };
  }
  try {
    const use = db.recovery!.checkpoint!;
    const full = openMedia(copy, { formatIfEmpty: false, recovery: 'full', checkpointEvery: 0 });
    let want: State;
    try {
      // the checkpoints the other open found torn or stale and removed ('full' reads none): gone here too
      for (const id of use.remove) removeCheckpoint(full.dax, id);
      want = state(full);
    } finally {
      full.close();
      copy.dispose();
    }
    let problem: string | undefined;
    try {
      const got = state(db);
      // Removing a torn or stale checkpoint at open (the open with one does, 'full' does not:
      // removed here after its open) can leave an object-table page allocated on one side and
      // not the other: free blocks are compared exactly only when nothing was removed.
      if (use.remove.length > 0 && Math.abs(got.freeBlocks - want.freeBlocks) <= 1) got.freeBlocks = want.freeBlocks;
      problem = difference(got, want);
    } catch (e) {
      problem = `reading the store opened with the checkpoint: ${(e as Error).message}`;
    }
    return { problem, loaded: use.loaded, tail: use.tailEntries };
  } finally {
    db.close();
    image.dispose();
  }
}

/** Random writes, now and then a compaction or a checkpoint(). */
function workload(db: KvStore, r: () => number, ops: number, keySpace: number): number {
  let checkpoints = 0;
  for (let i = 0; i < ops; i++) {
    const key = `k${Math.floor(r() * keySpace)}`;
    const x = r();
    if (x < 0.55)
      db.put(
        key,
        r() < 0.01 ? 'L'.repeat(17000 + Math.floor(r() * 3000)) + i : `v${i}-${'x'.repeat(Math.floor(r() * 60))}`,
      );
    else if (x < 0.75) db.delete(key);
    else if (x < 0.99)
      db.batch(
        Array.from({ length: 1 + Math.floor(r() * 4) }, (_, j) =>
          r() < 0.8
            ? { type: 'put' as const, key: `${key}.${j}`, value: `b${i}.${j}` }
            : { type: 'del' as const, key: `${key}.${j}` },
        ),
      );
    else if (x < 0.993) db.compact({ maxLiveRatio: 0.6 });
    else {
      db.checkpoint();
      checkpoints++;
    }
  }
  return checkpoints;
}

describe('index checkpoints taken while running', () => {
  it('checkpoint() at random points, then a crash: the open with it equals a full scan (random workloads)', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      let loads = 0;
      let tails = 0;
      const rounds = scaled(6);
      for (let round = 0; round < rounds; round++) {
        const durability = (['sync', 'group', 'none'] as const)[round % 3];
        const media = createSimMedia(24 * 2 ** 20, { name: `ckpt-run-${round}` });
        const db = openMedia(media, { durability, checkpointEvery: 0 });
        try {
          let taken = 0;
          for (let cycle = 0; cycle < 3; cycle++) {
            taken += workload(db, r, 300 + Math.floor(r() * 600), 200 + Math.floor(r() * 1200));
            if (r() < 0.7) {
              db.checkpoint();
              taken++;
            }
          }
          if (taken === 0) db.checkpoint();
          workload(db, () => r() * 0.99, 100 + Math.floor(r() * 300), 800); // a tail after the last one
          const image = media.crashImage({ mode: 'random', seed: (r() * 2 ** 32) >>> 0, probability: r() });
          const got = compareOpens(image);
          expect(got.problem, `round ${round} (${durability})`).toBeUndefined();
          if (got.loaded !== undefined) loads++;
          if (got.loaded !== undefined && got.tail > 0) tails++;
        } finally {
          db.close();
          media.dispose();
        }
      }
      expect(loads, 'opens that loaded a checkpoint taken while running').toBeGreaterThan(rounds / 3);
      expect(tails).toBeGreaterThan(0);
    });
  });

  /**
   * Two writer workers and a compacting worker on a 'none' store; the main thread takes
   * checkpoints (checkpoint(), and in the background every 2 MiB of log) and crash images.
   */
  async function runningScenario(
    seed: number,
    wantImages: number,
  ): Promise<{
    images: number;
    loads: number;
    problems: string[];
    checkpoints: number;
    compactions: number;
    reclaimedBytes: number;
    ops: Array<number | number[]>;
  }> {
    const r = rng(seed);
    const media = createSimMedia(32 * 2 ** 20, { name: 'ckpt-running' });
    const db = openMedia(media, { durability: 'none', checkpointEvery: 2 * 2 ** 20 });
    const flags = new Int32Array(new SharedArrayBuffer(16));
    const problems: string[] = [];
    let images = 0;
    let loads = 0;
    let checkpoints = 0;
    const check = (image: SimMedia, what: string): void => {
      const got = compareOpens(image);
      images++;
      if (got.loaded !== undefined) loads++;
      if (got.problem !== undefined) problems.push(`${what}: ${got.problem}`);
    };
    let st: ReturnType<KvStore['stats']> | undefined;
    const workers = [0, 1, 2].map((index) =>
      runWorker<number | number[]>(
        'kv-ckpt-writer',
        {
          handle: db.share(),
          flags: flags.buffer,
          index,
          seed: seed + index * 7919,
          keySpace: 3000,
          burst: 20,
          compact: index === 2,
          checkpointOps: index === 1 ? 4000 : undefined,
        },
        WATCHDOG_MS + 60_000,
      ),
    );
    try {
      while (Atomics.load(flags, 1) < 200 || Atomics.load(flags, 2) < 200) await wait(5);
      // a watchdog: a hang or a crawl is a failure with a message, not a suite timeout
      const deadline = performance.now() + WATCHDOG_MS;
      while ((images < wantImages || db.stats().reclaimedBytes === 0) && problems.length < 3) {
        if (performance.now() > deadline)
          throw new Error(`${images} of ${wantImages} crash images in ${WATCHDOG_MS} ms`);
        const x = r();
        if (x < 0.4) {
          // inside checkpoint writing: after its object is created, after its body is durable
          const inside: Array<[string, SimMedia]> = [];
          testHooks.checkpointWrite = (stage) => {
            if (r() < 0.5)
              inside.push([stage, media.crashImage({ mode: 'random', seed: (r() * 2 ** 32) >>> 0, probability: r() })]);
          };
          try {
            db.checkpoint();
            checkpoints++;
          } finally {
            testHooks.checkpointWrite = undefined;
          }
          for (const [stage, image] of inside) check(image, `a crash inside checkpoint writing (${stage})`);
          // right after it, the workers still writing
          check(
            media.crashImage({ mode: 'random', seed: (r() * 2 ** 32) >>> 0, probability: r() }),
            'a crash after checkpoint()',
          );
        } else if (x < 0.7) {
          // background checkpoints run while this thread waits
          await wait(20 + Math.floor(r() * 60));
          check(
            media.crashImage({ mode: 'random', seed: (r() * 2 ** 32) >>> 0, probability: r() }),
            'a crash while running (background)',
          );
        } else await wait(10);
      }
    } finally {
      Atomics.store(flags, 0, 1);
      await Promise.allSettled(workers);
      st = db.stats();
      db.close();
    }
    const ops = await Promise.all(workers);
    media.dispose();
    return {
      images,
      loads,
      problems,
      checkpoints: db.checkpointsTaken,
      compactions: st!.compactionRuns,
      reclaimedBytes: st!.reclaimedBytes,
      ops,
    };
  }

  it('writer workers, a compacting worker, checkpoints in the background and by checkpoint(), crashes: every open equals a full scan', async () => {
    await withSeed(FILE, async (seed) => {
      const got = await runningScenario(seed, scaled(10));
      if (process.env['DAX_DEBUG'] !== undefined)
        console.log(JSON.stringify({ ...got, problems: got.problems.slice(0, 3) }));
      expect(got.problems).toEqual([]);
      expect(got.images).toBeGreaterThan(5);
      expect(got.loads, JSON.stringify(got)).toBeGreaterThan(got.images / 2);
      expect(got.checkpoints).toBeGreaterThan(2);
      expect(got.reclaimedBytes, 'compaction freed segments while checkpoints were taken').toBeGreaterThan(0);
    });
  }, 300_000);

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-uncovered', async () => {
    await withSeed(FILE, async (seed) => {
      setBroken('kv-checkpoint-uncovered', true);
      try {
        // The broken checkpoint is caught only when a crash image falls where it names records its
        // coverage does not hold, which depends on how the threads interleave: one run in about
        // eight found nothing. Up to RED_ATTEMPTS runs (seeds derived from this one), the first
        // that finds a problem ending it; the protocol on, no run may find one (the test above).
        let got = await runningScenario(seed, 10);
        for (let attempt = 1; attempt < RED_ATTEMPTS && got.problems.length === 0; attempt++)
          got = await runningScenario((seed + attempt * 7919) >>> 0, 10);
        if (process.env['DAX_DEBUG'] !== undefined) console.log(JSON.stringify(got.problems.slice(0, 3)));
        expect(got.problems.length, JSON.stringify({ ...got, problems: got.problems.slice(0, 3) })).toBeGreaterThan(0);
      } finally {
        setBroken('kv-checkpoint-uncovered', false);
      }
    });
  }, 300_000);

  /**
   * The same protocol without threads or timing: writes land between the checkpoint's snapshot
   * and its walk (the point a background checkpoint yields at), and are not durable when the
   * crash comes. The checkpoint must name each key's version at its snapshot; one that names
   * the newer entries points past what it covers, at records the crash lost.
   */
  function writesAfterCapture(seed: number): string | undefined {
    const r = rng(seed);
    const media = createSimMedia(24 * 2 ** 20, { name: 'ckpt-captured' });
    const db = openMedia(media, { durability: 'none', checkpointEvery: 0 });
    try {
      const keys = 50 + Math.floor(r() * 200);
      for (let i = 0; i < keys; i++) db.put(`k${i}`, `old${i}-${'x'.repeat(Math.floor(r() * 40))}`);
      testHooks.checkpointCaptured = () => {
        for (let i = 0; i < keys; i++)
          if (r() < 0.5) db.put(`k${i}`, `new${i}`);
          else if (r() < 0.2) db.delete(`k${i}`);
      };
      try {
        db.checkpoint();
      } finally {
        testHooks.checkpointCaptured = undefined;
      }
      return compareOpens(media.crashImage({ mode: 'none' })).problem;
    } finally {
      db.close();
      media.dispose();
    }
  }

  it("writes between a checkpoint's snapshot and its walk, lost in a crash: the open equals a full scan; red with kv-checkpoint-uncovered", async () => {
    await withSeed(FILE, (seed) => {
      for (let round = 0; round < scaled(4); round++)
        expect(writesAfterCapture(seed + round), `round ${round}`).toBeUndefined();
      setBroken('kv-checkpoint-uncovered', true);
      try {
        const problem = writesAfterCapture(seed);
        if (process.env['DAX_DEBUG'] !== undefined) console.log(problem);
        expect(problem).toBeDefined();
      } finally {
        setBroken('kv-checkpoint-uncovered', false);
      }
    });
  });

  it('checkpointEvery is checked; checkpoint() inside read() is EBUSY; a closed store ECLOSED', () => {
    const media = createSimMedia(24 * 2 ** 20);
    for (const bad of [-1, 1.5, '64MiB', null])
      expect(() => openMedia(media, { checkpointEvery: bad as never })).toThrow(/checkpointEvery/);
    expect(() => openMedia(media, { checkpointEvry: 1 } as never)).toThrow(/checkpointEvry/);
    const db = openMedia(media, { checkpointEvery: 0 });
    db.put('a', 'b');
    expect(() => db.read(() => db.checkpoint())).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(db.checkpoint()).toMatchObject({ keys: 1 });
    db.close();
    expect(() => db.checkpoint()).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
    media.dispose();
  });

  it("checkpointEvery's default is 64 MiB or twice a checkpoint's size, whichever is more; an explicit value stays", () => {
    const media = createSimMedia(192 * 2 ** 20);
    const segment = 2 * 2 ** 20;
    const big = openMedia(media, { durability: 'none', checkpoint: false });
    try {
      expect(big.checkpointDueSegments()).toBe(32); // an empty store: the 64 MiB floor
      // 40,000 keys of 1,000 bytes: a checkpoint (mostly its tree image) of about 45 MB
      for (let i = 0; i < 40_000; i++) big.put(`${i}:`.padEnd(1000, 'k'), 'v');
      const written = big.checkpoint();
      expect(written.bytes).toBeGreaterThan(32 * 2 ** 20);
      const due = big.checkpointDueSegments() * segment;
      expect(due).toBeGreaterThanOrEqual(2 * written.bytes * 0.9);
      expect(due).toBeLessThanOrEqual(2 * written.bytes * 1.1 + segment);
    } finally {
      big.close();
      media.dispose();
    }
    for (const every of [2 * 2 ** 20, 64 * 2 ** 20]) {
      const small = createSimMedia(24 * 2 ** 20);
      const db = openMedia(small, { durability: 'none', checkpoint: false, checkpointEvery: every });
      try {
        expect(db.checkpointDueSegments()).toBe(every / segment);
      } finally {
        db.close();
        small.dispose();
      }
    }
  });
});
