/**
 * Compaction while ANOTHER writer has records that are not durable yet ('group'/'none', issue
 * 5). Two handles on one store in one thread (attach(db.share())) stand in for two threads,
 * which makes the interleaving deterministic: `db` makes segment S durable and closed, holding
 * entries that the other handle `w2` then supersedes with records it has NOT committed (a PUT
 * over a durable PUT, a PUT over a durable DEL whose older PUT sits in a segment that stays,
 * a DEL of a durable PUT), and `db` compacts S. Dropping those dead entries is correct only if
 * the records that supersede them are durable when S is retired (rule in compaction.ts). Every
 * crash image taken at each fence of the compaction and after it must recover a prefix of the
 * history from the last acknowledged point: without the rule a durable value is lost, a
 * deleted value comes back, or a DEL of w2 survives without w2's earlier PUT.
 * The same with a real worker thread (test/workers/kv-uncommitted-writer.ts) parked in
 * Atomics.wait with its records uncommitted: the durable image after the main thread's
 * compaction must hold all of them (the progress words and the cache flush work across threads).
 * Red with DAXSTORE_TEST_BREAK=kv-compact-skip-open-flush (every scenario, and the worker), and with
 * kv-compact-open-flush-unfenced when S has nothing live (no copy of ours brings a fence before
 * the owner change; crash images at that fence show it). A writer that keeps writing while
 * compaction flushes: kv-compaction-running-writer. Not covered: real power loss.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { attach, type Durability, type KvStore } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { setBroken } from '../../src/test-break.js';
import { LARGE_VALUE_THRESHOLD_BYTES } from '../../src/kv/layout.js';
import { runWorker } from '../helpers/workers.js';
import { putUntilNewSegment } from './fill.js';

const big = (tag: number): Uint8Array => new Uint8Array(LARGE_VALUE_THRESHOLD_BYTES).fill(tag);
const listing = (db: KvStore): string =>
  [...db.range()].map(([k, v]) => `${Buffer.from(k).toString()}=${v.length}:${v[0]}`).join(',');

let churn = 0;
/** Overwrites churn keys (dead soon after) until `db` opens a new segment: the one before is closed and committed. */
function closeSegment(db: KvStore): void {
  putUntilNewSegment(db, () => db.put(`churn-${churn++ % 10}`, big(churn & 0xff)));
}

interface Scenario {
  durability: Durability;
  /** S keeps a few live entries (compaction copies them, so its own commit fences) or none (nothing of ours to commit) */
  liveInS: boolean;
  /** w2 filled and left a first segment before (its open segment is its second; its durable point is mid-segment) */
  w2Switched: boolean;
}

/** Runs the scenario; returns how many crash images were checked. Throws naming the first image that recovered no allowed state. */
function compactBesideUncommittedWriter({ durability, liveInS, w2Switched }: Scenario): number {
  const media = createSimMedia(24 * 2 ** 20, { name: `open-writers-${durability}` });
  const db = openMedia(media, { durability });
  const w2 = attach(db.share());
  let images = 0;
  try {
    db.put('k-del', 'v0'); // segment A: stays (almost all live), so v0 is still on the media after S goes
    for (let i = 0; i < 120; i++) db.put(`stay-${i}`, big(i));
    closeSegment(db);
    db.delete('k-del'); // segment S: these three are dead once w2 supersedes them
    db.put('k-put', 'v1');
    db.put('k-gone', 'g1');
    closeSegment(db); // S: mostly dead churn, compacted below
    if (!liveInS) for (let i = 0; i < 10; i++) db.put(`churn-${i}`, 'later'); // S's last churn values die too
    for (let i = 0; i < (w2Switched ? 130 : 3); i++) w2.put(`w2-${i}`, big(i)); // live: w2's segments are never compacted here
    void db.flushed(); // all of the above acknowledged durable
    void w2.flushed();
    const states = [listing(db)];
    w2.put('marker', 'm'); // w2's records: not durable ('group': its timer cannot fire, we never yield)
    states.push(listing(db));
    w2.put('k-put', 'v2');
    states.push(listing(db));
    w2.put('k-del', 'r2');
    states.push(listing(db));
    w2.delete('k-gone');
    states.push(listing(db));
    const check = (image: ReturnType<typeof media.crashImage>, what: string): void => {
      const again = openMedia(image, { formatIfEmpty: false });
      try {
        const got = listing(again);
        const at = states.indexOf(got);
        if (at < 0) {
          const keys = ['k-put', 'k-del', 'k-gone', 'marker'].map(
            (k) => `${k}=${again.get(k) === undefined ? 'absent' : Buffer.from(again.get(k)!).toString()}`,
          );
          throw new Error(`${durability}: ${what} recovered no prefix of the history: ${keys.join(' ')}`);
        }
        expect(again.dax.device.audit()).toEqual([]);
      } finally {
        again.close();
        image.dispose();
      }
      images++;
    };
    const dataWord = db.dax.device.dataOffset / 8;
    const unhook = media.onFence(() => {
      for (const probability of [0, 0.2, 0.4, 0.6, 0.8, 1])
        check(
          media.crashImage({ mode: 'random', seed: Math.imul(images + 1, 0x9e3779b1) >>> 0, probability }),
          `crash image ${images} at a compaction fence (p=${probability})`,
        );
      // Flushes before one fence reach the media in any order: the owner table's pending words (S
      // unpublished) may land while the data lines flushed just before (w2's records) do not.
      const metadata = media.pendingWords().filter((w) => w < dataWord);
      check(
        media.crashImage({ words: metadata }),
        `crash image ${images} at a compaction fence (pending metadata words only)`,
      );
    });
    try {
      const report = db.compact();
      expect(report.segmentsFreed).toBeGreaterThanOrEqual(1); // S went
      if (liveInS) expect(report.entriesMoved).toBeGreaterThan(0);
      else expect(report.entriesMoved).toBe(0); // the only fence is the one the flush of w2's lines asks for
      db.dax.collect();
    } finally {
      unhook();
    }
    check(media.crashImage({ mode: 'none' }), 'the durable image after compaction');
    for (const probability of [0.3, 0.7])
      check(
        media.crashImage({ mode: 'random', seed: Math.imul(images + 1, 0x9e3779b1) >>> 0, probability }),
        `crash image ${images} after compaction (p=${probability})`,
      );
  } finally {
    db.close(); // the opener first: both handles share this thread's epoch participant, which the attached handle's close ends
    w2.close();
  }
  return images;
}

