/**
 * DaxSpace: a formatted device, one radix tree mapping every object's pages, the epoch
 * domain, the object table and the operations that are not about one object (rmap, memory
 * failure, recovery). Objects are DaxObject (object.ts).
 *
 * Invariants
 *   - The device owner table is the persistent forward map: a block owned by object id
 *     >= 16 with page index i is page i of that object. After open, the tree holds exactly
 *     one entry per such block within its object's durable size; everything else owned by
 *     staging, by a dead object or beyond a size was freed (owned-but-unreachable).
 *   - Blocks leave an object through the epoch: unpublished (owner -> staging) under the
 *     entry lock, removed from the tree, retired as RETIRE_DEVICE_BLOCK; the reclaimer
 *     (device.free, registered in every thread that opens or attaches) frees them once no
 *     pinned reader can hold a view (R6).
 *
 * Concurrency
 *   - Lock order: object invalidate lock -> entry lock -> (tree lock, device allocator lock,
 *     object table lock). rmap/memoryFailure take only entry locks.
 *   - Everything shared lives in SharedArrayBuffers carried by share(): device, tree (+ wait
 *     table), epoch, object slot table. Event listeners are per thread.
 *
 * Persistence ordering: see alloc.ts (publish after zeroing), object-table.ts (records),
 * truncate.ts (size first), writeback.ts (flush, one drain).
 */
import { existsSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { Device, type DeviceHandle } from '../device/device.js';
import type { Media } from '../device/media.js';
import { closeAndRemoveCreated, openRegion } from '../device/region.js';
import { HUGE_BLOCKS } from '../device/layout.js';
import { EpochDomain, RETIRE_DEVICE_BLOCK, prepareEpochDomains, type EpochHandle } from '../index/epoch.js';
import { RadixTree, type RadixTreeHandle } from '../index/radix-tree.js';
import { WaitTable } from '../index/wait-table.js';
import { ObjectTable } from './object-table.js';
import {
  MAX_OBJECT_BYTES,
  MIN_OBJECT_ID,
  OWNER_OBJECT_TABLE,
  OWNER_STAGING,
  PAGE_BYTES,
  encodeValue,
  pageKey,
} from './layout.js';
import { isBroken, testHooks } from '../test-break.js';
import { DaxObject, type ObjectOptions } from './object.js';
import { memoryFailure, rmap, type RmapResult } from './rmap.js';
import { LAYER_DAX } from '../index/epoch.js';
import { Ew } from '../index/entry-word.js';
import {
  adoptDeadEntry,
  beginReplaceForDead,
  finishReplaceForDead,
  holdForDead,
  releaseForDead,
  replace,
  setTagForDead,
  setTagLocked,
  unlock,
} from '../index/entry-lock.js';
import { deadStage, forgetDeadStage } from './alloc.js';
import { releaseDeadHolders } from './invalidate-lock.js';

export interface DaxSpaceHandle {
  readonly device: DeviceHandle;
  readonly tree: RadixTreeHandle;
  readonly epoch: EpochHandle;
  readonly objects: SharedArrayBuffer;
  readonly stats: SharedArrayBuffer;
}

export interface SpaceOptions {
  /** objects the slot table holds; default 16384 */
  maxObjects?: number;
  /** debug: checksum pages writeback cleaned and report writes made without a write fault */
  debugCleanPages?: boolean;
}

export interface RecoveryReport {
  objects: number;
  pages: number;
  hugePages: number;
  /** poisoned 4 KiB pages: small entries marked POISONED plus bad blocks inside huge extents */
  poisonedPages: number;
  freedStaging: number;
  freedDeadObject: number;
  freedBeyondSize: number;
  freedDuplicate: number;
  /** object-table records found with one wrong byte and corrected in place */
  objectRecordsCorrected: string[];
  /** object-table records damaged past correction, cleared (salvage only): their objects are gone */
  objectRecordsCleared: string[];
  /**
   * wall ms of Device.open (superblock, owner table checked, allocator rebuilt), of creating the
   * volatile structures (epoch domain, index arena, wait table, object table) and of this recovery
   */
  deviceMs: number;
  structuresMs: number;
  timeMs: number;
}

export interface MemoryFailureEvent {
  deviceOffset: number;
  block: number;
  objectId: number | null;
  index: number | null;
}

/** Int32 counters shared by all threads (stats()). */
export const ST_FAULTS = 0;
export const ST_ALLOCS = 1;
export const ST_MKWRITE = 2;
export const ST_WRITEBACK_PAGES = 3;
export const ST_RETIRED = 4;
export const ST_POISONED = 5;
export const ST_CLEAN_WRITES = 6; // debug mode: pages found written while clean
const ST_WORDS = 16;

export class DaxSpace extends EventEmitter {
  /** @internal */
  readonly objects: ObjectTable;
  /** @internal */
  readonly counters: Int32Array;
  readonly recovery: RecoveryReport | undefined;
  readonly debugCleanPages: boolean;
  private readonly handles = new Map<number, DaxObject>();
  private isClosed = false;

  private constructor(
    readonly device: Device,
    readonly tree: RadixTree,
    readonly epoch: EpochDomain,
    objects: ObjectTable,
    counters: SharedArrayBuffer,
    private readonly opener: boolean,
    recovery: RecoveryReport | undefined,
    opts: SpaceOptions,
  ) {
    super();
    this.objects = objects;
    this.counters = new Int32Array(counters);
    this.recovery = recovery;
    this.debugCleanPages = opts.debugCleanPages === true;
    epoch.registerReclaimer(RETIRE_DEVICE_BLOCK, (block) => {
      // A closed device: the block stays staging-owned and the next open frees it.
      if (!this.device.closed) this.device.free(block);
    });
    epoch.onDeath(LAYER_DAX, 5, (id) => {
      if (!this.closed) reapDaxParticipant(this, id);
    });
  }

  /**
   * Opens a space in a file or device-DAX path, creating and formatting it only when the path
   * does not exist (then `size` is required). An existing file that holds no store is never
   * formatted: it fails with ENOTSTORE and is left as it was.
   */
  static open(path: string, opts: SpaceOptions & { size?: number } = {}): DaxSpace {
    if (typeof path !== 'string' || path.length === 0)
      throw new DaxError('EINVAL', 'DaxSpace.open: path must be a non-empty string');
    const create = !existsSync(path);
    if (create && opts.size === undefined)
      throw new DaxError('ENOENT', `DaxSpace.open: ${path} does not exist (pass size to create it)`);
    const media = openRegion(path, { create: opts.size !== undefined, sizeBytes: opts.size });
    try {
      return DaxSpace.openMedia(media, { ...opts, formatIfEmpty: media.created });
    } catch (e) {
      closeAndRemoveCreated(media); // a failed create leaves no file behind
      throw e;
    }
  }

  /** Formats media as an empty space. */
  static create(media: Media, opts: SpaceOptions = {}): DaxSpace {
    return DaxSpace.fromDevice(Device.format(media), opts);
  }

  /**
   * Opens a formatted media and recovers every object from the owner table. `salvage`: an owner
   * record damaged beyond a one-byte correction is cleared instead of refusing the open
   * (Device.open; device.ownerRepairs says which).
   */
  static openMedia(
    media: Media,
    opts: SpaceOptions & {
      formatIfEmpty?: boolean;
      salvage?: boolean;
      maxBytes?: number;
      minBytes?: number;
    } = {},
  ): DaxSpace {
    let device: Device;
    const t0 = performance.now();
    prepareEpochDomains(); // the kernel's wait in it overlaps the device's open
    try {
      device = Device.open(media, { salvage: opts.salvage === true, minBytes: opts.minBytes });
    } catch (e) {
      if (opts.formatIfEmpty === true && e instanceof DaxError && e.code === 'ENOTSTORE')
        device = Device.format(media, { maxBytes: opts.maxBytes || undefined });
      else throw e;
    }
    return DaxSpace.fromDevice(device, opts, performance.now() - t0);
  }

  private static fromDevice(device: Device, opts: SpaceOptions & { salvage?: boolean }, deviceMs = 0): DaxSpace {
    const maxObjects = opts.maxObjects ?? 16384;
    if (!Number.isSafeInteger(maxObjects) || maxObjects < 1 || maxObjects > 2 ** 20)
      throw new DaxError('EINVAL', `maxObjects ${maxObjects} must be an integer in [1, 2^20]`);
    try {
      const c0 = performance.now();
      const epoch = EpochDomain.create();
      const tree = RadixTree.create(epoch, { waitTable: WaitTable.create() });
      const objects = ObjectTable.create(device, maxObjects);
      const t0 = performance.now();
      const report = recover(device, tree, objects, opts.salvage === true);
      report.deviceMs = deviceMs;
      report.structuresMs = t0 - c0;
      report.timeMs = performance.now() - t0;
      return new DaxSpace(device, tree, epoch, objects, new SharedArrayBuffer(ST_WORDS * 4), true, report, opts);
    } catch (e) {
      device.close();
      throw e;
    }
  }

  /** Posts to a worker: DaxSpace.attach(handle) there shares everything. */
  share(): DaxSpaceHandle {
    this.checkOpen('share');
    return {
      device: this.device.share(),
      tree: this.tree.handle(),
      epoch: this.epoch.handle(),
      objects: this.objects.state,
      stats: this.counters.buffer as SharedArrayBuffer,
    };
  }

  static attach(handle: DaxSpaceHandle, opts: SpaceOptions = {}): DaxSpace {
    const device = Device.attach(handle.device);
    const epoch = EpochDomain.attach(handle.epoch);
    const tree = RadixTree.attach(handle.tree, epoch);
    return new DaxSpace(
      device,
      tree,
      epoch,
      ObjectTable.attach(device, handle.objects),
      handle.stats,
      false,
      undefined,
      opts,
    );
  }

  /** The object `id` (>= 16). create: make it (size bytes, default 0) when absent; ENOENT otherwise. */
  object(id: number, opts: ObjectOptions & { create?: boolean; size?: number } = {}): DaxObject {
    this.checkOpen('object');
    if (!Number.isSafeInteger(id) || id < MIN_OBJECT_ID || id > 2 ** 40 - 1)
      throw new DaxError('EINVAL', `object(${id}): id must be an integer in [${MIN_OBJECT_ID}, 2^40)`);
    const size = opts.size ?? 0;
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_OBJECT_BYTES)
      throw new DaxError('EINVAL', `object(${id}): size ${size} must be an integer in [0, 2^48]`);
    let slot = this.objects.find(id);
    if (slot < 0) {
      if (opts.create !== true) throw new DaxError('ENOENT', `object ${id} does not exist`);
      try {
        slot = this.objects.create(id, size);
      } catch (e) {
        if (!(e instanceof DaxError && e.code === 'EEXIST')) throw e;
        slot = this.objects.find(id); // created meanwhile by another thread
        if (slot < 0) throw e;
      }
    }
    return new DaxObject(this, id, slot, opts);
  }

  has(id: number): boolean {
    return Number.isSafeInteger(id) && id >= MIN_OBJECT_ID && this.objects.find(id) >= 0;
  }

  /** Runs fn pinned: views faulted inside stay valid (never freed, never reused) until it returns (R6). */
  read<T>(fn: () => T): T {
    this.checkOpen('read');
    return this.epoch.guard(fn);
  }

  /** Owner of the block at deviceOffset with its entry LOCKED until release(); null when no object page holds it. */
  rmap(deviceOffset: number): RmapResult | null {
    this.checkOpen('rmap');
    return rmap(this, deviceOffset);
  }

  /** Handles a media error at deviceOffset: page POISONED (reads EIO), block quarantined, 'memory-failure' emitted. */
  memoryFailure(deviceOffset: number): MemoryFailureEvent {
    this.checkOpen('memoryFailure');
    const event = memoryFailure(this, deviceOffset);
    this.emit('memory-failure', event);
    return event;
  }

  /** @internal Frees `block` once no pinned reader can still look at it (R6). */
  retireBlock(block: number): void {
    if (isBroken('dax-free-now')) return this.freeBlockNow(block);
    Atomics.add(this.counters, ST_RETIRED, 1);
    this.epoch.retire(RETIRE_DEVICE_BLOCK, block, 1);
  }

  /** retireBlock under DAXSTORE_TEST_BREAK=dax-free-now: freed at once, with pinned readers maybe still on it. */
  private freeBlockNow(block: number): void {
    Atomics.add(this.counters, ST_RETIRED, 1);
    this.device.free(block);
  }

  stats(): {
    objects: number;
    entries: number;
    faults: number;
    allocations: number;
    mkwrites: number;
    writebackPages: number;
    retired: number;
    poisoned: number;
    cleanPageWrites: number;
    limboBlocks: number;
    lostWakeups: number;
    device: ReturnType<Device['stats']>;
  } {
    this.checkOpen('stats');
    const c = (i: number): number => Atomics.load(this.counters, i);
    const t = this.tree.stats();
    return {
      objects: this.objects.liveIds().length,
      entries: t.count,
      faults: c(ST_FAULTS),
      allocations: c(ST_ALLOCS),
      mkwrites: c(ST_MKWRITE),
      writebackPages: c(ST_WRITEBACK_PAGES),
      retired: c(ST_RETIRED),
      poisoned: c(ST_POISONED),
      cleanPageWrites: c(ST_CLEAN_WRITES),
      limboBlocks: this.epoch.stats().limbo[RETIRE_DEVICE_BLOCK] ?? 0,
      lostWakeups: t.lostWakeups,
      device: this.device.stats(),
    };
  }

  /** Releases retired blocks whose grace period is over; returns how many items were released. */
  collect(): number {
    this.checkOpen('collect');
    let n = 0;
    for (let i = 0; i < 4; i++) n += this.epoch.collect();
    return n;
  }

  get closed(): boolean {
    return this.isClosed || this.device.closed;
  }

  /** Opener: releases what limbo can, then closes the device (clean shutdown). Attached: detaches. Idempotent. */
  close(): void {
    if (this.isClosed) return;
    if (this.opener && !this.device.closed && !this.epoch.isPinned()) {
      for (let i = 0; i < 4; i++) this.epoch.collect();
    }
    if (this.opener && !this.device.closed) this.epoch.forgetAll(); // the dead are reaped, the living forgotten
    this.isClosed = true;
    this.handles.clear();
    this.epoch.close();
    this.device.close();
  }

  /** @internal */
  checkOpen(op: string): void {
    if (this.closed) throw new DaxError('ECLOSED', `${op}: the DAX space on ${this.device.media.path} is closed`);
  }
}

