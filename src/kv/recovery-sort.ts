/**
 * Recovery's entry sort: orders the entries the segment scan found by user key (memcmp
 * order, shorter first), so that all entries of a key sit side by side.
 *
 * Why not sort ids: recovery's entries are in log order and a million random keys spread
 * over a 20 MiB key buffer, so every step after an id sort (pick each key's winner, copy its
 * key into a leaf) pays a cache miss per entry per column it reads; those misses, not the
 * arithmetic, were most of recovery (profile of 1M keys, 1.29M entries). Here each entry is
 * one fixed-size SORT RECORD holding everything those steps need; one scatter moves the
 * records into 65793 buckets on the key's first two bytes (~20 records each for random
 * keys), and every later step (bucket sorts, winner pick, key copy) reads records in order.
 *
 * Sort record (Uint32Array, SORT_RECORD_WORDS = 10 words per entry):
 *   0     user key length (bits 0..15, 1..MAX_KEY_BYTES) | DEL (bit 16: the entry is a delete)
 *   1..4  key bytes 0..15, big-endian in each word, zero past the key's end
 *   5     sequence low 32 bits
 *   6     sequence high bits (< 2^21)
 *   7     scan id: scan order (ties between equal sequences) and index of the key start in
 *         the key buffer (keys longer than 16 bytes)
 *   8, 9  device offset of the entry, low 32 bits and high bits
 * Keys longer than 16 bytes compare their tail in the key buffer (through the scan id);
 * a bucket of more than INSERTION_MAX records (keys sharing a long prefix: "user:000001")
 * is sorted by the index's MSD radix sort (sortKeyRuns) on its key runs, never quadratically.
 *
 * Invariants (of the result): records in key order; same[i] = 1 exactly when record i's
 * key equals record i - 1's; the relative order of equal keys is unspecified (the caller
 * breaks ties by sequence, then scan id).
 *
 * Concurrency: none (recovery runs on the opener, on its own arrays). Persistence: none.
 */
import { assert } from '../assert.js';
import { sortKeyRuns } from '../index/bulk-load.js';

export const SORT_RECORD_WORDS = 10;
export const SORT_DEL_BIT = 1 << 16;
/** Key bytes held in a sort record. */
export const SORT_KEY_BYTES = 16;

/** empty key; then per first byte: the one-byte key, and its 256 two-byte continuations */
export const SORT_BUCKETS = 1 + 256 * 257;
const BUCKETS = SORT_BUCKETS;
const INSERTION_MAX = 32;

/**
 * Writes the sort record of an entry at word `r` of `recs`. Its key is u8[keyAt, keyAt +
 * keyLength) with keyAt a multiple of 4 (entry keys are: entries are 8-aligned, headers 16
 * bytes), read as little-endian words and byte-swapped; only words holding key bytes are read.
 */
export function writeSortRecord(recs: Uint32Array, r: number, u32: Uint32Array, keyAt: number, keyLength: number, del: boolean, sequence: number, at: number, id: number): void {
  recs[r] = keyLength | (del ? SORT_DEL_BIT : 0);
  const n = keyLength < SORT_KEY_BYTES ? keyLength : SORT_KEY_BYTES;
  const words = (n + 3) >> 2;
  const w0 = keyAt / 4; // a device offset: may exceed 2^31 (no shift)
  for (let w = 0; w < 4; w++) {
    if (w >= words) {
      recs[r + 1 + w] = 0;
      continue;
    }
    const x = u32[w0 + w];
    let be = ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
    const tail = n - 4 * w; // key bytes in this word, if fewer than 4: zero the rest
    if (tail < 4) be &= ~(0xffffffff >>> (8 * tail));
    recs[r + 1 + w] = be >>> 0;
  }
  recs[r + 5] = sequence >>> 0;
  recs[r + 6] = Math.floor(sequence / 2 ** 32);
  recs[r + 7] = id;
  recs[r + 8] = at >>> 0;
  recs[r + 9] = Math.floor(at / 2 ** 32);
}

/** Byte j (< SORT_KEY_BYTES) of the key of the record at word r. */
export function sortRecordKeyByte(recs: Uint32Array, r: number, j: number): number {
  return (recs[r + 1 + (j >> 2)] >>> (24 - 8 * (j & 3))) & 0xff;
}

/**
 * Sorts `count` records of `recs` by key. `keys`/`keyStart`: the scan's key buffer and each
 * scan id's user key start in it, read only for keys longer than 16 bytes (shorter ones need
 * not be there). `histogram`, if given: counts[1 + b] = records in bucket b (sortBucketOf),
 * counted as the records were written (saves a pass); it is consumed.
 * Returns the sorted records (a new array) and the same-as-previous flags.
 */
