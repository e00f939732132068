/**
 * The page-lock baseline of `daxstore bench locks`: the design docs/ARCHITECTURE.md rejects (R3: per-4 KiB
 * lock words; for a huge entry lock every page of it, then re-check the entry and retry),
 * built over the same Device (allocator + owner table), RadixTree (index) and epoch domain
 * as DaxSpace, so what the benchmark compares is how the operations serialize.
 *
 * Shared words (PageLockHandle, posted to every worker)
 *   locks    Int32 per 4 KiB page index of the object: 0 free, 1 locked, 2 locked and a
 *            sleeper may wait (Drepper's mutex #2, spinning 200 times before sleeping, as the
 *            store's own device/spin-lock.ts does)
 *   control  Int32[SIZE_PAGES]: object size in pages. Int32[RW_LOCK]: the object's
 *            reader-writer lock (i_mmap_lock of the old design; the same role and layout as
 *            DaxSpace's invalidate lock): bits 0..29 readers, bit 30 WRITER, bit 29 WRITER_PENDING
 *
 * Protocol (the rejected design)
 *   - fault: rw lock shared, then: 4 KiB entry: lock its page word, re-check the size under
 *     it, look the entry up, and for a hole allocate (staging), zero and persist a block,
 *     publish it (owner record, persisted) and insert it. 2 MiB entry: look the entry up
 *     lock-free, lock all 512 page words of the extent in ascending order, re-check the
 *     entry; if it changed meanwhile unlock all and retry.
 *   - truncate: rw lock exclusive; store the new size, then for each entry past it lock its
 *     page word(s), re-check, unpublish (owner -> staging, flushed), delete it and retire its
 *     block through the epoch (R6); one drain before the rw lock is released.
 *   - memory failure (the reverse map): owner table -> (object, index), lock the entry's page
 *     word(s), re-check the entry still maps the block, else unlock and retry.
 * Lock order: rw lock -> page words in ascending order -> the tree's own write path and the
 * allocator lock.
 *
 * So the persistence work and the object lock are DaxSpace's: what differs is entry locks vs
 * page words. Work the baseline still skips, which favours it: the DIRTY tag and MAPPED bit.
 * The tree's insert/delete take the entry bit internally for an instant (that is the index's
 * own write path, uncontended here because the page words already serialize).
 *
 * DAXSTORE_TEST_BREAK=bench-page-locks-off: the page words are not taken; two faults of one
 * hole then both install, and bench locks' own check (owner table vs index) fails.
 */
import { DaxError } from '../errors.js';
import { RETIRE_DEVICE_BLOCK } from '../index/epoch.js';
import { transferOwner } from '../device/transfer-owner.js';
import { type DaxSpace } from '../dax/space.js';
import { brokenAtLoad } from '../test-break.js';

/** DAXSTORE_TEST_BREAK=bench-page-locks-off: lockRange takes nothing (bench locks' own check must then fail). */
const PAGE_LOCKS_OFF = brokenAtLoad('bench-page-locks-off');

const SIZE_PAGES = 0;
const RW_LOCK = 1;
const CONTROL_WORDS = 2;
const READERS_MASK = (1 << 29) - 1;
const WRITER_PENDING = 1 << 29;
const WRITER = 1 << 30;
/** DaxSpace's reserved owner id of blocks being zeroed or waiting for their grace period */
const OWNER_STAGING = 2;
const SPINS_BEFORE_SLEEP = 200;
const PAGE_BYTES = 4096;
const HUGE_PAGES = 512;
const MAX_RMAP_RETRIES = 1000;

export interface PageLockHandle {
  readonly locks: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
}

export type FaultOutcome = 'ok' | 'beyond-size';

export function createPageLocks(pages: number): PageLockHandle {
  const control = new SharedArrayBuffer(CONTROL_WORDS * 4);
  new Int32Array(control)[SIZE_PAGES] = pages;
  return { locks: new SharedArrayBuffer(pages * 4), control };
}

function lockWord(words: Int32Array, i: number): void {
  for (let s = 0; s < SPINS_BEFORE_SLEEP; s++) if (Atomics.compareExchange(words, i, 0, 1) === 0) return;
  let c = Atomics.exchange(words, i, 2); // contended: the unlocker must notify
  while (c !== 0) {
    Atomics.wait(words, i, 2);
    c = Atomics.exchange(words, i, 2);
  }
}