/**
 * The DAX layer's part of reaping dead participant `id` (EpochDomain.onDeath, rank 5: first,
 * so the layers above find its locks given back and its blocks accounted for): the allocation
 * or free it was in (allocator.ts), the staging block it had not yet put in the tree (alloc.ts),
 * the invalidate locks it held (invalidate-lock.ts). Idempotent.
 */
function reapDaxParticipant(space: DaxSpace, id: number): void {
  space.device.reapParticipant(id);
  reapStage(space, id);
  releaseDeadHolders(space.objects.words, 0, id);
}

/**
 * alloc.ts "Thread death": a staging block still staging is freed; one published is put into
 * the page entry the dead thread still holds, ON ITS BEHALF (entry-lock.ts holdForDead): the
 * entry goes on naming the dead thread until released, so a reaper that dies in the middle
 * leaves it, placeholder and all, to the next run of this reap (the domain forgets a
 * participant only after its handlers return), which finds the stage record still there.
 * Every step is idempotent: the block goes in only while the entry is empty, the tag is set
 * while it holds the block.
 */
function reapStage(space: DaxSpace, id: number): void {
  const stage = deadStage(space.device, id);
  if (stage === undefined) return;
  const { device, tree } = space;
  const info = device.ownerOf(stage.block);
  if (info.state === 'owned' && info.ownerId === OWNER_STAGING && info.index === stage.index) device.free(stage.block);
  else if (info.state === 'owned' && info.ownerId === stage.ownerId) {
    if (stage.ownerId === OWNER_OBJECT_TABLE) space.objects.adoptPage(stage.index, stage.block);
    else if (isBroken('dax-reap-adopt-own')) fillStageInOwnName(space, stage, id);
    else {
      const ref = holdForDead(tree, pageKey(stage.ownerId, stage.index), id);
      if (ref !== undefined) {
        try {
          testHooks.reapStage?.('held');
          const value = encodeValue(stage.block, true, stage.order === 9);
          if (ref.state === 'empty') {
            beginReplaceForDead(tree, ref, id);
            finishReplaceForDead(tree, ref, value, 'value', id);
          }
          if (ref.state === 'value' && ref.value === value) setTagForDead(tree, ref, 'dirty', id);
          testHooks.reapStage?.('filled');
        } finally {
          releaseForDead(tree, ref, id);
        }
      }
    }
  }
  forgetDeadStage(id);
}

