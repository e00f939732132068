import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { dataBlocksInRanges, parseKernelBadblocks } from '../../src/device/bad-blocks.js';
import { isDaxError } from '../../src/errors.js';

const MiB = 1024 * 1024;

function readError(device: Device, offset: number, length: number): unknown {
  try {
    device.read(offset, length);
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('poisoned blocks', () => {
  it('reading a poisoned block throws EIO naming the block and offset, and returns no bytes', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    const block = device.allocate(1, 0);
    device.poison(block);
    const offset = device.blockOffset(block);
    const dest = new Uint8Array(100).fill(7);
    let error: unknown;
    try {
      device.read(offset - 50, 100, dest);
    } catch (e) {
      error = e;
    }
    expect(isDaxError(error, 'EIO')).toBe(true);
    expect(String(error)).toContain(`block ${block} at offset ${offset}`);
    expect(dest.every((b) => b === 7)).toBe(true);
    expect(readError(device, offset + 4096, 4096)).toBeUndefined(); // the next block reads fine
  });

  it('a poisoned block is never handed out again, also after reopen', () => {
    const media = createSimMedia(4 * MiB); // 512 data blocks
    const device = Device.format(media);
    device.poison(10);
    device.poison(10); // idempotent
    expect(device.isPoisoned(10)).toBe(true);
    expect(device.ownerOf(10).state).toBe('poisoned');
    const handed = new Set<number>();
    for (let i = 0; i < 511; i++) handed.add(device.allocate(1, i));
    expect(handed.has(10)).toBe(false);
    expect(() => device.allocate(1, 999)).toThrow(/ENOSPC/);
    for (const b of handed) device.free(b);
    const reopened = Device.open(media.crashImage({ mode: 'none' }));
    expect(reopened.badBlocks()).toEqual([10]);
    expect(reopened.stats()).toMatchObject({ poisonedBlocks: 1, freeBlocks: 511, badBlocks: 1 });
    expect(() => reopened.allocate(1, 0, 9)).toThrow(/ENOSPC/); // the only extent holds a bad block
    expect(reopened.audit()).toEqual([]);
  });

  it('poisoning an owned block keeps its owner for the reverse map; freeing it keeps it out of use', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    const block = device.allocate(77, 5);
    device.poison(block);
    expect(device.ownerOf(block)).toMatchObject({ state: 'poisoned', ownerId: 77, index: 5 });
    const owned: number[] = [];
    device.forEachOwned((b, ownerId) => owned.push(b, ownerId));
    expect(owned).toEqual([block, 77]);
    device.free(block);
    expect(device.ownerOf(block)).toMatchObject({ state: 'poisoned', ownerId: 0 });
    expect(device.stats()).toMatchObject({ ownedBlocks: 0, poisonedBlocks: 1, freeBlocks: device.dataBlocks - 1 });
    expect(device.audit()).toEqual([]);
  });

  it('a poisoned tail of an owned extent stays out of use when the extent is freed', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    const huge = device.allocate(3, 0, 9);
    device.poison(huge + 100);
    expect(device.ownerOf(huge + 100)).toMatchObject({ state: 'poisoned', ownerId: 3, head: huge });
    device.free(huge);
    expect(device.isPoisoned(huge + 100)).toBe(true);
    expect(device.stats().freeBlocks).toBe(device.dataBlocks - 1);
    const reopened = Device.open(media.crashImage({ mode: 'none' }));
    expect(reopened.audit()).toEqual([]);
    expect(reopened.stats().freeBlocks).toBe(device.dataBlocks - 1);
  });

  it('a full bad-block list is ENOSPC and changes nothing', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media, { badBlockCapacity: 2 });
    device.poison(1);
    device.poison(2);
    expect(() => device.poison(3)).toThrow(/ENOSPC.*full/);
    expect(device.isPoisoned(3)).toBe(false);
    expect(device.badBlocks()).toEqual([1, 2]);
    expect(device.audit()).toEqual([]);
  });

  it('a media error under the device (sim poison) reaches read() as EIO', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    const block = device.allocate(1, 0);
    media.injectPoison(device.blockOffset(block), 1);
    expect(isDaxError(readError(device, device.blockOffset(block), 16), 'EIO')).toBe(true);
  });
});

describe('kernel badblocks file', () => {
  it('parses "<sector> <count>" lines and maps them to data blocks', () => {
    const ranges = parseKernelBadblocks('4096 8\n\n  4112 1 \n');
    expect(ranges).toEqual([
      { sector: 4096, count: 8 },
      { sector: 4112, count: 1 },
    ]);
    const geometry = { dataOffset: 2 * MiB, dataBlocks: 100, blockSize: 4096 };
    // sector 4096 = byte 2 MiB = data block 0 (8 sectors = the whole block); sector 4112 = block 2
    expect(dataBlocksInRanges(ranges, geometry)).toEqual([0, 2]);
    expect(dataBlocksInRanges([{ sector: 0, count: 8 }], geometry)).toEqual([]); // metadata area
    expect(dataBlocksInRanges([{ sector: 4100, count: 16 }], geometry)).toEqual([0, 1, 2]);
  });

  it('rejects malformed lines with EINVAL naming the line', () => {
    expect(() => parseKernelBadblocks('1 2\nabc 3\n', '/sys/block/pmem0/badblocks')).toThrow(/EINVAL.*pmem0.*line 2/);
    expect(() => parseKernelBadblocks('5 0')).toThrow(/EINVAL/);
  });
});
