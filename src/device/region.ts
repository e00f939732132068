/**
 * MappedMedia: a whole file, tmpfs file or device-DAX mapped once by the addon and
 * exposed as one SharedArrayBuffer (the Media contract in media.ts).
 *
 * Invariants
 *   - One mapping and one SharedArrayBuffer per open region; share()/attachMappedMedia
 *     hand that same buffer to workers, which never remap.
 *   - An opener holds flock(LOCK_EX) on the path from open until close(); a second opener
 *     (this process or another) gets DaxError('EBUSY').
 *   - Every argument is validated here before the addon sees it; a failed open leaves the
 *     file system as it was (a file it created is removed).
 *
 * Concurrency
 *   - The region's bytes are shared by every thread holding `buffer`; ordering between
 *     threads is the callers' business (Atomics on the buffer). flush/persist/copy read
 *     only immutable addon state, so any thread may call them at any time.
 *   - `closed` is per MappedMedia object: closing an attached one detaches only it.
 *
 * Persistence ordering
 *   - tmpfs / fsdax / devdax: flush = clwb (or clflushopt/clflush), drain = sfence.
 *   - file (page cache): flush = msync(MS_SYNC) of the covering pages; drain = fence only.
 *   - The mapping outlives close() until the buffer is collected; it is never unmapped
 *     under a thread that still holds the buffer.
 *   - privateCopy (read-only tools): MAP_PRIVATE, so stores, flushes and msyncs stay in
 *     this process's copy-on-write pages and nothing is ever persisted to the file.
 */
import fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { isBroken } from '../test-break.js';
import {
  collapseInBackground,
  native,
  NATIVE_FLUSH_METHODS,
  NATIVE_KINDS,
  prefaultInBackground,
  returnCodeError,
  toDaxError,
  type NativeFlushMethod,
} from '../native/addon.js';
import type { FlushMethod, Media, MediaHandle, MediaInfo, MediaKind } from './media.js';
import { DEFAULT_SYSFS_ROOT, readDevDaxGeometry } from './sysfs.js';

export const REGION_BLOCK_BYTES = 4096;

export interface OpenRegionOptions {
  /** create the file if absent (sizeBytes required then) */
  readonly create?: boolean;
  /** size of a new file; for an existing file or device, must match if given */
  readonly sizeBytes?: number;
  /** force a flush method (tests, benchmarks); one this CPU or kind cannot honour is rejected */
  readonly flushMethod?: FlushMethod;
  /** where sysfs lives (tests point it at a fake tree) */
  readonly sysfsRoot?: string;
  /**
   * Map the file copy-on-write (MAP_PRIVATE over a read-only descriptor): stores stay in this
   * process, nothing reaches the file, and only the pages written cost memory. For read-only
   * tools (check, info) that still run recovery. Not with create; device-DAX refuses it.
   */
  readonly privateCopy?: boolean;
  /**
   * Address space to map, at least the size: the file may grow into it (grow()) and every view of
   * the one buffer sees the growth. Default: the size (a region that cannot grow). Not with
   * device-DAX.
   */
  readonly reserveBytes?: number;
  /**
   * Create the file as a hole (ftruncate) instead of allocating it whole: the caller allocates
   * each range before its first use (allocate()), so a large store with little in it stays small.
   */
  readonly sparse?: boolean;
}

export type MappedMediaHandle = Extract<MediaHandle, { type: 'mapped' }>;

export class MappedMedia implements Media {
  readonly kind: MediaKind;
  readonly flushMethod: FlushMethod;
  readonly mapSync: boolean;
  readonly alignment: number;
  readonly path: string;
  readonly buffer: SharedArrayBuffer;
  /** the addon's process-global id for this mapping */
  readonly regionId: number;
  /** true for the opener (owns the flock), false for an attached view */
  readonly owner: boolean;
  /** this opener created the file */
  created = false;
  /** this opener created the file as a hole (format allocates what it uses) */
  sparse = false;
  #closed = false;

  /** the mapping is MAP_PRIVATE: the file does not hold this process's stores (readInto refuses) */
  readonly #privateCopy: boolean;

