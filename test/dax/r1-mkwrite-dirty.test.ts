/**
 * R1: mkwrite and the DIRTY tag are atomic with respect to writeback. Page 0 is clean;
 * worker A write-faults it with a mkwrite hook that stamps the page (the owner's update)
 * and pauses in the window; worker B runs writeback meanwhile. After both, the stamp must
 * be durable (SimMedia durable image): writeback either ran after the hook and flushed it,
 * or the page is still DIRTY. DAXSTORE_TEST_BREAK=dax-mkwrite-unlocked (dirty tag, unlock,
 * then mkwrite) must go red.
 */
import { describe, expect, it } from 'vitest';
import { blockOfValue, pageKey } from '../../src/dax/layout.js';
import { expectBaseline, simSpace } from './helpers.js';
import { runRole } from './race-harness.js';

async function scenario(breakName?: string): Promise<{ stampDurable: boolean; dirty: boolean }> {
  const { media, space } = simSpace();
  space.object(41, { create: true, size: 4096 });
  const control = new SharedArrayBuffer(8);
  const results = await Promise.all([runRole(space, control, 'r1-fault', 41, breakName), runRole(space, control, 'r1-writeback', 41, breakName)]);
  expect(results).toEqual(['ok', 'ok']);
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
});
