/**
 * Block allocator: a volatile free-space index over the persistent owner table.
 *
 * The owner table (owner-table.ts) is the truth; this index is rebuilt from it (and the
 * bad-block list) on every open and shared by all threads attached to the device.
 *
 * Shared state (one SharedArrayBuffer):
 *   control Int32[CONTROL_WORDS]:
 *     LOCK          spin-lock.ts mutex word (0 free, 1 held, 2 held + sleepers)
 *     FREE_BLOCKS   blocks whose used bit is clear
 *     OWNED_BLOCKS  blocks held by owners: 1 per OWNED order-0 record, 512 per order-9 head
 *     POISONED      blocks whose poisoned bit is set
 *     HUGE_CURSOR   next-fit start for order 9 (extent number)
 *     ALLOC_COUNT   allocations attempted since the last injectEnospc
 *     ENOSPC_AT     ALLOC_COUNT value whose allocation fails with ENOSPC; 0 = none
 *     CLOSED        1 once the device is closed (every thread then gets ECLOSED)
 *     TOKEN         random nonzero id of this shared state (participant records name it)
 *     FREE_EXTENTS  2 MiB extents (512 aligned blocks) whose blocks are all free
 *     RESERVE       extents kept for priority allocations (setReserve): an ordinary
 *                   allocation never takes a block or extent that would leave fewer
 *                   than RESERVE whole free extents
 *     SMALL_EXTENT  extent order-0 allocations fill first (block packing, below)
 *     DATA_BLOCKS   the data blocks the store has now (grows, never shrinks; Device.grow)
 *     GROW_LOCK     spin-lock.ts mutex word: one growth (and superblock update) at a time
 *     CAPACITY      blocks the bitmaps hold: the most the store can grow to in this mapping
 *   used     Uint32[ceil(capacity/32)]  bit b%32 of word b>>5: block b is owned, covered,
 *            reserved by an allocation in flight, or poisoned (never handed out). Only the
 *            words of the blocks the store has (DATA_BLOCKS) are used; the bits of the last
 *            one past DATA_BLOCKS are set; the words past it are zero until a growth
 *   poisoned Uint32[same]                 bit set: block b is poisoned
 *   extentFree Uint16[ceil(dataBlocks/512)] clear used bits of each extent
 *
 * Placement: an order-0 block comes from an extent that is already partly used (the
 * current SMALL_EXTENT, else the next partly used one), and breaks a whole free extent only
 * when no partly used extent has a free block. Whole extents stay whole for the 2 MiB
 * allocations (log segments) that need them.
 *
 * Invariants
 *   - With no operation in flight: used bit set <=> the owner table says OWNED, covered or
 *     POISONED (or the bad-block list lists it); FREE_BLOCKS = clear used bits;
 *     OWNED_BLOCKS matches the table; POISONED = set poisoned bits; extentFree[e] = clear
 *     used bits of extent e; FREE_EXTENTS = extents with all 512 clear. audit() checks all this.
 *   - A block is handed out only while its used bit is clear, and its bit is set in the
 *     same critical section: no block is handed out twice.
 *
 * Concurrency
 *   - LOCK protects the bitmaps, the counters except OWNED_BLOCKS (Atomics.add), the
 *     cursors and bad-block list appends. It is never held across an owner-table persist,
 *     so one thread's fence does not stall the others' allocations.
 *   - Owner-table word0 changes by compareExchange only (see owner-table.ts).
 *
 * Persistence ordering (and the crash rule)
 *   - allocate: reserve in the bitmap; store word1 (index), persist; CAS word0 FREE ->
 *     OWNED, persist; return. A durable word0 implies a durable word1.
 *   - free: CAS word0 -> FREE (POISONED if poisoned), persist; only then clear the bitmap
 *     bits, so a block is never handed out while its old owner record may still be durable.
 *   - After a crash every block is owned (its record is durable) or free, never both, never
 *     lost. A block whose owner never published its pointer to it is still owned: the layer
 *     above must reclaim such blocks in recovery, with forEachOwned() to list records and
 *     free() to release them (both usable right after Device.open).
 *
 * Thread death (participants.ts; docs/ARCHITECTURE.md "Thread death")
 *   - LOCK is a holder-naming spin lock. A thread that takes it over from a dead holder
 *     (repairLocked) recounts FREE_BLOCKS, extentFree and FREE_EXTENTS from the bitmap and finishes a bitmap release the
 *     dead thread was in the middle of (below).
 *   - A block a thread is between reserving and returning, or between starting and finishing
 *     a free, is recorded in its participant slot (P_ALLOC_*: device token, block + 1, phase),
 *     each change written by the statements right after the bitmap or owner-record change it
 *     goes with, with no call in between (a thread is only terminated at a call or a loop's
 *     back edge), so the record and the bitmap never disagree about that block:
 *       RESERVED   its used bit set by this thread, not yet returned: a dead thread's block is
 *                  unreserved (owner record FREE) or freed (OWNED: nobody ever got it)
 *       FREEING    about to make its owner record FREE: finished by the reaper (CAS and bits)
 *       RELEASING  clearing its used bits under LOCK (unreserve, free): finished by whoever
 *                  takes LOCK over (the bits left set are still the dead thread's)
 *     reapParticipant(id) does the first two, under LOCK.
 *
 * Errors: ENOSPC (full, or injected) changes nothing. Failed persists (EIO) roll the
 * record back in memory and release the reservation, so nothing changed either; if the
 * roll-back cannot be made durable the block stays reserved until the next open.
 */
