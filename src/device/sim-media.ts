/**
 * SimMedia: a Media held in memory, strict like x86 persistent memory, for tests of
 * every layer's crash consistency.
 *
 * Model
 *   - working image: what loads and stores see (the `buffer`).
 *   - durable image: what survives a crash for sure.
 *   - flush(offset, length) snapshots the CURRENT contents of each covering 64-byte line
 *     and marks the line; drain() copies every marked snapshot into the durable image
 *     and clears the marks. A store made after a line's flush but before the drain is
 *     NOT made durable by that drain: the line must be flushed again.
 *   - A crash keeps or loses each aligned 8-byte word whose working and durable values
 *     differ ("pending" words), independently: crashImage() builds such an image.
 *   - A media created with `maxSize` grows (grow(), within the buffers sized for maxSize): the
 *     new size is durable at once (the file's fsync), the bytes past the old size are zero in
 *     both images, and grow() is a fence (its hooks run after the size changed): a crash there
 *     finds the longer media and nothing else of the growth.
 *   - Concurrency simplification: drain() makes every marked line durable, whichever
 *     thread flushed it (real sfence orders only the calling thread's flushes). This is
 *     more durable than hardware, never less, so it can hide a missing cross-thread
 *     fence but never invents a violation.
 *
 * Invariants
 *   - A line is in the marked list iff its mark byte is 1; markedCount counts them.
 *   - durable differs from working only in words stored since their line's last
 *     flush+drain (or, after an injected EIO, in lines whose drain failed).
 *
 * Concurrency
 *   - All state (images, marks, fence counter, injected faults, poison) lives in
 *     SharedArrayBuffers, so attachSimMedia(share()) in a worker sees the same media.
 *   - flush/drain/crashImage/pendingWords take the media lock (control[LOCK]); stores to
 *     the working image are the callers' business, as on real memory.
 *   - Fence hooks are per instance (functions cannot cross threads) and run at the start
 *     of drain(), without the lock, before anything becomes durable: an image taken in a
 *     hook models a crash at that fence.
 *
 * Persistence ordering
 *   - Only drain() writes the durable image, and only from snapshots taken by flush().
 *   - Injected EIO (injectFault({ persistEio: n })): the n-th drain from now throws
 *     DaxError('EIO') after dropping every mark and copying nothing, like a failed
 *     write-back whose pages the kernel then marks clean: the stores stay in the working
 *     image, are not durable, and stay pending (a crash may keep or lose each word)
 *     until they are flushed and drained again.
 */
import { Buffer } from 'node:buffer';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { CACHE_LINE_BYTES, WORD_BYTES, type Media, type MediaHandle, type MediaInfo } from './media.js';
import { lockWord, unlockWord, withLock } from './spin-lock.js';

/** Int32 slots of the shared control words. */
const LOCK = 0;
const MARKED_COUNT = 1;
const FENCE_COUNT = 2; // drains started, all threads (wraps after 2^31: tests only)
const EIO_AT_FENCE = 3; // fence number whose drain fails with EIO; 0 = none
const SIZE = 4; // the media's bytes now (as uint32): at most the buffers' capacity
const GROWABLE = 5; // 1: created with maxSize (grow() exists, also once at its capacity)
const CONTROL_WORDS = 8;

/** Bytes of one poison unit: copyOut fails with EIO on any byte of a poisoned page. */
export const SIM_POISON_PAGE_BYTES = 4096;
/** Granule of the fast diff: compare pages with memcmp first, words only inside differing ones. */
const DIFF_CHUNK_BYTES = 4096;

export type CrashSelection =
  { mode: 'none' | 'all' | 'random'; seed?: number; probability?: number } | { words: ArrayLike<number> };

export interface SimMediaOptions {
  /** shown as the media path */
  name?: string;
  /** the most the media may grow to (grow()); default: its size, and it cannot grow */
  maxSize?: number;
}