describe('kv compaction beside a writer whose records are not durable yet', () => {
  const scenarios: Scenario[] = [
    { durability: 'group', liveInS: true, w2Switched: false },
    { durability: 'group', liveInS: false, w2Switched: true },
    { durability: 'none', liveInS: true, w2Switched: true },
  ];
  for (const sc of scenarios) {
    it(`${sc.durability}${sc.liveInS ? '' : ', nothing live in S'}${sc.w2Switched ? ', w2 in its second segment' : ''}: a segment whose dead entries another writer superseded is retired only once those records are durable`, () => {
      expect(compactBesideUncommittedWriter(sc)).toBeGreaterThan(sc.liveInS ? 3 : 2);
    });
  }

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-skip-open-flush', () => {
    setBroken('kv-compact-skip-open-flush', true);
    try {
      for (const sc of scenarios) expect(() => compactBesideUncommittedWriter(sc)).toThrow(/recovered no prefix/);
    } finally {
      setBroken('kv-compact-skip-open-flush', false);
    }
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-open-flush-unfenced (nothing of its own to commit: no fence of its own)', () => {
    setBroken('kv-compact-open-flush-unfenced', true);
    try {
      expect(() => compactBesideUncommittedWriter(scenarios[1])).toThrow(/at a compaction fence .*recovered no prefix/);
    } finally {
      setBroken('kv-compact-open-flush-unfenced', false);
    }
  });
});

/** Main thread: S holds durable k-<i> = v1; a worker overwrites them all, uncommitted; main compacts S and checks the durable image. */
async function compactBesideParkedWorker(): Promise<void> {
  const keys = 40;
  const media = createSimMedia(24 * 2 ** 20, { name: 'open-writers-worker' });
  const db = openMedia(media, { durability: 'group' });
  const flags = new SharedArrayBuffer(8);
  const f = new Int32Array(flags);
  let worker: Promise<number> | undefined;
  try {
    for (let i = 0; i < keys; i++) db.put(`k-${i}`, 'v1');
    closeSegment(db);
    void db.flushed();
    worker = runWorker<number>('kv-uncommitted-writer', { handle: db.share(), flags, keys });
    while (Atomics.load(f, 0) === 0) await new Promise((r) => setTimeout(r, 2));
    const report = db.compact();
    expect(report.segmentsFreed).toBeGreaterThanOrEqual(1);
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    try {
      const lost = [...Array(keys).keys()].filter((i) => again.get(`k-${i}`) === undefined).map((i) => `k-${i}`);
      expect(lost, 'keys whose durable v1 and uncommitted v2 were both lost').toEqual([]);
      for (let i = 0; i < keys; i++) expect(Buffer.from(again.get(`k-${i}`)!).toString()).toBe(`v2-${i}`); // every record published before the compaction is durable after it
      expect(again.dax.device.audit()).toEqual([]);
    } finally {
      again.close();
    }
  } finally {
    Atomics.store(f, 1, 1);
    Atomics.notify(f, 1);
    if (worker !== undefined) expect(await worker).toBe(keys);
    db.close();
  }
}

describe('kv compaction beside a worker thread whose records are not durable yet', () => {
  it(
    'group: the durable image after compaction holds every record the worker published before it',
    compactBesideParkedWorker,
  );

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-skip-open-flush', async () => {
    setBroken('kv-compact-skip-open-flush', true);
    try {
      await expect(compactBesideParkedWorker()).rejects.toThrow(/durable v1 and uncommitted v2 were both lost/);
    } finally {
      setBroken('kv-compact-skip-open-flush', false);
    }
  });
});
