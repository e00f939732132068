/**
 * Owner table: one 16-byte record per data block, the allocator's truth at recovery and
 * the reverse map (device block -> owner, index) for the layers above.
 *
 * Record of block b at ownerTableOffset + 16 * b: two aligned 8-byte words, each written
 * with ONE aligned 8-byte store (Atomics.store / compareExchange on a BigUint64Array, which
 * V8 compiles to a single 8-byte store on x86-64), so a crash keeps or loses each word whole.
 *
 *   word0 "meta" (u64), 0 = FREE:
 *     bits 0..1   flags: OWNED = 1, POISONED = 2 (both: an owner still holds a poisoned block)
 *     bits 2..5   order: 0 (one 4 KiB block) or 9 (head of a 2 MiB extent); 0 unless OWNED
 *     bits 6..7   reserved, 0
 *     bits 8..47  ownerId (1 .. 2^40-1) when OWNED, else 0
 *     bits 48..63 CHECK: two check bytes of a Reed-Solomon code over GF(2^8) (polynomial
 *                 x^8+x^4+x^3+x^2+1, roots 1 and 2) over the record's 16 bytes (word0 bytes 0..7
 *                 little-endian, then word1's; the check bytes are word0 bytes 6 and 7). Every
 *                 nonzero word0 carries it, computed with the word1 it was stored beside: one
 *                 wrong byte anywhere in an OWNED or POISONED record is found and corrected
 *                 exactly at open (Allocator.rebuild). FREE is word0 = 0, unchecked.
 *   word1 "index" (u64): the block's index within its owner (< 2^53). Meaningful only while
 *     word0 says OWNED (or POISONED: the CHECK covers it); stale otherwise.
 *
 * Invariants
 *   - A block is "covered" iff its record is not an extent head and the record at its
 *     2 MiB-aligned head (b & ~511) is OWNED with order 9. Covered records are FREE or
 *     POISONED-without-owner, never OWNED: one store to the head publishes or frees the
 *     whole extent.
 *   - Order 9 only on blocks with b % 512 === 0 and b + 512 <= dataBlocks.
 *
 * Concurrency
 *   - word0 changes only by compareExchange (allocate: FREE -> OWNED; free: OWNED -> FREE
 *     or POISONED; poison: sets POISONED), so concurrent free and poison of one block never
 *     lose an update. word1 is written only by the allocating thread while the block is
 *     reserved in the allocator's bitmap (nobody else can touch it).
 *
 * Persistence ordering
 *   - Allocate: store word1, persist; then CAS word0, persist. A durable word0 therefore
 *     implies a durable word1.
 *   - Free: CAS word0 to FREE (or POISONED), persist, before the block returns to the bitmap.
 */
import { assert } from '../assert.js';
import { native } from '../native/addon.js';
import type { Media } from './media.js';
import { HUGE_BLOCKS, HUGE_ORDER, OWNER_RECORD_BYTES, type Geometry } from './layout.js';
import { checkHolds as bytesHold, correctOneByte as correctByte, sealBytes } from './byte-check.js';

export const FLAG_OWNED = 1;
export const FLAG_POISONED = 2;
export const MAX_OWNER_ID = 2 ** 40 - 1;
export const MAX_INDEX = Number.MAX_SAFE_INTEGER;

export interface OwnerMeta {
  flags: number;
  order: number;
  ownerId: number;
}

/** The fields of word0 without its CHECK bytes (bits 0..47). */
export const META_FIELDS = 0xffff_ffff_ffffn;

export function encodeMeta(flags: number, order: number, ownerId: number): bigint {
  assert(
    flags >= 0 && flags <= 3 && (order === 0 || order === HUGE_ORDER) && ownerId >= 0 && ownerId <= MAX_OWNER_ID,
    'owner meta fields out of range',
  );
  assert((flags & FLAG_OWNED) !== 0 || (order === 0 && ownerId === 0), 'order and owner only on OWNED records');
  return (BigInt(ownerId) << 8n) | BigInt((order << 2) | flags);
}

export function decodeMeta(meta: bigint): OwnerMeta {
  const low = Number(meta & 0xffn);
  return { flags: low & 3, order: (low >> 2) & 15, ownerId: Number((meta >> 8n) & 0xff_ffff_ffffn) };
}

/** Why meta (its CHECK bytes aside) is not a valid word0 for block (of dataBlocks), or undefined. */
export function metaProblem(meta: bigint, block: number, dataBlocks: number): string | undefined {
  if (meta === 0n) return undefined;
  if ((meta & 0xc0n) !== 0n) return 'reserved bits set';
  const { flags, order, ownerId } = decodeMeta(meta);
  if ((flags & FLAG_OWNED) === 0)
    return order === 0 && ownerId === 0 ? undefined : 'order or owner on an unowned record';
  if (ownerId === 0) return 'owned by owner 0';
  if (order === 0) return undefined;
  if (order !== HUGE_ORDER) return `order ${order}`;
  if (block % HUGE_BLOCKS !== 0 || block + HUGE_BLOCKS > dataBlocks)
    return 'order 9 on a block that cannot head a 2 MiB extent';
  return undefined;
}

