/**
 * A segment walk (records.ts forEachRecord) checks each record's checksum in a window of the
 * log copied 64 KiB at a time (record-stage.ts logChecksumMatchesInWalk), not in a copy of the
 * record made after its header was read. It must read exactly the records a check of each
 * record on its own reads (checkRecord): on segments with random byte damage, and with records
 * larger than the window. A record whose bytes changed after its window was copied (the window
 * fails it) is checked again from a fresh copy: red with kv-walk-window-no-recopy.
 *
 * Not covered: poisoned blocks (those walks copy record by record: kv-poison tests).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { OWNER_KV_SEGMENT, SEGMENT_BYTES } from '../../src/kv/layout.js';
import { checkRecord, forEachRecord, mediaViews, type MediaViews } from '../../src/kv/records.js';
import { withBroken } from '../../src/test-break.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';

const FILE = 'test/kv/kv-record-walk.test.ts';
const seed = testSeed();
const replay = replayHint(seed, FILE);

interface Seg {
  base: number;
  nonce: number;
}

/** A closed store of small puts, deletes, and batches larger than the walk window; its segments. */
function buildStore(r: () => number): { v: MediaViews; segments: Seg[] } {
  const media = createSimMedia(16 * 2 ** 20);
  const db = openMedia(media, { durability: 'none' });
  for (let i = 0; i < 3000; i++) {
    const key = `k${Math.floor(r() * 800)}`;
    const x = r();
    if (x < 0.7) db.put(key, new Uint8Array(1 + Math.floor(r() * 400)).fill(i & 0xff));
    else if (x < 0.9) db.delete(key);
    else if (x < 0.995)
      db.batch(
        Array.from({ length: 1 + Math.floor(r() * 4) }, (_, j) => ({
          type: 'put' as const,
          key: `${key}.${j}`,
          value: `v${i}`,
        })),
      );
    else
      // one record of ~100 KiB: larger than the walk window
      db.batch(
        Array.from({ length: 100 }, (_, j) => ({
          type: 'put' as const,
          key: `big${i}.${j}`,
          value: new Uint8Array(1000).fill(j),
        })),
      );
  }
  const segments: Seg[] = [];
  const device = db.dax.device;
  device.forEachOwned((block, owner, nonce) => {
    if (owner === OWNER_KV_SEGMENT) segments.push({ base: device.blockOffset(block), nonce });
  });
  db.close();
  return { v: mediaViews(media.crashImage({ mode: 'none' }).buffer), segments };
}

/** The records checkRecord reads one by one from the segment's start, up to the first that fails. */
function reference(v: MediaViews, s: Seg): number[] {
  const records: number[] = [];
  for (let at = s.base; ;) {
    const c = checkRecord(v, at, s.base + SEGMENT_BYTES, s.nonce);
    if (c.status !== 'ok') return records;
    records.push(at);
    at += c.totalBytes;
  }
}

function walk(v: MediaViews, s: Seg, fn?: (at: number) => void): number[] {
  const records: number[] = [];
  forEachRecord(v, s.base, SEGMENT_BYTES, s.nonce, undefined, (at) => {
    records.push(at);
    fn?.(at);
  });
  return records;
}

/** The segment with the most records, and its records. */
function fullest(v: MediaViews, segments: Seg[]): { s: Seg; records: number[] } {
  const all = segments.map((s) => ({ s, records: reference(v, s) }));
  return all.reduce((a, b) => (b.records.length > a.records.length ? b : a));
}

describe('kv segment walk', () => {
  it('reads the records checkRecord reads, with random damage and records larger than the window', () => {
    try {
      const r = rng(seed);
      const { v, segments } = buildStore(r);
      expect(segments.length).toBeGreaterThan(0);
      let big = 0;
      for (const s of segments) {
        const records = reference(v, s);
        expect(walk(v, s)).toEqual(records);
        for (let i = 0; i + 1 < records.length; i++) if (records[i + 1] - records[i] > 64 * 1024) big++;
      }
      expect(big).toBeGreaterThan(0);
      for (let round = 0; round < 40; round++) {
        const s = segments[Math.floor(r() * segments.length)];
        const records = reference(v, s);
        if (records.length === 0) continue;
        const last = records[records.length - 1];
        const at = s.base + Math.floor(r() * (last + 64 - s.base));
        v.u8[at - v.base] ^= 1 << Math.floor(r() * 8);
        const damaged = reference(v, s);
        expect(walk(v, s)).toEqual(damaged);
      }
    } catch (e) {
      console.error(replay);
      throw e;
    }
  });

  it('checks again from a fresh copy a record changed after its window was copied (red with kv-walk-window-no-recopy)', () => {
    const { v, segments } = buildStore(rng(seed));
    const { s, records } = fullest(v, segments);
    expect(records.length).toBeGreaterThan(10);
    // Record 5's last byte is wrong when the walk copies the window at record 0, and right again
    // by the time the walk reads record 5's header: what a record sealed during a walk looks like.
    const byte = records[6] - 1 - v.base;
    const fix = (): void => {
      v.u8[byte] ^= 0x40;
    };
    const walkFixingAt0 = (): number[] => {
      fix();
      return walk(v, s, (at) => {
        if (at === records[0]) fix();
      });
    };
    expect(walkFixingAt0()).toEqual(records);
    expect(withBroken('kv-walk-window-no-recopy', walkFixingAt0)).toEqual(records.slice(0, 5));
  });
});
