/**
 * MappedMedia.prefault: MADV_POPULATE_WRITE of a range on a background thread (addon/prefault.h).
 * It makes the range's pages resident in this process (the mapping's Rss in /proc/self/smaps
 * grows by the range, and by nothing outside it), changes no byte, refuses a range outside
 * the media with a typed error, and the mapping outlives the thread: closing the media while
 * the thread runs leaves the file reopenable and its contents intact. A key-value writer asks
 * for it on every log segment it opens.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type MappedMedia, openRegion } from '../../src/device/region.js';
import { open } from '../helpers/kv-bytes.js';
import { expectCode } from '../helpers/expect-code.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';

afterEach(cleanupTemp);

/** A field (KiB) of /proc/self/smaps summed over this process's mappings of `file` (smaps lists the path after the range). */
function smapsKiB(file: string, field = 'Rss'): number {
  let total = 0;
  let inFile = false;
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(file);
    else if (inFile && line.startsWith(`${field}:`)) total += Number(line.split(/\s+/)[1]);
  }
  return total;
}

const rssKiB = (file: string): number => smapsKiB(file);

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('region prefault', () => {
  it('makes exactly the range resident, on another thread, without changing a byte', async () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 16 * 2 ** 20 });
    const bytes = new Uint8Array(media.buffer);
    bytes[0] = 7; // page 0 resident
    bytes[8 * 2 ** 20 + 100] = 9; // a page inside the range, already written
    const before = rssKiB(file);
    expect(before).toBeGreaterThanOrEqual(8);
    expect(before).toBeLessThan(64);
    media.prefault(4 * 2 ** 20, 8 * 2 ** 20 + 1000); // [4 MiB, 12 MiB + 1000): 2048 whole pages
    expect(media.prefaultStarted).toBe(1);
    await until(() => rssKiB(file) >= before + 8 * 1024 - 4);
    const after = rssKiB(file);
    expect(after - before).toBeGreaterThanOrEqual(8 * 1024 - 4); // the range, less the page already there
    expect(after - before).toBeLessThanOrEqual(8 * 1024); // rounded inward: not the partial page past it
    expect(bytes[0]).toBe(7);
    expect(bytes[8 * 2 ** 20 + 100]).toBe(9);
    expect(bytes.subarray(4 * 2 ** 20, 8 * 2 ** 20).every((b) => b === 0)).toBe(true);
    media.close();
  });

  it.skipIf(process.env['DAXSTORE_NO_COLLAPSE'] === '1')(
    'on tmpfs makes the range’s whole 2 MiB pages huge and maps each whole, keeping its bytes',
    async () => {
      const file = path.join(tempDir(), 'region');
      const media = openRegion(file, { create: true, sizeBytes: 16 * 2 ** 20 });
      expect(media.kind).toBe('tmpfs');
      const bytes = new Uint8Array(media.buffer);
      bytes[4 * 2 ** 20 + 5] = 11; // written small, before the collapse
      media.prefault(3 * 2 ** 20, 6 * 2 ** 20); // [3 MiB, 9 MiB): the huge pages at 4 and 6 MiB
      await until(() => smapsKiB(file, 'ShmemPmdMapped') >= 4 * 1024);
      expect(smapsKiB(file, 'ShmemPmdMapped')).toBe(4 * 1024);
      expect(bytes[4 * 2 ** 20 + 5]).toBe(11);
      media.close();
    },
  );

  it('refuses a range past the media (ERANGE), a negative offset (EINVAL) and a closed media (ECLOSED)', () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 2 ** 20 });
    expectCode(() => media.prefault(2 ** 20 - 4096, 8192), 'ERANGE');
    expectCode(() => media.prefault(-1, 10), 'EINVAL');
    media.close();
    expectCode(() => media.prefault(0, 4096), 'ECLOSED');
  });

  it('closing the media while the thread populates leaves the file reopenable and intact', () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: 64 * 2 ** 20 });
    new Uint8Array(media.buffer).fill(3, 60 * 2 ** 20, 60 * 2 ** 20 + 4096);
    media.persist(60 * 2 ** 20, 4096);
    media.prefault(0, 64 * 2 ** 20);
    media.close(); // the thread may still hold the mapping; the flock is gone now
    const again = openRegion(file);
    try {
      const b = new Uint8Array(again.buffer);
      expect(b[60 * 2 ** 20]).toBe(3);
      expect(b[60 * 2 ** 20 + 4095]).toBe(3);
      expect(b[60 * 2 ** 20 + 4096]).toBe(0);
    } finally {
      again.close();
    }
  });

  it('a key-value writer prefaults each log segment it opens', () => {
    const file = path.join(tempDir(), 'kv');
    const db = open(file, { size: 64 * 2 ** 20, durability: 'sync' });
    try {
      const media = db.dax.device.media as MappedMedia;
      const before = media.prefaultStarted;
      db.put('k', 'v'); // the first put opens this thread's first segment
      expect(media.prefaultStarted).toBe(before + 1);
      for (let i = 0; i < 20_000; i++) db.put(`key${i}`, new Uint8Array(100)); // ~2.5 MiB: a second segment
      expect(media.prefaultStarted).toBe(before + 2);
    } finally {
      db.close();
    }
  });

  it('kv-segment-not-collapsed-ahead: a key-value writer makes the extent its next segment takes huge ahead', async (ctx) => {
    if (process.env['DAXSTORE_NO_COLLAPSE'] === '1') ctx.skip();
    const file = path.join(tempDir(), 'kv');
    const db = open(file, { size: 64 * 2 ** 20, durability: 'sync' });
    try {
      const media = db.dax.device.media as MappedMedia;
      expect(media.kind).toBe('tmpfs');
      const huge = (): number => smapsKiB(file, 'ShmemPmdMapped');
      const settled = async (kib: number): Promise<void> => {
        await until(() => huge() >= kib);
        await new Promise((r) => setTimeout(r, 200)); // a wrong guess would add one more
      };
      db.put('k', 'v'); // the first segment, collapsed as it opens, and the next free extent ahead
      expect(media.collapseStarted).toBe(1);
      await settled(4096);
      expect(huge()).toBe(4096);
      for (let i = 0; i < 20_000; i++) db.put(`key${i}`, new Uint8Array(100)); // ~2.5 MiB: a second segment
      expect(media.collapseStarted).toBe(2);
      // The second segment took the extent made huge ahead: one more huge page (the next guess), not two.
      await settled(6144);
      expect(huge()).toBe(6144);
      expect(db.get('key0')).toEqual(new Uint8Array(100));
    } finally {
      db.close();
    }
  });
});
