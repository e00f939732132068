/**
 * A full scan at open hashes the segments it reads whole and clean (recovery.ts vouchFor: the
 * XXH3-64 of the copy their records were checked in), and the close's checkpoint keeps those
 * hashes (checkpoint.ts hashSegments) instead of reading and checking the log again. What
 * must hold (on a store file: the scan reads a copy only where the media can read(2)):
 * 1. The close after a `recovery: 'full'` open checks no segment again, and the next open
 *    loads that checkpoint (its hashes match the bytes) with the index the full scan gives.
 * 2. A covered record damaged while the store runs after the full scan (the segment's `used`
 *    unchanged, so its scan hash is kept) is found at the next open, which refuses exactly as
 *    the full scan does. Red with kv-checkpoint-hash-unchecked (hashes not compared at open:
 *    the checkpoint is loaded over the damage and the flipped value served).
 * 3. No hash is kept from a scan that did not check what it read (kv-skip-checksum): the close
 *    checks every segment itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KvDamageError } from '../../src/kv/recovery.js';
import { open } from '../helpers/kv-bytes.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';
import { withBroken } from '../../src/test-break.js';

afterEach(cleanupTemp);

const MiB = 2 ** 20;
const MARKER = 'MARKER-0123456789';
const bytes = (s: string): Uint8Array => Buffer.from(s);

/** A closed store of several segments (the last close wrote no checkpoint), z among its keys. */
function closedStore(): string {
  const file = path.join(tempDir(), 'kv');
  const db = open(file, { size: 64 * MiB, durability: 'none', checkpoint: false });
  for (let i = 0; i < 30_000; i++) db.put(bytes(`k${i}`), new Uint8Array(100).fill(i & 0xff));
  db.put(bytes('z'), bytes(MARKER));
  for (let i = 0; i < 30_000; i += 3) db.put(bytes(`k${i}`), new Uint8Array(90).fill(7));
  db.close();
  return file;
}

/** The key-value pairs of a store, in key order (hex: comparable). */
function contents(file: string, opts: { recovery?: 'full' } = {}): string[] {
  const db = open(file, { durability: 'none', checkpoint: false, ...opts });
  try {
    return [...db.range()].map(([k, v]) => `${Buffer.from(k).toString('hex')}=${Buffer.from(v).toString('hex')}`);
  } finally {
    db.close();
  }
}

/** Opens with a full scan, flips a bit of z's value (in the file, as damage while it runs) when asked, closes. */
function fullScanThenClose(flipZ: boolean): { scanned: number; segments: number; said: unknown } {
  const file = closedStore();
  const db = open(file, { durability: 'none', recovery: 'full' });
  const use = db.recovery!.checkpoint!;
  if (flipZ) {
    const key = bytes('z');
    const at = db.dax.tree.lookup(Uint8Array.of(1, ...key))! + 24 + key.length + 3;
    const fd = fs.openSync(file, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0x10;
    fs.writeSync(fd, b, 0, 1, at);
    fs.closeSync(fd);
  }
  db.close();
  lastFile = file;
  return { scanned: use.scannedSegments.length, segments: db.recovery!.segments, said: db.lastCheckpoint };
}
let lastFile = '';

/** What a strict open of the last store shows of z: refused (KvDamageError), or its value and the checkpoint loaded. */
function outcome(): { refused: string } | { value: string | undefined; loaded: number | undefined } {
  try {
    const db = open(lastFile, { durability: 'none', checkpoint: false });
    try {
      const v = db.get(bytes('z'));
      return {
        value: v === undefined ? undefined : Buffer.from(v).toString(),
        loaded: db.recovery!.checkpoint!.loaded,
      };
    } finally {
      db.close();
    }
  } catch (e) {
    if (!(e instanceof KvDamageError)) throw e;
    return { refused: e.message };
  }
}

describe('the close after a full scan keeps the hashes the scan took', () => {
  it('checks no segment again, and the next open loads its checkpoint with the full scan’s index', () => {
    const { scanned, segments, said } = fullScanThenClose(false);
    expect(segments).toBeGreaterThan(2);
    expect(scanned).toBe(segments);
    expect(said).toMatchObject({ segmentsChecked: 0 });
    const loaded = open(lastFile, { durability: 'none', checkpoint: false });
    try {
      expect(loaded.recovery!.checkpoint!.loaded).toBeDefined();
      expect(loaded.recovery!.checkpoint!.ignored).toEqual([]);
    } finally {
      loaded.close();
    }
    expect(contents(lastFile)).toEqual(contents(lastFile, { recovery: 'full' }));
  });

  it('a covered record damaged while it runs is found at the next open, refused as the full scan refuses it', () => {
    const { said } = fullScanThenClose(true);
    expect(said).toMatchObject({ segmentsChecked: 0 });
    const got = outcome();
    expect(got).toHaveProperty('refused');
    expect((got as { refused: string }).refused).toContain('"z"');
  });

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-hash-unchecked: the checkpoint is loaded over the damage, z served flipped', () => {
    fullScanThenClose(true);
    const got = withBroken('kv-checkpoint-hash-unchecked', outcome);
    expect(got).toHaveProperty('loaded');
    expect((got as { value: string }).value).not.toBe(MARKER);
  });

  it('keeps no hash from a scan that did not check checksums (kv-skip-checksum): the close checks every segment', () => {
    const { scanned, segments, said } = withBroken('kv-skip-checksum', () => fullScanThenClose(false));
    expect(scanned).toBe(0);
    expect(said).toMatchObject({ segmentsChecked: segments });
  });
});
