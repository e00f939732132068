/**
 * Device: a formatted daxstore media — superblock, root area, owner table, bad-block
 * list and data blocks — and the API the DAX and KV layers use.
 *
 * Invariants
 *   - A Device exists only over a media whose superblock, geometry, owner table and
 *     bad-block list validated; open() writes nothing until all of them did.
 *   - While open, the superblock's cleanShutdown is durably 0; close() durably sets it to 1.
 *
 * Concurrency
 *   - One opener (format/open) per media; workers attach with Device.attach(share()) and
 *     share the allocator index (allocator.ts: its LOCK protects bitmaps and counters).
 *   - The superblock is written by format, open and close on the opener and by a growth on
 *     any thread, each under the growth lock (allocator GROW_LOCK) and each as a
 *     read-modify-write of the newest valid copy. close() on the opener marks the shared state
 *     closed: every thread's later calls get ECLOSED. close() on an attached device only
 *     detaches that thread.
 *   - dataBlocks and geometry.dataBlocks/sizeBytes are read from the allocator's shared state
 *     at every use: a growth published by any thread is seen by all.
 *
 * Persistence ordering
 *   - format: zero the metadata, persist; write the superblock (cleanShutdown 0) last, so
 *     a crash during format leaves media that is not a daxstore, never a half-formatted one.
 *   - open: validate, then one superblock update (cleanShutdown 0, sequence + 1) that also
 *     rewrites a bad or stale copy.
 *   - allocate/free/poison: see allocator.ts and bad-blocks.ts.
 *   - grow (online, when an allocation finds no room, or at open to at least a size): the file
 *     is allocated and extended, its size durable (media.grow); then the owner records of the
 *     new blocks are made durably FREE; then the superblock names the new size (two copies,
 *     one at a time); only then does the allocator hand the new blocks out. A crash before
 *     the superblock update leaves the old size usable (the longer file is a grown store:
 *     open grows the geometry to it); after it, the new one. Nothing moves, no view changes.
 *
 * Errors: argument errors a caller can make (out-of-range block or offset, freeing a
 * block that is not an owned head, bad owner id or index) are DaxErrors (EINVAL/ERANGE);
 * inconsistencies only a daxstore bug can cause (bitmap vs record mismatch) are asserts.
 */
import { randomBytes } from 'node:crypto';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import type { Media, MediaHandle } from './media.js';
import {
  BLOCK_BYTES,
  HUGE_BLOCKS,
  HUGE_BYTES,
  HUGE_ORDER,
  OWNER_RECORD_BYTES,
  alignUp,
  capacityBlocks,
  computeGeometry,
  geometryProblem,
  sizeForBlocks,
  type Geometry,
} from './layout.js';
import { FORMAT_VERSION, chooseSuperblock, writeSuperblock, type Superblock } from './superblock.js';
import { FLAG_OWNED, FLAG_POISONED, MAX_INDEX, MAX_OWNER_ID, OwnerTable, decodeMeta } from './owner-table.js';
import { BadBlockList } from './bad-blocks.js';
import {
  Allocator,
  GROW_LOCK,
  isFullError,
  isInjectedFault,
  controlWords,
  createAllocatorState,
  liveGeometry,
  type AllocateOptions,
  type AllocatorStats,
} from './allocator.js';
import { withLock } from './spin-lock.js';
import { isBroken, testHooks } from '../test-break.js';
import { attachMedia as attachAnyMedia } from './attach-media.js';

export interface DeviceHandle {
  readonly media: MediaHandle;
  readonly geometry: Geometry;
  readonly allocatorState: SharedArrayBuffer;
  readonly lastShutdownClean: boolean;
}

export interface OwnerInfo {
  state: 'free' | 'owned' | 'poisoned' | 'covered';
  ownerId: number;
  index: number;
  order: number;
  /** the block holding the record that owns this block (itself, or its extent head) */
  head: number;
}

