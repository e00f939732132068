/**
 * Object table: which objects exist and their sizes — persistent records in device blocks
 * owned by OWNER_OBJECT_TABLE, plus a volatile slot table (SharedArrayBuffer) that every
 * thread of the space shares (cached size, invalidate lock, record location).
 *
 * Persistent record (16 bytes, 256 per 4 KiB table page; page p = the block owned by
 * (OWNER_OBJECT_TABLE, p)), two aligned u64 words, each written by ONE 8-byte store:
 *   word0  objectId (>= 16, bits 0..39), 0 = free record
 *   word1  sizeBytes (<= 2^48, bits 0..47)
 *   Each word's bytes 6 and 7 are its two check bytes (device/byte-check.ts, over the word's 8
 *   bytes; 0 for a zero word): one wrong byte of a word is corrected exactly at load; a word no
 *   single byte explains is ECORRUPT, or, when the space salvages, its record is cleared.
 *
 * Shared slot table (Int32Array over `state`):
 *   header  H_LOCK (spin-lock.ts mutex: create/remove/grow), H_PAGES (table pages in use),
 *           H_RECORD_CURSOR (where the next free-record search starts), H_CAPACITY (slots),
 *           H_TOKEN (random id, written once: invalidate-lock.ts holder records name the table by it),
 *           then MAX_TABLE_PAGES words: block of table page p, -1 if none
 *   slot    8 words: S_ID_LO, S_ID_HI (object id), S_RW (invalidate-lock.ts word),
 *           S_RECORD (record number = page*256 + i), S_STATE (0 empty, 1 live, 2 removed),
 *           S_SIZE_LO, S_SIZE_HI (cached size; written under S_RW exclusive),
 *           S_WRITEBACK (spin-lock.ts mutex: one writeback of the object at a time, writeback.ts)
 *   Slots are an open-addressing hash on the object id; a slot keeps its id for life
 *   (removed objects leave a tombstone that a re-create of the same id reuses).
 *
 * Invariants
 *   - A live slot's record holds its id in word0 and its durable size in word1, and the
 *     cached size equals word1 once the size change that wrote it has returned.
 *   - No two live records hold one id.
 *
 * Concurrency
 *   - H_LOCK serializes create, remove and table growth (they persist while holding it:
 *     rare operations). Lookups probe lock-free: S_ID_* are written before S_STATE is
 *     stored (Atomics), and never change afterwards.
 *   - Size changes happen under the object's invalidate lock held exclusive (truncate.ts).
 *
 * Persistence ordering
 *   - create: word1 (size) store + persist, then word0 (id) store + persist. A torn create
 *     leaves word0 = 0: no object.
 *   - size change: one word1 store + persist.
 *   - remove: the caller first makes every block of the object unreachable (unpublish),
 *     then word0 = 0 + persist, so a re-created id never inherits old blocks.
 *   - new table page: zeroed and persisted under staging, then published (alloc.ts).
 */
import { randomFillSync } from 'node:crypto';
import { DaxError } from '../errors.js';
import { native } from '../native/addon.js';
import { assert } from '../assert.js';
import type { Device } from '../device/device.js';
import { lockWord, unlockWord } from '../device/spin-lock.js';
import { allocateZeroed, clearStage, publishBlock } from './alloc.js';
import { TOKEN_WORD } from './invalidate-lock.js';
import { MAX_OBJECT_BYTES, MIN_OBJECT_ID, OWNER_OBJECT_TABLE, PAGE_BYTES } from './layout.js';
import { correctOneByte, sealBytes } from '../device/byte-check.js';
import { isBroken } from '../test-break.js';

const H_LOCK = 0;
const H_PAGES = 1;
const H_RECORD_CURSOR = 2;
const H_CAPACITY = 3;
const H_TOKEN = TOKEN_WORD; // random nonzero id of this table: invalidate-lock.ts records name the table by it
const H_PAGE_BLOCKS = 16;
export const MAX_TABLE_PAGES = 256;
const RECORDS_PER_PAGE = PAGE_BYTES / 16;
const SLOT_BASE = H_PAGE_BLOCKS + MAX_TABLE_PAGES;
const SLOT_WORDS = 8;
const S_ID_LO = 0;
const S_ID_HI = 1;
export const S_RW = 2;
const S_RECORD = 3;
const S_STATE = 4;
const S_SIZE_LO = 5;
const S_SIZE_HI = 6;
const S_WRITEBACK = 7;
const STATE_LIVE = 1;
const STATE_REMOVED = 2;
const TWO_32 = 2 ** 32;
/** The value bits of a record word (its check bytes are bytes 6 and 7). */
const WORD_VALUE = 0xffff_ffff_ffffn;
const wordScratch = new BigUint64Array(1);
const wordBytes = new Uint8Array(wordScratch.buffer);

