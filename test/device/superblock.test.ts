import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import {
  FORMAT_VERSION,
  SUPERBLOCK_BYTES,
  chooseSuperblock,
  decodeSuperblock,
  encodeSuperblock,
  readCopy,
} from '../../src/device/superblock.js';
import { SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET } from '../../src/device/layout.js';
import { xxh64 } from '../../src/device/checksum.js';
import { type DaxErrorCode } from '../../src/errors.js';
import { daxCodeOf } from '../helpers/expect-code.js';

const MiB = 1024 * 1024;

/** close() closes the media too: continue on a copy of its image (all of it is durable after close). */
function afterClose(media: SimMedia): SimMedia {
  return media.crashImage({ mode: 'all' });
}

function formatted(): SimMedia {
  const media = createSimMedia(8 * MiB);
  Device.format(media).close();
  return afterClose(media);
}

function bytes(media: SimMedia): Uint8Array {
  return new Uint8Array(media.buffer);
}

/** Opening must fail with code and leave every byte (working and durable) as it was. */
function expectOpenFailsUnchanged(media: SimMedia, code: DaxErrorCode): void {
  const working = bytes(media).slice();
  const durable = media.durableBytes().slice();
  expect(daxCodeOf(() => Device.open(media))).toBe(code);
  expect(Buffer.compare(bytes(media), working)).toBe(0);
  expect(Buffer.compare(media.durableBytes(), durable)).toBe(0);
}

describe('superblock encoding', () => {
  it('round-trips every field and detects any flipped byte before the checksum', () => {
    const media = formatted();
    const copy = readCopy(media, SUPERBLOCK_A_OFFSET);
    expect(copy.status).toBe('ok');
    if (copy.status !== 'ok') return;
    const encoded = encodeSuperblock(copy.superblock);
    expect(decodeSuperblock(encoded)).toEqual(copy);
    for (let i = 8; i < SUPERBLOCK_BYTES; i++) {
      const bad = encoded.slice();
      bad[i] ^= 0x10;
      expect(decodeSuperblock(bad).status, `byte ${i}`).not.toBe('ok');
    }
  });
});

describe('opening bad images', () => {
  it('an image without the magic is ENOTSTORE ("is not a daxstore") and stays unchanged', () => {
    const media = createSimMedia(8 * MiB);
    bytes(media).fill(0xab, 0, 8192);
    expect(() => Device.open(media)).toThrow(/is not a daxstore/);
    expectOpenFailsUnchanged(media, 'ENOTSTORE');
  });

  it('a newer format version is EVERSION and stays unchanged', () => {
    const media = formatted();
    const view = new DataView(media.buffer);
    view.setUint32(SUPERBLOCK_A_OFFSET + 8, FORMAT_VERSION + 1, true);
    // a newer store's copy is whole under its own format: its checksum covers its version
    view.setBigUint64(
      SUPERBLOCK_A_OFFSET + 128,
      xxh64(bytes(media).subarray(SUPERBLOCK_A_OFFSET, SUPERBLOCK_A_OFFSET + 128)),
      true,
    );
    expectOpenFailsUnchanged(media, 'EVERSION');
  });

  it('one damaged byte of a version field is a bad copy, not a newer store: opens from the other', () => {
    for (const bad of [SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET])
      for (const at of [8, 9, 10, 11]) {
        const media = formatted();
        bytes(media)[bad + at] ^= 0xb2;
        expect(readCopy(media, bad).status).toBe('corrupt');
        const device = Device.open(media);
        expect(readCopy(media, bad).status).toBe('ok');
        device.close();
      }
  });

  it('one corrupted copy opens from the other and is repaired', () => {
    for (const bad of [SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET]) {
      const media = formatted();
      bytes(media)[bad + 40] ^= 0xff; // blockSize
      expect(readCopy(media, bad).status).toBe('corrupt');
      const device = Device.open(media);
      expect(device.stats().lastShutdownClean).toBe(true);
      const a = readCopy(media, SUPERBLOCK_A_OFFSET);
      const b = readCopy(media, SUPERBLOCK_B_OFFSET);
      expect(a.status).toBe('ok');
      expect(b).toEqual(a);
      expect(chooseSuperblock(media).repairNeeded).toBe(false);
      device.close();
    }
  });

  it('both copies corrupted is ECORRUPT and the bytes are unchanged', () => {
    const media = formatted();
    bytes(media)[SUPERBLOCK_A_OFFSET + 100] ^= 1;
    bytes(media)[SUPERBLOCK_B_OFFSET + 60] ^= 1;
    expectOpenFailsUnchanged(media, 'ECORRUPT');
  });

  it('geometry inconsistent with the media size is ECORRUPT and unchanged', () => {
    const small = createSimMedia(8 * MiB);
    Device.format(small).close();
    bytes(small); // the closed media's buffer still holds the image
    const bigger = createSimMedia(10 * MiB);
    bytes(bigger).set(bytes(small));
    bigger.persist(0, 8 * MiB);
    expectOpenFailsUnchanged(bigger, 'ECORRUPT');
  });

  it('an owner record damaged past a one-byte correction is ECORRUPT naming the block, and the image stays unchanged', () => {
    let media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    const block = device.allocate(5, 1);
    const recordOffset = device.geometry.ownerTableOffset + 16 * block;
    device.close();
    media = afterClose(media);
    new BigUint64Array(media.buffer, recordOffset, 1)[0] ^= (1n << 60n) | (1n << 12n); // two bytes: no one-byte correction
    expect(() => Device.open(media)).toThrow(new RegExp(`block ${block}`));
    expectOpenFailsUnchanged(media, 'ECORRUPT');
  });
});