import { randomFillSync } from 'node:crypto';
import { DaxError } from '../errors.js';
import { native } from '../native/addon.js';
import { assert } from '../assert.js';
import type { Media } from './media.js';
import { BLOCK_BYTES, HUGE_BLOCKS, HUGE_ORDER, type Geometry } from './layout.js';
import {
  FLAG_OWNED,
  FLAG_POISONED,
  META_FIELDS,
  OwnerTable,
  checkHolds,
  correctOneByte,
  decodeMeta,
  encodeMeta,
  metaProblem,
  sealMeta,
} from './owner-table.js';
import { BadBlockList } from './bad-blocks.js';
import { lockWord, unlockWord, withLock } from './spin-lock.js';
import { isBroken } from '../test-break.js';
import {
  P_ALLOC_BLOCK,
  P_ALLOC_DEVICE,
  P_ALLOC_PHASE,
  P_RELEASE_HI,
  P_RELEASE_KIND,
  P_RELEASE_LO,
  holderIdOf,
  mySlotBase,
  participantTable,
  slotBase,
} from './participants.js';

const LOCK = 0;
const FREE_BLOCKS = 1;
const OWNED_BLOCKS = 2;
const POISONED = 3;
const HUGE_CURSOR = 5;
const ALLOC_COUNT = 6;
const ENOSPC_AT = 7;
const CLOSED = 8;
const TOKEN = 9; // random nonzero id of this allocator's shared state: participant records name the device by it
const FREE_EXTENTS = 10;
const RESERVE = 11;
const SMALL_EXTENT = 12;
const DATA_BLOCKS = 13;
/** The device's growth lock word (Device.grow, Device.close): a spin-lock.ts mutex. */
export const GROW_LOCK = 14;
const CAPACITY = 15;
const CONTROL_WORDS = 16;

/**
 * Shared state for an allocator of up to `capacity` blocks with `dataBlocks` of them in use now;
 * its control words are what Device.grow and liveGeometry read.
 */
export function createAllocatorState(capacity: number, dataBlocks: number): SharedArrayBuffer {
  assert(capacity >= dataBlocks && dataBlocks > 0, () => `allocator of ${dataBlocks} blocks, capacity ${capacity}`);
  const bitmapWords = Math.ceil(capacity / 32);
  const extents = Math.ceil(capacity / HUGE_BLOCKS);
  const state = new SharedArrayBuffer((CONTROL_WORDS + 2 * bitmapWords) * 4 + 2 * extents + 2);
  const control = new Int32Array(state, 0, CONTROL_WORDS);
  control[DATA_BLOCKS] = dataBlocks;
  control[CAPACITY] = capacity;
  return state;
}

/** The control words of an allocator's shared state (Device: the growth lock, DATA_BLOCKS). */
export function controlWords(state: SharedArrayBuffer): Int32Array {
  return new Int32Array(state, 0, CONTROL_WORDS);
}

/**
 * The geometry with dataBlocks and sizeBytes read from the shared state at every use: every
 * thread's owner table, bad-block list and allocator see a growth as soon as it is published.
 */
export function liveGeometry(g: Geometry, state: SharedArrayBuffer): Geometry {
  const control = controlWords(state);
  const fixed = { ...g };
  return Object.defineProperties(fixed, {
    dataBlocks: { get: () => Atomics.load(control, DATA_BLOCKS), enumerable: true },
    sizeBytes: { get: () => g.dataOffset + Atomics.load(control, DATA_BLOCKS) * BLOCK_BYTES, enumerable: true },
  });
}
const fullErrors = new WeakSet<DaxError>();

/** Whether e is an allocation's ENOSPC for want of free blocks (not an injected one): a growth may help. */
export function isFullError(e: unknown): boolean {
  return e instanceof DaxError && fullErrors.has(e);
}

/** P_ALLOC_PHASE values (file header). */
const RESERVED = 1;
const FREEING = 2;
const RELEASING = 3;
const PHASE_MASK = 15;
const PHASE_HUGE = 16; // or-ed into the phase: the record is of a 2 MiB extent

const injectedFaults = new WeakSet<object>();

/** True for the ENOSPC an injectEnospc() fault threw: layers that retry after reclaiming space pass it on at once. */
export function isInjectedFault(e: unknown): boolean {
  return typeof e === 'object' && e !== null && injectedFaults.has(e);
}

export interface AllocatorStats {
  dataBlocks: number;
  freeBlocks: number;
  /** whole 2 MiB extents free */
  freeExtents: number;
  /** free extents only priority allocations may take */
  reserveExtents: number;
  ownedBlocks: number;
  poisonedBlocks: number;
}

/** What Allocator.rebuild found wrong in the owner table (Device.open acts on it). */
export interface OwnerDamage {
  corrected: Array<{ block: number; word0: bigint; word1: bigint; what: string }>;
  unresolved: Array<{ block: number; word0: bigint; word1: bigint; why: string }>;
}

/** allocate() options. */
export interface AllocateOptions {
  /** may take the reserve (setReserve): for allocations that free space (compaction, deletes) */
  priority?: boolean;
  /**
   * Device.allocate: whether a full store grows here (default true). false: the full error is
   * thrown and the caller decides between reclaiming and Device.grow (the kv store's writers).
   */
  grow?: boolean;
}

export class Allocator {
  readonly state: SharedArrayBuffer;
  private readonly control: Int32Array;
  private readonly used: Uint32Array;
  private readonly poisoned: Uint32Array;
  private readonly extentFree: Uint16Array;

  constructor(
    private readonly media: Media,
    private readonly geometry: Geometry,
    readonly table: OwnerTable,
    readonly badList: BadBlockList,
    state?: SharedArrayBuffer,
  ) {
    this.state = state ?? createAllocatorState(geometry.dataBlocks, geometry.dataBlocks);
    const capacity = new Int32Array(this.state, 0, CONTROL_WORDS)[CAPACITY];
    const bitmapWords = Math.ceil(capacity / 32);
    const extents = Math.ceil(capacity / HUGE_BLOCKS);
    const extentFreeAt = (CONTROL_WORDS + 2 * bitmapWords) * 4;
    this.control = new Int32Array(this.state, 0, CONTROL_WORDS);
    this.used = new Uint32Array(this.state, CONTROL_WORDS * 4, bitmapWords);
    this.poisoned = new Uint32Array(this.state, (CONTROL_WORDS + bitmapWords) * 4, bitmapWords);
    this.extentFree = new Uint16Array(this.state, extentFreeAt, extents);
  }

