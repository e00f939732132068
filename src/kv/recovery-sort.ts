/**
 * Recovery's entry sort: orders the entries the segment scan found by user key (memcmp
 * order, shorter first), so that all entries of a key sit side by side.
 *
 * Why not sort ids: recovery's entries are in log order and a million random keys spread
 * over a 20 MiB key buffer, so every step after an id sort (pick each key's winner, copy its
 * key into a leaf) pays a cache miss per entry per column it reads; those misses, not the
 * arithmetic, were most of recovery (profile of 1M keys, 1.29M entries). Here each entry is
 * one fixed-size SORT RECORD holding everything those steps need; one scatter moves the
 * records into 257 buckets on the key's first byte (~6000 records, 190 KB, for 1M random
 * keys: each fits in L2), each bucket is sorted inside the cache (sortEntryRecords) and
 * handed to the caller in that order while still there (winner pick, key copy).
 *
 * Sort record (Uint32Array, SORT_RECORD_WORDS = 8 words, 32 bytes per entry):
 *   0     user key length (bits 0..15, 1..MAX_KEY_BYTES) | DEL (bit 16: the entry is a delete)
 *         | bits 32..44 of the entry's device offset / 8 (bits 17..29)
 *   1..4  key bytes 0..15, big-endian in each word, zero past the key's end
 *   5     sequence low 32 bits
 *   6     sequence high bits (< 2^21)
 *   7     bits 0..31 of the entry's device offset / 8 (entries are 8-aligned, offsets < 2^48)
 * The offset is also the scan order (segments are scanned in block order, each from its
 * start: ties between equal sequences go to the lower offset) and where the key is: keys
 * longer than 16 bytes compare their tail in the log (`media`, at offset + keyDelta). Every
 * record here was checksummed whole and lies outside poisoned blocks.
 * (Ten words with a scan id and a copy of long keys before: the record is copied three times
 * and every byte of it is fresh memory, a page fault per 4 KiB.)
 * Inside a bucket: an LSD radix sort on key bytes 1..3; runs equal in bytes 0..3 (keys
 * sharing a prefix: "user:000001", or one key written many times) go on word by word
 * (BucketSorter.sortRun), and only runs equal in all 16 bytes with a longer key use the
 * index's MSD radix sort (sortKeyRuns) on whole keys. Every level is linear: never quadratic.
 *
 * Invariants (of what the visitor sees): buckets in key order and records in key order
 * inside each; same[i] = 1 exactly when a record's key equals the previous one's; the
 * relative order of equal keys is unspecified (the caller breaks ties by sequence, then
 * offset).
 *
 * Concurrency: none (recovery runs on the opener, on its own arrays). Persistence: none.
 */
import { assert } from '../assert.js';
import { sortKeyRuns } from '../index/bulk-load.js';

export const SORT_RECORD_WORDS = 8;
export const SORT_DEL_BIT = 1 << 16;
const OFFSET_HI_SHIFT = 17;
/** Largest entry offset / 8 a sort record holds (2^45: device offsets below 2^48). */
const MAX_OFFSET8 = 2 ** 45;
/** Key bytes held in a sort record. */
export const SORT_KEY_BYTES = 16;

/** empty key; then one per first byte */
export const SORT_BUCKETS = 257;
const BUCKETS = SORT_BUCKETS;
const INSERTION_MAX = 32;

/**
 * Writes the sort record of the entry at device offset `at` (a multiple of 8) at word `r` of
 * `recs`. Its key is u8[keyAt, keyAt + keyLength) with keyAt a multiple of 4 (entry keys are:
 * entries are 8-aligned, headers 16 bytes), read as little-endian words and byte-swapped;
 * only words holding key bytes are read.
 */
export function writeSortRecord(recs: Uint32Array, r: number, u32: Uint32Array, keyAt: number, keyLength: number, del: boolean, sequence: number, at: number): void {
  const at8 = at / 8;
  if (!(at8 < MAX_OFFSET8 && at8 === Math.floor(at8))) assert(false, `sort record of an entry at offset ${at} (8-aligned, below 2^48)`);
  recs[r] = keyLength | (del ? SORT_DEL_BIT : 0) | (Math.floor(at8 / 2 ** 32) << OFFSET_HI_SHIFT);
  const w0 = keyAt / 4; // a device offset: may exceed 2^31 (no shift)
  if (keyLength >= SORT_KEY_BYTES) {
    // The common case (the bench's 16-byte keys): four whole words, no tail to mask.
    recs[r + 1] = bigEndian(u32[w0]);
    recs[r + 2] = bigEndian(u32[w0 + 1]);
    recs[r + 3] = bigEndian(u32[w0 + 2]);
    recs[r + 4] = bigEndian(u32[w0 + 3]);
  } else writeShortKey(recs, r, u32, w0, keyLength);
  recs[r + 5] = sequence >>> 0;
  recs[r + 6] = Math.floor(sequence / 2 ** 32);
  recs[r + 7] = at8 >>> 0; // ToUint32: at8 mod 2^32, exact for integers
}

