/**
 * Recovery's native segment scan (addon/kv-recovery.cc via src/kv/recovery-native.ts).
 *
 * 1. It agrees with the JavaScript record check (records.ts checkRecord, which compaction and
 *    `daxstore check` use) on every segment of a store after random damage: with kv-no-resync
 *    (the first bad record ends the scan) where the scan stops, why (the same reason text),
 *    and how many entries it found; with resync (the default) which bytes it finds bad (one
 *    region: the damaged record, below the watermark of the records after it, so not cut) and
 *    how many entries it found (every other record's). Damage is a flipped byte anywhere
 *    (mostly a checksum mismatch), a header field changed (bad magic, unknown kind, bad
 *    length, another nonce: the checks before the checksum), and an entry header changed and
 *    the record resealed with a correct checksum (entries overrun the record).
 * 2. Poison: the scan reads nothing of a block the poison bitmap names. Shown with a real
 *    SIGBUS: the segment is copied into a file mapping and the file truncated inside a record,
 *    so reading there faults. With the blocks from the truncation on named poisoned, the
 *    record there is a poison region (the records before it found); with kv-scan-past-poison
 *    it reads on and the guard reports EIO; with no bitmap (poison nobody reported) EIO too,
 *    and the process lives.
 * 3. The covered-record check of many segments (verifySegments, what a checkpoint covers): in a
 *    file of four copies of one segment, read with pread(2) and through the mapping, on one
 *    thread and on two: a flipped byte in the third copy is named there, the copies before it
 *    are counted, and equal copies hash alike (XXH3-64 of their bytes) where the flipped one
 *    does not; a copy cut short by a truncated file is a media error (the SIGBUS guard on
 *    the mapping, where the read falls back to), and the process lives.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { xxh64 } from '../../src/device/checksum.js';
import { openRegion } from '../../src/device/region.js';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { OWNER_KV_SEGMENT, SEGMENT_BYTES } from '../../src/kv/layout.js';
import { checkRecord, mediaViews, type MediaViews } from '../../src/kv/records.js';
import {
  FoundEntries,
  REGION_POISON,
  SCAN_DAMAGED_TAIL,
  SCAN_END,
  SCAN_EIO,
  SCAN_INVALID,
  scanSegment,
  verifySegments,
} from '../../src/kv/recovery-native.js';
import { setBroken } from '../../src/test-break.js';
import { cleanupTemp, tempDir } from '../workers/region-helpers.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-recovery-scan.test.ts';

afterEach(cleanupTemp);

const seed = testSeed();
const replay = replayHint(seed, FILE);

/** The JavaScript scan of one segment: checkRecord record by record. */
function referenceScan(
  v: MediaViews,
  base: number,
  nonce: number,
): { status: number; at: number; reason: string; entries: number } {
  const end = base + SEGMENT_BYTES;
  let at = base;
  let entries = 0;
  for (;;) {
    const c = checkRecord(v, at, end, nonce);
    if (c.status === 'end') return { status: SCAN_END, at, reason: '', entries };
    if (c.status === 'invalid') return { status: SCAN_INVALID, at, reason: c.reason, entries };
    entries += c.kind === 3 ? 0 : c.count;
    at += c.totalBytes;
  }
}

/** A store of puts (small and multi-line), batches and deletes; its segments as [offset, nonce, records]. */
function buildStore(r: () => number): {
  v: MediaViews;
  segments: Array<{ base: number; nonce: number; records: number[] }>;
} {
  const media = createSimMedia(16 * 2 ** 20);
  const db = openMedia(media, { durability: 'none' });
  for (let i = 0; i < 1500; i++) {
    const key = `k${Math.floor(r() * 600)}`;
    const x = r();
    if (x < 0.6) db.put(key, new Uint8Array(1 + Math.floor(r() * 300)).fill(i & 0xff));
    else if (x < 0.8) db.delete(key);
    else
      db.batch(
        Array.from({ length: 1 + Math.floor(r() * 5) }, (_, j) => ({
          type: 'put' as const,
          key: `${key}.${j}`,
          value: `v${i}`,
        })),
      );
  }
  const segments: Array<{ base: number; nonce: number; records: number[] }> = [];
  const device = db.dax.device;
  device.forEachOwned((block, owner, index) => {
    if (owner === OWNER_KV_SEGMENT) segments.push({ base: device.blockOffset(block), nonce: index, records: [] });
  });
  db.close();
  const image = media.crashImage({ mode: 'none' });
  const v = mediaViews(image.buffer);
  for (const s of segments) {
    for (let at = s.base; ;) {
      const c = checkRecord(v, at, s.base + SEGMENT_BYTES, s.nonce);
      if (c.status !== 'ok') break;
      s.records.push(at);
      at += c.totalBytes;
    }
  }
  return { v, segments };
}

