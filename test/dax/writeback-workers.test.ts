/**
 * Batched writeback under concurrency: a worker dirties the pages of an object over and over
 * through write faults (store a round stamp, fault again, record the stamp), a second worker
 * runs writeback in a loop, and the main thread runs writeback too. After each of the main
 * thread's writebacks, every page's durable bytes (SimMedia durable image) hold at least the
 * stamp recorded before that writeback started: batches of locked entries, contiguous flushes
 * and one drain lose no page dirtied before the call, and pages dirtied during a writeback
 * are caught by a later one. The pages are 4 KiB entries placed so that some runs are
 * device-contiguous and some are not (another object's pages interleave).
 * Must go red: DAXSTORE_TEST_BREAK=dax-writeback-no-flush (tags cleared, nothing flushed) and
 * dax-writeback-unserialized (the two writebacks overlap: the worker's clears the TOWRITE
 * the main thread's set, and flushes after the main thread returned).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { blockOfValue, pageKey } from '../../src/dax/layout.js';
import { setBroken } from '../../src/test-break.js';
import { ROLE_BASE } from '../workers/dax-churn-layout.js';
import { expectBaseline, simSpace } from './helpers.js';
import { startChurn } from './churn-harness.js';
import { replayHint, testSeed } from '../helpers/seed.js';

const PAGES = 200; // > 3 batches of 64
const FILE = 'test/dax/writeback-workers.test.ts';

type Switch = 'dax-writeback-no-flush' | 'dax-writeback-unserialized';

async function scenario(seed: number, breakName?: Switch): Promise<{ stale: string[]; checks: number }> {
  const { media, space } = simSpace();
  const obj = space.object(52, { create: true, size: PAGES * 4096 });
  const other = space.object(53, { create: true, size: PAGES * 4096 });
  for (let p = 0; p < PAGES; p++) {
    obj.fault(p, { write: true });
    if (p % 7 === 3) other.fault(p, { write: true }); // breaks the device-contiguous runs now and then
  }
  obj.writeback();
  if (breakName !== undefined) setBroken(breakName, true);
  const churn = startChurn(
    space,
    PAGES,
    seed,
    [
      { role: 'wb-writer', objectId: 52 },
      { role: 'wb-writeback', objectId: 52 },
    ],
    breakName,
  );
  await churn.ready();
  const stamps = new Int32Array(churn.control.buffer, 4 * ROLE_BASE, PAGES);
  const offsets = Array.from({ length: PAGES }, (_, p) =>
    space.device.blockOffset(blockOfValue(space.tree.entryInfo(pageKey(52, p))!.value)),
  );
  const durable = new DataView(media.durableBytes().buffer, media.durableBytes().byteOffset);
  const stale: string[] = [];
  let checks = 0;
  // At least 700 ms and 12 checks: on a loaded machine the workers may get little CPU in 700 ms
  // alone, so the window stretches (up to 20 s) until the race has really been run.
  const start = Date.now();
  const running = (): boolean => Date.now() - start < 700 || (checks < 12 && Date.now() - start < 20_000);
  while (running() && stale.length < 10) {
    const before = Int32Array.from(stamps);
    obj.writeback();
    checks++;
    for (let p = 0; p < PAGES && stale.length < 10; p++) {
      const got = durable.getInt32(offsets[p], true);
      if (got < before[p]) stale.push(`page ${p}: durable stamp ${got} < ${before[p]} recorded before the writeback`);
    }
    await new Promise((r) => setImmediate(r));
  }
  const [writer, writebacker] = await churn.stop();
  for (const x of [writer, writebacker]) expect(x, replayHint(seed, FILE)).not.toHaveProperty('error');
  if (breakName === undefined) {
    expect((writer as { rounds: number }).rounds).toBeGreaterThan(2);
    expect((writebacker as { calls: number }).calls).toBeGreaterThan(2);
    expectBaseline(space);
  }
  if (breakName !== undefined) setBroken(breakName, false);
  space.close();
  if (process.env['DAX_DEBUG'] !== undefined)
    console.log(JSON.stringify({ breakName, stale: stale.length, checks, writer, writebacker }));
  return { stale, checks };
}

describe('batched writeback vs dirtying workers and a second writeback', () => {
  afterEach(() => {
    setBroken('dax-writeback-no-flush', false);
    setBroken('dax-writeback-unserialized', false);
  });

  it('every page dirtied before a writeback is durable when it returns', async () => {
    const seed = testSeed();
    const r = await scenario(seed);
    expect(r.stale, replayHint(seed, FILE)).toEqual([]);
    expect(r.checks).toBeGreaterThan(5);
  });

  for (const name of ['dax-writeback-no-flush', 'dax-writeback-unserialized'] as const) {
    it(`goes red with DAXSTORE_TEST_BREAK=${name}`, async () => {
      // Timed window: under load the two workers may barely overlap in one run. Up to eight runs.
      const seed = testSeed();
      let stale = 0;
      for (let run = 0; run < 8 && stale === 0; run++) stale = (await scenario(seed + run, name)).stale.length;
      expect(stale, `no stale page in 8 runs: ${replayHint(seed, FILE)}`).toBeGreaterThan(0);
    });
  }
});