/** checkedWord under DAXSTORE_TEST_BREAK=object-record-no-correct: the value when the word's check holds, else undefined. */
function holdsAsIs(word: bigint): bigint | undefined {
  wordScratch[0] = word;
  return correctOneByte(wordBytes, 8) === -1 ? word & WORD_VALUE : undefined;
}

/** `value` (< 2^48) with its check bytes. */
function sealWord(value: bigint): bigint {
  wordScratch[0] = value;
  sealBytes(wordBytes, 8);
  return wordScratch[0];
}

export interface LoadedObject {
  id: number;
  sizeBytes: number;
  record: number;
}

export class ObjectTable {
  readonly words: Int32Array;
  private readonly capacity: number;

  private constructor(
    private readonly device: Device,
    readonly state: SharedArrayBuffer,
  ) {
    this.words = new Int32Array(state);
    this.capacity = this.words[H_CAPACITY];
  }

  /** Fresh shared state for `maxObjects` objects (the slot hash has twice that many slots). */
  static create(device: Device, maxObjects: number): ObjectTable {
    let capacity = 1;
    while (capacity < maxObjects * 2) capacity *= 2;
    const state = new SharedArrayBuffer((SLOT_BASE + capacity * SLOT_WORDS) * 4);
    const words = new Int32Array(state);
    words[H_CAPACITY] = capacity;
    words[H_TOKEN] = randomFillSync(new Int32Array(1))[0] | 1;
    words.fill(-1, H_PAGE_BLOCKS, H_PAGE_BLOCKS + MAX_TABLE_PAGES);
    return new ObjectTable(device, state);
  }

  static attach(device: Device, state: SharedArrayBuffer): ObjectTable {
    return new ObjectTable(device, state);
  }

  /** Records load() found damaged: corrected in place (one wrong byte), or cleared (salvage). */
  readonly repairs: { corrected: string[]; cleared: string[] } = { corrected: [], cleared: [] };

  /**
   * Recovery: adopt the table pages found in the owner table and load every live record. A
   * word with one wrong byte is corrected in place (persisted); a record no single byte per
   * word explains, or invalid (id below 16, size too large, an id twice), is ECORRUPT, or with
   * `salvage` cleared (persisted: the object is gone) and reported in `repairs`.
   */
  load(pages: Map<number, number>, salvage = false): LoadedObject[] {
    for (const [page, block] of pages) {
      if (page >= MAX_TABLE_PAGES)
        throw new DaxError(
          'ECORRUPT',
          `object table page ${page} (block ${block}) beyond the ${MAX_TABLE_PAGES}-page limit`,
        );
      this.words[H_PAGE_BLOCKS + page] = block;
    }
    let count = 0;
    while (count < MAX_TABLE_PAGES && this.words[H_PAGE_BLOCKS + count] >= 0) count++;
    for (let p = count; p < MAX_TABLE_PAGES; p++) {
      if (this.words[H_PAGE_BLOCKS + p] >= 0)
        throw new DaxError('ECORRUPT', `object table page ${p} exists but page ${count} is missing`);
    }
    this.words[H_PAGES] = count;
    const out: LoadedObject[] = [];
    const seen = new Set<number>();
    for (let r = 0; r < count * RECORDS_PER_PAGE; r++) {
      const w = this.recordWords(r);
      if (w[0] === 0n) continue;
      const id0 = this.checkedWord(r, 0, 'object id');
      const size0 = this.checkedWord(r, 1, 'size');
      const id = id0 === undefined ? -1 : Number(id0);
      const sizeBytes = size0 === undefined ? -1 : Number(size0);
      if (id < MIN_OBJECT_ID || sizeBytes < 0 || sizeBytes > MAX_OBJECT_BYTES || seen.has(id)) {
        const why = `object table record ${r} at offset ${this.recordOffset(r)}: object ${id} size ${sizeBytes} is damaged, invalid or duplicated`;
        if (!salvage) throw new DaxError('ECORRUPT', why);
        Atomics.store(w, 0, 0n);
        this.device.media.persist(this.recordOffset(r), 8);
        this.repairs.cleared.push(why);
        continue;
      }
      seen.add(id);
      const slot = this.probe(id, true);
      this.initSlot(slot, id, r, sizeBytes);
      out.push({ id, sizeBytes, record: r });
    }
    return out;
  }

