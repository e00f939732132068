/**
 * The loops over every block at open (Allocator.rebuild, forEachOwned) visit only the owner
 * records that are not FREE, found by one native pass (OwnerTable.inUse, the addon's
 * nonzeroWords). Random allocations, extents, frees and poisonings on a device: inUse equals a
 * loop over every record, forEachOwned equals a loop over every OWNED record (extent heads once),
 * and the device reopened from the same bytes rebuilds the same allocator (counts and audit).
 * nonzeroWords refuses arguments outside its buffer.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { Device } from '../../src/device/device.js';
import { FLAG_OWNED, decodeMeta, type OwnerTable } from '../../src/device/owner-table.js';
import { native } from '../../src/native/addon.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';

const FILE = 'test/device/owner-table-in-use.test.ts';
const MiB = 2 ** 20;

describe('owner records in use', () => {
  it('inUse and forEachOwned equal loops over every record, and a reopen rebuilds the same allocator', async () => {
    await withSeed(FILE, (seed) => {
      const r = rng(seed);
      for (let trial = 0; trial < scaled(6); trial++) {
        const media = createSimMedia(48 * MiB);
        const device = Device.format(media);
        const owned: number[] = [];
        for (let i = 0; i < 2000; i++) {
          const x = r();
          try {
            if (x < 0.55) owned.push(device.allocate(100 + (i % 7), i));
            else if (x < 0.6) owned.push(device.allocate(200, i * 512, 9));
            else if (x < 0.9 && owned.length > 0) device.free(owned.splice(Math.floor(r() * owned.length), 1)[0]);
            else if (x < 0.92 && owned.length > 0) device.poison(owned[Math.floor(r() * owned.length)]);
          } catch (e) {
            if ((e as { code?: string }).code !== 'ENOSPC') throw e;
          }
        }
        const table = (device as unknown as { table: OwnerTable }).table;
        const blocks = device.dataBlocks;
        const expectedInUse: number[] = [];
        const expectedOwned: string[] = [];
        for (let b = 0; b < blocks; b++) {
          const meta = table.loadMeta(b);
          if (meta === 0n) continue;
          expectedInUse.push(b);
          const { flags, order, ownerId } = decodeMeta(meta);
          if ((flags & FLAG_OWNED) !== 0) expectedOwned.push(`${b}:${ownerId}:${table.loadIndex(b)}:${order}`);
        }
        expect(Array.from(table.inUse(blocks))).toEqual(expectedInUse);
        const got: string[] = [];
        device.forEachOwned((b, owner, index, order) => got.push(`${b}:${owner}:${index}:${order}`));
        expect(got).toEqual(expectedOwned);
        const before = device.stats();
        device.close();
        const again = Device.open(media.crashImage({ mode: 'none' }));
        const after = again.stats();
        for (const k of ['freeBlocks', 'freeExtents', 'ownedBlocks', 'poisonedBlocks'] as const)
          expect(after[k], k).toBe(before[k]);
        expect(again.audit()).toEqual([]);
        again.close();
      }
    });
  });

  it('nonzeroWords counts past a short output and refuses ranges outside its buffer', () => {
    const sab = new SharedArrayBuffer(1024);
    const words = new BigUint64Array(sab);
    for (const i of [0, 5, 6, 63]) words[i * 2] = 1n << BigInt(i);
    const out = new Int32Array(2);
    expect(native().nonzeroWords(sab, 0, 64, 16, out)).toBe(4);
    expect(Array.from(out)).toEqual([0, 5]);
    const all = new Int32Array(4);
    expect(native().nonzeroWords(sab, 0, 64, 16, all)).toBe(4);
    expect(Array.from(all)).toEqual([0, 5, 6, 63]);
    expect(native().nonzeroWords(sab, 8, 64, 16, all)).toBe(0); // the last word ends at the buffer end
    expect(native().nonzeroWords(sab, 16, 64, 16, all)).toBe(-22); // the last word would lie past the end
    expect(native().nonzeroWords(sab, 1024, 1, 16, all)).toBe(-22);
    expect(native().nonzeroWords(sab, 0, 65, 16, all)).toBe(-22);
    expect(native().nonzeroWords(sab, 4, 2, 16, all)).toBe(-22); // unaligned
    expect(native().nonzeroWords(sab, 0, 2, 4, all)).toBe(-22); // stride under a word
  });
});
