/**
 * R5 with real workers: a worker dirties every page of an object over and over through
 * write faults, stamping each page with its round (and recording the stamp once written);
 * another worker and the main thread invalidate the whole object meanwhile. After the
 * writer stops and one last invalidate, writeback must make every page's latest stamp
 * durable (SimMedia durable image): invalidate skipped the dirty pages and reported them
 * busy instead of dropping their dirty state.
 * DAXSTORE_TEST_BREAK=dax-invalidate-dirty (invalidate drops DIRTY/TOWRITE too) must go
 * red: the writeback after it skips pages whose stamps never reach the media.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { blockOfValue, pageKey } from '../../src/dax/layout.js';
import { setBroken } from '../../src/test-break.js';
import { ROLE_BASE } from '../workers/dax-churn-layout.js';
import { expectBaseline, simSpace } from './helpers.js';
import { startChurn } from './churn-harness.js';
import { replayHint, testSeed } from '../helpers/seed.js';

const PAGES = 16;
const FILE = 'test/dax/r5-invalidate-workers.test.ts';

async function scenario(
  seed: number,
  breakName?: 'dax-invalidate-dirty',
): Promise<{ lost: number[]; busy: number; invalidates: number }> {
  const { media, space } = simSpace();
  const obj = space.object(51, { create: true, size: PAGES * 4096 });
  if (breakName !== undefined) setBroken(breakName, true);
  const churn = startChurn(
    space,
    PAGES,
    seed,
    [
      { role: 'r5-writer', objectId: 51 },
      { role: 'r5-invalidate', objectId: 51 },
    ],
    breakName,
  );
  await churn.ready();
  let busy = 0;
  let invalidates = 0;
  for (const until = Date.now() + 600; Date.now() < until;) {
    busy += obj.invalidate().busy;
    invalidates++;
    await new Promise((r) => setImmediate(r));
  }
  const [writer, invalidator] = await churn.stop();
  for (const x of [writer, invalidator]) expect(x, replayHint(seed, FILE)).not.toHaveProperty('error');
  expect((writer as { rounds: number }).rounds).toBeGreaterThan(2);
  busy += obj.invalidate().busy + (invalidator as { busy: number }).busy;
  obj.writeback();
  const stamps = new Int32Array(churn.control.buffer, 4 * ROLE_BASE, PAGES);
  const durable = new DataView(media.durableBytes().buffer);
  const lost: number[] = [];
  for (let p = 0; p < PAGES; p++) {
    const offset = space.device.blockOffset(blockOfValue(space.tree.entryInfo(pageKey(51, p))!.value));
    if (durable.getInt32(media.durableBytes().byteOffset + offset, true) !== stamps[p]) lost.push(p);
  }
  if (breakName === undefined) expectBaseline(space);
  space.close();
  if (process.env['DAX_DEBUG'] !== undefined)
    console.log(JSON.stringify({ breakName, lost, busy, invalidates, writer, invalidator }));
  return { lost, busy, invalidates };
}

describe('R5 invalidate vs dirtying workers', () => {
  afterEach(() => setBroken('dax-invalidate-dirty', false));

  it('pages dirtied by a worker survive concurrent invalidates to writeback', async () => {
    const seed = testSeed();
    const r = await scenario(seed);
    expect(r.lost, replayHint(seed, FILE)).toEqual([]);
    expect(r.busy).toBeGreaterThan(0);
  });

  it('goes red with DAXSTORE_TEST_BREAK=dax-invalidate-dirty', async () => {
    const seed = testSeed();
    const r = await scenario(seed, 'dax-invalidate-dirty');
    expect(r.lost.length, replayHint(seed, FILE)).toBeGreaterThan(0);
  });
});