/** One record as 16 bytes (word0 then word1, little-endian): scratch of this module. */
const recordWords = new BigUint64Array(2);
const recordBytes = new Uint8Array(recordWords.buffer);

/** word0 `meta` (fields, bits 0..47) with its CHECK bytes for a record whose word1 is `index`. */
export function sealMeta(meta: bigint, index: bigint): bigint {
  recordWords[0] = meta & META_FIELDS;
  recordWords[1] = index;
  sealBytes(recordBytes, 16);
  return recordWords[0];
}

/** Whether a nonzero word0 and its word1 form a record whose CHECK holds. */
export function checkHolds(word0: bigint, word1: bigint): boolean {
  recordWords[0] = word0;
  recordWords[1] = word1;
  return bytesHold(recordBytes, 16);
}

/**
 * The record (word0, word1) with one byte corrected so that its CHECK holds, or undefined when
 * no single byte does (two check bytes correct any one wrong byte: byte-check.ts).
 */
export function correctOneByte(word0: bigint, word1: bigint): [bigint, bigint] | undefined {
  recordWords[0] = word0;
  recordWords[1] = word1;
  return correctByte(recordBytes, 16) >= 0 ? [recordWords[0], recordWords[1]] : undefined;
}

export class OwnerTable {
  private readonly words: BigUint64Array;

  constructor(
    private readonly media: Media,
    private readonly geometry: Geometry,
  ) {
    // Every record the table can hold: the blocks the store may grow into have theirs here too.
    this.words = new BigUint64Array(media.buffer, geometry.ownerTableOffset, Math.floor(geometry.ownerTableBytes / 8));
  }

  loadMeta(block: number): bigint {
    return Atomics.load(this.words, 2 * block);
  }

  /**
   * The blocks below `blocks` whose word0 is not 0 (every record but FREE ones), ascending: one
   * native pass over the table for the loops over every block (Allocator.rebuild, forEachOwned),
   * which run once per open, as cold code, over a record per 4 KiB. Each word0 is read once,
   * whole (relaxed); a record that changes meanwhile is one a loop over the table could have
   * read either way.
   */
  inUse(blocks: number): Int32Array {
    let out = new Int32Array(Math.min(blocks, 1024));
    for (;;) {
      const n = native().nonzeroWords(
        this.media.buffer,
        this.geometry.ownerTableOffset,
        blocks,
        OWNER_RECORD_BYTES,
        out,
      );
      assert(n >= 0, () => `nonzeroWords over the owner table: ${n}`);
      if (n <= out.length) return out.subarray(0, n);
      out = new Int32Array(n);
    }
  }

  loadIndex(block: number): number {
    return Number(Atomics.load(this.words, 2 * block + 1));
  }

  /** word1 as stored (the CHECK of word0 covers it). */
  loadIndexWord(block: number): bigint {
    return Atomics.load(this.words, 2 * block + 1);
  }

  /** Stores both words of a record found damaged and corrected (Device.open, before anyone else reads the table); the caller persists. */
  storeCorrected(block: number, word0: bigint, word1: bigint): void {
    Atomics.store(this.words, 2 * block + 1, word1);
    Atomics.store(this.words, 2 * block, word0);
  }

  /** Stores word1; the caller persists (see persistIndex). Caller holds the block's reservation. */
  storeIndexReserved(block: number, index: number): void {
    Atomics.store(this.words, 2 * block + 1, BigInt(index));
  }

  /** One 8-byte compareExchange on word0; returns the value found (== expected on success). */
  casMeta(block: number, expected: bigint, next: bigint): bigint {
    return Atomics.compareExchange(this.words, 2 * block, expected, next);
  }

  /** Plain word0 store for the reserved-block paths that tests break on purpose. */
  storeMetaReserved(block: number, meta: bigint): void {
    Atomics.store(this.words, 2 * block, meta);
  }

  flushMeta(block: number): void {
    this.media.flush(this.recordOffset(block), 8);
  }

  flushIndex(block: number): void {
    this.media.flush(this.recordOffset(block) + 8, 8);
  }

  recordOffset(block: number): number {
    return this.geometry.ownerTableOffset + block * OWNER_RECORD_BYTES;
  }

  /** Head of the 2 MiB extent block lies in, when that head is an OWNED order-9 record; else -1. */
  coveringHead(block: number): number {
    const head = block - (block % HUGE_BLOCKS);
    if (head === block) return -1;
    const meta = this.loadMeta(head);
    return (Number(meta & 0xffn) & FLAG_OWNED) !== 0 && ((Number(meta & 0xffn) >> 2) & 15) === HUGE_ORDER ? head : -1;
  }
}
