/** src/device/transfer-owner.ts (added for dax): moves ownership durably, keeps POISONED and order, rejects a wrong owner. */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { transferOwner } from '../../src/device/transfer-owner.js';

describe('transferOwner', () => {
  it('changes only the owner id, durably; keeps index, order and POISONED; EINVAL for a wrong owner', () => {
    const media = createSimMedia(8 * 1024 * 1024);
    const device = Device.format(media);
    const b = device.allocate(2, 77);
    transferOwner(device, b, 2, 40);
    expect(device.ownerOf(b)).toMatchObject({ state: 'owned', ownerId: 40, index: 77 });
    expect(() => transferOwner(device, b, 2, 41)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    device.poison(b);
    transferOwner(device, b, 40, 2);
    expect(device.ownerOf(b)).toMatchObject({ state: 'poisoned', ownerId: 2, index: 77 });
    const image = media.crashImage({ mode: 'none' });
    const reopened = Device.open(image);
    expect(reopened.ownerOf(b)).toMatchObject({ ownerId: 2, index: 77 });
    expect(reopened.audit()).toEqual([]);
    expect(device.audit()).toEqual([]);
    reopened.close();
    device.close();
  });
});