/**
 * reapStage's fill under DAXSTORE_TEST_BREAK=dax-reap-adopt-own: the entry is taken over in
 * the reaper's own name (adoptDeadEntry). A reaper that dies before filling it leaves the
 * placeholder to its own reap, which removes it: the block stays owned by the object but out of
 * the tree, and the next fault of the page allocates it a second block.
 */
function fillStageInOwnName(
  space: DaxSpace,
  stage: { block: number; ownerId: number; index: number; order: 0 | 9 },
  id: number,
): void {
  const { tree } = space;
  const ref = adoptDeadEntry(tree, pageKey(stage.ownerId, stage.index), id);
  if (ref === undefined) return;
  try {
    testHooks.reapStage?.('held');
    if (ref.state === 'empty') {
      replace(tree, ref, encodeValue(stage.block, true, stage.order === 9));
      setTagLocked(tree, ref, 'dirty');
    }
    testHooks.reapStage?.('filled');
  } finally {
    unlock(tree, ref);
  }
}

function countPoisoned(device: Device, first: number, count: number): number {
  let n = 0;
  for (
    let b = device.firstPoisoned(first, count);
    b >= 0;
    b = b + 1 < first + count ? device.firstPoisoned(b + 1, first + count - b - 1) : -1
  )
    n++;
  return n;
}

