import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { isDaxError } from '../../src/errors.js';

const MiB = 1024 * 1024;

describe('Device lifecycle', () => {
  it('format, write and persist data, close, reopen from the durable image, read it back', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media, { rootBytes: 10_000 });
    expect(device.root).toEqual({ offset: 8192, length: 12288 });
    expect(device.dataOffset % (2 * MiB)).toBe(0);
    expect(device.blockSize).toBe(4096);
    const block = device.allocate(11, 0);
    const payload = new TextEncoder().encode('hello, persistent world');
    const bytes = new Uint8Array(media.buffer);
    bytes.set(payload, device.blockOffset(block));
    media.persist(device.blockOffset(block), payload.length);
    bytes.set(payload, device.root.offset);
    media.persist(device.root.offset, payload.length);
    device.close();
    expect(() => device.allocate(1, 0)).toThrow(/ECLOSED/);

    const reopened = Device.open(media.crashImage({ mode: 'none' }));
    expect(reopened.root).toEqual(device.root);
    expect(reopened.read(reopened.blockOffset(block), payload.length)).toEqual(payload);
    expect(reopened.read(reopened.root.offset, payload.length)).toEqual(payload);
    expect(reopened.ownerOf(block)).toMatchObject({ state: 'owned', ownerId: 11, index: 0 });
    expect(reopened.stats()).toMatchObject({
      dataBlocks: device.dataBlocks,
      freeBlocks: device.dataBlocks - 1,
      ownedBlocks: 1,
      poisonedBlocks: 0,
      lastShutdownClean: true,
      mediaKind: 'sim',
      flushMethod: 'sim',
      sizeBytes: 8 * MiB,
    });
  });

  it('a media too small for the metadata is ENOSPC at format', () => {
    expect(() => Device.format(createSimMedia(2 * MiB))).toThrow(/ENOSPC.*too small/);
  });

  it('read() checks its arguments and fills a caller buffer', () => {
    const device = Device.format(createSimMedia(8 * MiB));
    const dest = new Uint8Array(16);
    expect(device.read(device.dataOffset, 16, dest)).toBe(dest);
    expect(() => device.read(-1, 4)).toThrow(/EINVAL/);
    expect(() => device.read(8 * MiB - 4, 8)).toThrow(/ERANGE/);
    expect(() => device.read(0, 32, dest)).toThrow(/EINVAL/);
  });

  it('every operation after close is ECLOSED (misuse matrix), close is idempotent', () => {
    const device = Device.format(createSimMedia(8 * MiB));
    const block = device.allocate(1, 0);
    device.close();
    device.close();
    const ops: Array<[string, () => unknown]> = [
      ['allocate', () => device.allocate(1, 1)],
      ['free', () => device.free(block)],
      ['ownerOf', () => device.ownerOf(block)],
      ['forEachOwned', () => device.forEachOwned(() => {})],
      ['poison', () => device.poison(block)],
      ['badBlocks', () => device.badBlocks()],
      ['read', () => device.read(0, 1)],
      ['injectFault', () => device.injectFault({ allocationEnospc: 1 })],
      ['stats', () => device.stats()],
      ['share', () => device.share()],
      ['audit', () => device.audit()],
    ];
    for (const [name, op] of ops) {
      let error: unknown;
      try {
        op();
      } catch (e) {
        error = e;
      }
      expect(isDaxError(error, 'ECLOSED'), name).toBe(true);
    }
  });

  it('an attached device shares the allocator; closing the opener closes it for every thread', () => {
    const device = Device.format(createSimMedia(8 * MiB));
    const attached = Device.attach(device.share());
    const a = device.allocate(1, 0);
    const b = attached.allocate(2, 0);
    expect(a).not.toBe(b);
    expect(device.ownerOf(b)).toMatchObject({ ownerId: 2 });
    expect(attached.stats().ownedBlocks).toBe(2);
    attached.free(a);
    expect(device.stats().ownedBlocks).toBe(1);
    device.close();
    expect(() => attached.allocate(3, 0)).toThrow(/ECLOSED/);
  });

  it('open of a crashed device reports an unclean shutdown and allocates from the recovered state', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    const kept = device.allocate(4, 4);
    const recovered = Device.open(media.crashImage({ mode: 'none' }));
    expect(recovered.stats().lastShutdownClean).toBe(false);
    const next = recovered.allocate(5, 5);
    expect(next).not.toBe(kept);
    expect(recovered.audit()).toEqual([]);
  });
});