export function sortEntryRecords(recs: Uint32Array, count: number, keys: Uint8Array, keyStart: Uint32Array, histogram?: Int32Array): { sorted: Uint32Array; same: Uint8Array } {
  const W = SORT_RECORD_WORDS;
  let counts: Int32Array;
  if (histogram === undefined) {
    counts = new Int32Array(BUCKETS + 1);
    for (let i = 0; i < count; i++) counts[sortBucketOf(recs, i * W) + 1]++;
  } else counts = histogram;
  assert(counts.length === BUCKETS + 1, 'sort histogram of the wrong size');
  for (let b = 1; b <= BUCKETS; b++) counts[b] += counts[b - 1];
  assert(counts[BUCKETS] === count, () => `sort histogram counts ${counts[BUCKETS]} records of ${count}`);
  const pos = counts.slice(0, BUCKETS);
  const sorted = new Uint32Array(count * W);
  for (let i = 0; i < count; i++) {
    const r = i * W;
    const p = pos[sortBucketOf(recs, r)]++ * W;
    for (let w = 0; w < W; w++) sorted[p + w] = recs[r + w];
  }
  const same = new Uint8Array(count);
  const sorter = new BucketSorter(sorted, keys, keyStart);
  for (let b = 0; b < BUCKETS; b++) {
    const from = counts[b];
    const to = counts[b + 1];
    if (to - from <= 1) continue;
    if (b === 0 || (b - 1) % 257 === 0) {
      // The empty key, or one first byte's one-byte key: every record holds the same key.
      for (let i = from + 1; i < to; i++) same[i] = 1;
    } else if (to - from <= INSERTION_MAX) sorter.insertionSort(from, to, same);
    else sorter.radixSort(from, to, same);
  }
  return { sorted, same };
}

/** 0: empty key; 1 + 257 * byte0: one-byte key; 2 + 257 * byte0 + byte1: longer keys. */
export function sortBucketOf(recs: Uint32Array, r: number): number {
  const len = recs[r] & 0xffff;
  const k = recs[r + 1];
  return len === 0 ? 0 : len === 1 ? 1 + 257 * (k >>> 24) : 2 + 257 * (k >>> 24) + ((k >>> 16) & 0xff);
}

class BucketSorter {
  /** record positions of one bucket, and its records copied out in sorted order */
  private perm = new Int32Array(INSERTION_MAX);
  private scratch = new Uint32Array(INSERTION_MAX * SORT_RECORD_WORDS);

  constructor(
    private readonly recs: Uint32Array,
    private readonly keys: Uint8Array,
    private readonly keyStart: Uint32Array,
  ) {}

  /** Sorts records [from, to) (a bucket of at most INSERTION_MAX) and flags equal neighbours. */
  insertionSort(from: number, to: number, same: Uint8Array): void {
    const perm = this.perm;
    const n = to - from;
    for (let i = 0; i < n; i++) {
      const x = (from + i) * SORT_RECORD_WORDS;
      let j = i - 1;
      while (j >= 0 && this.compare(perm[j], x) > 0) {
        perm[j + 1] = perm[j];
        j--;
      }
      perm[j + 1] = x;
    }
    for (let i = 1; i < n; i++) if (this.compare(perm[i - 1], perm[i]) === 0) same[from + i] = 1;
    this.applyPermutation(from, n);
  }

  /**
   * A large bucket: the index's MSD radix sort over the bucket's keys, gathered into one
   * buffer (short keys from their records, longer ones from the key buffer).
   */
  radixSort(from: number, to: number, same: Uint8Array): void {
    const n = to - from;
    const recs = this.recs;
    const starts = new Uint32Array(n);
    const lengths = new Uint16Array(n);
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += recs[(from + i) * SORT_RECORD_WORDS] & 0xffff;
    const gathered = new Uint8Array(bytes);
    let o = 0;
    for (let i = 0; i < n; i++) {
      const r = (from + i) * SORT_RECORD_WORDS;
      const len = recs[r] & 0xffff;
      starts[i] = o;
      lengths[i] = len;
      if (len <= SORT_KEY_BYTES) for (let j = 0; j < len; j++) gathered[o + j] = sortRecordKeyByte(recs, r, j);
      else {
        const k0 = this.keyStart[recs[r + 7]];
        gathered.set(this.keys.subarray(k0, k0 + len), o);
      }
      o += len;
    }
    const { order, sameAsPrevious } = sortKeyRuns(gathered, starts, lengths, n);
    if (this.perm.length < n) {
      this.perm = new Int32Array(n);
      this.scratch = new Uint32Array(n * SORT_RECORD_WORDS);
    }
    for (let i = 0; i < n; i++) this.perm[i] = (from + order[i]) * SORT_RECORD_WORDS;
    for (let i = 1; i < n; i++) same[from + i] = sameAsPrevious[i];
    this.applyPermutation(from, n);
  }

  /** Records at perm[0, n) (word offsets inside [from, from + n)) become records from, from + 1, ... */
  private applyPermutation(from: number, n: number): void {
    const W = SORT_RECORD_WORDS;
    const recs = this.recs;
    const scratch = this.scratch;
    for (let i = 0; i < n; i++) {
      const r = this.perm[i];
      for (let w = 0; w < W; w++) scratch[i * W + w] = recs[r + w];
    }
    recs.set(scratch.subarray(0, n * W), from * W);
  }

  /** memcmp order of the keys of the records at words a and b, shorter first. */
  private compare(a: number, b: number): number {
    const recs = this.recs;
    for (let w = 1; w <= 4; w++) {
      const x = recs[a + w];
      const y = recs[b + w];
      if (x !== y) return x < y ? -1 : 1;
    }
    const la = recs[a] & 0xffff;
    const lb = recs[b] & 0xffff;
    if (la <= SORT_KEY_BYTES || lb <= SORT_KEY_BYTES) return la - lb;
    const keys = this.keys;
    const sa = this.keyStart[recs[a + 7]];
    const sb = this.keyStart[recs[b + 7]];
    assert(sa !== undefined && sb !== undefined, 'sort record with a scan id outside the key columns');
    const n = Math.min(la, lb);
    for (let i = SORT_KEY_BYTES; i < n; i++) {
      const d = keys[sa + i] - keys[sb + i];
      if (d !== 0) return d;
    }
    return la - lb;
  }
}