  /**
   * Owner records the last rebuild() found damaged: `corrected` (one wrong byte, found by the
   * record's CHECK: the record as it must be, for Device.open to store) and `unresolved` (no
   * single byte explains the damage: their blocks are left out of the index, as if FREE, and
   * Device.open refuses them unless it salvages).
   */
  ownerDamage: OwnerDamage = { corrected: [], unresolved: [] };

  /**
   * Builds the index from the owner table and bad-block list. Validates every record (its
   * CHECK, its fields, and no OWNED record inside an owned extent) and collects the damaged
   * ones in ownerDamage. Writes nothing persistent.
   */
  rebuild(): void {
    this.ownerDamage = { corrected: [], unresolved: [] };
    // Only the words of the blocks the store has are touched: the rest of the bitmaps (room to
    // grow into) stays zero and, until a growth reaches it, uncommitted memory.
    const words = this.words;
    this.used.fill(0, 0, words);
    this.poisoned.fill(0, 0, words);
    this.markTailUsed(this.dataBlocks);
    let owned = 0;
    let coveredUntil = 0; // blocks below this are tails of an owned extent
    // FREE records (word0 0) need no check: only the others are visited, in block order.
    for (const b of this.table.inUse(this.dataBlocks)) {
      let meta = this.table.loadMeta(b);
      if (meta === 0n) continue;
      if (this.recordProblem(b, meta, this.table.loadIndexWord(b), coveredUntil) !== undefined) {
        const fixed = this.resolveDamaged(b, meta, this.table.loadIndexWord(b), coveredUntil);
        if (fixed === undefined) continue; // unresolved: left out, as FREE
        meta = fixed;
        if (meta === 0n) continue;
      }
      const { flags, order } = decodeMeta(meta);
      if ((flags & FLAG_POISONED) !== 0) this.setPoisonedBit(b);
      if ((flags & FLAG_OWNED) === 0) continue;
      const n = order === HUGE_ORDER ? HUGE_BLOCKS : 1;
      if (n > 1 && b % 32 === 0) this.used.fill(0xffffffff, b >>> 5, (b + n) >>> 5);
      else for (let i = b; i < b + n; i++) this.used[i >>> 5] |= 1 << (i & 31);
      if (n > 1) coveredUntil = b + n;
      owned += n;
    }
    for (const b of this.badList.read()) this.setPoisonedBit(b);
    const poisoned = words * 32 - clearBits(this.poisoned, words);
    const token = this.control[TOKEN];
    const reserve = this.control[RESERVE]; // kept across a rebuild (audit builds a fresh one)
    const dataBlocks = this.control[DATA_BLOCKS];
    const capacity = this.control[CAPACITY];
    this.control.fill(0);
    this.control[TOKEN] = token !== 0 ? token : randomFillSync(new Int32Array(1))[0] | 1;
    this.control[DATA_BLOCKS] = dataBlocks;
    this.control[CAPACITY] = capacity;
    this.recountLocked();
    this.control[OWNED_BLOCKS] = owned;
    this.control[POISONED] = poisoned;
    this.control[RESERVE] = reserve;
  }

  /** FREE_BLOCKS, extentFree and FREE_EXTENTS from the used bitmap (rebuild; LOCK taken over from a dead holder). */
  private recountLocked(): void {
    this.extentFree.fill(0);
    const free = clearBits(this.used, this.words, this.extentFree, HUGE_BLOCKS / 32);
    let freeExtents = 0;
    for (let e = 0; e < this.extents; e++) if (this.extentFree[e] === HUGE_BLOCKS) freeExtents++;
    this.control[FREE_BLOCKS] = free;
    this.control[FREE_EXTENTS] = freeExtents;
  }

  /** The data blocks the store has now (grows with Device.grow). */
  get dataBlocks(): number {
    return this.control[DATA_BLOCKS];
  }

  /** Blocks the bitmaps can hold: the most the store can grow to in this mapping. */
  get capacity(): number {
    return this.used.length * 32;
  }

  /** Bitmap words that cover the blocks the store has now (searches and counts stop there). */
  private get words(): number {
    return Math.ceil(this.dataBlocks / 32);
  }

  /** Extents that hold blocks the store has now (the last may be partial: never whole). */
  private get extents(): number {
    return Math.ceil(this.dataBlocks / HUGE_BLOCKS);
  }

  /** Sets the used bits of the last word's blocks at and past `dataBlocks`, so searches never return them. */
  private markTailUsed(dataBlocks: number): void {
    for (let b = dataBlocks; b < Math.ceil(dataBlocks / 32) * 32; b++) this.used[b >>> 5] |= 1 << (b & 31);
  }

  /**
   * Publishes data blocks [dataBlocks, newBlocks) (their owner records FREE and durable, the
   * superblock naming newBlocks durable: Device.grow): their used bits cleared, counted free.
   */
  publishGrowth(newBlocks: number): void {
    withLock(this.control, LOCK, () => {
      const old = this.control[DATA_BLOCKS];
      assert(newBlocks > old && newBlocks <= this.capacity, () => `growth from ${old} to ${newBlocks} blocks`);
      // The old last word's tail bits were set (markTailUsed); the words past it were never set.
      for (let b = old; b < newBlocks; b++) {
        this.used[b >>> 5] &= ~(1 << (b & 31));
        if (++this.extentFree[b >>> HUGE_ORDER] === HUGE_BLOCKS) this.control[FREE_EXTENTS]++;
      }
      this.control[FREE_BLOCKS] += newBlocks - old;
      this.markTailUsed(newBlocks);
      Atomics.store(this.control, DATA_BLOCKS, newBlocks);
    });
  }

  /** Random id of this allocator's shared state (participant records name the device by it). */
  get token(): number {
    return this.control[TOKEN];
  }

