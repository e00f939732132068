/**
 * R4: a write whose source is a view of the same store — even of the destination page —
 * completes; a blocking wait on a lock this thread holds is EDEADLK, never a hang.
 * DAXSTORE_TEST_BREAK=dax-write-copy-locked (source locked while holding the destination)
 * must go red (EDEADLK in one thread; a deadlock between two).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { setBroken } from '../../src/test-break.js';
import { expectBaseline, fillPattern, simSpace } from './helpers.js';
import { runRole } from './race-harness.js';

function sameWrite(): void {
  const { space } = simSpace();
  const obj = space.object(42, { create: true, size: 2 * 4096 });
  const view = obj.fault(0, { write: true });
  fillPattern(view, 3);
  const expected = view.slice(100, 1100);
  space.read(() => obj.write(2000, view.subarray(100, 1100))); // same page, overlapping
  expect(obj.read(2000, 1000)).toEqual(expected);
  space.read(() => obj.write(4096 - 500, view.subarray(0, 1000))); // spans into page 1
  expectBaseline(space);
  space.close();
}

describe('R4 write from a view of the store', () => {
  afterEach(() => setBroken('dax-write-copy-locked', false));

  it('a write from a view of the same page completes', () => {
    sameWrite();
  });

  it('goes red (EDEADLK) with DAXSTORE_TEST_BREAK=dax-write-copy-locked', () => {
    setBroken('dax-write-copy-locked', true);
    expect(sameWrite).toThrow(expect.objectContaining({ code: 'EDEADLK' }));
  });

  it('two workers writing each from the other object never deadlock', async () => {
    const { space } = simSpace();
    for (const id of [43, 44]) space.object(id, { create: true, size: 4096 }).write(0, new Uint8Array(4096).fill(id));
    const control = new SharedArrayBuffer(8);
    const r = await Promise.all([
      runRole(space, control, 'r4-cross', 43, undefined, { otherId: 44, rounds: 300 }),
      runRole(space, control, 'r4-cross', 44, undefined, { otherId: 43, rounds: 300 }),
    ]);
    expect(r).toEqual(['ok', 'ok']);
    expectBaseline(space);
    space.close();
  });
});
