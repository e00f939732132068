/**
 * R6: a view faulted inside space.read() stays valid memory — its block neither freed nor
 * reused — until the guard ends, whatever truncate does meanwhile (here from a worker-free
 * single thread: the truncate runs inside the reader's guard, collect() is forced).
 * DAXSTORE_TEST_BREAK=dax-free-now (blocks freed at once) goes red: the block is handed out
 * again while the view is still in use.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { setBroken } from '../../src/test-break.js';
import { expectBaseline, simSpace } from './helpers.js';

function scenario(): { reusedInsideGuard: boolean; viewIntact: boolean } {
  const { space } = simSpace();
  const obj = space.object(60, { create: true, size: 4096 });
  const other = space.object(61, { create: true, size: 64 * 4096 });
  obj.write(0, new Uint8Array(4096).fill(0x33));
  let reusedInsideGuard = false;
  let viewIntact = true;
  space.read(() => {
    const view = obj.fault(0);
    obj.truncate(0);
    space.collect();
    for (let p = 0; p < 64; p++) {
      const v = other.fault(p, { write: true });
      v.fill(0xee);
      if (v.byteOffset === view.byteOffset) reusedInsideGuard = true;
    }
    viewIntact = view.every((b) => b === 0x33);
  });
  if (!reusedInsideGuard) expectBaseline(space);
  space.close();
  return { reusedInsideGuard, viewIntact };
}

describe('R6 views outlive truncate', () => {
  afterEach(() => setBroken('dax-free-now', false));

  it('a truncated block is not reused while a pinned reader holds a view of it', () => {
    expect(scenario()).toEqual({ reusedInsideGuard: false, viewIntact: true });
  });

  it('goes red with DAXSTORE_TEST_BREAK=dax-free-now', () => {
    setBroken('dax-free-now', true);
    expect(scenario().reusedInsideGuard).toBe(true);
  });
});