/** The native scan with kv-no-resync: it ends at the first bad record, as checkRecord's reference does. */
function nativeFirstStop(
  v: MediaViews,
  base: number,
  nonce: number,
): { status: number; at: number; reason: string; entries: number } {
  setBroken('kv-no-resync', true);
  try {
    const found = new FoundEntries(1, SEGMENT_BYTES);
    const s = scanSegment(v, base, base + SEGMENT_BYTES, nonce, found);
    return { status: s.status, at: s.at, reason: s.reason, entries: found.count };
  } finally {
    setBroken('kv-no-resync', false);
  }
}

/** The native scan as recovery runs it: the entries of every valid record, and the bad regions. */
function nativeResync(
  v: MediaViews,
  base: number,
  nonce: number,
): { entries: number; regions: Array<[number, number, number]> } {
  const found = new FoundEntries(1, SEGMENT_BYTES);
  const s = scanSegment(v, base, base + SEGMENT_BYTES, nonce, found);
  return { entries: found.count, regions: s.regions.map((r) => [r.start, r.end, r.flags]) };
}

/**
 * The same scan, once through the whole image and once over a copy of the segment alone
 * (recovery's read(2) path: device offsets with a bias): every found record and region equal.
 */
function expectCopyScanEqual(v: MediaViews, base: number, nonce: number): void {
  const whole = new FoundEntries(1, SEGMENT_BYTES);
  const a = scanSegment(v, base, base + SEGMENT_BYTES, nonce, whole);
  const copied = new FoundEntries(1, SEGMENT_BYTES);
  const bytes = v.u8.slice(base, base + SEGMENT_BYTES);
  const b = scanSegment(v, base, base + SEGMENT_BYTES, nonce, copied, undefined, 0, { bytes, base });
  expect(b).toEqual(a);
  expect(copied.count).toBe(whole.count);
  expect(copied.records.subarray(0, copied.count * 8)).toEqual(whole.records.subarray(0, whole.count * 8));
}

/** Seals the record at `at` again (xxh64 of bytes [8, totalBytes) into its first 8 bytes). */
function reseal(v: MediaViews, at: number): void {
  const total = v.u32[at / 4 + 4];
  v.u64[at / 8] = xxh64(v.u8.subarray(at + 8, at + total));
}

/** Entries of the valid records of the segment: each recorded record, except the one at `skip`. */
function entriesOf(v: MediaViews, records: number[], skip: number): number {
  let n = 0;
  for (const at of records) if (at !== skip && v.u32[at / 4 + 3] >>> 16 !== 4) n += v.u32[at / 4 + 5];
  return n;
}

