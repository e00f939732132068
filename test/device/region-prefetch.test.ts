/**
 * MappedMedia.prefetch: MADV_POPULATE_READ of ranges on a background thread (addon/prefault.h).
 * It maps the ranges' pages in this process (the mapping's Rss in /proc/self/smaps grows by
 * them, and by little else: a read fault maps the pages around it too), changes no byte, refuses a range outside the media with a
 * typed error, and the mapping outlives the thread. A key-value open that will check an index
 * checkpoint's covered log through the mapping asks for it as soon as the device is open, and
 * only then; the check still reads every covered byte, so damage there is refused as the full
 * scan refuses it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type MappedMedia, openRegion } from '../../src/device/region.js';
import { KvDamageError } from '../../src/kv/recovery.js';
import { open } from '../helpers/kv-bytes.js';
import { expectCode } from '../helpers/expect-code.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';
import { setBroken } from '../../src/test-break.js';

afterEach(cleanupTemp);

/** Rss in KiB of this process's mappings of `file` (smaps lists the path after the range). */
function rssKiB(file: string): number {
  let total = 0;
  let inFile = false;
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(file);
    else if (inFile && line.startsWith('Rss:')) total += Number(line.split(/\s+/)[1]);
  }
  return total;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

const MiB = 2 ** 20;

/** A file of `bytes` whose every byte is written (pages in the page cache), not mapped by this process. */
function writtenFile(bytes: number): string {
  const file = path.join(tempDir(), 'region');
  fs.writeFileSync(file, Buffer.alloc(bytes, 5));
  return file;
}

describe('region prefetch', () => {
  it('maps exactly the ranges, on another thread, without changing a byte', async () => {
    const file = writtenFile(16 * MiB);
    const media = openRegion(file);
    const bytes = new Uint8Array(media.buffer);
    expect(bytes[0]).toBe(5); // page 0 mapped
    const before = rssKiB(file);
    expect(before).toBeLessThan(128);
    // [8 MiB, 10 MiB) and [2 MiB + 100, 3 MiB + 1000): 512 + 255 whole pages (rounded inward)
    media.prefetch(Float64Array.of(8 * MiB, 2 * MiB, 2 * MiB + 100, MiB + 900));
    expect(media.prefetchStarted).toBe(1);
    const want = 2 * 1024 + 255 * 4;
    await until(() => rssKiB(file) >= before + want);
    const after = rssKiB(file);
    expect(after - before).toBeGreaterThanOrEqual(want);
    expect(after - before).toBeLessThan(want + 512); // a read fault maps the pages around it too: some past the ends, no more
    expect(bytes.subarray(8 * MiB, 10 * MiB).every((b) => b === 5)).toBe(true);
    media.close();
  });

  it('refuses a range past the media (ERANGE), a negative offset (EINVAL) and a closed media (ECLOSED)', () => {
    const file = path.join(tempDir(), 'region');
    const media = openRegion(file, { create: true, sizeBytes: MiB });
    expectCode(() => media.prefetch(Float64Array.of(0, 4096, MiB - 4096, 8192)), 'ERANGE');
    expectCode(() => media.prefetch(Float64Array.of(-1, 10)), 'EINVAL');
    expect(media.prefetchStarted).toBe(0);
    media.close();
    expectCode(() => media.prefetch(Float64Array.of(0, 4096)), 'ECLOSED');
  });

  it('closing the media while the thread maps leaves the file reopenable and intact', () => {
    const file = writtenFile(64 * MiB);
    const media = openRegion(file);
    media.prefetch(Float64Array.of(0, 64 * MiB));
    media.close(); // the thread may still hold the mapping; the flock is gone now
    const again = openRegion(file);
    try {
      const b = new Uint8Array(again.buffer);
      expect(b[60 * MiB]).toBe(5);
      expect(b[64 * MiB - 1]).toBe(5);
    } finally {
      again.close();
    }
  });
});

describe('a key-value open prefetches the log an index checkpoint covers', () => {
  const MARKER = 'MARKER-0123456789';

  /** A closed store (its close wrote a checkpoint unless `checkpoint` false); the file offset of z's value. */
  function closedStore(checkpoint = true): { file: string; z: number } {
    const file = path.join(tempDir(), 'kv');
    const db = open(file, { size: 64 * MiB, durability: 'none', checkpoint });
    for (let i = 0; i < 2000; i++) db.put(Buffer.from(`k${i}`), new Uint8Array(100).fill(i));
    db.put(Buffer.from('z'), Buffer.from(MARKER));
    const key = Buffer.from('z');
    const z = db.dax.tree.lookup(Uint8Array.of(1, ...key))! + 24 + key.length;
    db.close();
    return { file, z };
  }

  function prefetchesAt(file: string, opts: { recovery?: 'full' } = {}): number {
    const db = open(file, { durability: 'none', ...opts });
    try {
      return (db.dax.device.media as MappedMedia).prefetchStarted;
    } finally {
      db.close();
    }
  }

  it('when a checkpoint will be checked, and not for a full scan or a store without one', () => {
    const { file } = closedStore();
    expect(prefetchesAt(file)).toBe(1);
    expect(prefetchesAt(file, { recovery: 'full' })).toBe(0);
    const bare = closedStore(false);
    expect(prefetchesAt(bare.file)).toBe(0);
  });

  /** Flips a bit of z's value in the file, as damage while closed; the strict reopen's outcome. */
  function reopenAfterFlip(): KvDamageError | string | undefined {
    const { file, z } = closedStore();
    const fd = fs.openSync(file, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, z + 3);
    b[0] ^= 0x10;
    fs.writeSync(fd, b, 0, 1, z + 3);
    fs.closeSync(fd);
    try {
      const db = open(file, { durability: 'none' });
      try {
        const v = db.get(Buffer.from('z'));
        return v === undefined ? undefined : Buffer.from(v).toString();
      } finally {
        db.close();
      }
    } catch (e) {
      if (e instanceof KvDamageError) return e;
      throw e;
    }
  }

  it('a covered record damaged while closed is still found by the hash check and refused by the full scan', () => {
    const got = reopenAfterFlip();
    expect(got).toBeInstanceOf(KvDamageError);
    expect((got as KvDamageError).report.checkpoint!.ignored.join()).toMatch(/does not hash to what it stores/);
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-hash-unchecked: the flipped value is served', () => {
    setBroken('kv-checkpoint-hash-unchecked', true);
    try {
      const got = reopenAfterFlip();
      expect(typeof got).toBe('string');
      expect(got).not.toBe(MARKER);
    } finally {
      setBroken('kv-checkpoint-hash-unchecked', false);
    }
  });
});
