/**
 * Recovery's winner pick (addon/kv-recovery.cc, through src/kv/recovery-native.ts) against
 * a model built with Buffer.compare, on key shapes that reach every path: random 16-byte keys
 * (small bins, insertion sort), one-byte keys and keys that are prefixes of others or end in
 * zero bytes (the length tie-break inside zero-padded words), keys longer than 16 bytes that
 * differ only after byte 16 (the tail compare in the log), thousands of keys sharing their
 * first bytes (one large bin: std::sort), one key written many times (short and long), keys
 * equal in every word but their length, and keys sharing 4, 8 or 12 bytes, all with
 * duplicates, deletes and equal sequences. Then its bad inputs, and a store holding those
 * shapes, overwritten and partly deleted, reopening to the model's contents.
 *
 * Not covered: entry offsets of 32 GiB and more (bits 17..29 of word 0): a media that large.
 *
 * Not covered here: crash images (kv-crash.test.ts) and poison (kv-memory-failure.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { FoundEntries, SORT_RECORD_WORDS, pickWinners } from '../../src/kv/recovery-native.js';
import { mediaViews } from '../../src/kv/records.js';
import { native } from '../../src/native/addon.js';
import { replayHint, rng, testSeed } from '../helpers/seed.js';
import { ENTRY_HEADER_BYTES } from '../../src/kv/layout.js';

const FILE = 'test/kv/kv-recovery-pick.test.ts';

const seed = testSeed();

/** Keys of every shape the sort distinguishes, with duplicates. */
function keyShapes(r: () => number): Uint8Array[] {
  const int = (n: number): number => Math.floor(r() * n);
  const bytes = (n: number, max = 256): Uint8Array => Uint8Array.from({ length: n }, () => int(max));
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) keys.push(bytes(16)); // random: small buckets
  for (let i = 0; i < 400; i++) keys.push(bytes(1 + int(5), 3)); // short, over a 3-letter alphabet with 0: prefixes, zero tails
  const long = bytes(16);
  for (let i = 0; i < 300; i++) keys.push(Uint8Array.from([...long, ...bytes(int(30), 4)])); // > 16 bytes, same first 16 (one large bucket)
  for (let i = 0; i < 200; i++) keys.push(Uint8Array.from([...long.subarray(0, 2 + int(14)), ...bytes(int(24), 3)])); // around the 16-byte boundary
  for (let g = 0; g < 20; g++) {
    const pfx = bytes(16); // small buckets of keys equal in their first 16 bytes: the insertion sort's tail compare
    for (let i = 0; i < 8; i++) keys.push(Uint8Array.from([...pfx, ...bytes(int(6), 2)]));
  }
  for (let i = 0; i < 2500; i++)
    keys.push(Uint8Array.from([0x75, 0x3a, ...Buffer.from(String(int(1800)).padStart(6, '0'))])); // "u:000123": a large bucket of decimal keys
  const hot = bytes(16);
  for (let i = 0; i < 100; i++) keys.push(hot.slice()); // one key written many times: a long run equal in every word
  const hotLong = bytes(40);
  for (let i = 0; i < 50; i++) keys.push(hotLong.slice()); // the same, longer than 16 bytes (the MSD fallback)
  for (let len = 1; len <= 16; len++)
    for (let i = 0; i < 3; i++) keys.push(Uint8Array.from({ length: len }, (_, j) => (j === 0 ? 0x41 : 0))); // equal zero-padded words, lengths 1..16: the length pass
  const shared = bytes(12);
  for (let i = 0; i < 300; i++)
    keys.push(Uint8Array.from([...shared.subarray(0, 4 + 4 * int(3)), ...bytes(int(9), 4)])); // 4, 8 or 12 shared bytes, then a few of 4 values: runs a word deeper
  const n = keys.length;
  for (let i = 0; i < n / 4; i++) keys.push(keys[int(n)].slice()); // duplicates
  for (let i = keys.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [keys[i], keys[j]] = [keys[j], keys[i]];
  }
  return keys;
}

/**
 * A sort record as recovery's scan writes it (layout: addon/kv-recovery.h), for the entry at
 * media offset `at` whose key follows its entry header (ENTRY_HEADER_BYTES).
 */
function writeSortRecord(
  recs: Uint32Array,
  r: number,
  key: Uint8Array,
  del: boolean,
  sequence: number,
  at: number,
): void {
  const at8 = at / 8;
  recs[r] = key.length | (del ? 1 << 16 : 0) | (Math.floor(at8 / 2 ** 32) << 17);
  const head = new Uint8Array(16);
  head.set(key.subarray(0, 16));
  const dv = new DataView(head.buffer);
  for (let w = 0; w < 4; w++) recs[r + 1 + w] = dv.getUint32(4 * w); // big-endian
  recs[r + 5] = sequence >>> 0;
  recs[r + 6] = Math.floor(sequence / 2 ** 32);
  recs[r + 7] = at8 >>> 0;
}