  /**
   * The value of word `i` of record r (its check bytes stripped): corrected in place (persisted,
   * reported) when one byte is wrong; undefined when no single byte explains the damage.
   */
  private checkedWord(r: number, i: number, what: string): bigint | undefined {
    const w = this.recordWords(r);
    wordScratch[0] = w[i];
    if (isBroken('object-record-no-correct')) return holdsAsIs(w[i]);
    const at = correctOneByte(wordBytes, 8);
    if (at === -2) return undefined;
    if (at >= 0) {
      Atomics.store(w, i, wordScratch[0]);
      this.device.media.persist(this.recordOffset(r) + 8 * i, 8);
      this.repairs.corrected.push(
        `object table record ${r} at offset ${this.recordOffset(r)}: one wrong byte of its ${what}, corrected`,
      );
    }
    return wordScratch[0] & WORD_VALUE;
  }

  /** Slot of a live object, or -1. Lock-free. */
  find(id: number): number {
    const slot = this.probe(id, false);
    return slot >= 0 && Atomics.load(this.words, this.at(slot, S_STATE)) === STATE_LIVE ? slot : -1;
  }

  isLive(slot: number): boolean {
    return Atomics.load(this.words, this.at(slot, S_STATE)) === STATE_LIVE;
  }

  idOf(slot: number): number {
    return (this.words[this.at(slot, S_ID_HI)] >>> 0) * TWO_32 + (this.words[this.at(slot, S_ID_LO)] >>> 0);
  }

  rwIndex(slot: number): number {
    return this.at(slot, S_RW);
  }

  /** Word index of the object's writeback mutex (writeback.ts). */
  writebackLockIndex(slot: number): number {
    return this.at(slot, S_WRITEBACK);
  }

  size(slot: number): number {
    // Two words: written only under the invalidate lock exclusive; readers hold it shared
    // or accept an old size (the lock-free read path, protected by the epoch).
    return (
      Atomics.load(this.words, this.at(slot, S_SIZE_HI)) * TWO_32 +
      (Atomics.load(this.words, this.at(slot, S_SIZE_LO)) >>> 0)
    );
  }

  /** Creates a live object of sizeBytes, durable on return. EEXIST if live, ENOSPC if the table is full. */
  create(id: number, sizeBytes: number): number {
    lockWord(this.words, H_LOCK);
    try {
      const slot = this.probe(id, true);
      if (slot < 0)
        throw new DaxError('ENOSPC', `object ${id}: the object slot table is full (${this.capacity / 2} objects)`);
      if (Atomics.load(this.words, this.at(slot, S_STATE)) === STATE_LIVE)
        throw new DaxError('EEXIST', `object ${id} already exists`);
      const record = this.freeRecordLocked(id);
      const w = this.recordWords(record);
      const off = this.recordOffset(record);
      Atomics.store(w, 1, sealWord(BigInt(sizeBytes)));
      this.device.media.persist(off + 8, 8);
      Atomics.store(w, 0, sealWord(BigInt(id)));
      this.device.media.persist(off, 8);
      this.initSlot(slot, id, record, sizeBytes);
      return slot;
    } finally {
      unlockWord(this.words, H_LOCK);
    }
  }

  /** Durably sets the size. Caller holds the object's invalidate lock exclusive. */
  setSizeLocked(slot: number, sizeBytes: number): void {
    const record = this.words[this.at(slot, S_RECORD)];
    Atomics.store(this.recordWords(record), 1, sealWord(BigInt(sizeBytes)));
    this.device.media.persist(this.recordOffset(record) + 8, 8);
    Atomics.store(this.words, this.at(slot, S_SIZE_LO), sizeBytes % TWO_32);
    Atomics.store(this.words, this.at(slot, S_SIZE_HI), Math.floor(sizeBytes / TWO_32));
  }

  /** Durably frees the record. Caller holds the invalidate lock exclusive and unpublished every block. */
  removeLocked(slot: number): void {
    lockWord(this.words, H_LOCK);
    try {
      const record = this.words[this.at(slot, S_RECORD)];
      Atomics.store(this.recordWords(record), 0, 0n);
      this.device.media.persist(this.recordOffset(record), 8);
      Atomics.store(this.words, this.at(slot, S_STATE), STATE_REMOVED);
      this.words[this.at(slot, S_RECORD)] = -1;
    } finally {
      unlockWord(this.words, H_LOCK);
    }
  }