interface SimState {
  size: number; // the capacity: bytes of the buffers (the media's size is control[SIZE])
  working: SharedArrayBuffer; // size bytes
  shadow: SharedArrayBuffer; // [durable image | flush snapshots], 2 * size bytes
  meta: SharedArrayBuffer; // control words, marked-line list, mark bytes, poison bytes
}

export class SimMedia implements Media {
  readonly kind = 'sim' as const;
  readonly flushMethod = 'sim' as const;
  readonly mapSync = false;
  readonly alignment = 4096;
  readonly path: string;
  readonly buffer: SharedArrayBuffer;
  private readonly state: SimState;
  private readonly working8: Uint8Array;
  private readonly working32: Int32Array;
  private readonly durable8: Uint8Array;
  private readonly durable32: Int32Array;
  private readonly snapshot32: Int32Array;
  private readonly control: Int32Array;
  private readonly markedLines: Int32Array;
  private readonly markBytes: Uint8Array;
  private readonly poisonBytes: Uint8Array;
  private readonly hooks: Array<() => void> = [];
  private isClosed = false;
  private isDisposed = false;

  /** @internal use createSimMedia / attachSimMedia */
  constructor(state: SimState, path: string) {
    const { size } = state;
    assert(size > 0 && size % DIFF_CHUNK_BYTES === 0, () => `sim media size ${size} not a multiple of 4096`);
    this.state = state;
    this.path = path;
    this.buffer = state.working;
    this.working8 = new Uint8Array(state.working);
    this.working32 = new Int32Array(state.working);
    this.durable8 = new Uint8Array(state.shadow, 0, size);
    this.durable32 = new Int32Array(state.shadow, 0, size / 4);
    this.snapshot32 = new Int32Array(state.shadow, size, size / 4);
    const lines = size / CACHE_LINE_BYTES;
    this.control = new Int32Array(state.meta, 0, CONTROL_WORDS);
    this.markedLines = new Int32Array(state.meta, CONTROL_WORDS * 4, lines);
    this.markBytes = new Uint8Array(state.meta, (CONTROL_WORDS + lines) * 4, lines);
    this.poisonBytes = new Uint8Array(state.meta, (CONTROL_WORDS + lines) * 4 + lines, size / SIM_POISON_PAGE_BYTES);
    // A media that can grow has its grow() (Media.grow is optional: the device asks whether it is there).
    if (this.control[GROWABLE] === 1) this.grow = (bytes: number): void => this.growTo(bytes);
  }

  /** The media's bytes now (a media created with maxSize grows). */
  get size(): number {
    return Atomics.load(this.control, SIZE) >>> 0;
  }

  /** The most the media may grow to: the buffers' capacity. */
  get maxSize(): number {
    return this.state.size;
  }

  /** Makes the media `bytes` long (within maxSize); present only on a media created with a larger maxSize. */
  readonly grow?: (bytes: number) => void;