/** Runs the pick over sort records of `keys` (random sequences, deletes, ties) and checks it against the model. */
function checkPick(keys: Uint8Array[], r: () => number): void {
  const n = keys.length;
  // The log: each entry 8-aligned, its key after its header, then anything.
  const ats = new Float64Array(n);
  let o = 0;
  for (let i = 0; i < n; i++) {
    ats[i] = o;
    o += ENTRY_HEADER_BYTES + ((keys[i].length + 7) & ~7);
  }
  const media = Uint8Array.from({ length: o + 16 }, () => Math.floor(r() * 256));
  keys.forEach((k, i) => media.set(k, ats[i] + ENTRY_HEADER_BYTES));
  // Sequences from a small range with high bits set: equal sequences of one key happen (the
  // lower offset must win), and the high word is compared.
  const seqs = keys.map(() => 2 ** 40 + Math.floor(r() * 64));
  const dels = keys.map(() => r() < 0.3);
  const recs = new Uint32Array(n * SORT_RECORD_WORDS);
  for (let i = 0; i < n; i++) writeSortRecord(recs, i * SORT_RECORD_WORDS, keys[i], dels[i], seqs[i], ats[i]);

  const newest = new Map<string, number>();
  keys.forEach((k, i) => {
    const hex = Buffer.from(k).toString('hex');
    const j = newest.get(hex);
    if (j === undefined || seqs[i] > seqs[j] || (seqs[i] === seqs[j] && ats[i] < ats[j])) newest.set(hex, i);
  });
  const want = [...newest.entries()]
    .filter(([, i]) => !dels[i])
    .sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex')));

  const found = new FoundEntries(1, 2 ** 21);
  while (found.records.length < recs.length) found.grow();
  found.records.set(recs);
  found.count = n;
  found.indexKeyBytes = keys.reduce((s, k) => s + k.length + 1, 0);
  const w = pickWinners(mediaViews(media.buffer), found, 0x01);
  try {
    expect(w.count).toBe(want.length);
    const got = Array.from({ length: w.count }, (_, i) => {
      const key = w.keys.subarray(w.starts[i], w.starts[i] + w.lengths[i]);
      expect(key[0]).toBe(0x01);
      return [Buffer.from(key.subarray(1)).toString('hex'), w.values[i]];
    });
    expect(got).toEqual(want.map(([hex, i]) => [hex, ats[i]]));
  } catch (e) {
    console.error(`recovery pick failed with ${replayHint(seed, FILE)}`);
    throw e;
  }
}