  /** Every live object id (a snapshot). */
  liveIds(): number[] {
    const out: number[] = [];
    for (const s of this.claimedSlots()) if (this.isLive(s)) out.push(this.idOf(s));
    return out;
  }

  /**
   * The slots that ever held an id (S_ID_LO/HI not 0: ids are >= 16), ascending. Found natively
   * (one pass over the table's id words): the table has twice as many slots as objects, and an
   * open runs this, where a loop in JavaScript would run as cold code.
   */
  private claimedSlots(): Int32Array {
    let out = new Int32Array(64);
    for (;;) {
      const n = native().nonzeroWords(this.state, (SLOT_BASE + S_ID_LO) * 4, this.capacity, SLOT_WORDS * 4, out);
      assert(n >= 0, () => `nonzeroWords over the object slots: ${n}`);
      if (n <= out.length) return out.subarray(0, n);
      out = new Int32Array(n);
    }
  }

  // ---- internals ----

  private at(slot: number, word: number): number {
    return SLOT_BASE + slot * SLOT_WORDS + word;
  }

  /** Slot holding id (any state), else with claim: a fresh empty slot claimed for it (caller holds H_LOCK or is recovering); -1 if none. */
  private probe(id: number, claim: boolean): number {
    const lo = (id % TWO_32) | 0;
    const hi = Math.floor(id / TWO_32) | 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b) >>> 0;
    for (let n = 0; n < this.capacity; n++, h++) {
      const slot = h & (this.capacity - 1);
      const state = Atomics.load(this.words, this.at(slot, S_STATE));
      if (state === 0) {
        if (!claim) return -1;
        this.words[this.at(slot, S_ID_LO)] = lo;
        this.words[this.at(slot, S_ID_HI)] = hi;
        return slot;
      }
      if (this.words[this.at(slot, S_ID_LO)] === lo && this.words[this.at(slot, S_ID_HI)] === hi) return slot;
    }
    return -1;
  }

  private initSlot(slot: number, id: number, record: number, sizeBytes: number): void {
    assert(this.words[this.at(slot, S_ID_LO)] === ((id % TWO_32) | 0), 'slot claimed for another id');
    this.words[this.at(slot, S_RECORD)] = record;
    Atomics.store(this.words, this.at(slot, S_SIZE_LO), sizeBytes % TWO_32);
    Atomics.store(this.words, this.at(slot, S_SIZE_HI), Math.floor(sizeBytes / TWO_32));
    Atomics.store(this.words, this.at(slot, S_STATE), STATE_LIVE); // publishes the words above
  }

  private freeRecordLocked(id: number): number {
    const pages = this.words[H_PAGES];
    const total = pages * RECORDS_PER_PAGE;
    const start = this.words[H_RECORD_CURSOR];
    for (let k = 0; k < total; k++) {
      const r = (start + k) % total;
      if (this.recordWords(r)[0] === 0n) {
        this.words[H_RECORD_CURSOR] = r + 1;
        return r;
      }
    }
    if (pages >= MAX_TABLE_PAGES)
      throw new DaxError('ENOSPC', `object ${id}: the object table is full (${total} records)`);
    const block = allocateZeroed(this.device, pages, 0, OWNER_OBJECT_TABLE);
    publishBlock(this.device, block, OWNER_OBJECT_TABLE);
    this.words[H_PAGE_BLOCKS + pages] = block;
    this.words[H_PAGES] = pages + 1;
    clearStage();
    this.words[H_RECORD_CURSOR] = total + 1;
    return total;
  }

  /**
   * A table page a dead thread published (owner record durable) but did not add here: add it,
   * as recovery would at the next open (space.ts reapStage). Takes H_LOCK.
   */
  adoptPage(page: number, block: number): void {
    lockWord(this.words, H_LOCK);
    try {
      if (
        this.words[H_PAGES] === page &&
        (this.words[H_PAGE_BLOCKS + page] < 0 || this.words[H_PAGE_BLOCKS + page] === block)
      ) {
        this.words[H_PAGE_BLOCKS + page] = block;
        this.words[H_PAGES] = page + 1;
      }
    } finally {
      unlockWord(this.words, H_LOCK);
    }
  }

  private recordOffset(record: number): number {
    const block = this.words[H_PAGE_BLOCKS + Math.floor(record / RECORDS_PER_PAGE)];
    assert(block >= 0, () => `object table record ${record} on a missing page`);
    return this.device.blockOffset(block) + (record % RECORDS_PER_PAGE) * 16;
  }

  private recordWords(record: number): BigUint64Array {
    return new BigUint64Array(this.device.media.buffer, this.recordOffset(record), 2);
  }
}