  /** Why (word0, word1) is not a valid record for block b (coveredUntil: see rebuild), or undefined. */
  private recordProblem(b: number, word0: bigint, word1: bigint, coveredUntil: number): string | undefined {
    if (!checkHolds(word0, word1)) return 'its check bytes do not hold';
    const problem = metaProblem(word0 & META_FIELDS, b, this.dataBlocks);
    if (problem !== undefined) return problem;
    const { flags } = decodeMeta(word0);
    if (b < coveredUntil && (flags & FLAG_OWNED) !== 0)
      return `owned inside the 2 MiB extent headed by block ${coveredUntil - HUGE_BLOCKS}`;
    return undefined;
  }

  /**
   * A damaged record as it must have been, when exactly one record one byte away is valid: the
   * one the CHECK corrects, or FREE (word0 0) when word0 differs from 0 in one byte only. Records
   * it in ownerDamage either way; returns the corrected word0, or undefined (unresolved).
   */
  private resolveDamaged(b: number, word0: bigint, word1: bigint, coveredUntil: number): bigint | undefined {
    const why = this.recordProblem(b, word0, word1, coveredUntil)!;
    const candidates: Array<[bigint, bigint, string]> = [];
    const corrected = isBroken('owner-no-correct') ? undefined : correctOneByte(word0, word1);
    if (corrected !== undefined && this.recordProblem(b, corrected[0], corrected[1], coveredUntil) === undefined)
      candidates.push([corrected[0], corrected[1], 'one byte corrected by its check bytes']);
    let nonzeroBytes = 0;
    for (let x = word0; x !== 0n; x >>= 8n) if ((x & 0xffn) !== 0n) nonzeroBytes++;
    if (nonzeroBytes === 1 && !isBroken('owner-no-correct') && !candidates.some(([w0]) => w0 === 0n))
      candidates.push([0n, word1, 'a FREE record with one byte set']);
    const at = `owner record of block ${b} at offset ${this.table.recordOffset(b)}`;
    if (candidates.length !== 1) {
      this.ownerDamage.unresolved.push({
        block: b,
        word0,
        word1,
        why: `${at}: ${why} (word0 0x${word0.toString(16)}, word1 0x${word1.toString(16)}); ${candidates.length === 0 ? 'no one-byte correction explains it' : 'two corrections explain it'}`,
      });
      return undefined;
    }
    const [fixed0, fixed1, what] = candidates[0];
    this.ownerDamage.corrected.push({ block: b, word0: fixed0, word1: fixed1, what: `${at}: ${why}; ${what}` });
    return fixed0;
  }

  stats(): AllocatorStats {
    return {
      dataBlocks: this.dataBlocks,
      freeBlocks: Atomics.load(this.control, FREE_BLOCKS),
      freeExtents: Atomics.load(this.control, FREE_EXTENTS),
      reserveExtents: Atomics.load(this.control, RESERVE),
      ownedBlocks: Atomics.load(this.control, OWNED_BLOCKS),
      poisonedBlocks: Atomics.load(this.control, POISONED),
    };
  }

  get closed(): boolean {
    // A plain load: the flag only ever goes 0 -> 1, and a check racing a close is racy either
    // way (nothing is ordered after it); TurboFan does not cache typed-array loads across the
    // calls between two checks. Every kv operation checks it (checkOpen), where Atomics.load
    // was a builtin call (Node 20 does not inline it).
    return this.control[CLOSED] !== 0;
  }

  /** Blocks poisoned so far (never decreases). A reader that sees 0 may skip per-block poison checks. */
  get poisonedBlocks(): number {
    // A plain load, as `closed`: the count only grows, and a check racing a poisoning is racy
    // either way (memory failure is asynchronous; nothing is ordered after the check). Every
    // get and range batch reads it, where Atomics.load was a builtin call (Node 20 does not
    // inline it).
    return this.control[POISONED];
  }

  markClosed(): void {
    Atomics.store(this.control, CLOSED, 1);
  }

  /**
   * Keeps `extents` whole free extents for priority allocations (every thread, at once):
   * ordinary ones fail with ENOSPC rather than leave fewer. 0: no reserve.
   */
  setReserve(extents: number): void {
    withLock(this.control, LOCK, () => {
      this.control[RESERVE] = extents;
    });
  }

  /** The n-th allocation from now (any thread) fails with ENOSPC; 0 clears. */
  injectEnospc(n: number): void {
    withLock(this.control, LOCK, () => {
      this.control[ALLOC_COUNT] = 0;
      this.control[ENOSPC_AT] = n;
    });
  }

  /** The searches start at `block`'s extent from now on (2 MiB extents next-fit; order-0 blocks from the next partly used extent there). */
  moveCursors(block: number): void {
    withLock(this.control, LOCK, () => {
      this.control[HUGE_CURSOR] = Math.floor(block / HUGE_BLOCKS);
      this.control[SMALL_EXTENT] = Math.floor(block / HUGE_BLOCKS);
    });
  }

  /**
   * The first block of the whole free extent the next 2 MiB allocation would take if nothing
   * changed first (the next-fit search from HUGE_CURSOR), or -1: a guess, read without LOCK,
   * for advice only (a stale count only makes it a worse guess). Checks no reserve.
   */
  nextFreeExtent(): number {
    const extents = Math.floor(this.dataBlocks / HUGE_BLOCKS);
    if (extents === 0) return -1;
    const start = this.control[HUGE_CURSOR] % extents;
    for (let k = 0; k < extents; k++) {
      const e = (start + k) % extents;
      if (this.extentFree[e] === HUGE_BLOCKS) return e * HUGE_BLOCKS;
    }
    return -1;
  }

  isPoisoned(block: number): boolean {
    return (Atomics.load(this.poisoned, block >>> 5) & (1 << (block & 31))) !== 0;
  }