/**
 * Puts one entry per page into the empty, unshared tree of an open (bulk-loaded: nothing else
 * can see the tree yet), from `pages` in owner-table order. Sorted by key (object id, then page
 * index; the sort is stable), the first block of each key is kept and every later one is a
 * duplicate, added to `toFree`: the block the key-by-key inserts of the owner table's order
 * kept. Entries are small-order whatever their size (the DAX layer does huge coverage itself:
 * fault.ts); a huge page's value says it is huge (encodeValue).
 */
function loadPageEntries(
  device: Device,
  tree: RadixTree,
  pages: Array<[block: number, owner: number, index: number, order: number]>,
  toFree: number[],
  report: RecoveryReport,
): void {
  if (pages.length === 0) return;
  pages.sort((a, b) => a[1] - b[1] || a[2] - b[2]);
  const keyBytes = 16;
  const keys = new Uint8Array(pages.length * keyBytes);
  const starts = new Uint32Array(pages.length);
  const lengths = new Uint16Array(pages.length).fill(keyBytes);
  const values = new Float64Array(pages.length);
  const states = new Uint8Array(pages.length);
  let n = 0;
  for (let i = 0; i < pages.length; i++) {
    const [block, owner, index, order] = pages[i];
    if (i > 0 && owner === pages[i - 1][1] && index === pages[i - 1][2]) {
      toFree.push(block);
      report.freedDuplicate++;
      continue;
    }
    // A poisoned small page is marked (reads EIO until rewritten); a huge entry stays a value:
    // only views over its bad blocks fail (fault.ts poisonedUnder), its other pages are intact.
    const badBlocks = order === 0 ? (device.isPoisoned(block) ? 1 : 0) : countPoisoned(device, block, HUGE_BLOCKS);
    pageKey(owner, index, keys.subarray(n * keyBytes, (n + 1) * keyBytes));
    starts[n] = n * keyBytes;
    values[n] = encodeValue(block, false, order !== 0);
    states[n] = order === 0 && badBlocks > 0 ? Ew.STATE_POISONED : Ew.STATE_VALUE;
    n++;
    report.pages++;
    if (order !== 0) report.hugePages++;
    report.poisonedPages += badBlocks;
  }
  if (isBroken('dax-recover-poison-unmarked')) states.fill(Ew.STATE_VALUE);
  tree.bulkLoad({ count: n, keys, starts, lengths, values, states });
}

/** Rebuilds the tree and object table from the owner table; frees what nothing reaches. */
function recover(device: Device, tree: RadixTree, objects: ObjectTable, salvage: boolean): RecoveryReport {
  const report: RecoveryReport = {
    objects: 0,
    pages: 0,
    hugePages: 0,
    poisonedPages: 0,
    freedStaging: 0,
    freedDeadObject: 0,
    freedBeyondSize: 0,
    freedDuplicate: 0,
    objectRecordsCorrected: [],
    objectRecordsCleared: [],
    deviceMs: 0,
    structuresMs: 0,
    timeMs: 0,
  };
  const tablePages = new Map<number, number>();
  const data: Array<[block: number, owner: number, index: number, order: number]> = [];
  const toFree: number[] = [];
  device.forEachOwned((block, owner, index, order) => {
    if (owner === OWNER_OBJECT_TABLE) tablePages.set(index, block);
    else if (owner === OWNER_STAGING) {
      toFree.push(block);
      report.freedStaging++;
    } else if (owner >= MIN_OBJECT_ID) data.push([block, owner, index, order]);
  });
  const live = new Map(objects.load(tablePages, salvage).map((o) => [o.id, o]));
  report.objectRecordsCorrected = objects.repairs.corrected;
  report.objectRecordsCleared = objects.repairs.cleared;
  report.objects = live.size;
  const kept: typeof data = [];
  for (const entry of data) {
    const [block, owner, index, order] = entry;
    const obj = live.get(owner);
    if (obj === undefined) {
      toFree.push(block);
      report.freedDeadObject++;
      continue;
    }
    if (index * PAGE_BYTES >= obj.sizeBytes) {
      toFree.push(block);
      report.freedBeyondSize++;
      continue;
    }
    assert(
      order === 0 || index % HUGE_BLOCKS === 0,
      () => `owner record of block ${block}: huge page at unaligned index ${index}`,
    );
    kept.push(entry);
  }
  loadPageEntries(device, tree, kept, toFree, report);
  for (const block of toFree) device.free(block);
  return report;
}
