/**
 * R1: mkwrite and the DIRTY tag are atomic with respect to writeback. Page 0 is clean;
 * worker A write-faults it with a mkwrite hook that stamps the page (the owner's update)
 * and pauses in the window until B is seen waiting on the entry lock (or B returned);
 * worker B runs writeback meanwhile. After both, the stamp must be durable (SimMedia
 * durable image): writeback either ran after the hook and flushed it, or the page is still
 * DIRTY. DAXSTORE_TEST_BREAK=dax-mkwrite-unlocked (dirty tag, unlock, then mkwrite) must
 * go red. The window closes on events, not time (test/workers/dax-race.ts says why): the
 * delayed variants stand in for a descheduled writeback worker, which used to turn the red
 * run green.
 */
import { describe, expect, it } from 'vitest';
import { blockOfValue, pageKey } from '../../src/dax/layout.js';
import { expectBaseline, simSpace } from './helpers.js';
import { runRole } from './race-harness.js';

async function scenario(breakName?: string, delayMs?: number): Promise<{ stampDurable: boolean; dirty: boolean }> {
  const { media, space } = simSpace();
  space.object(41, { create: true, size: 4096 });
  const control = new SharedArrayBuffer(8);
  const extra = delayMs === undefined ? {} : { delayMs };
  const results = await Promise.all([
    runRole(space, control, 'r1-fault', 41, breakName),
    runRole(space, control, 'r1-writeback', 41, breakName, extra),
  ]);
  // The fault closed its window because writeback waited on its entry lock (protocol) or returned (broken).
  expect(results).toEqual([breakName === undefined ? 'blocked' : 'done', 'ok']);
  const info = space.tree.entryInfo(pageKey(41, 0))!;
  const offset = space.device.blockOffset(blockOfValue(info.value));
  const durable = media.durableBytes().subarray(offset, offset + 64);
  const stampDurable = durable.every((b) => b === 0x5a);
  if (breakName === undefined) expectBaseline(space);
  space.close();
  return { stampDurable: stampDurable || info.dirty, dirty: info.dirty };
}

describe('R1 mkwrite vs writeback', () => {
  it('writeback never cleans a page between mkwrite and its dirty tag', async () => {
    const r = await scenario();
    expect(r.stampDurable).toBe(true);
  });

  it('goes red with DAXSTORE_TEST_BREAK=dax-mkwrite-unlocked', async () => {
    const r = await scenario('dax-mkwrite-unlocked');
    expect(r.stampDurable).toBe(false);
  });

  it('a writeback worker that arrives 400 ms late still meets the window (protocol and red run)', async () => {
    expect((await scenario(undefined, 400)).stampDurable).toBe(true);
    expect((await scenario('dax-mkwrite-unlocked', 400)).stampDurable).toBe(false);
  });
});
