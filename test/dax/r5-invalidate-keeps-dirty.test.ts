/**
 * R5: invalidate waits for each entry, skips DIRTY/TOWRITE ones (reported busy) and drops
 * only clean mapping state (MAPPED). A dirty page's data must still reach the media at the
 * next writeback. DAXSTORE_TEST_BREAK=dax-invalidate-dirty (dirty pages dropped too) goes red.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { setBroken } from '../../src/test-break.js';
import { blockOfValue, isMapped, pageKey } from '../../src/dax/layout.js';
import { expectBaseline, simSpace } from './helpers.js';

function scenario(): { invalidated: { dropped: number; busy: number }; durable: boolean } {
  const { media, space } = simSpace();
  const obj = space.object(50, { create: true, size: 2 * 4096 });
  obj.fault(1, { write: true })[10] = 1;
  obj.writeback(); // page 1 clean
  const view = obj.fault(0, { write: true });
  view.fill(0x77, 0, 128); // page 0 dirty
  const invalidated = obj.invalidate();
  expect(isMapped(space.tree.entryInfo(pageKey(50, 1))!.value)).toBe(false); // clean page dropped
  obj.writeback();
  const off = space.device.blockOffset(blockOfValue(space.tree.entryInfo(pageKey(50, 0))!.value));
  const durable = media
    .durableBytes()
    .subarray(off, off + 128)
    .every((b) => b === 0x77);
  expect(obj.read(4096 + 10, 1)[0]).toBe(1); // dropped state faults back in
  expectBaseline(space);
  space.close();
  return { invalidated, durable };
}

describe('R5 non-destructive invalidate', () => {
  afterEach(() => setBroken('dax-invalidate-dirty', false));

  it('dirty pages are reported busy and their data survives to writeback', () => {
    expect(scenario()).toEqual({ invalidated: { dropped: 1, busy: 1 }, durable: true });
  });

  it('goes red with DAXSTORE_TEST_BREAK=dax-invalidate-dirty', () => {
    setBroken('dax-invalidate-dirty', true);
    expect(scenario().durable).toBe(false);
  });
});