  private growTo(bytes: number): void {
    this.checkOpen();
    if (!Number.isSafeInteger(bytes) || bytes % DIFF_CHUNK_BYTES !== 0 || bytes > this.maxSize)
      throw new DaxError('EINVAL', `${this.path}: grow to ${bytes} bytes: a multiple of 4096 up to ${this.maxSize}`);
    if (bytes <= this.size) return;
    withLock(this.control, LOCK, () => Atomics.store(this.control, SIZE, bytes));
    // The new size is durable now (a file's fsync): a crash point, with nothing else of the growth.
    Atomics.add(this.control, FENCE_COUNT, 1);
    for (const hook of this.hooks) hook();
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Drains started so far by any thread on this media. */
  get fenceCount(): number {
    return Atomics.load(this.control, FENCE_COUNT);
  }

  flush(offset: number, length: number): void {
    this.checkOpen();
    this.checkRange(offset, length, 'flush');
    if (length === 0) return;
    const first = Math.floor(offset / CACHE_LINE_BYTES);
    const last = Math.floor((offset + length - 1) / CACHE_LINE_BYTES);
    lockWord(this.control, LOCK);
    try {
      for (let line = first; line <= last; line++) this.snapshotLineLocked(line);
    } finally {
      unlockWord(this.control, LOCK);
    }
  }

  drain(): void {
    this.checkOpen();
    const fence = Atomics.add(this.control, FENCE_COUNT, 1) + 1;
    for (const hook of this.hooks) hook();
    lockWord(this.control, LOCK);
    try {
      const failed = Atomics.load(this.control, EIO_AT_FENCE) === fence;
      if (failed) Atomics.store(this.control, EIO_AT_FENCE, 0);
      this.drainLocked(!failed);
      if (failed) throw new DaxError('EIO', `${this.path}: injected persist failure at fence ${fence}`);
    } finally {
      unlockWord(this.control, LOCK);
    }
  }

  persist(offset: number, length: number): void {
    this.flush(offset, length);
    this.drain();
  }

  copyOut(offset: number, length: number, dest: Uint8Array): void {
    this.checkOpen();
    this.checkRange(offset, length, 'copyOut');
    if (dest.length < length)
      throw new DaxError('EINVAL', `${this.path}: copyOut destination holds ${dest.length} bytes, need ${length}`);
    if (length === 0) return;
    const firstPage = Math.floor(offset / SIM_POISON_PAGE_BYTES);
    const lastPage = Math.floor((offset + length - 1) / SIM_POISON_PAGE_BYTES);
    for (let page = firstPage; page <= lastPage; page++) {
      if (Atomics.load(this.poisonBytes, page) !== 0) {
        throw new DaxError(
          'EIO',
          `${this.path}: media error (poison) at offset ${page * SIM_POISON_PAGE_BYTES} reading [${offset}, ${offset + length})`,
        );
      }
    }
    dest.set(this.working8.subarray(offset, offset + length));
  }

  share(): MediaHandle {
    this.checkOpen();
    return { type: 'sim', state: this.state, info: this.info() };
  }

  close(): void {
    this.isClosed = true;
  }

  /**
   * Closes this media and recycles its buffers for later crashImage() calls of the same
   * size (fresh SharedArrayBuffers cost a page fault per 4 KiB, which dominates an image). Only for media no other thread is attached to, and never used again.
   */
  dispose(): void {
    if (this.isDisposed) return;
    this.isDisposed = true;
    this.isClosed = true;
    const pool = statePool.get(this.maxSize) ?? [];
    if (pool.length < STATE_POOL_LIMIT) pool.push(this.state);
    statePool.set(this.maxSize, pool);
  }

  // ---- simulation controls (tests and fault tools) ----

  /** Registers a hook run at the start of every drain (a crash point). Returns an unsubscribe function. */
  onFence(hook: () => void): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /** persistEio: n -> the n-th drain (persist included) from now fails with EIO; 0 clears. */
  injectFault(fault: { persistEio?: number }): void {
    const n = fault.persistEio;
    if (n === undefined) return;
    if (!Number.isInteger(n) || n < 0)
      throw new DaxError('EINVAL', `injectFault: persistEio must be a non-negative integer, got ${n}`);
    Atomics.store(this.control, EIO_AT_FENCE, n === 0 ? 0 : this.fenceCount + n);
  }

  /** Simulates a media error: copyOut of any byte of the covering pages throws EIO. */
  injectPoison(offset: number, length: number): void {
    this.setPoison(offset, length, 1);
  }

  clearPoison(offset: number, length: number): void {
    this.setPoison(offset, length, 0);
  }

  /** A read-only-by-convention view of the durable image (tests compare against it). */
  durableBytes(): Uint8Array {
    return this.durable8;
  }

  /** Aligned 8-byte word indices whose working and durable values differ, ascending. */
  pendingWords(): Uint32Array {
    return withLock(this.control, LOCK, () => this.pendingWordsLocked());
  }

  /**
   * A new, independent SimMedia whose working and durable images both equal this durable
   * image plus the selected pending words: the state after a crash now.
   * 'none' keeps no pending word, 'all' keeps every one, 'random' each with probability p
   * (default 0.5, seeded); { words } keeps exactly the listed word indices (pending or not).
   */
  crashImage(selection: CrashSelection): SimMedia {
    return withLock(this.control, LOCK, () => this.crashImageLocked(selection));
  }

  // ---- internals ----

  private info(): MediaInfo {
    return {
      kind: this.kind,
      flushMethod: this.flushMethod,
      mapSync: this.mapSync,
      size: this.size,
      alignment: this.alignment,
      path: this.path,
    };
  }

  private snapshotLineLocked(line: number): void {
    const base = line * (CACHE_LINE_BYTES / 4);
    for (let i = 0; i < CACHE_LINE_BYTES / 4; i++) this.snapshot32[base + i] = this.working32[base + i];
    if (this.markBytes[line] === 0) {
      this.markBytes[line] = 1;
      const n = this.control[MARKED_COUNT];
      this.markedLines[n] = line;
      this.control[MARKED_COUNT] = n + 1;
    }
  }

  private drainLocked(copy: boolean): void {
    const n = this.control[MARKED_COUNT];
    for (let k = 0; k < n; k++) {
      const line = this.markedLines[k];
      if (copy) {
        const base = line * (CACHE_LINE_BYTES / 4);
        for (let i = 0; i < CACHE_LINE_BYTES / 4; i++) this.durable32[base + i] = this.snapshot32[base + i];
      }
      this.markBytes[line] = 0;
    }
    this.control[MARKED_COUNT] = 0;
  }

  private pendingWordsLocked(): Uint32Array {
    const size = this.size;
    const working = Buffer.from(this.state.working, 0, size);
    const durable = Buffer.from(this.state.shadow, 0, size);
    let out = new Uint32Array(64);
    let count = 0;
    for (let chunk = 0; chunk < size; chunk += DIFF_CHUNK_BYTES) {
      if (working.compare(durable, chunk, chunk + DIFF_CHUNK_BYTES, chunk, chunk + DIFF_CHUNK_BYTES) === 0) continue;
      for (let i = chunk / 4; i < (chunk + DIFF_CHUNK_BYTES) / 4; i += 2) {
        if (this.working32[i] === this.durable32[i] && this.working32[i + 1] === this.durable32[i + 1]) continue;
        if (count === out.length) {
          const grown = new Uint32Array(out.length * 2);
          grown.set(out);
          out = grown;
        }
        out[count++] = i / 2;
      }
    }
    return out.slice(0, count);
  }

  private crashImageLocked(selection: CrashSelection): SimMedia {
    const size = this.size; // durable: grow() makes it so before it returns
    const recycled = statePool.get(this.maxSize)?.pop();
    if (recycled !== undefined) {
      new Uint8Array(recycled.meta).fill(0); // marks, counters, poison
      const control = new Int32Array(recycled.meta, 0, CONTROL_WORDS);
      control[SIZE] = size;
      control[GROWABLE] = this.control[GROWABLE];
    }
    const image =
      recycled !== undefined
        ? new SimMedia(recycled, `${this.path} (crash image)`)
        : createSimMedia(size, {
            name: `${this.path} (crash image)`,
            maxSize: this.control[GROWABLE] === 1 ? this.maxSize : undefined,
          });
    const base = 'mode' in selection && selection.mode === 'all' ? this.working8 : this.durable8;
    image.working8.set(base); // the whole capacity: past the size both images are zero
    if ('words' in selection) {
      this.copyWords(image, selection.words);
    } else if (selection.mode === 'random') {
      const p = selection.probability ?? 0.5;
      if (!(p >= 0 && p <= 1)) throw new DaxError('EINVAL', `crashImage: probability must be in [0, 1], got ${p}`);
      const random = mulberry32(selection.seed ?? 1);
      const pending = this.pendingWordsLocked();
      const chosen = pending.filter(() => random() < p);
      this.copyWords(image, chosen);
    }
    image.durable8.set(image.working8);
    return image;
  }

  private copyWords(image: SimMedia, words: ArrayLike<number>): void {
    const wordCount = this.maxSize / WORD_BYTES;
    for (let k = 0; k < words.length; k++) {
      const w = words[k];
      if (!Number.isInteger(w) || w < 0 || w >= wordCount)
        throw new DaxError('ERANGE', `crashImage: word index ${w} outside [0, ${wordCount})`);
      image.working32[2 * w] = this.working32[2 * w];
      image.working32[2 * w + 1] = this.working32[2 * w + 1];
    }
  }

  private setPoison(offset: number, length: number, value: number): void {
    this.checkRange(offset, length, 'poison');
    if (length === 0) return;
    const first = Math.floor(offset / SIM_POISON_PAGE_BYTES);
    const last = Math.floor((offset + length - 1) / SIM_POISON_PAGE_BYTES);
    for (let page = first; page <= last; page++) Atomics.store(this.poisonBytes, page, value);
  }

  private checkOpen(): void {
    if (this.isClosed) throw new DaxError('ECLOSED', `${this.path}: media is closed`);
  }

  private checkRange(offset: number, length: number, op: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new DaxError(
        'EINVAL',
        `${this.path}: ${op}(${offset}, ${length}): offset and length must be non-negative integers`,
      );
    }
    if (offset + length > this.size) {
      throw new DaxError('ERANGE', `${this.path}: ${op}(${offset}, ${length}) beyond media size ${this.size}`);
    }
  }
}