export interface DeviceStats extends AllocatorStats {
  lastShutdownClean: boolean;
  badBlocks: number;
  mediaKind: string;
  flushMethod: string;
  sizeBytes: number;
  dataOffset: number;
}

export interface FormatOptions {
  /** bytes of the root area for upper layers' fixed roots (rounded up to 4 KiB); default 64 KiB */
  rootBytes?: number;
  /** entries of the bad-block list; default 1024 */
  badBlockCapacity?: number;
  /** the most the store may grow to (its owner table is sized for it); default media.maxSize */
  maxBytes?: number;
}

/** Data blocks the geometry's owner table can describe inside the media's mapping (its reservation). */
function capacityIn(g: Geometry, media: Media): number {
  return Math.min(capacityBlocks(g), Math.floor((media.maxSize - g.dataOffset) / BLOCK_BYTES));
}

/**
 * An online growth adds a quarter of what the data area holds (GROW_STEP_FRACTION), at least
 * GROW_STEP_BYTES and at most GROW_STEP_MAX_BYTES: the new range is allocated inside the write
 * that ran out of room, so a step is kept short enough for that write's latency, and a store
 * that grew by one step is at most a quarter (or GROW_STEP_BYTES) larger than what filled it
 * (a step that doubled would let a store under steady overwrites end at twice its log).
 */
export const GROW_STEP_FRACTION = 1 / 4;
export const GROW_STEP_BYTES = 16 * 2 ** 20;
export const GROW_STEP_MAX_BYTES = 256 * 2 ** 20;

/** Bytes one growth step adds to a store of `sizeBytes` whose data starts at `dataOffset` (before 2 MiB alignment). */
export function growStepBytes(sizeBytes: number, dataOffset: number): number {
  return Math.min(Math.max((sizeBytes - dataOffset) * GROW_STEP_FRACTION, GROW_STEP_BYTES), GROW_STEP_MAX_BYTES);
}

export class Device {
  readonly blockSize = BLOCK_BYTES;
  readonly dataOffset: number;
  readonly root: { readonly offset: number; readonly length: number };
  /** The geometry; dataBlocks and sizeBytes are the store's now (they grow). */
  readonly geometry: Readonly<Geometry>;
  private readonly allocator: Allocator;
  private readonly table: OwnerTable;
  private readonly badList: BadBlockList;
  private readonly control: Int32Array;
  private isClosed = false;

  private constructor(
    readonly media: Media,
    geometry: Geometry,
    private readonly opener: boolean, // format/open: writes the superblock at close
    private readonly lastShutdownClean: boolean,
    allocatorState?: SharedArrayBuffer,
  ) {
    const state =
      allocatorState ??
      createAllocatorState(Math.max(geometry.dataBlocks, capacityIn(geometry, media)), geometry.dataBlocks);
    const live = liveGeometry(geometry, state);
    this.geometry = Object.freeze(live);
    this.control = controlWords(state);
    this.dataOffset = geometry.dataOffset;
    this.root = Object.freeze({ offset: geometry.rootOffset, length: geometry.rootBytes });
    this.table = new OwnerTable(media, live);
    this.badList = new BadBlockList(media, live);
    this.allocator = new Allocator(media, live, this.table, this.badList, state);
  }

  /** Data blocks the store has now (a growth by any thread raises it). */
  get dataBlocks(): number {
    return this.allocator.dataBlocks;
  }

  /** Data blocks the store can grow to in this mapping (its capacity): tables per extent are sized by it. */
  get capacityBlocks(): number {
    return this.allocator.capacity;
  }

  /** The most the store can grow to in this mapping: bytes. */
  get maxBytes(): number {
    return sizeForBlocks(this.geometry, this.allocator.capacity);
  }