function bigEndian(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

/** Key words 1..4 of a key of n < 16 bytes at word w0 of u32: zero past its end. */
function writeShortKey(recs: Uint32Array, r: number, u32: Uint32Array, w0: number, n: number): void {
  const words = (n + 3) >> 2;
  for (let w = 0; w < 4; w++) {
    if (w >= words) {
      recs[r + 1 + w] = 0;
      continue;
    }
    let be = bigEndian(u32[w0 + w]);
    const tail = n - 4 * w; // key bytes in this word, if fewer than 4: zero the rest
    if (tail < 4) be &= ~(0xffffffff >>> (8 * tail));
    recs[r + 1 + w] = be >>> 0;
  }
}

/** The device offset of the entry of the record at word r. */
export function sortRecordOffset(recs: Uint32Array, r: number): number {
  return ((recs[r] >>> OFFSET_HI_SHIFT) * 2 ** 32 + recs[r + 7]) * 8;
}

/** Byte j (< SORT_KEY_BYTES) of the key of the record at word r. */
export function sortRecordKeyByte(recs: Uint32Array, r: number, j: number): number {
  return (recs[r + 1 + (j >> 2)] >>> (24 - 8 * (j & 3))) & 0xff;
}

/**
 * Receives the sorted entries one bucket at a time, in key order: the bucket's records are
 * `src` at word offsets perm[0, n), in key order; same[i] = 1 exactly when record perm[i]'s
 * key equals record perm[i - 1]'s (same[0] = 0: no key spans two buckets). The arrays are
 * reused for the next bucket.
 */
export interface SortedBucketVisitor {
  visitBucket(src: Uint32Array, perm: Int32Array, same: Uint8Array, n: number): void;
}

/**
 * Sorts `count` records of `recs` by key and hands them to `visitor` bucket by bucket (no
 * sorted copy is made: the caller reads each bucket through its permutation while it is in
 * cache). `media`: the log; the key of a record's entry starts at its offset + keyDelta there,
 * read only for keys longer than 16 bytes. `histogram`, if given: counts[1 + b] = records in
 * bucket b (sortBucketOf), counted as the records were written (saves a pass); it is consumed.
 * `recs` is free once the scatter has read it: the visitor may write into it.
 *
 * How: one scatter of whole records into 257 buckets (empty key, first byte): 257 write
 * streams stay in cache, unlike the 65793 two-byte buckets this replaced (a cache and TLB
 * miss per record: 180 ms of 1.5M records). Each bucket (~190 KB for 1M random keys) is
 * then ordered inside the cache (BucketSorter.sortBucket) and visited.
 */
export function sortEntryRecords(recs: Uint32Array, count: number, media: Uint8Array, keyDelta: number, visitor: SortedBucketVisitor, histogram?: Int32Array): void {
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
  const scattered = sortScratch(count * W);
  for (let i = 0; i < count; i++) {
    const r = i * W;
    copyRecord(scattered, pos[sortBucketOf(recs, r)]++ * W, recs, r);
  }
  let largest = 0;
  for (let b = 0; b < BUCKETS; b++) largest = Math.max(largest, counts[b + 1] - counts[b]);
  const sorter = new BucketSorter(scattered, media, keyDelta, largest);
  for (let b = 0; b < BUCKETS; b++) {
    const from = counts[b];
    const to = counts[b + 1];
    if (to === from) continue;
    if (b === 0) sorter.allSame(from, to); // the empty key
    else sorter.sortBucket(from, to);
    visitor.visitBucket(scattered, sorter.perm, sorter.same, to - from);
  }
}

/** The sorted records and same-as-previous flags as arrays (tests; recovery visits buckets instead). */
export function sortedEntryRecords(recs: Uint32Array, count: number, media: Uint8Array, keyDelta: number): { sorted: Uint32Array; same: Uint8Array } {
  const W = SORT_RECORD_WORDS;
  const sorted = new Uint32Array(count * W);
  const same = new Uint8Array(count);
  let at = 0;
  sortEntryRecords(recs, count, media, keyDelta, {
    visitBucket(src, perm, bucketSame, n) {
      for (let i = 0; i < n; i++, at++) {
        copyRecord(sorted, at * W, src, perm[i]);
        same[at] = bucketSame[i];
      }
    },
  });
  return { sorted, same };
}

/**
 * A zeroed Uint32Array over a SharedArrayBuffer. Why shared: V8 counts a plain ArrayBuffer's
 * bytes as external memory and, past a limit, starts a full mark-compact (in the bench's
 * process, with 1M live Buffers, ~100 ms plus incremental marking during the scan); shared
 * backing stores are not counted per isolate. The memory is freed with the array as usual,
 * at a GC that something else starts (recovery.ts: Memory).
 */
export function sortScratch(words: number): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(words * 4));
}