describe('superblock updates survive torn writes', () => {
  it('a crash at any fence of an update, with any subset of the pending words, opens with a valid superblock', () => {
    const media = formatted();
    let dataBlocks = 0;
    let checked = 0;
    const check = (image: SimMedia) => {
      const opened = Device.open(image); // throws if no valid superblock copy survived
      if (dataBlocks !== 0) expect(opened.dataBlocks).toBe(dataBlocks);
      opened.close();
      image.dispose();
      checked++;
    };
    const off = media.onFence(() => {
      check(media.crashImage({ mode: 'none' }));
      check(media.crashImage({ mode: 'all' }));
      for (let seed = 1; seed <= 8; seed++) check(media.crashImage({ mode: 'random', seed }));
    });
    const device = Device.open(media); // one update: A then B
    dataBlocks = device.dataBlocks;
    device.close(); // another update
    off();
    expect(checked).toBe(40);
  });

  it.each([
    ['B', SUPERBLOCK_B_OFFSET],
    ['A', SUPERBLOCK_A_OFFSET],
  ])(
    'with copy %s already torn, a crash at any fence of the next update still leaves a valid copy',
    (_name, tornOffset) => {
      // A crash during close can tear one copy; the next open's own superblock update must
      // then overwrite the torn copy first and the only valid one last.
      const media = formatted();
      const working = bytes(media);
      working[tornOffset + 20] ^= 0xff;
      media.persist(tornOffset, SUPERBLOCK_BYTES);
      let checked = 0;
      const check = (image: SimMedia) => {
        Device.open(image).close(); // throws ECORRUPT if both copies were lost
        image.dispose();
        checked++;
      };
      const off = media.onFence(() => {
        check(media.crashImage({ mode: 'none' }));
        check(media.crashImage({ mode: 'all' }));
        for (let seed = 1; seed <= 8; seed++) check(media.crashImage({ mode: 'random', seed }));
      });
      Device.open(media).close();
      off();
      expect(checked).toBeGreaterThan(0);
    },
  );

  it('reports whether the last shutdown was clean', () => {
    const media = createSimMedia(8 * MiB);
    const device = Device.format(media);
    const crashed = media.crashImage({ mode: 'all' }); // open, never closed
    expect(Device.open(crashed).stats().lastShutdownClean).toBe(false);
    device.close();
    const reopened = Device.open(media.crashImage({ mode: 'none' }));
    expect(reopened.stats().lastShutdownClean).toBe(true);
  });
});
