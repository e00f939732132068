/**
 * Why compactions run one at a time (compaction.ts, COMPACTION mutex). Segment S holds
 * PUT k (dead: k was deleted later) and nothing live; segment T holds DEL k and live data.
 * The main thread compacts S (maxLiveRatio 0.1: S only); at the moment S's owner changes to
 * staging in memory, before that change is flushed (transfer-owner hook), it lets a worker
 * compact T (maxLiveRatio 0.9) and waits up to WINDOW_MS for it, then takes the durable
 * image. Without the mutex the worker runs inside that window: its tombstone scan no longer
 * lists S, finds no older PUT of k, drops DEL k and retires T durably, while S is still a
 * segment on the media: the image recovers k = v1, a deleted key back. With the mutex the
 * worker waits until the main thread's compaction is over (then S is durably gone, and
 * dropping DEL k is safe). Either way the final store and its durable image have no k and
 * both segments are freed.
 * Red with DAXSTORE_TEST_BREAK=kv-compact-no-mutex (set in both threads) together with
 * kv-compact-no-retired-mark in the main thread: the mark S's head gets before its owner
 * changes makes S read as empty in that image too, a second protection of its own.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { setBroken, testHooks } from '../../src/test-break.js';
import { type CompactionReport } from '../../src/kv/index.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { OWNER_KV_SEGMENT } from '../../src/kv/layout.js';
import { runWorker } from '../helpers/workers.js';
import { putUntilNewSegment } from './fill.js';

const WINDOW_MS = 400;
const value = (n: number): Uint8Array => new Uint8Array(8 * 1024).fill(n & 0xff);

interface Outcome {
  inWindow: boolean;
  kInImage: string | undefined;
  kAfter: string | undefined;
  mainFreed: number;
  workerFreed: number;
}

async function scenario(broken: boolean): Promise<Outcome> {
  const media = createSimMedia(32 * 2 ** 20, { name: 'compaction-mutex' });
  const db = openMedia(media, { durability: 'sync', autoCompact: false });
  const flags = new SharedArrayBuffer(12);
  const f = new Int32Array(flags);
  let image: ReturnType<typeof media.crashImage> | undefined;
  let inWindow = false;
  let worker: Promise<CompactionReport> | undefined;
  try {
    db.put('k', 'v1'); // S: PUT k, then churn that later dies
    putUntilNewSegment(db, (i) => db.put(`churn-${i % 8}`, value(i)));
    db.delete('k'); // T: DEL k, live t-* keys and churn that kills S's last churn values
    putUntilNewSegment(db, (i) => db.put(i % 2 === 0 ? `t-${i}` : `churn-${i % 8}`, value(i)));
    worker = runWorker<CompactionReport>(
      'kv-compactor',
      { handle: db.share(), flags, maxLiveRatio: 0.9 },
      60_000,
      broken ? { DAXSTORE_TEST_BREAK: 'kv-compact-no-mutex' } : undefined,
    );
    while (Atomics.load(f, 2) === 0) await new Promise((r) => setTimeout(r, 2)); // attached: the window is not spent starting it
    testHooks.transferOwnerExchanged = (_block, from) => {
      if (from !== OWNER_KV_SEGMENT || image !== undefined) return;
      Atomics.store(f, 0, 1);
      Atomics.notify(f, 0);
      inWindow = Atomics.wait(f, 1, 0, WINDOW_MS) !== 'timed-out' || Atomics.load(f, 1) === 1;
      image = media.crashImage({ mode: 'none' });
    };
    const mine = db.compact({ maxLiveRatio: 0.1 });
    testHooks.transferOwnerExchanged = undefined;
    const theirs = await worker;
    expect(image, 'the main compaction unpublished a segment').toBeDefined();
    const recovered = openMedia(image!, { formatIfEmpty: false });
    let kInImage: string | undefined;
    try {
      const v = recovered.get('k');
      kInImage = v === undefined ? undefined : Buffer.from(v).toString();
    } finally {
      recovered.close();
    }
    const kAfter = db.get('k');
    return {
      inWindow,
      kInImage,
      kAfter: kAfter === undefined ? undefined : Buffer.from(kAfter).toString(),
      mainFreed: mine.segmentsFreed,
      workerFreed: theirs.segmentsFreed,
    };
  } finally {
    testHooks.transferOwnerExchanged = undefined;
    Atomics.store(f, 0, 1);
    Atomics.notify(f, 0);
    if (worker !== undefined) await worker.catch(() => undefined);
    db.close();
  }
}

describe('kv compactions run one at a time', () => {
  afterEach(() => {
    setBroken('kv-compact-no-mutex', false);
    setBroken('kv-compact-no-retired-mark', false);
  });

  it('a second compaction waits for the first: a tombstone is never dropped while the PUT it shadows can still be recovered', async () => {
    const r = await scenario(false);
    expect(r).toEqual({ inWindow: false, kInImage: undefined, kAfter: undefined, mainFreed: 1, workerFreed: 1 });
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-compact-no-mutex (with kv-compact-no-retired-mark)', async () => {
    setBroken('kv-compact-no-mutex', true);
    setBroken('kv-compact-no-retired-mark', true);
    const r = await scenario(true);
    expect(r.inWindow, 'the worker compacted inside the window').toBe(true);
    expect(r.kInImage, 'the crash image brings deleted k back').toBe('v1');
  });
});
