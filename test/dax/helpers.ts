/** Shared helpers of the DAX tests: a space on SimMedia, baseline checks, bad blocks never reused (seeds: ../helpers/seed.ts). */
import { expect } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { DaxSpace } from '../../src/dax/space.js';

export const MIB = 1024 * 1024;

export function simSpace(sizeBytes = 16 * MIB): { media: SimMedia; space: DaxSpace } {
  const media = createSimMedia(sizeBytes);
  return { media, space: DaxSpace.create(media) };
}

/** After a test: no lost wake-ups, the allocator agrees with the owner table, and limbo drains. */
export function expectBaseline(space: DaxSpace): void {
  space.collect();
  const s = space.stats();
  expect(s.lostWakeups).toBe(0);
  expect(s.limboBlocks).toBe(0);
  expect(space.device.audit()).toEqual([]);
}

export function fillPattern(view: Uint8Array, seed: number): void {
  for (let i = 0; i < view.length; i++) view[i] = (seed + i * 31) & 0xff;
}

/**
 * Hands out every free block (write faults of a fresh object `objectId` until ENOSPC) and
 * checks none lies at a bad block's offset; removes the object again. Returns the pages faulted.
 */
export function expectBadBlocksNeverHandedOut(
  space: DaxSpace,
  badBlocks: Iterable<number>,
  objectId: number,
  hint: string,
): number {
  const offsets = new Set([...badBlocks].map((b) => space.device.blockOffset(b)));
  const filler = space.object(objectId, { create: true, size: 4096 * space.device.dataBlocks });
  let p = 0;
  for (; ; p++) {
    let view: Uint8Array;
    try {
      view = filler.fault(p, { write: true });
    } catch (e) {
      expect((e as { code?: string }).code, hint).toBe('ENOSPC');
      break;
    }
    expect(offsets.has(view.byteOffset), `bad block handed out again: ${hint}`).toBe(false);
  }
  filler.remove();
  return p;
}