  /** First poisoned block of [first, first+count), or -1. Word-at-a-time: a 2 MiB extent is 16 loads. */
  firstPoisoned(first: number, count: number): number {
    if (Atomics.load(this.control, POISONED) === 0) return -1;
    const end = first + count;
    for (let b = first; b < end;) {
      const w = b >>> 5;
      const lo = b & 31;
      const hi = Math.min(32, lo + end - b); // bits [lo, hi) of word w
      const mask = hi - lo === 32 ? 0xffff_ffff : ((1 << (hi - lo)) - 1) << lo;
      const bits = (Atomics.load(this.poisoned, w) & mask) >>> 0;
      if (bits !== 0) return w * 32 + (31 - Math.clz32(bits & -bits));
      b += hi - lo;
    }
    return -1;
  }

  /** Allocates a block (order 0) or a 2 MiB extent (order 9) for (ownerId, index); durable on return. */
  allocate(ownerId: number, index: number, order: 0 | 9, opts: AllocateOptions = {}): number {
    const meta = sealMeta(encodeMeta(FLAG_OWNED, order, ownerId), BigInt(index));
    const priority = opts.priority === true;
    const pt = participantTable();
    const rb = mySlotBase();
    for (;;) {
      const block = this.reserve(order, priority);
      const published = this.publish(block, index, meta, order);
      pt[rb + P_ALLOC_PHASE] = 0; // the caller has it now (or a concurrent poison keeps it): no call before the return
      if (published) return block;
      // Lost the block to a concurrent poison(): it stays reserved as poisoned; try another.
    }
  }

  /**
   * Claims exactly `block` (an extent when order 9) for (ownerId, index), durable on return,
   * when every block of it is free: recovery restoring an owner record it rebuilt from the data
   * (a log segment's SEAL). False, nothing changed, when a block of it is in use.
   */
  claim(block: number, ownerId: number, index: number, order: 0 | 9): boolean {
    const n = order === HUGE_ORDER ? HUGE_BLOCKS : 1;
    const claimed = withLock(this.control, LOCK, () => {
      for (let b = block; b < block + n; b++) if ((this.used[b >>> 5] & (1 << (b & 31))) !== 0) return false;
      for (let b = block; b < block + n; b++) this.setUsedLocked(b);
      return true;
    });
    if (!claimed) return false;
    if (this.publish(block, index, sealMeta(encodeMeta(FLAG_OWNED, order, ownerId), BigInt(index)), order)) return true;
    this.unreserve(block, n); // lost to a concurrent poison
    return false;
  }

  /** Frees an owned block or extent head; durable on return. EINVAL when not an owned head. */
  free(block: number): void {
    const pt = participantTable();
    const rb = mySlotBase();
    const phase = FREEING | (decodeMeta(this.table.loadMeta(block)).order === HUGE_ORDER ? PHASE_HUGE : 0);
    pt[rb + P_ALLOC_DEVICE] = this.control[TOKEN];
    pt[rb + P_ALLOC_BLOCK] = block + 1;
    pt[rb + P_ALLOC_PHASE] = phase;
    // This record takes over from the epoch's record of the retired block being released, in
    // the same run of statements (no call in between): never both, never neither.
    if (pt[rb + P_RELEASE_KIND] !== 0 && pt[rb + P_RELEASE_LO] === block && pt[rb + P_RELEASE_HI] === 0)
      pt[rb + P_RELEASE_KIND] = 0;
    try {
      this.freeRecorded(block, pt, rb);
    } finally {
      if ((pt[rb + P_ALLOC_PHASE] & PHASE_MASK) === FREEING) pt[rb + P_ALLOC_PHASE] = 0; // failed before the owner record changed
    }
  }

  private freeRecorded(block: number, pt: Int32Array, rb: number): void {
    let meta = this.table.loadMeta(block);
    for (;;) {
      if ((decodeMeta(meta).flags & FLAG_OWNED) === 0) throw this.notOwnedError(block, 'free');
      const next =
        (decodeMeta(meta).flags & FLAG_POISONED) !== 0
          ? sealMeta(BigInt(FLAG_POISONED), this.table.loadIndexWord(block))
          : 0n;
      const found = this.table.casMeta(block, meta, next);
      if (found === meta) break;
      meta = found; // a concurrent poison() or free() changed word0: re-validate
    }
    this.persistFreed(block, meta);
    const n = decodeMeta(meta).order === HUGE_ORDER ? HUGE_BLOCKS : 1;
    lockWord(this.control, LOCK, this.repairLocked);
    pt[rb + P_ALLOC_PHASE] = RELEASING | (n > 1 ? PHASE_HUGE : 0);
    for (let b = block; b < block + n; b++) {
      if (this.isPoisoned(b)) continue;
      assert((this.used[b >>> 5] & (1 << (b & 31))) !== 0, () => `freeing block ${b} that the bitmap says is free`);
      this.clearUsedLocked(b);
    }
    Atomics.sub(this.control, OWNED_BLOCKS, n);
    pt[rb + P_ALLOC_PHASE] = 0;
    unlockWord(this.control, LOCK);
  }

  /**
   * Records block as poisoned: bad-block list first, then the owner record's POISONED flag.
   * Never handed out again. Owned blocks keep their owner (the rmap still finds it).
   * Returns false when it was already poisoned.
   */
  poison(block: number): boolean {
    const added = withLock(this.control, LOCK, () => {
      if (this.isPoisoned(block)) return false;
      this.badList.appendLocked(block);
      if ((this.used[block >>> 5] & (1 << (block & 31))) === 0) this.setUsedLocked(block);
      this.setPoisonedBit(block); // sets the used bit too
      this.control[POISONED]++;
      return true;
    });
    if (!added) return false;
    let meta = this.table.loadMeta(block);
    for (;;) {
      const next = sealMeta((meta & META_FIELDS) | BigInt(FLAG_POISONED), this.table.loadIndexWord(block));
      const found = this.table.casMeta(block, meta, next);
      if (found === meta) break;
      meta = found;
    }
    this.table.flushMeta(block);
    this.media.drain();
    return true;
  }