/** Buffers of disposed media, by size, for crash images (per thread; tests only). */
const statePool = new Map<number, SimState[]>();
const STATE_POOL_LIMIT = 4;

/** A zeroed simulated device of sizeBytes (a positive multiple of 4096). */
export function createSimMedia(sizeBytes: number, opts: SimMediaOptions = {}): SimMedia {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % DIFF_CHUNK_BYTES !== 0) {
    throw new DaxError(
      'EINVAL',
      `createSimMedia: size ${sizeBytes} must be a positive multiple of ${DIFF_CHUNK_BYTES}`,
    );
  }
  const capacity = opts.maxSize ?? sizeBytes;
  if (
    !Number.isSafeInteger(capacity) ||
    capacity < sizeBytes ||
    capacity % DIFF_CHUNK_BYTES !== 0 ||
    capacity >= 2 ** 32
  )
    throw new DaxError(
      'EINVAL',
      `createSimMedia: maxSize ${capacity} must be a multiple of ${DIFF_CHUNK_BYTES} in [${sizeBytes}, 2^32)`,
    );
  const lines = capacity / CACHE_LINE_BYTES;
  const metaBytes = (CONTROL_WORDS + lines) * 4 + lines + capacity / SIM_POISON_PAGE_BYTES;
  const state: SimState = {
    size: capacity,
    working: new SharedArrayBuffer(capacity),
    shadow: new SharedArrayBuffer(2 * capacity),
    meta: new SharedArrayBuffer(Math.ceil(metaBytes / 8) * 8),
  };
  const control = new Int32Array(state.meta, 0, CONTROL_WORDS);
  control[SIZE] = sizeBytes;
  control[GROWABLE] = opts.maxSize === undefined ? 0 : 1;
  return new SimMedia(state, opts.name ?? `sim:${sizeBytes}`);
}

/** A SimMedia over the same images, marks and counters as the one that called share(). */
export function attachSimMedia(handle: MediaHandle): SimMedia {
  if (handle.type !== 'sim')
    throw new DaxError('EINVAL', `attachSimMedia: handle of type '${handle.type}' is not a simulated media`);
  const state = handle.state as SimState;
  assert(
    state.working instanceof SharedArrayBuffer && state.shadow instanceof SharedArrayBuffer,
    'sim media handle without shared buffers',
  );
  return new SimMedia(state, handle.info.path);
}

/** Small seeded PRNG (mulberry32): reproducible subsets from a seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