describe('recovery segment scan', () => {
  it('agrees with records.ts checkRecord on every segment after random damage: stop offset, reason and entries', () => {
    const r = rng(seed);
    const { v, segments } = buildStore(r);
    expect(segments.length).toBeGreaterThan(0);
    const reasons = new Set<string>();
    try {
      for (const s of segments) expect(nativeFirstStop(v, s.base, s.nonce)).toEqual(referenceScan(v, s.base, s.nonce));
      for (let trial = 0; trial < 400; trial++) {
        const s = segments[Math.floor(r() * segments.length)];
        const i = Math.floor(r() * (s.records.length - 1)); // not the last: a record after it holds a watermark past it
        const at = s.records[i];
        const total = v.u32[at / 4 + 4];
        const saved = v.u8.slice(at, at + total + 8);
        const kind = trial % 6;
        if (kind === 0)
          v.u8[at + Math.floor(r() * total)] ^= 1 << Math.floor(r() * 8); // anywhere: mostly the checksum
        else if (kind === 1)
          v.u8[at + 12] ^= 0x40; // magic
        else if (kind === 2)
          v.u8[at + 14] = 5 + Math.floor(r() * 200); // kind
        else if (kind === 3)
          v.u32[at / 4 + 4] = [0, 20, total + 4, SEGMENT_BYTES * 2][Math.floor(r() * 4)]; // length
        else if (kind === 4)
          v.u32[at / 4 + 6] ^= 1 << Math.floor(r() * 32); // nonce
        else {
          // an entry's key or value length, resealed: the checksum holds, the entries do not fit
          if (v.u32[at / 4 + 3] >>> 16 === 4)
            v.u8[at + 40] ^= 1; // a SEAL has no entry: damage its payload
          else v.u32[(at + 32) / 4 + (r() < 0.5 ? 0 : 1)] += 8 * (1 + Math.floor(r() * 3));
          reseal(v, at);
        }
        const want = referenceScan(v, s.base, s.nonce);
        expect(nativeFirstStop(v, s.base, s.nonce)).toEqual(want);
        reasons.add(want.reason.replace(/ \d+$/, ''));
        if (trial % 20 === 0) expectCopyScanEqual(v, s.base, s.nonce);
        if (want.status === SCAN_INVALID && want.at === at) {
          // resync: the one damaged record is a region, every other record's entries are found
          expect(nativeResync(v, s.base, s.nonce)).toEqual({
            entries: entriesOf(v, s.records, at),
            regions: [[at, s.records[i + 1], 0]],
          });
        }
        v.u8.set(saved, at);
      }
      // every reason the check gives was reached
      for (const reason of [
        'bad magic',
        'unknown kind',
        'length',
        'nonce of another segment life',
        'checksum mismatch',
        'entries overrun the record',
      ])
        expect(reasons).toContain(reason);
      // with kv-skip-checksum both accept the torn record alike
      setBroken('kv-skip-checksum', true);
      try {
        const s = segments[0];
        const at = s.records[Math.floor(s.records.length / 2)];
        v.u8[at + 40] ^= 1;
        expect(nativeFirstStop(v, s.base, s.nonce)).toEqual(referenceScan(v, s.base, s.nonce));
        expect(nativeFirstStop(v, s.base, s.nonce).status).toBe(SCAN_END);
        v.u8[at + 40] ^= 1;
      } finally {
        setBroken('kv-skip-checksum', false);
      }
    } catch (e) {
      console.error(`recovery scan differential failed with ${replay}`);
      throw e;
    }
  });

  it('scans a segment read into memory (device offsets biased) as it scans the mapping; a copy too short is refused', () => {
    const { v, segments } = buildStore(rng(seed));
    for (const s of segments) expectCopyScanEqual(v, s.base, s.nonce);
    const s = segments[0];
    const found = new FoundEntries(1, SEGMENT_BYTES);
    const short = { bytes: v.u8.slice(s.base, s.base + SEGMENT_BYTES - 8), base: s.base };
    expect(() => scanSegment(v, s.base, s.base + SEGMENT_BYTES, s.nonce, found, undefined, 0, short)).toThrow();
    const before = { bytes: v.u8.slice(s.base, s.base + SEGMENT_BYTES), base: s.base + 8 };
    expect(() => scanSegment(v, s.base, s.base + SEGMENT_BYTES, s.nonce, found, undefined, 0, before)).toThrow();
  });

  it('reads nothing of a poisoned block: a record running into one is a poison region (real SIGBUS past the named blocks; red with kv-scan-past-poison)', () => {
    // One segment: two small puts, then a record whose value runs three pages on.
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'none' });
    db.put('a', 'first');
    db.put('b', 'second');
    db.put('victim', new Uint8Array(12_000).fill(7));
    const victim = db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('victim')))! - 32; // its record: header before the entry
    let base = -1;
    let nonce = -1;
    db.dax.device.forEachOwned((block, owner, index) => {
      if (
        owner === OWNER_KV_SEGMENT &&
        db.dax.device.blockOffset(block) <= victim &&
        victim < db.dax.device.blockOffset(block) + SEGMENT_BYTES
      ) {
        base = db.dax.device.blockOffset(block);
        nonce = index;
      }
    });
    db.close();
    expect(base).toBeGreaterThanOrEqual(0);
    const image = mediaViews(media.crashImage({ mode: 'none' }).buffer);

    // The segment, at offset 0 of a file mapping; the file then ends one page into the victim's value.
    const file = path.join(tempDir(), 'segment');
    const region = openRegion(file, { create: true, sizeBytes: SEGMENT_BYTES });
    const v = mediaViews(region.buffer);
    v.u8.set(image.u8.subarray(base, base + SEGMENT_BYTES));
    const at = victim - base;
    const cut = (Math.floor(at / 4096) + 2) * 4096; // past the victim's header, inside its value
    expect(at + 12_000).toBeGreaterThan(cut);
    fs.truncateSync(file, cut);

    const poison = new Uint32Array(SEGMENT_BYTES / 4096 / 32);
    for (let b = cut / 4096; b < SEGMENT_BYTES / 4096; b++) poison[b >>> 5] |= 1 << (b & 31);
    const scan = (bits: Uint32Array): { status: number; entries: number; regions: number[][] } => {
      const found = new FoundEntries(1, SEGMENT_BYTES);
      const s = scanSegment(v, 0, SEGMENT_BYTES, nonce, found, bits);
      return { status: s.status, entries: found.count, regions: s.regions.map((r) => [r.start, r.end, r.flags]) };
    };
    // The SEAL, a, b found; the victim's record runs into the named blocks: one poison region to the end.
    expect(scan(poison)).toEqual({
      status: SCAN_DAMAGED_TAIL,
      entries: 2,
      regions: [[at, SEGMENT_BYTES, REGION_POISON]],
    });
    expect(scan(new Uint32Array(0)).status).toBe(SCAN_EIO); // poison nobody reported: the guard, not a dead process
    setBroken('kv-scan-past-poison', true);
    try {
      expect(scan(poison).status).toBe(SCAN_EIO); // the switch: it read the named blocks
    } finally {
      setBroken('kv-scan-past-poison', false);
    }
    region.close();
  });

  it('checks many segments at once, on two threads, by read(2) or the mapping: damage named where it is, a cut file is EIO', () => {
    const media = createSimMedia(8 * 2 ** 20);
    const db = openMedia(media, { durability: 'none' });
    for (let i = 0; i < 40; i++) db.put(`k${i}`, `value ${i}`.repeat(1 + (i % 7)));
    db.put('victim', new Uint8Array(12_000).fill(7));
    let base = -1;
    let nonce = -1;
    db.dax.device.forEachOwned((block, owner, index) => {
      if (owner === OWNER_KV_SEGMENT && base < 0) {
        base = db.dax.device.blockOffset(block);
        nonce = index;
      }
    });
    db.close();
    const image = mediaViews(media.crashImage({ mode: 'none' }).buffer);
    const whole = scanSegment(image, base, base + SEGMENT_BYTES, nonce, new FoundEntries(1, SEGMENT_BYTES));
    expect(whole.status).toBe(SCAN_END);
    const used = whole.at - base;
    const records: number[] = [];
    for (let at = base; at < base + used; at += image.u32[(at + 16) / 4]) records.push(at - base);
    const entries = referenceScan(image, base, nonce).entries;
    expect(entries).toBeGreaterThanOrEqual(41);

    const file = path.join(tempDir(), 'segments');
    const region = openRegion(file, { create: true, sizeBytes: 4 * SEGMENT_BYTES });
    const v = mediaViews(region.buffer);
    for (let i = 0; i < 4; i++) v.u8.set(image.u8.subarray(base, base + used), i * SEGMENT_BYTES);
    const flipAt = 2 * SEGMENT_BYTES + records[20] + 40; // inside the 21st record of the third copy
    v.u8[flipAt] ^= 0x10;
    const segs = Float64Array.from([0, 1, 2, 3].flatMap((i) => [i * SEGMENT_BYTES, used, nonce]));
    for (const regionId of [region.readableRegionId, undefined])
      for (const threads of [1, 2]) {
        const verdicts = verifySegments(v, regionId, segs, SEGMENT_BYTES, threads);
        for (const i of [0, 1])
          expect(verdicts[i]).toMatchObject({ checked: true, records: records.length, entries, bad: undefined });
        // Each copy's bytes are hashed (XXH3-64): equal copies hash alike, the flipped one not.
        const hashes = verifySegments(v, regionId, segs, SEGMENT_BYTES, threads, true);
        expect([verdicts[1].hashLo, verdicts[1].hashHi]).toEqual([verdicts[0].hashLo, verdicts[0].hashHi]);
        expect([hashes[0].hashLo, hashes[0].hashHi]).toEqual([verdicts[0].hashLo, verdicts[0].hashHi]);
        expect([hashes[3].hashLo, hashes[3].hashHi]).toEqual([verdicts[0].hashLo, verdicts[0].hashHi]);
        expect([hashes[2].hashLo, hashes[2].hashHi]).not.toEqual([verdicts[0].hashLo, verdicts[0].hashHi]);
        expect(verdicts[2].bad).toEqual({
          at: 2 * SEGMENT_BYTES + records[20],
          reason: expect.stringMatching(/checksum/),
        });
        const good = verifySegments(v, regionId, segs.subarray(0, 6), SEGMENT_BYTES, threads);
        expect(good.every((d) => d.checked && d.bad === undefined)).toBe(true);
      }
    // The file ends one page into the victim's value in the last copy: pread comes up short, the
    // mapping faults there, and the guard makes it a media error of that segment.
    const big = records.findIndex((at) => image.u32[(base + at + 16) / 4] > 12_000);
    expect(big).toBeGreaterThan(20);
    const victim = 3 * SEGMENT_BYTES + records[big];
    const cut = (Math.floor(victim / 4096) + 2) * 4096;
    fs.truncateSync(file, cut);
    for (const regionId of [region.readableRegionId, undefined])
      for (const threads of [1, 2]) {
        const verdicts = verifySegments(v, regionId, segs.subarray(9), SEGMENT_BYTES, threads);
        expect(verdicts).toMatchObject([
          {
            checked: true,
            records: big,
            entries: entries - 1,
            bad: { at: victim, reason: 'media error (SIGBUS) reading it' },
          },
        ]);
      }
    region.close();
  });
});