  /** Calls cb for every OWNED record (extent heads once, with order 9). */
  forEachOwned(cb: (block: number, ownerId: number, index: number, order: number) => void): void {
    for (const b of this.table.inUse(this.dataBlocks)) {
      const meta = this.table.loadMeta(b);
      if (meta === 0n) continue;
      const { flags, order, ownerId } = decodeMeta(meta);
      if ((flags & FLAG_OWNED) !== 0) cb(b, ownerId, this.table.loadIndex(b), order);
    }
  }

  /**
   * Compares the shared index with the owner table and bad-block list; returns the
   * differences (empty when consistent). Only meaningful with no operation in flight.
   */
  audit(): string[] {
    const fresh = new Allocator(
      this.media,
      this.geometry,
      this.table,
      this.badList,
      createAllocatorState(this.capacity, this.dataBlocks),
    );
    fresh.rebuild();
    return withLock(this.control, LOCK, () => {
      const problems: string[] = [];
      for (const name of ['FREE_BLOCKS', 'OWNED_BLOCKS', 'POISONED', 'FREE_EXTENTS'] as const) {
        const slot = { FREE_BLOCKS, OWNED_BLOCKS, POISONED, FREE_EXTENTS }[name];
        if (fresh.control[slot] !== this.control[slot])
          problems.push(`${name}: index ${this.control[slot]}, owner table ${fresh.control[slot]}`);
      }
      for (let w = 0; w < this.used.length && problems.length < 20; w++) {
        if (fresh.used[w] !== this.used[w])
          problems.push(
            `used bits of blocks ${w * 32}..${w * 32 + 31}: index ${hex(this.used[w])}, owner table ${hex(fresh.used[w])}`,
          );
        if (fresh.poisoned[w] !== this.poisoned[w])
          problems.push(`poisoned bits of blocks ${w * 32}..${w * 32 + 31} differ`);
      }
      for (let e = 0; e < this.extentFree.length && problems.length < 20; e++) {
        if (fresh.extentFree[e] !== this.extentFree[e])
          problems.push(`free blocks of extent ${e}: index ${this.extentFree[e]}, owner table ${fresh.extentFree[e]}`);
      }
      return problems;
    });
  }

  // ---- internals ----

  /** Makes a freed block's record durable before the block can be handed out; on failure puts `meta` back and throws. */
  private persistFreed(block: number, meta: bigint): void {
    if (isBroken('free-skip-persist')) return; // reusable while the old owner record may still be durable
    try {
      this.table.flushMeta(block);
      this.media.drain();
    } catch (e) {
      // Not durable: put the record back as it was (equal to what the media holds) and report.
      this.table.casMeta(block, this.table.loadMeta(block), meta);
      throw e;
    }
  }

  /** Finds and marks used a free block or extent; ENOSPC (nothing changed) when none. */
  private reserve(order: 0 | 9, priority: boolean): number {
    if (isBroken('allocator-no-lock')) return this.reserveUnlocked(order, priority);
    lockWord(this.control, LOCK, this.repairLocked);
    try {
      return this.reserveLocked(order, priority);
    } finally {
      unlockWord(this.control, LOCK);
    }
  }

  /**
   * reserve() under DAXSTORE_TEST_BREAK=allocator-no-lock: no lock, and a 20 us spin between
   * choosing a free block and claiming its bit, so two threads pick the same block on nearly
   * every allocation (the red run is not left to chance).
   */
  private reserveUnlocked(order: 0 | 9, priority: boolean): number {
    this.countAllocation(order);
    const spare = this.spareExtents(priority) > 0;
    let block = -1;
    if (order !== 0) block = this.findFreeExtentLocked(spare);
    else if ((block = this.pickFreeBlock(spare)) >= 0) {
      spinMicroseconds(20);
      this.markReservedLocked(block);
    }
    if (block < 0) throw this.fullError(order, priority);
    return block;
  }

  private reserveLocked(order: 0 | 9, priority: boolean): number {
    this.countAllocation(order);
    const spare = this.spareExtents(priority) > 0;
    const block = order === 0 ? this.findFreeBlockLocked(spare) : this.findFreeExtentLocked(spare);
    if (block < 0) throw this.fullError(order, priority);
    return block;
  }

  /** An allocation attempt: ECLOSED on a closed device, or the injected ENOSPC when this is the one (injectEnospc). */
  private countAllocation(order: 0 | 9): void {
    if (this.control[CLOSED] !== 0) throw new DaxError('ECLOSED', `${this.media.path}: device is closed`);
    this.control[ALLOC_COUNT]++;
    if (this.control[ENOSPC_AT] !== 0 && this.control[ALLOC_COUNT] === this.control[ENOSPC_AT]) {
      this.control[ENOSPC_AT] = 0;
      const injected = new DaxError(
        'ENOSPC',
        `${this.media.path}: injected ENOSPC on allocation ${this.control[ALLOC_COUNT]} (order ${order})`,
      );
      injectedFaults.add(injected);
      throw injected;
    }
  }

  /** Whole free extents this allocation may break or take: all of them for a priority one, else those beyond the reserve. */
  private spareExtents(priority: boolean): number {
    return priority ? this.control[FREE_EXTENTS] : this.control[FREE_EXTENTS] - this.control[RESERVE];
  }

  /** An order-0 block (pickFreeBlock), marked used and recorded RESERVED. Needs LOCK. */
  private findFreeBlockLocked(mayBreak: boolean): number {
    const block = this.pickFreeBlock(mayBreak);
    if (block >= 0) this.markReservedLocked(block);
    return block;
  }

  /**
   * Marks order-0 block b used and records it RESERVED in this thread's participant slot:
   * the bookkeeping and the record are one run of statements with no call in between (file
   * header), so a thread that dies leaves both or neither.
   */
  private markReservedLocked(b: number): void {
    const pt = participantTable();
    const rb = mySlotBase();
    const e = b >>> HUGE_ORDER;
    this.used[b >>> 5] |= 1 << (b & 31);
    this.control[FREE_BLOCKS]--;
    if (this.extentFree[e]-- === HUGE_BLOCKS) this.control[FREE_EXTENTS]--;
    pt[rb + P_ALLOC_DEVICE] = this.control[TOKEN];
    pt[rb + P_ALLOC_BLOCK] = b + 1;
    pt[rb + P_ALLOC_PHASE] = RESERVED;
  }