function unlockWord(words: Int32Array, i: number): void {
  if (Atomics.exchange(words, i, 0) === 2) Atomics.notify(words, i, 1);
}

/** A pending writer stops new readers (truncate is not starved by faults), as in dax/invalidate-lock.ts. */
function lockShared(words: Int32Array, i: number): void {
  for (let spin = 0; ; spin++) {
    const w = Atomics.load(words, i);
    if ((w & (WRITER | WRITER_PENDING)) === 0) {
      if (Atomics.compareExchange(words, i, w, w + 1) === w) return;
    } else if (spin >= SPINS_BEFORE_SLEEP) Atomics.wait(words, i, w, 50);
  }
}

function unlockShared(words: Int32Array, i: number): void {
  if ((Atomics.sub(words, i, 1) & READERS_MASK) === 1) Atomics.notify(words, i);
}

function lockExclusive(words: Int32Array, i: number): void {
  for (let spin = 0; ; spin++) {
    const w = Atomics.load(words, i);
    if ((w & (WRITER | READERS_MASK)) === 0) {
      if (Atomics.compareExchange(words, i, w, (w & ~WRITER_PENDING) | WRITER) === w) return;
    } else if ((w & WRITER_PENDING) === 0) Atomics.compareExchange(words, i, w, w | WRITER_PENDING);
    else if (spin >= SPINS_BEFORE_SLEEP) Atomics.wait(words, i, w, 50);
  }
}

function unlockExclusive(words: Int32Array, i: number): void {
  Atomics.and(words, i, ~WRITER);
  Atomics.notify(words, i);
}

/** 16-byte key: object id and page index, both 8-byte big-endian (the layout DaxSpace uses). */
export function pageKey(objectId: number, index: number): Uint8Array {
  const key = new Uint8Array(16);
  const view = new DataView(key.buffer);
  view.setBigUint64(0, BigInt(objectId));
  view.setBigUint64(8, BigInt(index));
  return key;
}

function keyIndex(key: Uint8Array): number {
  return Number(new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(8));
}

/** Block of page `index` of object `id` from a lock-free index lookup (both paths pick memory-failure targets with it). */
export function blockOfPage(space: DaxSpace, id: number, index: number, entryPages: number): number | undefined {
  const start = index - (index % entryPages);
  const value = space.tree.lookup(pageKey(id, start));
  return value === undefined ? undefined : Math.floor(value / 4) + (index - start);
}

export class PageLockObject {
  private readonly locks: Int32Array;
  private readonly control: Int32Array;
  /** times a huge-entry lock-all-then-recheck found the entry changed and started over */
  retries = 0;

  constructor(
    private readonly space: DaxSpace,
    readonly id: number,
    readonly pages: number,
    readonly entryPages: 1 | typeof HUGE_PAGES,
    handle: PageLockHandle,
  ) {
    if (pages % entryPages !== 0 || handle.locks.byteLength !== pages * 4)
      throw new DaxError(
        'EINVAL',
        `page-lock baseline: ${pages} pages do not fit the lock words or entry size ${entryPages}`,
      );
    this.locks = new Int32Array(handle.locks);
    this.control = new Int32Array(handle.control);
  }

  /** A write fault of page `index`. */
  fault(index: number): FaultOutcome {
    lockShared(this.control, RW_LOCK);
    try {
      return this.faultShared(index);
    } finally {
      unlockShared(this.control, RW_LOCK);
    }
  }

  private faultShared(index: number): FaultOutcome {
    const start = index - (index % this.entryPages);
    for (;;) {
      const before = this.entryPages === 1 ? undefined : this.lookup(start);
      this.lockRange(start, this.entryPages);
      try {
        if (this.entryPages !== 1 && this.lookup(start) !== before) {
          this.retries++;
          continue; // changed between the lookup and the last page lock: unlock all, retry
        }
        if (start + this.entryPages > Atomics.load(this.control, SIZE_PAGES)) return 'beyond-size';
        if (this.lookup(start) === undefined) this.installLocked(start);
        return 'ok';
      } finally {
        this.unlockRange(start, this.entryPages);
      }
    }
  }

