import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { isDaxError } from '../../src/errors.js';
import { daxCodeOf } from '../helpers/expect-code.js';
import { rng } from '../helpers/seed.js';

const MiB = 1024 * 1024;

function fresh(sizeBytes = 8 * MiB): { media: SimMedia; device: Device } {
  const media = createSimMedia(sizeBytes);
  return { media, device: Device.format(media) };
}

describe('allocation', () => {
  it('order-0 and order-9 allocations never overlap, huge ones are 2 MiB aligned and cover their tails', () => {
    const { device } = fresh();
    const huge = device.allocate(1, 0, 9);
    expect(device.blockOffset(huge) % (2 * MiB)).toBe(0);
    const small = Array.from({ length: 100 }, (_, i) => device.allocate(2, i));
    expect(new Set(small).size).toBe(100);
    for (const b of small) expect(b < huge || b >= huge + 512).toBe(true);
    expect(device.ownerOf(huge)).toMatchObject({ state: 'owned', ownerId: 1, index: 0, order: 9 });
    expect(device.ownerOf(huge + 511)).toMatchObject({ state: 'covered', ownerId: 1, head: huge });
    expect(device.ownerOf(small[7])).toMatchObject({ state: 'owned', ownerId: 2, index: 7, order: 0 });
    expect(device.stats()).toMatchObject({ ownedBlocks: 612, freeBlocks: device.dataBlocks - 612 });
    expect(device.audit()).toEqual([]);
  });

  it('an owner record is durable before allocate returns and free is durable before it returns', () => {
    const { media, device } = fresh();
    const block = device.allocate(9, 42);
    expect(Device.open(media.crashImage({ mode: 'none' })).ownerOf(block)).toMatchObject({
      state: 'owned',
      ownerId: 9,
      index: 42,
    });
    device.free(block);
    expect(Device.open(media.crashImage({ mode: 'none' })).ownerOf(block).state).toBe('free');
  });

  it('reopen rebuilds the same free-space index from the owner table', () => {
    const { media, device } = fresh();
    const random = rng(7);
    const live: number[] = [];
    for (let i = 0; i < 300; i++) {
      if (live.length > 0 && random() < 0.4) device.free(live.splice(Math.floor(random() * live.length), 1)[0]);
      else live.push(device.allocate(3, i, random() < 0.02 ? 9 : 0));
    }
    const before = device.stats();
    const reopened = Device.open(media.crashImage({ mode: 'all' }));
    expect({ ...reopened.stats(), lastShutdownClean: true }).toEqual({ ...before, lastShutdownClean: true });
    const owners: number[] = [];
    reopened.forEachOwned((block) => owners.push(block));
    expect(owners.sort((a, b) => a - b)).toEqual([...live].sort((a, b) => a - b));
    expect(reopened.audit()).toEqual([]);
  });
});

describe('allocation errors change nothing', () => {
  it('ENOSPC when full names the sizes and keeps every allocation', () => {
    const { media, device } = fresh(4 * MiB); // one 2 MiB extent of data
    const huge = device.allocate(1, 0, 9);
    const durable = media.durableBytes().slice();
    let error: unknown;
    try {
      device.allocate(1, 1);
    } catch (e) {
      error = e;
    }
    expect(isDaxError(error, 'ENOSPC')).toBe(true);
    expect(String(error)).toMatch(/0 of 512 blocks free/);
    expect(Buffer.compare(media.durableBytes(), durable)).toBe(0);
    expect(device.ownerOf(huge)).toMatchObject({ state: 'owned', ownerId: 1 });
    device.free(huge);
    expect(device.stats().freeBlocks).toBe(512);
    device.allocate(1, 2);
    expect(daxCodeOf(() => device.allocate(1, 3, 9))).toBe('ENOSPC'); // free blocks, but no whole extent
    expect(device.audit()).toEqual([]);
  });

  it('an injected ENOSPC fails exactly the n-th allocation and changes nothing', () => {
    const { device } = fresh();
    device.injectFault({ allocationEnospc: 3 });
    device.allocate(1, 0);
    device.allocate(1, 1);
    const stats = device.stats();
    expect(daxCodeOf(() => device.allocate(1, 2))).toBe('ENOSPC');
    expect(device.stats()).toEqual(stats);
    device.allocate(1, 3);
    expect(device.audit()).toEqual([]);
  });

  it('a persist EIO during allocate or free leaves the block as it was', () => {
    const { media, device } = fresh();
    const kept = device.allocate(1, 0);
    const stats = device.stats();
    for (const nth of [1, 2]) {
      media.injectFault({ persistEio: nth }); // 1: word1's fence, 2: word0's fence
      expect(daxCodeOf(() => device.allocate(1, 1))).toBe('EIO');
      expect(device.stats()).toEqual(stats);
      expect(device.audit()).toEqual([]);
    }
    media.injectFault({ persistEio: 1 });
    expect(daxCodeOf(() => device.free(kept))).toBe('EIO');
    expect(device.ownerOf(kept)).toMatchObject({ state: 'owned', ownerId: 1 });
    expect(device.stats()).toEqual(stats);
    device.free(kept);
    expect(device.audit()).toEqual([]);
  });
});

describe('argument validation', () => {
  it('double free, free of a covered or free block, and out-of-range blocks are typed errors', () => {
    const { device } = fresh();
    const block = device.allocate(1, 0);
    const huge = device.allocate(1, 1, 9);
    device.free(block);
    expect(daxCodeOf(() => device.free(block))).toBe('EINVAL');
    expect(() => device.free(block)).toThrow(/not owned/);
    expect(() => device.free(huge + 1)).toThrow(new RegExp(`headed by block ${huge}`));
    for (const bad of [-1, device.dataBlocks, 1.5, NaN]) {
      expect(daxCodeOf(() => device.free(bad))).toBe('ERANGE');
      expect(daxCodeOf(() => device.ownerOf(bad))).toBe('ERANGE');
      expect(daxCodeOf(() => device.poison(bad))).toBe('ERANGE');
    }
    expect(daxCodeOf(() => device.allocate(0, 0))).toBe('EINVAL');
    expect(daxCodeOf(() => device.allocate(2 ** 40, 0))).toBe('EINVAL');
    expect(daxCodeOf(() => device.allocate(1, -1))).toBe('EINVAL');
    expect(daxCodeOf(() => device.allocate(1, 0, 3 as 0))).toBe('EINVAL');
    expect(daxCodeOf(() => device.blockAt(device.dataOffset - 1))).toBe('ERANGE');
    expect(device.blockAt(device.blockOffset(17) + 4095)).toBe(17);
    device.free(huge);
    expect(device.audit()).toEqual([]);
    expect(device.stats()).toMatchObject({ ownedBlocks: 0, freeBlocks: device.dataBlocks });
  });
});