describe('recovery winner pick', () => {
  it('keeps each key newest entry (ties to the lower offset), drops keys whose newest is a delete, in Buffer.compare order', () => {
    const r = rng(seed);
    checkPick(keyShapes(r), r);
  });

  it('the same where buckets outgrow the cache and split again: keys sharing prefixes of 1, 5, 11 and 16 bytes', () => {
    const r = rng(seed ^ 0x68e31da4);
    const keys: Uint8Array[] = [];
    const digits = (n: number, width: number): string => String(n).padStart(width, '0');
    for (let i = 0; i < 3000; i++) keys.push(Uint8Array.from({ length: 16 }, () => Math.floor(r() * 256))); // random: small buckets
    for (let i = 0; i < 30_000; i++) keys.push(Buffer.from(`user:${digits(Math.floor(r() * 60_000), 10)}`)); // one bucket of 30k: split on the varying digits
    for (let i = 0; i < 20_000; i++)
      keys.push(
        Buffer.from(`user:000000${digits(Math.floor(r() * 40), 2)}${String.fromCharCode(65 + Math.floor(r() * 3))}`),
      ); // deeper: 11 shared bytes
    const long = 'session:0123456'; // 15 bytes
    for (let i = 0; i < 17_000; i++)
      keys.push(
        Buffer.from(`${long}${String.fromCharCode(97 + Math.floor(r() * 2))}${digits(Math.floor(r() * 500), 3)}`),
      ); // 16 shared with some: the full compare of long keys
    for (let i = keys.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [keys[i], keys[j]] = [keys[j], keys[i]];
    }
    checkPick(keys, r);
  });

  it('refuses sort records that point outside the media, and arguments of the wrong kind, with -EINVAL', () => {
    const media = new Uint8Array(4096);
    const recs = new Uint32Array(SORT_RECORD_WORDS);
    writeSortRecord(recs, 0, Uint8Array.of(1, 2, 3), false, 1, 8192);
    const cols = [new Float64Array(1), new Uint32Array(1), new Uint16Array(1), new Uint8Array(8)] as const;
    expect(native().pickKvWinners(media, recs, 1, ...cols, 1)).toBe(-22);
    expect(native().pickKvWinners(media, recs, 2, ...cols, 1)).toBe(-22); // more records than the array holds
    expect(
      native().pickKvWinners(media, recs, 1, cols[0], cols[1], cols[1] as unknown as Uint16Array, cols[3], 1),
    ).toBe(-22);
    const io = new Float64Array(12);
    io.set([0, 8192, 8192, 0, 0, 0, 0]); // a segment past the end of the media
    expect(native().scanKvSegment(media, io, new Uint32Array(8), new Uint32Array(0), new Float64Array(10))).toBe(-22);
    io.set([0, 4096, 4096, 0, 0, 8, 0]); // at not 8-aligned... at 8 is aligned: start past base is fine
    io[5] = 12;
    expect(native().scanKvSegment(media, io, new Uint32Array(8), new Uint32Array(0), new Float64Array(10))).toBe(-22);
  });

  it('a LOST entry (salvage marker) wins over older versions and loses to an intact entry of equal sequence', () => {
    const media = new Uint8Array(4096);
    const recs = new Uint32Array(5 * SORT_RECORD_WORDS);
    const lost = (r: number): void => void (recs[r] |= 1 << 15);
    writeSortRecord(recs, 0, Uint8Array.of(7), false, 5, 0); // key 7: LOST at 9 (lowest offset) vs intact at 9
    lost(0);
    writeSortRecord(recs, SORT_RECORD_WORDS, Uint8Array.of(7), false, 9, 64);
    lost(SORT_RECORD_WORDS);
    writeSortRecord(recs, 2 * SORT_RECORD_WORDS, Uint8Array.of(7), false, 9, 128);
    writeSortRecord(recs, 3 * SORT_RECORD_WORDS, Uint8Array.of(8), false, 3, 192); // key 8: LOST at 4 beats 3
    writeSortRecord(recs, 4 * SORT_RECORD_WORDS, Uint8Array.of(8), false, 4, 256);
    lost(4 * SORT_RECORD_WORDS);
    const values = new Float64Array(5);
    const n = native().pickKvWinners(
      media,
      recs,
      5,
      values,
      new Uint32Array(5),
      new Uint16Array(5),
      new Uint8Array(16),
      1,
    );
    expect(n).toBe(2);
    expect([...values.subarray(0, 2)]).toEqual([128, 256]);
  });

  it('a column too small for the winners is refused with -ERANGE, nothing written past it', () => {
    const media = new Uint8Array(4096);
    const recs = new Uint32Array(2 * SORT_RECORD_WORDS);
    writeSortRecord(recs, 0, Uint8Array.of(1), false, 1, 0);
    writeSortRecord(recs, SORT_RECORD_WORDS, Uint8Array.of(2), false, 1, 64);
    const keys = new Uint8Array(16);
    expect(
      native().pickKvWinners(media, recs, 2, new Float64Array(1), new Uint32Array(2), new Uint16Array(2), keys, 1),
    ).toBe(-34);
    expect(
      native().pickKvWinners(
        media,
        recs,
        2,
        new Float64Array(2),
        new Uint32Array(2),
        new Uint16Array(2),
        keys.subarray(0, 3),
        1,
      ),
    ).toBe(-34);
    expect(keys[3]).toBe(0);
  });

  it('a log of more tiny records than the scan buffer first makes room for (it grows) reopens to the model', () => {
    // 64-byte records (short keys, empty values): ~32k a segment, where the scan's buffer guesses 16k.
    // No automatic compaction: every record stays in the log for the scan to find.
    const r = rng(seed ^ 0x2545f491);
    const media = createSimMedia(32 * 2 ** 20);
    const db = openMedia(media, { durability: 'none', autoCompact: false });
    const model = new Map<string, number>();
    for (let i = 0; i < 200_000; i++) {
      const k = (Math.floor(r() * 120_000) >>> 0).toString(36);
      db.put(k, '');
      model.set(k, 0);
    }
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
    try {
      expect(again.recovery?.entries).toBe(200_000);
      expect(again.recovery?.keys).toBe(model.size);
      const want = [...model.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect([...again.range()].map(([k]) => Buffer.from(k).toString())).toEqual(want);
    } catch (e) {
      console.error(`recovery of tiny records failed with ${replayHint(seed, FILE)}`);
      throw e;
    } finally {
      again.close();
    }
  });

  it('a store of those key shapes, overwritten and partly deleted, reopens to the model', () => {
    const r = rng(seed ^ 0x5bd1e995);
    const media = createSimMedia(64 * 2 ** 20);
    const db = openMedia(media, { durability: 'none' });
    const model = new Map<string, number>();
    const keys = keyShapes(r);
    keys.forEach((k, i) => {
      const hex = Buffer.from(k).toString('hex');
      if (model.has(hex) && r() < 0.3) {
        expect(db.delete(k)).toBe(true);
        model.delete(hex);
      } else {
        db.put(k, new Uint8Array([i & 0xff, i >> 8]));
        model.set(hex, i);
      }
    });
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    try {
      const want = [...model].sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex')));
      const got = [...again.range()].map(([k, v]) => [Buffer.from(k).toString('hex'), v[0] | (v[1] << 8)]);
      expect(got).toEqual(want);
      expect(again.recovery?.keys).toBe(model.size);
      expect(again.recovery?.droppedRecords).toBe(0);
    } catch (e) {
      console.error(`recovery of key shapes failed with ${replayHint(seed, FILE)}`);
      throw e;
    } finally {
      again.close();
    }
  });
});