  /** [0]: the size now, shared by every thread of the region (grow() raises it; it never shrinks) */
  #size: Float64Array;

  constructor(
    regionId: number,
    buffer: SharedArrayBuffer,
    info: MediaInfo,
    owner: boolean,
    privateCopy = false,
    sizeWord?: SharedArrayBuffer,
  ) {
    assert(
      buffer.byteLength >= info.size && buffer.byteLength % REGION_BLOCK_BYTES === 0,
      () => `region ${info.path}: buffer ${buffer.byteLength} < size ${info.size}`,
    );
    this.regionId = regionId;
    this.buffer = buffer;
    this.#size = new Float64Array(sizeWord ?? new SharedArrayBuffer(8));
    if (sizeWord === undefined) this.#size[0] = info.size;
    this.kind = info.kind;
    this.flushMethod = info.flushMethod;
    this.mapSync = info.mapSync;
    this.alignment = info.alignment;
    this.path = info.path;
    this.owner = owner;
    this.#privateCopy = privateCopy;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Bytes usable now: the file's size. A plain load of the shared word: it only grows, and a
   * thread that reads an older value refuses an offset past it rather than touching a page past
   * the file's end (SIGBUS).
   */
  get size(): number {
    return this.#size[0];
  }

  /** The reservation: the buffer's length, what the file may grow to. */
  get maxSize(): number {
    return this.buffer.byteLength;
  }

  /** Makes the file at least `bytes` long (allocated, its size durable); every thread's views see it. Callers serialize. */
  grow(bytes: number): void {
    this.#checkOpen('grow');
    if (!Number.isSafeInteger(bytes) || bytes % REGION_BLOCK_BYTES !== 0 || bytes > this.maxSize)
      throw new DaxError(
        'EINVAL',
        `grow region ${this.path} to ${bytes} bytes: not a multiple of ${REGION_BLOCK_BYTES} within the reservation of ${this.maxSize}`,
      );
    if (bytes <= this.size) return;
    if (this.kind === 'devdax') throw new DaxError('ENOTSUP', `grow region ${this.path}: a device cannot grow`);
    const rc = native().growRegion(this.regionId, bytes);
    if (rc !== 0) throw returnCodeError(rc, `grow region ${this.path} from ${this.size} to ${bytes} bytes`);
    if (isBroken('grow-size-private'))
      this.#size = Float64Array.of(bytes); // sabotaged: only this object sees it
    else this.#size[0] = bytes;
  }

  /** posix_fallocate of [offset, offset + length): a sparse file's range before its first use. */
  allocate(offset: number, length: number): void {
    this.#checkRange('allocate', offset, length);
    if (length === 0 || this.#privateCopy) return;
    const rc = native().allocateRegion(this.regionId, offset, length);
    if (rc !== 0) throw returnCodeError(rc, this.#where('allocate', offset, length));
  }

  flush(offset: number, length: number): void {
    this.#checkRange('flush', offset, length);
    const rc = native().flush(this.regionId, offset, length);
    if (rc !== 0) throw returnCodeError(rc, this.#where('flush', offset, length));
  }

  drain(): void {
    this.#checkOpen('drain');
    native().drain();
  }

  persist(offset: number, length: number): void {
    this.#checkRange('persist', offset, length);
    const rc = native().persist(this.regionId, offset, length);
    if (rc !== 0) throw returnCodeError(rc, this.#where('persist', offset, length));
  }

  /**
   * Faults the pages of the range in on a background thread (MADV_POPULATE_WRITE), on tmpfs
   * after making its whole 2 MiB pages huge (MADV_COLLAPSE: addon/prefault.h), so this and later
   * mappings of them take one fault per 2 MiB. Advice: a refusal (no thread, an old kernel, no
   * huge page to be had) is not an error, the writer then faults them itself; prefaultStarted
   * counts the ranges handed to a thread. DAXSTORE_NO_COLLAPSE=1 leaves the pages small.
   */
  prefault(offset: number, length: number): void {
    this.#checkRange('prefault', offset, length);
    if (prefaultInBackground(this.buffer, offset, length, this.kind === 'tmpfs')) this.prefaultStarted++;
  }

  /** ranges prefault() handed to a background thread (tests, stats) */
  prefaultStarted = 0;

  /**
   * On tmpfs, makes the range's whole 2 MiB pages huge on a background thread (MADV_COLLAPSE,
   * then the populate that maps each one whole: addon/prefault.h), for a range nothing uses yet
   * (a collapse locks its range's pages while it runs, and a fault there sleeps until it ends).
   * Nothing on other kinds, with DAXSTORE_NO_COLLAPSE=1 or DAXSTORE_NO_PREFAULT=1. Advice, as
   * prefault(); collapseStarted counts the ranges handed to a thread.
   */
  collapse(offset: number, length: number): void {
    this.#checkRange('collapse', offset, length);
    if (this.kind === 'tmpfs' && collapseInBackground(this.buffer, offset, length)) this.collapseStarted++;
  }

  /** ranges collapse() handed to a background thread (tests, stats) */
  collapseStarted = 0;

  /** msync(MS_SYNC) of the pages covering the range, whatever the kind. */
  msync(offset: number, length: number): void {
    this.#checkRange('msync', offset, length);
    const rc = native().msync(this.regionId, offset, length);
    if (rc !== 0) throw returnCodeError(rc, this.#where('msync', offset, length));
  }

  copyOut(offset: number, length: number, dest: Uint8Array): void {
    this.#checkRange('copyOut', offset, length);
    checkBytes('copyOut', 'dest', dest, length);
    const rc = native().copyOut(this.regionId, offset, length, dest);
    if (rc !== 0) throw returnCodeError(rc, this.#where('copyOut', offset, length));
  }

  /** Media.readableRegionId: this mapping's id when its file can be read (not a private copy, not device-DAX). */
  get readableRegionId(): number | undefined {
    return this.#privateCopy || this.kind === 'devdax' || this.#closed ? undefined : this.regionId;
  }

  /** pread(2) of the file behind the mapping (Media.readInto): 0 or -errno; -EOPNOTSUPP for a private copy or device-DAX. */
  readInto(offset: number, length: number, dest: Uint8Array, destOffset: number): number {
    this.#checkRange('readInto', offset, length);
    checkBytes('readInto', 'dest', dest, 0);
    if (!Number.isSafeInteger(destOffset) || destOffset < 0 || destOffset + length > dest.length)
      throw new DaxError('EINVAL', `${this.#where('readInto', offset, length)}: destOffset ${destOffset} out of dest`);
    if (this.#privateCopy || this.kind === 'devdax') return -osConstants.errno.EOPNOTSUPP;
    return native().readRegion(this.regionId, offset, length, dest, destOffset);
  }

  /** Copy src into [offset, offset+src.byteLength), SIGBUS -> DaxError('EIO'). Not flushed. */
  copyIn(offset: number, src: Uint8Array): void {
    this.#checkRange('copyIn', offset, src instanceof Uint8Array ? src.byteLength : -1);
    const rc = native().copyIn(this.regionId, offset, src.byteLength, src);
    if (rc !== 0) throw returnCodeError(rc, this.#where('copyIn', offset, src.byteLength));
  }

  share(): MappedMediaHandle {
    this.#checkOpen('share');
    return {
      type: 'mapped',
      regionId: this.regionId,
      buffer: this.buffer,
      info: this.info(),
      sizeWord: this.#size.buffer as SharedArrayBuffer,
    };
  }

  info(): MediaInfo {
    const { kind, flushMethod, mapSync, size, alignment, path } = this;
    return { kind, flushMethod, mapSync, size, alignment, path };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.owner) native().closeRegion(this.regionId);
  }

  #checkOpen(op: string): void {
    if (this.#closed) throw new DaxError('ECLOSED', `${op} on closed region ${this.path}`, { path: this.path });
  }

  #checkRange(op: string, offset: number, length: number): void {
    this.#checkOpen(op);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new DaxError(
        'EINVAL',
        `${this.#where(op, offset, length)}: offset and length must be non-negative integers`,
      );
    }
    if (offset + length > this.size) {
      throw new DaxError('ERANGE', `${this.#where(op, offset, length)}: beyond the region's ${this.size} bytes`);
    }
  }

  #where(op: string, offset: number, length: number): string {
    return `${op} region ${this.path} at offset ${offset} length ${length}`;
  }
}

function checkBytes(op: string, name: string, bytes: unknown, length: number): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength < length) {
    throw new DaxError('EINVAL', `${op}: ${name} must be a Uint8Array of at least ${length} bytes`);
  }
}

/**
 * Closes media a caller opened and, when that open created the file, removes it: for callers
 * whose set-up failed after the open (a create must leave nothing behind).
 */
export function closeAndRemoveCreated(media: MappedMedia): void {
  media.close();
  if (media.created) fs.rmSync(media.path, { force: true });
}

/** Open (or create) a region and map it whole. */
export function openRegion(path: string, opts: OpenRegionOptions = {}): MappedMedia {
  const plan = planOpen(path, opts);
  let region;
  try {
    region = native().openRegion(
      path,
      plan.create,
      plan.sizeBytes,
      plan.alignment,
      plan.isDevDax,
      plan.flushMethod,
      opts.privateCopy === true,
      plan.reserveBytes,
      opts.sparse === true && plan.create,
    );
  } catch (e) {
    throw toDaxError(e, `openRegion ${path}`);
  }
  const kind = NATIVE_KINDS[region.kind];
  const flushMethod = NATIVE_FLUSH_METHODS[region.flushMethod];
  assert(kind !== undefined && flushMethod !== undefined, 'addon returned an unknown kind or flush method');
  const info: MediaInfo = {
    kind,
    flushMethod,
    mapSync: region.mapSync,
    size: region.sizeBytes,
    alignment: region.alignment,
    path,
  };
  const media = new MappedMedia(region.regionId, region.buffer, info, true, opts.privateCopy === true);
  media.created = region.created;
  media.sparse = region.created && opts.sparse === true;
  if (kind === 'file' && flushMethod !== 'msync') {
    // CPU flushes do not make a page-cache file durable: refuse rather than pretend.
    media.close();
    if (plan.create && !plan.existed) fs.rmSync(path, { force: true });
    throw new DaxError(
      'EINVAL',
      `openRegion ${path}: flushMethod ${flushMethod} is not durable on a page-cache file; use msync`,
      {
        path,
      },
    );
  }
  return media;
}

/** Build a MappedMedia over a handle from share(), in this thread; no new mapping. */
export function attachMappedMedia(handle: MappedMediaHandle): MappedMedia {
  if (
    handle === null ||
    typeof handle !== 'object' ||
    handle.type !== 'mapped' ||
    !(handle.buffer instanceof SharedArrayBuffer) ||
    !Number.isInteger(handle.regionId)
  ) {
    throw new DaxError('EINVAL', 'attachMappedMedia: not a handle from MappedMedia.share()');
  }
  if (
    !native().isRegionLive(handle.regionId) ||
    handle.buffer.byteLength < handle.info.size ||
    !(handle.sizeWord instanceof SharedArrayBuffer) ||
    handle.sizeWord.byteLength !== 8
  ) {
    throw new DaxError(
      'EINVAL',
      `attachMappedMedia: region ${handle.regionId} (${handle.info.path}) is not mapped in this process`,
    );
  }
  return new MappedMedia(handle.regionId, handle.buffer, handle.info, false, false, handle.sizeWord);
}

interface OpenPlan {
  readonly create: boolean;
  readonly existed: boolean;
  readonly sizeBytes: number;
  readonly alignment: number;
  readonly isDevDax: boolean;
  readonly flushMethod: number;
  /** address space to map (0: the size) */
  readonly reserveBytes: number;
}

function planOpen(path: string, opts: OpenRegionOptions): OpenPlan {
  const plan = planOpenSized(path, opts);
  const reserve = opts.reserveBytes;
  if (reserve === undefined) return plan;
  checkSize(path, reserve, 'reserveBytes');
  if (plan.isDevDax && reserve !== plan.sizeBytes)
    throw new DaxError('EINVAL', `openRegion ${path}: a device cannot grow (reserveBytes ${reserve} != its size)`, {
      path,
    });
  return { ...plan, reserveBytes: Math.max(reserve, plan.sizeBytes) };
}

function planOpenSized(path: string, opts: OpenRegionOptions): OpenPlan {
  if (typeof path !== 'string' || path.length === 0)
    throw new DaxError('EINVAL', 'openRegion: path must be a non-empty string');
  const { create = false, sizeBytes, sysfsRoot = DEFAULT_SYSFS_ROOT } = opts;
  if (sizeBytes !== undefined) checkSize(path, sizeBytes, 'sizeBytes');
  if (opts.privateCopy === true && create)
    throw new DaxError('EINVAL', `openRegion ${path}: privateCopy cannot create a file`, { path });
  const flushMethod = planFlushMethod(path, opts.flushMethod);
  const st = fs.statSync(path, { throwIfNoEntry: false });
  if (st === undefined) {
    if (!create)
      throw new DaxError('ENOENT', `openRegion ${path}: no such file (pass create: true to make one)`, { path });
    if (sizeBytes === undefined)
      throw new DaxError('EINVAL', `openRegion ${path}: sizeBytes is required to create`, { path });
    return {
      create,
      existed: false,
      sizeBytes,
      alignment: REGION_BLOCK_BYTES,
      isDevDax: false,
      flushMethod,
      reserveBytes: 0,
    };
  }
  if (st.isDirectory()) throw new DaxError('EISDIR', `openRegion ${path}: is a directory`, { path });
  if (st.isCharacterDevice()) {
    const geometry = readDevDaxGeometry(path, sysfsRoot);
    if (sizeBytes !== undefined && sizeBytes !== geometry.sizeBytes) {
      throw new DaxError('EINVAL', `openRegion ${path}: sizeBytes ${sizeBytes} != device size ${geometry.sizeBytes}`, {
        path,
      });
    }
    return {
      create,
      existed: true,
      sizeBytes: geometry.sizeBytes,
      alignment: geometry.alignment,
      isDevDax: true,
      flushMethod,
      reserveBytes: 0,
    };
  }
  if (!st.isFile()) throw new DaxError('ENOTSUP', `openRegion ${path}: not a regular file or device-DAX`, { path });
  checkSize(path, st.size, 'existing file size');
  if (sizeBytes !== undefined && sizeBytes !== st.size) {
    throw new DaxError('EINVAL', `openRegion ${path}: sizeBytes ${sizeBytes} != existing file size ${st.size}`, {
      path,
    });
  }
  return {
    create,
    existed: true,
    sizeBytes: st.size,
    alignment: REGION_BLOCK_BYTES,
    isDevDax: false,
    flushMethod,
    reserveBytes: 0,
  };
}

function checkSize(path: string, sizeBytes: number, what: string): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % REGION_BLOCK_BYTES !== 0) {
    throw new DaxError(
      'EINVAL',
      `openRegion ${path}: ${what} ${sizeBytes} is not a positive multiple of ${REGION_BLOCK_BYTES}`,
      {
        path,
      },
    );
  }
}

/** -1: let the addon choose by kind. */
function planFlushMethod(path: string, method: FlushMethod | undefined): number {
  if (method === undefined) return -1;
  const index = NATIVE_FLUSH_METHODS.indexOf(method as NativeFlushMethod);
  if (index < 0)
    throw new DaxError(
      'EINVAL',
      `openRegion ${path}: flushMethod '${String(method)}' is not one of ${NATIVE_FLUSH_METHODS.join(', ')}`,
    );
  if (method !== 'msync' && !native().cpuFlushMethods().includes(index)) {
    throw new DaxError('ENOTSUP', `openRegion ${path}: this CPU has no ${method} instruction`);
  }
  return index;
}

/** The CPU flush instructions available here, best first. */
export function cpuFlushMethods(): FlushMethod[] {
  return native()
    .cpuFlushMethods()
    .map((i) => NATIVE_FLUSH_METHODS[i] as FlushMethod);
}
