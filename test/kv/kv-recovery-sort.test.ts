/**
 * Recovery's entry sort (src/kv/recovery-sort.ts) against Buffer.compare, on key shapes
 * that reach every path: random 16-byte keys (small buckets, insertion sort), one-byte keys
 * and keys that are prefixes of others or end in zero bytes (the "ends here" buckets and the
 * length tie-break inside zero-padded words), keys longer than 16 bytes that differ only
 * after byte 16 (the tail compare in the log), and thousands of keys sharing their first
 * bytes (one large bucket: the radix fallback), one key written many times (short and long),
 * keys equal in every word but their length, and keys sharing 4, 8 or 12 bytes (the word by
 * word passes of long runs), all with duplicates. Then a store holding
 * those shapes, overwritten and partly deleted, reopens to the model's contents.
 *
 * Not covered here: crash images (kv-crash.test.ts) and poison (kv-memory-failure.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../../src/kv/index.js';
import { SORT_DEL_BIT, SORT_RECORD_WORDS, sortRecordOffset, sortedEntryRecords, writeSortRecord } from '../../src/kv/recovery-sort.js';

const seed = process.env['DAXSTORE_SEED'] !== undefined ? Number(process.env['DAXSTORE_SEED']) : (Math.random() * 2 ** 31) | 0;
const replay = (file: string): string => `seed ${seed}; replay: DAXSTORE_SEED=${seed} npx vitest run test/kv/${file}`;

function rng(s: number): () => number {
  let x = s >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

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
  for (let i = 0; i < 2500; i++) keys.push(Uint8Array.from([0x75, 0x3a, ...Buffer.from(String(int(1800)).padStart(6, '0'))])); // "u:000123": a large bucket of decimal keys
  const hot = bytes(16);
  for (let i = 0; i < 100; i++) keys.push(hot.slice()); // one key written many times: a long run equal in every word
  const hotLong = bytes(40);
  for (let i = 0; i < 50; i++) keys.push(hotLong.slice()); // the same, longer than 16 bytes (the MSD fallback)
  for (let len = 1; len <= 16; len++) for (let i = 0; i < 3; i++) keys.push(Uint8Array.from({ length: len }, (_, j) => (j === 0 ? 0x41 : 0))); // equal zero-padded words, lengths 1..16: the length pass
  const shared = bytes(12);
  for (let i = 0; i < 300; i++) keys.push(Uint8Array.from([...shared.subarray(0, 4 + 4 * int(3)), ...bytes(int(9), 4)])); // 4, 8 or 12 shared bytes, then a few of 4 values: runs a word deeper
  const n = keys.length;
  for (let i = 0; i < n / 4; i++) keys.push(keys[int(n)].slice()); // duplicates
  for (let i = keys.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [keys[i], keys[j]] = [keys[j], keys[i]];
  }
  return keys;
}

describe('recovery sort', () => {
  it('orders records as Buffer.compare does, flags exactly the equal neighbours, keeps every record whole', () => {
    const r = rng(seed);
    const keys = keyShapes(r);
    const n = keys.length;
    // The log: each entry 8-aligned, its key after a 16-byte header, then anything (as in the
    // log). Offsets are given 2^40 higher (keyDelta takes it back off), to cover their high bits.
    const HIGH = 2 ** 40;
    const starts = new Uint32Array(n);
    let o = 0;
    for (let i = 0; i < n; i++) {
      starts[i] = o + 16;
      o += 16 + ((keys[i].length + 7) & ~7);
    }
    const buf = Uint8Array.from({ length: o + 16 }, () => Math.floor(r() * 256));
    const u32 = new Uint32Array(buf.buffer);
    keys.forEach((k, i) => buf.set(k, starts[i]));
    const recs = new Uint32Array(n * SORT_RECORD_WORDS);
    const seqs = keys.map(() => Math.floor(r() * 2 ** 50));
    const ats = keys.map((_, i) => starts[i] - 16 + HIGH);
    const idOf = new Map(ats.map((at, i) => [at, i]));
    for (let i = 0; i < n; i++) writeSortRecord(recs, i * SORT_RECORD_WORDS, u32, starts[i], keys[i].length, (i & 1) === 1, seqs[i], ats[i]);

    const { sorted, same } = sortedEntryRecords(recs, n, buf, 16 - HIGH);
    try {
      const ids: number[] = [];
      for (let p = 0; p < n; p++) {
        const w = p * SORT_RECORD_WORDS;
        const id = idOf.get(sortRecordOffset(sorted, w));
        expect(id).toBeDefined();
        if (id === undefined) return;
        ids.push(id);
        expect(sorted[w] & 0xffff).toBe(keys[id].length);
        expect((sorted[w] & SORT_DEL_BIT) !== 0).toBe((id & 1) === 1);
        expect(sorted[w + 6] * 2 ** 32 + sorted[w + 5]).toBe(seqs[id]);
        if (p > 0) {
          const c = Buffer.compare(keys[ids[p - 1]], keys[id]);
          expect(c).toBeLessThanOrEqual(0);
          expect(same[p]).toBe(c === 0 ? 1 : 0);
        } else expect(same[0]).toBe(0);
      }
      expect(new Set(ids).size).toBe(n);
    } catch (e) {
      console.error(`recovery sort failed with ${replay('kv-recovery-sort.test.ts')}`);
      throw e;
    }
  });

  it('a log of more tiny records than the scan buffer first makes room for (it grows) reopens to the model', () => {
    // 56-byte records (short keys, empty values): ~37k a segment, where the scan's buffer guesses 16k.
    const r = rng(seed ^ 0x2545f491);
    const media = createSimMedia(32 * 2 ** 20);
    const db = openMedia(media, { durability: 'none' });
    const model = new Map<string, number>();
    for (let i = 0; i < 200_000; i++) {
      const k = (Math.floor(r() * 120_000) >>> 0).toString(36);
      db.put(k, '');
      model.set(k, 0);
    }
    db.close();
    const again = openMedia(media.crashImage({ mode: 'none' }), { formatIfEmpty: false });
    try {
      expect(again.recovery?.entries).toBe(200_000);
      expect(again.recovery?.keys).toBe(model.size);
      const want = [...model.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      expect([...again.range()].map(([k]) => Buffer.from(k).toString())).toEqual(want);
    } catch (e) {
      console.error(`recovery of tiny records failed with ${replay('kv-recovery-sort.test.ts')}`);
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
      console.error(`recovery of key shapes failed with ${replay('kv-recovery-sort.test.ts')}`);
      throw e;
    } finally {
      again.close();
    }
  });
});