  /**
   * Formats media as an empty daxstore; everything is durable before return. The owner table
   * is sized for maxBytes; only what the store uses now is written (and allocated, on a sparse
   * file): a large maximum costs address space, not storage.
   */
  static format(media: Media, opts: FormatOptions = {}): Device {
    if (media.closed) throw new DaxError('ECLOSED', `${media.path}: media is closed`);
    const maxBytes = opts.maxBytes ?? media.maxSize;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < media.size || maxBytes > media.maxSize)
      throw new DaxError(
        'EINVAL',
        `format ${media.path}: maxBytes ${maxBytes} must lie in [${media.size}, ${media.maxSize}]`,
      );
    const geometry = computeGeometry(media.size, opts.rootBytes, opts.badBlockCapacity, maxBytes);
    const ownerUsed = alignUp(geometry.dataBlocks * OWNER_RECORD_BYTES, BLOCK_BYTES);
    if (media.sparse === true) {
      // A file created as a hole: allocate what the store uses now (a full file system fails
      // here, not with a SIGBUS later); the owner records of the room to grow into stay a hole.
      media.allocate?.(0, geometry.ownerTableOffset + ownerUsed);
      media.allocate?.(geometry.badBlockListOffset, media.size - geometry.badBlockListOffset);
    }
    // Invalidate the old superblocks first: a crash mid-format must not leave an old
    // superblock describing new, half-written metadata.
    new Uint8Array(media.buffer, 0, geometry.rootOffset).fill(0);
    media.persist(0, geometry.rootOffset);
    // The root area and the records of the blocks the store has; those past them are zeroed by
    // the growth that publishes them.
    new Uint8Array(media.buffer, geometry.rootOffset, geometry.ownerTableOffset + ownerUsed - geometry.rootOffset).fill(
      0,
    );
    media.persist(geometry.rootOffset, geometry.ownerTableOffset + ownerUsed - geometry.rootOffset);
    new Uint8Array(media.buffer, geometry.badBlockListOffset, geometry.dataOffset - geometry.badBlockListOffset).fill(
      0,
    );
    media.persist(geometry.badBlockListOffset, geometry.dataOffset - geometry.badBlockListOffset);
    const superblock: Superblock = {
      ...geometry,
      formatVersion: FORMAT_VERSION,
      flags: 0,
      uuid: new Uint8Array(randomBytes(16)),
      cleanShutdown: false,
      sequence: 1,
    };
    writeSuperblock(media, superblock);
    const device = new Device(media, geometry, true, true);
    device.allocator.rebuild();
    return device;
  }

  /**
   * Opens a formatted media: validates everything, then marks it open. An owner record with one
   * wrong byte (its check bytes find it) is corrected in place; one no single byte explains is
   * ECORRUPT and nothing is changed, unless `salvage`: then it is cleared (FREE) and reported in
   * ownerRepairs (a layer above may rebuild it from its own data: restoreOwner). A media longer
   * than the superblock says (a crash inside a growth, a file grown with truncate) is grown
   * into, up to the store's capacity; `minBytes` grows it to at least that many bytes.
   */
  static open(media: Media, opts: { salvage?: boolean; minBytes?: number } = {}): Device {
    if (media.closed) throw new DaxError('ECLOSED', `${media.path}: media is closed`);
    const { superblock } = chooseSuperblock(media);
    // A media longer than the superblock says is a grown store only where the media can grow.
    const problem =
      geometryProblem(superblock, media.size) ??
      (media.grow === undefined && superblock.sizeBytes !== media.size
        ? `superblock says ${superblock.sizeBytes} bytes, media has ${media.size}`
        : undefined);
    if (problem !== undefined)
      throw new DaxError('ECORRUPT', `${media.path}: superblock geometry does not fit the media: ${problem}`);
    const device = new Device(media, superblock, true, superblock.cleanShutdown);
    device.allocator.rebuild(); // validates owner table and bad-block list (ECORRUPT), writes nothing
    const damage = device.allocator.ownerDamage;
    if (damage.unresolved.length > 0 && opts.salvage !== true)
      throw new DaxError(
        'ECORRUPT',
        `${media.path}: ${damage.unresolved.length} damaged owner record(s): ${damage.unresolved
          .slice(0, 5)
          .map((d) => d.why)
          .join('; ')}; open with { recovery: 'salvage' } or run \`daxstore check --repair\``,
      );
    for (const c of damage.corrected) device.table.storeCorrected(c.block, c.word0, c.word1);
    for (const u of damage.unresolved) device.table.storeCorrected(u.block, 0n, u.word1);
    for (const d of [...damage.corrected, ...damage.unresolved]) {
      device.table.flushMeta(d.block);
      device.table.flushIndex(d.block);
    }
    if (damage.corrected.length + damage.unresolved.length > 0) media.drain();
    device.ownerRepairs = {
      corrected: damage.corrected.map((c) => ({ block: c.block, what: c.what })),
      cleared: damage.unresolved.map((u) => ({ block: u.block, why: u.why })),
    };
    // Everything validated: now mark open. This one update also repairs a bad or stale copy, and
    // makes an older format's store (superblock.ts OLDEST_FORMAT_VERSION) this format's.
    device.updateSuperblock((sb) => ({ ...sb, cleanShutdown: false, formatVersion: FORMAT_VERSION }));
    const wanted = Math.max(opts.minBytes ?? 0, Math.min(media.size, device.maxBytes));
    if (wanted > device.geometry.sizeBytes && !device.grow(wanted))
      throw new DaxError(
        'ENOSPC',
        `${media.path}: cannot grow to ${wanted} bytes: the store can grow to ${device.maxBytes} (its maxSize)`,
      );
    return device;
  }

  /** A structured-cloneable handle: Device.attach(handle) in a worker shares this device. */
  share(): DeviceHandle {
    this.checkOpen();
    return {
      media: this.media.share(),
      geometry: { ...this.geometry },
      allocatorState: this.allocator.state,
      lastShutdownClean: this.lastShutdownClean,
    };
  }

  /** The device in another thread (the media attaches through attach-media.ts: sim or mapped). */
  static attach(handle: DeviceHandle, attachMedia: (h: MediaHandle) => Media = attachAnyMedia): Device {
    const media = attachMedia(handle.media);
    return new Device(media, handle.geometry, false, handle.lastShutdownClean, handle.allocatorState);
  }

  /**
   * A block (order 0) or 2 MiB extent (order 9) owned by (ownerId, index), durable on return.
   * A full store that can grow grows (one step, any thread) and the allocation is tried again,
   * unless `grow: false`. A priority allocation grows the store before it takes the reserve;
   * when the store cannot grow (at maxBytes, a device, the file system full) it takes the
   * reserve. ENOSPC when nothing is free after that, or when only the reserve (setReserve) is
   * left and the allocation is not `priority`.
   */
  allocate(ownerId: number, index: number, order: 0 | 9 = 0, opts: AllocateOptions = {}): number {
    this.checkOpen();
    if (!Number.isSafeInteger(ownerId) || ownerId < 1 || ownerId > MAX_OWNER_ID)
      throw new DaxError('EINVAL', `allocate: ownerId ${ownerId} must be an integer in [1, 2^40)`);
    if (!Number.isSafeInteger(index) || index < 0 || index > MAX_INDEX)
      throw new DaxError('EINVAL', `allocate: index ${index} must be an integer in [0, 2^53)`);
    if (order !== 0 && order !== HUGE_ORDER)
      throw new DaxError('EINVAL', `allocate: order ${String(order)} must be 0 or 9`);
    const block =
      opts.grow === false || (this.growthHeld > 0 && opts.priority !== true)
        ? this.allocator.allocate(ownerId, index, order, opts)
        : opts.priority === true
          ? this.allocatePriority(ownerId, index, order)
          : this.allocateGrowing(ownerId, index, order);
    assert(
      block >= 0 && block < this.dataBlocks && (order === 0 || block % HUGE_BLOCKS === 0),
      () => `allocator returned block ${block}`,
    );
    return block;
  }

  /** withoutGrowth's depth on this thread (a Device object is one thread's). */
  private growthHeld = 0;

  /**
   * Runs fn with this thread's ordinary allocations made as with `grow: false`: one that finds
   * the store full throws the full error instead of growing it, and the caller decides between
   * reclaiming and growing (the kv store's large values, whose pages the DAX fault path
   * allocates). Priority allocations are not affected.
   */
  withoutGrowth<T>(fn: () => T): T {
    this.growthHeld++;
    try {
      return fn();
    } finally {
      this.growthHeld--;
    }
  }

  /** An ordinary allocation; a full store grows (one step, or none when another thread just grew it) and it is tried again. */
  private allocateGrowing(ownerId: number, index: number, order: 0 | 9): number {
    for (;;) {
      const seen = this.allocator.dataBlocks;
      try {
        return this.allocator.allocate(ownerId, index, order);
      } catch (e) {
        if (!isFullError(e) || !this.growPast(seen)) throw e;
      }
    }
  }

  /**
   * A priority allocation: as an ordinary one while the store can grow (the reserve stays whole
   * for when it cannot), then from the reserve. A growth the file system refuses (ENOSPC) falls
   * back on the reserve too: that is what the reserve is for.
   */
  private allocatePriority(ownerId: number, index: number, order: 0 | 9): number {
    if (this.canGrow)
      try {
        return this.allocateGrowing(ownerId, index, order);
      } catch (e) {
        if (!(e instanceof DaxError && e.code === 'ENOSPC') || isInjectedFault(e)) throw e;
      }
    return this.allocator.allocate(ownerId, index, order, { priority: true });
  }

  /** Whether the store can still grow: its media grows (a file) and it is below maxBytes. */
  get canGrow(): boolean {
    return !this.closed && this.media.grow !== undefined && this.maxBytes > this.geometry.sizeBytes;
  }

  /**
   * Keeps `extents` whole free 2 MiB extents for priority allocations (allocate's `priority`),
   * for every thread sharing this device: space that deletes and compaction can still use
   * when ordinary writes get ENOSPC. Volatile: each opener sets it again.
   */
  setReserve(extents: number): void {
    this.checkOpen();
    if (!Number.isSafeInteger(extents) || extents < 0 || extents > 2 ** 20)
      throw new DaxError('EINVAL', `setReserve: ${extents} extents must be an integer in [0, 2^20]`);
    this.allocator.setReserve(extents);
  }

  free(block: number): void {
    this.checkOpen();
    this.checkBlock(block, 'free');
    this.allocator.free(block);
  }

  ownerOf(block: number): OwnerInfo {
    this.checkOpen();
    this.checkBlock(block, 'ownerOf');
    const head = this.table.coveringHead(block);
    const recordBlock = head >= 0 ? head : block;
    const own = decodeMeta(this.table.loadMeta(block));
    const rec = decodeMeta(this.table.loadMeta(recordBlock));
    const owned = (rec.flags & FLAG_OWNED) !== 0;
    const index = owned ? this.table.loadIndex(recordBlock) : 0;
    const poisoned = (own.flags & FLAG_POISONED) !== 0 || this.allocator.isPoisoned(block);
    const state = poisoned ? 'poisoned' : head >= 0 ? 'covered' : owned ? 'owned' : 'free';
    return { state, ownerId: owned ? rec.ownerId : 0, index, order: owned ? rec.order : 0, head: recordBlock };
  }

  /**
   * Owner records open found damaged: corrected exactly (one wrong byte), or cleared to FREE
   * (salvage: no single byte explained the damage; what they said is lost unless a layer above
   * rebuilds it with restoreOwner). Empty on attached devices.
   */
  ownerRepairs: { corrected: Array<{ block: number; what: string }>; cleared: Array<{ block: number; why: string }> } =
    {
      corrected: [],
      cleared: [],
    };

  /**
   * Restores an owner record a layer above rebuilt from its own data (a log segment's SEAL)
   * after open cleared it: claims exactly `block` (its extent for order 9), durable on return.
   * False when a block of it is in use.
   */
  restoreOwner(block: number, ownerId: number, index: number, order: 0 | 9): boolean {
    this.checkOpen();
    this.checkBlock(block, 'restoreOwner');
    if (!Number.isSafeInteger(ownerId) || ownerId < 1 || ownerId > MAX_OWNER_ID)
      throw new DaxError('EINVAL', `restoreOwner: ownerId ${ownerId} must be an integer in [1, 2^40)`);
    if (!Number.isSafeInteger(index) || index < 0 || index > MAX_INDEX)
      throw new DaxError('EINVAL', `restoreOwner: index ${index} must be an integer in [0, 2^53)`);
    if (order === HUGE_ORDER && (block % HUGE_BLOCKS !== 0 || block + HUGE_BLOCKS > this.dataBlocks))
      throw new DaxError('EINVAL', `restoreOwner(${block}): an extent head must be 2 MiB aligned`);
    return this.allocator.claim(block, ownerId, index, order);
  }

  /** Every OWNED record (an extent once, at its head). For recovery: reclaim what no owner reaches. */
  forEachOwned(cb: (block: number, ownerId: number, index: number, order: number) => void): void {
    this.checkOpen();
    this.allocator.forEachOwned(cb);
  }

  /** The first block of the 2 MiB extent the next extent allocation would likely take, or -1 (advice only: Allocator.nextFreeExtent). */
  nextFreeExtent(): number {
    this.checkOpen();
    return this.allocator.nextFreeExtent();
  }

  blockOffset(block: number): number {
    this.checkBlock(block, 'blockOffset');
    return this.dataOffset + block * BLOCK_BYTES;
  }

  blockAt(offset: number): number {
    if (
      !Number.isSafeInteger(offset) ||
      offset < this.dataOffset ||
      offset >= this.dataOffset + this.dataBlocks * BLOCK_BYTES
    ) {
      throw new DaxError(
        'ERANGE',
        `blockAt(${offset}): offset outside the data area [${this.dataOffset}, ${this.dataOffset + this.dataBlocks * BLOCK_BYTES})`,
      );
    }
    return Math.floor((offset - this.dataOffset) / BLOCK_BYTES);
  }

  /** Durably records block as bad: never handed out again, reads of it fail with EIO. */
  poison(block: number): void {
    this.checkOpen();
    this.checkBlock(block, 'poison');
    this.allocator.poison(block);
  }

  /** How many blocks are poisoned (one load): hot read paths check blocks only when it is not 0. */
  get poisonedBlocks(): number {
    return this.allocator.poisonedBlocks;
  }

  isPoisoned(block: number): boolean {
    this.checkBlock(block, 'isPoisoned');
    return this.allocator.isPoisoned(block);
  }

  /** First poisoned block of [first, first+count) (e.g. a 2 MiB extent), or -1. */
  firstPoisoned(first: number, count: number): number {
    this.checkBlock(first, 'firstPoisoned');
    if (!Number.isSafeInteger(count) || count < 0 || first + count > this.dataBlocks)
      throw new DaxError('ERANGE', `firstPoisoned(${first}, ${count}): range outside [0, ${this.dataBlocks})`);
    return this.allocator.firstPoisoned(first, count);
  }

  badBlocks(): number[] {
    this.checkOpen();
    return this.badList.read().sort((a, b) => a - b);
  }

  /** Copies [offset, offset+length) of the media; EIO naming the block if it touches a poisoned one. */
  read(offset: number, length: number, dest?: Uint8Array): Uint8Array {
    this.checkOpen();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
      throw new DaxError('EINVAL', `read(${offset}, ${length}): offset and length must be non-negative integers`);
    if (offset + length > this.media.size)
      throw new DaxError('ERANGE', `read(${offset}, ${length}) beyond the device size ${this.media.size}`);
    const out = dest ?? new Uint8Array(length);
    if (out.length < length)
      throw new DaxError('EINVAL', `read(${offset}, ${length}): destination holds only ${out.length} bytes`);
    const dataEnd = this.dataOffset + this.dataBlocks * BLOCK_BYTES;
    const first = Math.max(offset, this.dataOffset);
    const last = Math.min(offset + length, dataEnd) - 1;
    for (
      let b = Math.floor((first - this.dataOffset) / BLOCK_BYTES);
      first <= last && b <= Math.floor((last - this.dataOffset) / BLOCK_BYTES);
      b++
    ) {
      if (this.allocator.isPoisoned(b))
        throw new DaxError(
          'EIO',
          `read(${offset}, ${length}): block ${b} at offset ${this.dataOffset + b * BLOCK_BYTES} is poisoned`,
        );
    }
    this.media.copyOut(offset, length, out);
    return out;
  }

  /**
   * allocationEnospc: n -> the n-th allocation from now (any thread) fails with ENOSPC; 0 clears.
   * allocateFrom: block -> the next allocations search for free space from that block on (the
   * allocator is next-fit): tests place data far into a large store without filling what is
   * before it.
   */
  injectFault(fault: { allocationEnospc?: number; allocateFrom?: number }): void {
    this.checkOpen();
    if (fault.allocateFrom !== undefined) {
      this.checkBlock(fault.allocateFrom, 'injectFault allocateFrom');
      this.allocator.moveCursors(fault.allocateFrom);
    }
    const n = fault.allocationEnospc;
    if (n === undefined) return;
    if (!Number.isSafeInteger(n) || n < 0)
      throw new DaxError('EINVAL', `injectFault: allocationEnospc must be a non-negative integer, got ${n}`);
    this.allocator.injectEnospc(n);
  }

  stats(): DeviceStats {
    this.checkOpen();
    return {
      ...this.allocator.stats(),
      lastShutdownClean: this.lastShutdownClean,
      badBlocks: this.badList.count(),
      mediaKind: this.media.kind,
      flushMethod: this.media.flushMethod,
      sizeBytes: this.media.size,
      dataOffset: this.dataOffset,
    };
  }

  /** Differences between the allocator index and the owner table (empty when consistent, no operation in flight). */
  audit(): string[] {
    this.checkOpen();
    return this.allocator.audit();
  }

  get closed(): boolean {
    return this.isClosed || this.allocator.closed;
  }

  /** Random id of this device's shared state (participants.ts records name the device by it). */
  get token(): number {
    return this.allocator.token;
  }

  /** Whether dead participant `id` was in the middle of an allocation or free here: reapParticipant finishes or undoes it. */
  allocationInFlight(id: number): boolean {
    this.checkOpen();
    return this.allocator.inFlightFor(id);
  }

  /** Finishes or undoes the allocation or free a dead participant was in the middle of (allocator.ts "Thread death"). */
  reapParticipant(id: number): void {
    this.checkOpen();
    this.allocator.reapParticipant(id);
  }

  /** The store's identity (superblock uuid, random at format), a copy; undefined on attached devices. */
  get uuid(): Uint8Array | undefined {
    if (!this.opener) return undefined;
    this.uuidRead ??= chooseSuperblock(this.media).superblock.uuid.slice(); // never changes after format
    return this.uuidRead.slice();
  }

  private uuidRead: Uint8Array | undefined;

  /** Opener: clean-shutdown flag durable, media closed; attached: detaches. Idempotent. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.opener && !this.allocator.closed) {
      this.allocator.markClosed();
      this.updateSuperblock((sb) => ({ ...sb, cleanShutdown: true }));
    }
    this.media.close();
  }

  /**
   * Grows the store to at least `minBytes` (0: one step, see GROW_STEP_BYTES), within maxBytes; true when it now has that much room or grew, false
   * when it cannot grow (at its maximum, a device, simulated media). Online: nothing moves, every
   * view in every thread stays valid, the new blocks are free for every thread once published.
   * The file system's ENOSPC propagates (nothing changed). Persistence ordering: file header.
   */
  grow(minBytes = 0): boolean {
    this.checkOpen();
    return this.growPast(this.allocator.dataBlocks, minBytes);
  }

  /** grow(), unless the store has grown past `seen` data blocks since the caller looked (another thread grew it). */
  private growPast(seen: number, minBytes = 0): boolean {
    const media = this.media;
    if (media.grow === undefined || this.maxBytes <= this.geometry.sizeBytes)
      return minBytes > 0 && minBytes <= this.geometry.sizeBytes;
    return withLock(this.control, GROW_LOCK, () => {
      this.checkOpen();
      const oldBlocks = this.allocator.dataBlocks;
      const oldBytes = sizeForBlocks(this.geometry, oldBlocks);
      if (minBytes > 0 ? minBytes <= oldBytes : oldBlocks > seen) return true;
      const step = Math.max(minBytes, oldBytes + growStepBytes(oldBytes, this.dataOffset));
      const newBytes = Math.min(this.maxBytes, alignUp(step, HUGE_BYTES));
      if (newBytes <= oldBytes || newBytes < minBytes) return false;
      const newBlocks = (newBytes - this.dataOffset) / BLOCK_BYTES;
      testHooks.growStep?.('start', this.media);
      if (isBroken('grow-superblock-first')) return this.growSuperblockFirst(oldBlocks, newBlocks);
      media.grow!(newBytes); // allocated, extended, its size durable
      media.allocate?.(oldBytes, newBytes - oldBytes); // a file grown with truncate is a hole
      this.zeroRecords(oldBlocks, newBlocks);
      this.updateSuperblock((sb) => ({ ...sb, sizeBytes: newBytes, dataBlocks: newBlocks }), true);
      testHooks.growStep?.('superblock-written', this.media);
      this.allocator.publishGrowth(newBlocks);
      return true;
    });
  }

  /** grow() under DAXSTORE_TEST_BREAK=grow-superblock-first: the superblock names the new size before the file has it. */
  private growSuperblockFirst(oldBlocks: number, newBlocks: number): boolean {
    const newBytes = sizeForBlocks(this.geometry, newBlocks);
    this.updateSuperblock((sb) => ({ ...sb, sizeBytes: newBytes, dataBlocks: newBlocks }), true);
    testHooks.growStep?.('superblock-written', this.media);
    this.media.grow!(newBytes);
    this.zeroRecords(oldBlocks, newBlocks);
    this.allocator.publishGrowth(newBlocks);
    return true;
  }

  /** Makes the owner records of blocks [from, to) durably FREE (only those that are not: a sparse table stays sparse where it can). */
  private zeroRecords(from: number, to: number): void {
    testHooks.growStep?.('file-grown', this.media);
    let dirty = false;
    for (let b = from; b < to; b++) {
      if (this.table.loadMeta(b) === 0n && this.table.loadIndexWord(b) === 0n) continue;
      this.table.storeCorrected(b, 0n, 0n);
      this.table.flushMeta(b);
      this.table.flushIndex(b);
      dirty = true;
    }
    if (dirty) this.media.drain();
    testHooks.growStep?.('records-free', this.media);
  }

  /**
   * Writes the superblock `change` makes of the newest valid copy, sequence + 1, both copies one
   * after the other (superblock.ts), under the growth lock (`locked`: the caller holds it).
   */
  private updateSuperblock(change: (sb: Superblock) => Superblock, locked = false): void {
    const write = (): void => {
      const { superblock } = chooseSuperblock(this.media);
      writeSuperblock(this.media, { ...change(superblock), sequence: superblock.sequence + 1 });
    };
    if (locked) write();
    else withLock(this.control, GROW_LOCK, write);
  }

  private checkOpen(): void {
    if (this.closed) throw new DaxError('ECLOSED', `${this.media.path}: device is closed`);
  }

  private checkBlock(block: number, op: string): void {
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.dataBlocks) {
      throw new DaxError('ERANGE', `${op}(${block}): block outside [0, ${this.dataBlocks})`);
    }
  }
}