  /**
   * A free order-0 block, not yet marked: from SMALL_EXTENT when it is partly used, else from
   * the next partly used extent, else (when `mayBreak`) from the first whole free extent from
   * SMALL_EXTENT on (extent 0 in a fresh store), which becomes SMALL_EXTENT. -1 when none.
   */
  private pickFreeBlock(mayBreak: boolean): number {
    if (this.control[FREE_BLOCKS] === 0) return -1;
    const extents = this.extents;
    // A last extent shorter than 512 blocks never counts as whole, so it is always "partly used".
    const partly = (e: number): boolean => this.extentFree[e] > 0 && this.extentFree[e] < HUGE_BLOCKS;
    let e = this.control[SMALL_EXTENT];
    if (!partly(e)) {
      e = -1;
      for (let k = 1; k <= extents && e < 0; k++) {
        const c = (this.control[SMALL_EXTENT] + k) % extents;
        if (partly(c)) e = c;
      }
      if (e < 0 && mayBreak) {
        for (let k = 0; k < extents && e < 0; k++) {
          const c = (this.control[SMALL_EXTENT] + k) % extents;
          if (this.extentFree[c] > 0) e = c;
        }
      }
      if (e < 0) return -1;
      this.control[SMALL_EXTENT] = e;
    }
    const first = e * (HUGE_BLOCKS / 32);
    const last = Math.min(first + HUGE_BLOCKS / 32, this.words);
    for (let w = first; w < last; w++) {
      const free = ~this.used[w];
      if (free !== 0) return w * 32 + (31 - Math.clz32(free & -free));
    }
    assert(false, () => `extent ${e} counts ${this.extentFree[e]} free blocks but has no clear bit`);
  }

  private findFreeExtentLocked(allowed: boolean): number {
    const extents = Math.floor(this.dataBlocks / HUGE_BLOCKS);
    if (!allowed || extents === 0 || this.control[FREE_EXTENTS] === 0) return -1;
    const wordsPerExtent = HUGE_BLOCKS / 32;
    const start = this.control[HUGE_CURSOR] % extents;
    for (let k = 0; k < extents; k++) {
      const e = (start + k) % extents;
      if (this.extentFree[e] !== HUGE_BLOCKS) continue;
      const base = e * wordsPerExtent;
      const pt = participantTable();
      const rb = mySlotBase();
      this.used.fill(0xffff_ffff, base, base + wordsPerExtent);
      this.control[FREE_BLOCKS] -= HUGE_BLOCKS;
      this.extentFree[e] = 0;
      this.control[FREE_EXTENTS]--;
      pt[rb + P_ALLOC_DEVICE] = this.control[TOKEN]; // with the bits: no call in between (file header)
      pt[rb + P_ALLOC_BLOCK] = e * HUGE_BLOCKS + 1;
      pt[rb + P_ALLOC_PHASE] = RESERVED | PHASE_HUGE;
      this.control[HUGE_CURSOR] = (e + 1) % extents;
      return e * HUGE_BLOCKS;
    }
    assert(false, () => `FREE_EXTENTS ${this.control[FREE_EXTENTS]} but no whole free extent`);
  }

  /** Marks a free block used, keeping FREE_BLOCKS, extentFree and FREE_EXTENTS. Needs LOCK. */
  private setUsedLocked(b: number): void {
    this.used[b >>> 5] |= 1 << (b & 31);
    this.control[FREE_BLOCKS]--;
    const e = b >>> HUGE_ORDER;
    if (this.extentFree[e]-- === HUGE_BLOCKS) this.control[FREE_EXTENTS]--;
  }

  /** Marks a used block free (the reverse of setUsedLocked). Needs LOCK. */
  private clearUsedLocked(b: number): void {
    this.used[b >>> 5] &= ~(1 << (b & 31));
    this.control[FREE_BLOCKS]++;
    const e = b >>> HUGE_ORDER;
    if (++this.extentFree[e] === HUGE_BLOCKS) this.control[FREE_EXTENTS]++;
  }

  /** Stores a reserved block's owner record, word1 (index) durable before word0 can be; false if a concurrent poison took it. */
  private storeRecordReserved(block: number, index: number, meta: bigint): boolean {
    if (isBroken('alloc-publish-before-index')) return this.storeRecordUnordered(block, index, meta);
    this.table.storeIndexReserved(block, index);
    this.table.flushIndex(block);
    this.media.drain(); // word1 durable before word0 can be
    return this.table.casMeta(block, 0n, meta) === 0n;
  }

  /** storeRecordReserved under DAXSTORE_TEST_BREAK=alloc-publish-before-index: both words stored, one fence later for both. */
  private storeRecordUnordered(block: number, index: number, meta: bigint): boolean {
    this.table.storeIndexReserved(block, index);
    this.table.storeMetaReserved(block, meta);
    this.table.flushIndex(block);
    return true;
  }

  /** Writes the owner record of a reserved block; false if a concurrent poison took it. */
  private publish(block: number, index: number, meta: bigint, order: number): boolean {
    const n = order === HUGE_ORDER ? HUGE_BLOCKS : 1;
    try {
      if (!this.storeRecordReserved(block, index, meta)) return false;
    } catch (e) {
      this.unreserve(block, n);
      throw e;
    }
    try {
      this.table.flushMeta(block);
      this.media.drain(); // the record is durable before the caller may publish the block
    } catch (e) {
      this.table.casMeta(block, meta, 0n);
      this.unreserve(block, n);
      throw e;
    }
    Atomics.add(this.control, OWNED_BLOCKS, n);
    return true;
  }