  /** Sets the size to `keepPages` (entry aligned): every entry past it is removed. Durable on return. */
  truncate(keepPages: number): void {
    const { tree, epoch, device } = this.space;
    lockExclusive(this.control, RW_LOCK);
    try {
      Atomics.store(this.control, SIZE_PAGES, keepPages);
      for (const [key] of tree.range({ gte: pageKey(this.id, keepPages), lt: pageKey(this.id, this.pages) })) {
        const start = keyIndex(key);
        this.lockRange(start, this.entryPages);
        try {
          const value = this.lookup(start); // re-check under the page locks
          if (value === undefined) continue;
          const block = Math.floor(value / 4);
          transferOwner(device, block, this.id, OWNER_STAGING, { drain: false });
          tree.delete(key);
          epoch.retire(RETIRE_DEVICE_BLOCK, block, 1);
        } finally {
          this.unlockRange(start, this.entryPages);
        }
      }
      device.media.drain(); // every unpublish durable before the lock is released
    } finally {
      unlockExclusive(this.control, RW_LOCK);
    }
  }

  /** Grows the size back (no entry to remove: holes read as zeros). */
  extend(pages: number): void {
    lockExclusive(this.control, RW_LOCK);
    Atomics.store(this.control, SIZE_PAGES, pages);
    unlockExclusive(this.control, RW_LOCK);
  }

  /** The reverse map of a memory failure: true when the page holding deviceOffset was found and locked. */
  memoryFailure(deviceOffset: number): boolean {
    const { device, epoch } = this.space;
    const block = device.blockAt(deviceOffset);
    for (let attempt = 0; attempt < MAX_RMAP_RETRIES; attempt++) {
      const owner = epoch.guard(() => device.ownerOf(block));
      if ((owner.state !== 'owned' && owner.state !== 'covered') || owner.ownerId !== this.id) return false;
      const n = owner.order === 0 ? 1 : HUGE_PAGES;
      this.lockRange(owner.index, n);
      try {
        const value = this.lookup(owner.index);
        if (value !== undefined && Math.floor(value / 4) === owner.head) return true;
        // Truncated: the record still names this page until the reclaimer frees the block
        // after its grace period. Unchanged under the locks: it is no page's any more.
        const now = epoch.guard(() => device.ownerOf(block));
        if (now.ownerId === owner.ownerId && now.index === owner.index && now.head === owner.head) return false;
      } finally {
        this.unlockRange(owner.index, n);
      }
      this.retries++; // reused by another page meanwhile: look the owner up again
    }
    throw new DaxError('EBUSY', `page-lock rmap(${deviceOffset}): block ${block} kept moving`);
  }

  /** Every lock word free (after the workers stopped). */
  allUnlocked(): boolean {
    return this.locks.every((w) => w === 0) && this.control[RW_LOCK] === 0;
  }

  private lookup(start: number): number | undefined {
    return this.space.tree.lookup(pageKey(this.id, start));
  }

  private installLocked(start: number): void {
    const { device } = this.space;
    const huge = this.entryPages !== 1;
    // DaxSpace's allocation order: staging-owned, durably zero, then published (dax/alloc.ts)
    const block = device.allocate(OWNER_STAGING, start, huge ? 9 : 0);
    const offset = device.blockOffset(block);
    const bytes = this.entryPages * PAGE_BYTES;
    new Uint8Array(device.media.buffer, offset, bytes).fill(0);
    device.media.persist(offset, bytes);
    transferOwner(device, block, OWNER_STAGING, this.id);
    this.space.tree.insert(pageKey(this.id, start), block * 4 + (huge ? 2 : 0));
  }

  private lockRange(start: number, n: number): void {
    if (PAGE_LOCKS_OFF) return;
    for (let i = start; i < start + n; i++) lockWord(this.locks, i);
  }

  private unlockRange(start: number, n: number): void {
    if (PAGE_LOCKS_OFF) return;
    for (let i = start + n - 1; i >= start; i--) unlockWord(this.locks, i);
  }
}