/** One sort record from word s of src to word d of dst, unrolled (a loop of 10 words was a third slower here). */
function copyRecord(dst: Uint32Array, d: number, src: Uint32Array, s: number): void {
  dst[d] = src[s];
  dst[d + 1] = src[s + 1];
  dst[d + 2] = src[s + 2];
  dst[d + 3] = src[s + 3];
  dst[d + 4] = src[s + 4];
  dst[d + 5] = src[s + 5];
  dst[d + 6] = src[s + 6];
  dst[d + 7] = src[s + 7];
}
SORT_RECORD_WORDS satisfies 8;

/** 0: empty key; 1 + byte0 otherwise. */
export function sortBucketOf(recs: Uint32Array, r: number): number {
  return (recs[r] & 0xffff) === 0 ? 0 : 1 + (recs[r + 1] >>> 24);
}

class BucketSorter {
  /** one bucket's records (word offsets) and the key digit they are being sorted on; the 2 arrays are the LSD passes' spares */
  readonly perm: Int32Array;
  /** same-as-previous flags of the bucket's records in perm's order */
  readonly same: Uint8Array;
  private readonly perm2: Int32Array;
  private readonly digits: Uint32Array;
  private readonly digits2: Uint32Array;
  private readonly digitCounts = new Int32Array(4 * 256);

  /** `recs`: the scattered records, bucket by bucket */
  constructor(
    private readonly recs: Uint32Array,
    private readonly media: Uint8Array,
    private readonly keyDelta: number,
    largestBucket: number,
  ) {
    this.perm = new Int32Array(largestBucket);
    this.same = new Uint8Array(largestBucket);
    this.perm2 = new Int32Array(largestBucket);
    this.digits = new Uint32Array(largestBucket);
    this.digits2 = new Uint32Array(largestBucket);
  }

  /**
   * Sorts records [from, to) (one bucket: every key non-empty with the same first byte) into
   * perm and flags equal neighbours in same. Small buckets: one insertion sort on the full compare. Larger:
   * LSD radix sort on key bytes 1..3 (3 stable 8-bit passes), then each run of records
   * equal in bytes 0..3 is finished (finishRuns).
   */
  sortBucket(from: number, to: number): void {
    const n = to - from;
    const recs = this.recs;
    const perm = this.perm;
    for (let i = 0; i < n; i++) {
      const r = (from + i) * SORT_RECORD_WORDS;
      perm[i] = r;
      this.digits[i] = recs[r + 1] & 0xffffff;
    }
    if (n <= INSERTION_MAX) this.insertionSort(perm, 0, n);
    else {
      this.radixRange(0, n, 3);
      this.finishRuns(0, n, 2);
    }
    const same = this.same;
    same[0] = 0;
    for (let i = 1; i < n; i++) same[i] = this.compare(perm[i - 1], perm[i]) === 0 ? 1 : 0;
  }

  /** Records [from, to) in place, all one key (the empty key's bucket). */
  allSame(from: number, to: number): void {
    for (let i = 0; i < to - from; i++) {
      this.perm[i] = (from + i) * SORT_RECORD_WORDS;
      this.same[i] = i === 0 ? 0 : 1;
    }
  }

  /**
   * perm[lo, hi) is ordered on digits, which hold key word `word - 1` (the words before it
   * equal): sorts each run of equal digits on the rest of the key. Short runs: insertion sort;
   * longer ones (keys sharing a prefix, or one key written many times) go on a word deeper.
   */
  private finishRuns(lo: number, hi: number, word: number): void {
    const digits = this.digits;
    for (let i = lo; i < hi; ) {
      const d = digits[i];
      let j = i + 1;
      while (j < hi && digits[j] === d) j++;
      if (j - i > INSERTION_MAX) this.sortRun(i, j, word);
      else if (j - i > 1) this.insertionSort(this.perm, i, j);
      i = j; // sortRun rewrote digits only inside [i, j)
    }
  }