  private unreserve(block: number, n: number): void {
    const pt = participantTable();
    const rb = mySlotBase();
    lockWord(this.control, LOCK, this.repairLocked);
    pt[rb + P_ALLOC_PHASE] = RELEASING | (n > 1 ? PHASE_HUGE : 0);
    for (let b = block; b < block + n; b++) {
      if (this.isPoisoned(b)) continue;
      this.clearUsedLocked(b);
    }
    pt[rb + P_ALLOC_PHASE] = 0;
    unlockWord(this.control, LOCK);
  }

  /**
   * LOCK was taken over from a dead holder (file header): finish the bitmap release it was in
   * (its RELEASING record: the bits still set there are its own), recount FREE_BLOCKS,
   * extentFree and FREE_EXTENTS (it may have died between a bit and its counts).
   */
  private readonly repairLocked = (deadWord: number): void => {
    const id = holderIdOf(deadWord);
    const pt = participantTable();
    const base = slotBase(id);
    const phase = pt[base + P_ALLOC_PHASE];
    if (pt[base + P_ALLOC_DEVICE] === this.control[TOKEN] && (phase & PHASE_MASK) === RELEASING) {
      const block = pt[base + P_ALLOC_BLOCK] - 1;
      this.clearBitsLocked(block, (phase & PHASE_HUGE) !== 0 ? HUGE_BLOCKS : 1);
      pt[base + P_ALLOC_PHASE] = 0;
    }
    this.recountLocked();
  };

  private clearBitsLocked(block: number, n: number): void {
    for (let b = block; b < block + n; b++) {
      if (this.isPoisoned(b)) continue;
      this.used[b >>> 5] &= ~(1 << (b & 31));
    }
  }

  /** Whether dead participant `id` was in the middle of an allocation or free of this allocator (reapParticipant has it). */
  inFlightFor(id: number): boolean {
    const pt = participantTable();
    const base = slotBase(id);
    return pt[base + P_ALLOC_DEVICE] === this.control[TOKEN] && pt[base + P_ALLOC_PHASE] !== 0;
  }

  /**
   * The allocator's part of reaping dead participant `id` (file header): a block it reserved
   * and never returned is unreserved, or freed if its owner record was already written; a free
   * it had started is finished. Idempotent.
   */
  reapParticipant(id: number): void {
    const pt = participantTable();
    const base = slotBase(id);
    if (pt[base + P_ALLOC_DEVICE] !== this.control[TOKEN] || pt[base + P_ALLOC_PHASE] === 0) return;
    lockWord(this.control, LOCK, this.repairLocked); // finishes a RELEASING record if it held LOCK
    const phase = pt[base + P_ALLOC_PHASE];
    const block = pt[base + P_ALLOC_BLOCK] - 1;
    const owned = (decodeMeta(this.table.loadMeta(block)).flags & FLAG_OWNED) !== 0;
    assert((phase & PHASE_MASK) !== RELEASING, 'allocator reap: a RELEASING record survived taking LOCK over');
    if (phase === 0 || owned) {
      unlockWord(this.control, LOCK);
      if (phase !== 0 && owned) {
        // Reserved and published but never handed out, or a free that had not yet changed
        // the owner record: free it here (which records this thread's own free).
        this.free(block);
      }
      pt[base + P_ALLOC_PHASE] = 0;
      return;
    }
    // Owner record FREE: reserved and never published, or freed and its bits not yet cleared.
    const n = (phase & PHASE_HUGE) !== 0 ? HUGE_BLOCKS : 1;
    for (let b = block; b < block + n; b++) {
      if (this.isPoisoned(b) || (this.used[b >>> 5] & (1 << (b & 31))) === 0) continue;
      this.clearUsedLocked(b);
    }
    pt[base + P_ALLOC_PHASE] = 0;
    unlockWord(this.control, LOCK);
  }

  private setPoisonedBit(block: number): void {
    this.poisoned[block >>> 5] |= 1 << (block & 31);
    this.used[block >>> 5] |= 1 << (block & 31);
  }

  private fullError(order: number, priority: boolean): DaxError {
    const free = this.control[FREE_BLOCKS];
    const reserve = this.control[RESERVE];
    const want =
      order === 0 ? `a ${BLOCK_BYTES}-byte block` : `a 2 MiB extent (${HUGE_BLOCKS} contiguous aligned blocks)`;
    const kept =
      reserve > 0 && !priority
        ? `; ${reserve} whole extent${reserve === 1 ? ' is' : 's are'} kept for deletes and compaction`
        : '';
    const e = new DaxError(
      'ENOSPC',
      `${this.media.path}: no free space for ${want}: ${free} of ${this.dataBlocks} blocks free (${free * BLOCK_BYTES} of ${this.dataBlocks * BLOCK_BYTES} bytes)${kept}`,
    );
    fullErrors.add(e);
    return e;
  }

  private notOwnedError(block: number, op: string): DaxError {
    const head = this.table.coveringHead(block);
    if (head >= 0)
      return new DaxError(
        'EINVAL',
        `${this.media.path}: ${op}(${block}): block lies inside the 2 MiB extent headed by block ${head}; free the head`,
      );
    const poisoned = this.isPoisoned(block) ? ' (poisoned)' : '';
    return new DaxError('EINVAL', `${this.media.path}: ${op}(${block}): block is not owned${poisoned} (double free?)`);
  }
}

/**
 * The clear bits of words[0, count), and with perGroup: each group of groupWords words' clear
 * bits added to its entry. Native: open runs it once over the whole device, a word per 32
 * blocks, where a loop in JavaScript would run as cold code.
 */
function clearBits(words: Uint32Array, count: number, perGroup?: Uint16Array, groupWords?: number): number {
  const n = native().countClearBits(words, count, perGroup, groupWords);
  assert(n >= 0, () => `countClearBits over ${count} words: ${n}`);
  return n;
}

function hex(x: number): string {
  return (x >>> 0).toString(16).padStart(8, '0');
}

function spinMicroseconds(us: number): void {
  const end = process.hrtime.bigint() + BigInt(us * 1000);
  while (process.hrtime.bigint() < end) {
    // busy: a sleep would let the other thread finish its claim first
  }
}