  /**
   * perm[lo, hi): more than INSERTION_MAX records whose keys are equal in words 1..word-1.
   * Words 2..4: LSD radix sort on that word (skipped when the run agrees on it: one key
   * written many times), then finishRuns a word deeper. Past word 4 (equal in all 16 bytes):
   * keys of at most 16 bytes differ only in length, one counting pass; with a longer key, the
   * index's MSD radix sort on whole keys (keySort). Each level is linear: never quadratic.
   */
  private sortRun(lo: number, hi: number, word: number): void {
    const recs = this.recs;
    const perm = this.perm;
    const digits = this.digits;
    if (word <= 4) {
      const first = recs[perm[lo] + word];
      let varied = false;
      for (let i = lo; i < hi; i++) {
        const x = recs[perm[i] + word];
        digits[i] = x;
        if (x !== first) varied = true;
      }
      if (varied) this.radixRange(lo, hi, 4);
      this.finishRuns(lo, hi, word + 1);
      return;
    }
    let long = false;
    for (let i = lo; i < hi; i++) {
      const len = recs[perm[i]] & 0xffff;
      digits[i] = len;
      if (len > SORT_KEY_BYTES) long = true;
    }
    if (long) this.keySort(lo, hi);
    else this.radixRange(lo, hi, 1);
  }

  /**
   * Stable LSD passes over digits[lo, hi) (bytes 0, 1, ... of each digit, `passes` of them),
   * carrying perm along; the result is left in digits/perm [lo, hi).
   */
  private radixRange(lo: number, hi: number, passes: number): void {
    const counts = this.digitCounts;
    counts.fill(0, 0, passes * 256);
    let digits = this.digits;
    let perm = this.perm;
    let toDigits = this.digits2;
    let toPerm = this.perm2;
    for (let i = lo; i < hi; i++) {
      const d = digits[i];
      for (let pass = 0; pass < passes; pass++) counts[pass * 256 + ((d >>> (8 * pass)) & 0xff)]++;
    }
    for (let pass = 0; pass < passes; pass++) {
      const base = pass * 256;
      const shift = pass * 8;
      let sum = lo;
      for (let b = base; b < base + 256; b++) {
        const c = counts[b];
        counts[b] = sum;
        sum += c;
      }
      for (let i = lo; i < hi; i++) {
        const d = digits[i];
        const p = counts[base + ((d >>> shift) & 0xff)]++;
        toDigits[p] = d;
        toPerm[p] = perm[i];
      }
      const d = digits;
      digits = toDigits;
      toDigits = d;
      const q = perm;
      perm = toPerm;
      toPerm = q;
    }
    if (digits !== this.digits) {
      // An odd number of passes ended in the spare arrays.
      this.digits.set(digits.subarray(lo, hi), lo);
      this.perm.set(perm.subarray(lo, hi), lo);
    }
  }

  /** Insertion sort of perm[lo, hi) (record word offsets) on the full key compare. */
  private insertionSort(perm: Int32Array, lo: number, hi: number): void {
    for (let i = lo + 1; i < hi; i++) {
      const x = perm[i];
      let j = i - 1;
      while (j >= lo && this.compare(perm[j], x) > 0) {
        perm[j + 1] = perm[j];
        j--;
      }
      perm[j + 1] = x;
    }
  }

  /**
   * perm[lo, hi): more than INSERTION_MAX records equal in their first 16 key bytes, some
   * keys longer: the index's MSD radix sort over their keys, gathered into one buffer (short
   * keys from their records, longer ones from the log).
   */
  private keySort(lo: number, hi: number): void {
    const n = hi - lo;
    const recs = this.recs;
    const perm = this.perm;
    const starts = new Uint32Array(n);
    const lengths = new Uint16Array(n);
    let bytes = 0;
    for (let i = lo; i < hi; i++) bytes += recs[perm[i]] & 0xffff;
    const gathered = new Uint8Array(bytes);
    let o = 0;
    for (let i = 0; i < n; i++) {
      const r = perm[lo + i];
      const len = recs[r] & 0xffff;
      starts[i] = o;
      lengths[i] = len;
      if (len <= SORT_KEY_BYTES) for (let j = 0; j < len; j++) gathered[o + j] = sortRecordKeyByte(recs, r, j);
      else {
        const k0 = sortRecordOffset(recs, r) + this.keyDelta;
        gathered.set(this.media.subarray(k0, k0 + len), o);
      }
      o += len;
    }
    const { order } = sortKeyRuns(gathered, starts, lengths, n);
    const run = perm.slice(lo, hi);
    for (let i = 0; i < n; i++) perm[lo + i] = run[order[i]];
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
    const keys = this.media;
    const sa = sortRecordOffset(recs, a) + this.keyDelta;
    const sb = sortRecordOffset(recs, b) + this.keyDelta;
    const n = Math.min(la, lb);
    for (let i = SORT_KEY_BYTES; i < n; i++) {
      const d = keys[sa + i] - keys[sb + i];
      if (d !== 0) return d;
    }
    return la - lb;
  }
}
