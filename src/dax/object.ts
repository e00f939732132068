/**
 * DaxObject: one object of a space — a sparse array of 4 KiB pages (or 2 MiB extents)
 * addressed by byte offset, mapped zero-copy. A handle is cheap; every thread makes its own
 * (space.object(id)); all state is shared through the space.
 *
 * Concurrency and persistence: see fault.ts (fault, R1/R2), writeback.ts, truncate.ts (R2),
 * invalidate.ts (R5), write() below (R4). Lock order: invalidate lock -> entry lock.
 *
 * write() (R4): a source that is a view of this space — even of the destination page — is
 * first copied out under the epoch guard only (guarded against poison: EIO), then the
 * destination pages are locked one at a time; caller memory is never read while holding a
 * destination entry lock. write() is durable on return (flush per page, one drain).
 */
import { DaxError } from '../errors.js';
import { grab, unlock } from '../index/entry-lock.js';
import { lockShared, unlockShared } from './invalidate-lock.js';
import { HUGE_PAGES, MAX_OBJECT_BYTES, PAGE_BYTES, blockOfValue, pageKey } from './layout.js';
import { isBroken } from '../test-break.js';
import { fault, lookupCoveringPinned, viewOf, type FaultTarget } from './fault.js';
import { checksum, cleanSums, writeback, type WritebackResult } from './writeback.js';
import { clearRangeLocked, withInvalidateExclusive } from './truncate.js';
import { invalidate, type InvalidateResult } from './invalidate.js';
import { ST_CLEAN_WRITES, type DaxSpace } from './space.js';

export interface ObjectOptions {
  /** page_mkwrite: called with the page's entry locked on every write fault; a throw fails the fault, nothing dirtied. */
  mkwrite?: (obj: DaxObject, index: number) => void;
}

export interface ByteRange {
  offset?: number;
  length?: number;
}

export class DaxObject implements FaultTarget {
  readonly mkwrite: ((index: number) => void) | undefined;

  /** @internal */
  constructor(
    readonly space: DaxSpace,
    readonly id: number,
    readonly slot: number,
    opts: ObjectOptions,
  ) {
    const hook = opts.mkwrite;
    this.mkwrite = hook === undefined ? undefined : (index) => hook(this, index);
  }

  get size(): number {
    this.check('size');
    return this.space.objects.size(this.slot);
  }

  /** A view of page `index` (4 KiB), or with huge of its 2 MiB extent when one maps (or can map) it. */
  fault(index: number, opts: { write?: boolean; huge?: boolean } = {}): Uint8Array {
    this.check('fault');
    if (!Number.isSafeInteger(index) || index < 0)
      throw new DaxError('EINVAL', `fault(object ${this.id}): page index ${index} must be a non-negative integer`);
    const write = opts.write === true;
    if (write && this.space.debugCleanPages) this.checkClean(index);
    return fault(this, index, write, opts.huge === true);
  }

  /** Copy of [offset, offset+length); holes read as zeros; EIO on a poisoned page. */
  read(offset: number, length: number): Uint8Array {
    this.check('read');
    this.checkRange(offset, length, 'read', true);
    const out = new Uint8Array(length);
    const { device } = this.space;
    this.space.epoch.guard(() => {
      for (let pos = offset; pos < offset + length;) {
        const index = Math.floor(pos / PAGE_BYTES);
        const n = Math.min(PAGE_BYTES - (pos % PAGE_BYTES), offset + length - pos);
        const found = lookupCoveringPinned(this, index);
        const state = found === undefined ? -1 : (this.space.tree.lastEntry >>> 3) & 3;
        if (found !== undefined && state === 3)
          throw new DaxError('EIO', `read(object ${this.id}, ${offset}, ${length}): page ${index} is poisoned`);
        if (found !== undefined && state === 0) {
          const block = blockOfValue(found.value) + (index - found.start);
          const at = device.blockOffset(block) + (pos % PAGE_BYTES);
          if (device.isPoisoned(block))
            throw new DaxError(
              'EIO',
              `read(object ${this.id}, ${offset}, ${length}): page ${index} (block ${block}) is poisoned`,
            );
          device.media.copyOut(at, n, out.subarray(pos - offset, pos - offset + n));
          if (device.isPoisoned(block))
            throw new DaxError(
              'EIO',
              `read(object ${this.id}, ${offset}, ${length}): page ${index} (block ${block}) was poisoned during the read`,
            );
        }
        pos += n;
      }
    });
    return out;
  }

  /** Writes bytes at offset (within the size); durable on return. The source may be a view of this space (R4). */
  write(offset: number, bytes: Uint8Array): void {
    this.check('write');
    if (!(bytes instanceof Uint8Array))
      throw new DaxError('EINVAL', `write(object ${this.id}): bytes must be a Uint8Array`);
    this.checkRange(offset, bytes.length, 'write', false);
    const media = this.space.device.media;
    const fromStore = bytes.buffer === media.buffer;
    const source = fromStore ? this.ownCopy(bytes) : bytes;
    for (let pos = offset; pos < offset + bytes.length;) {
      const index = Math.floor(pos / PAGE_BYTES);
      const n = Math.min(PAGE_BYTES - (pos % PAGE_BYTES), offset + bytes.length - pos);
      this.writePage(
        index,
        pos % PAGE_BYTES,
        source.subarray(pos - offset, pos - offset + n),
        fromStore && source === bytes,
      );
      pos += n;
    }
    media.drain();
  }

  /** Flush every page dirtied by write faults in range; durable on return. */
  writeback(range: ByteRange = {}): WritebackResult {
    this.check('writeback');
    const [first, last] = this.pageRange(range);
    return writeback(this.space, this.id, this.slot, first, last);
  }

  /** Drop cached mapping state of clean pages in range; dirty ones are reported busy (R5). */
  invalidate(range: ByteRange = {}): InvalidateResult {
    this.check('invalidate');
    const [first, last] = this.pageRange(range);
    return invalidate(this.space, this.id, first, last);
  }

  /** Sets the size (R2: durable size first, then pages past it removed through the epoch). */
  truncate(sizeBytes: number): void {
    this.check('truncate');
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > MAX_OBJECT_BYTES)
      throw new DaxError('EINVAL', `truncate(object ${this.id}): size ${sizeBytes} must be an integer in [0, 2^48]`);
    withInvalidateExclusive(this.space, this.slot, `truncate(object ${this.id})`, () => {
      this.checkLive('truncate');
      const old = this.space.objects.size(this.slot);
      this.space.objects.setSizeLocked(this.slot, sizeBytes);
      const extentEnd = Math.ceil(old / (HUGE_PAGES * PAGE_BYTES)) * HUGE_PAGES * PAGE_BYTES;
      if (sizeBytes < old) clearRangeLocked(this.space, this.id, sizeBytes, extentEnd);
      // Growing: bytes past the old size in its last page (or extent) may hold stores made
      // through a view past the size; the grown range must read as zeros.
      else if (sizeBytes > old) clearRangeLocked(this.space, this.id, old, Math.min(sizeBytes, extentEnd));
    });
  }

  /** Deletes [offset, offset+length): whole pages removed, partial ones zeroed; the size is unchanged. Durable on return. */
  punchHole(offset: number, length: number): void {
    this.check('punchHole');
    this.checkRange(offset, length, 'punchHole', true);
    withInvalidateExclusive(this.space, this.slot, `punchHole(object ${this.id})`, () => {
      this.checkLive('punchHole');
      clearRangeLocked(this.space, this.id, offset, Math.min(offset + length, this.space.objects.size(this.slot)));
    });
  }

  /** Removes the object: every page unpublished and retired, then the record freed. Durable on return. */
  remove(): void {
    this.check('remove');
    withInvalidateExclusive(this.space, this.slot, `remove(object ${this.id})`, () => {
      this.checkLive('remove');
      const size = this.space.objects.size(this.slot);
      clearRangeLocked(this.space, this.id, 0, Math.ceil(size / (HUGE_PAGES * PAGE_BYTES)) * HUGE_PAGES * PAGE_BYTES);
      this.space.objects.removeLocked(this.slot);
    });
  }

  /** Debug mode: pages cleaned by writeback whose bytes changed since (written without a write fault). */
  verifyClean(): number[] {
    const bad: number[] = [];
    for (const [k] of cleanSums) {
      const [id, index] = k.split(':').map(Number);
      if (id === this.id && this.cleanChanged(index)) bad.push(index);
    }
    return bad;
  }

  // ---- internals ----

  private writePage(index: number, at: number, src: Uint8Array, lockSource: boolean): void {
    const words = this.space.objects.words;
    const rw = this.space.objects.rwIndex(this.slot);
    const what = `write(object ${this.id}, page ${index})`;
    lockShared(words, rw, what);
    try {
      this.checkLive('write');
      // A write fault does the size check, allocation, mkwrite and DIRTY under the entry lock;
      // then the entry is locked again for the copy, and must still map the same block.
      for (;;) {
        const view = fault(this, index, true, false);
        const start = this.space.epoch.guard(() => lookupCoveringPinned(this, index))?.start ?? index;
        const ref = grab(this.space.tree, pageKey(this.id, start));
        try {
          if (
            ref.state !== 'value' ||
            viewOf(this.space, ref.value, start, index, false).byteOffset !== view.byteOffset
          )
            continue; // moved (poisoned, rewritten)
          if (lockSource) this.lockSourceLocked(src); // broken on purpose (dax-write-copy-locked)
          view.set(src, at);
          this.space.device.media.flush(view.byteOffset + at, src.length);
          return;
        } finally {
          unlock(this.space.tree, ref);
        }
      }
    } finally {
      unlockShared(words, rw);
    }
  }

  /** R4: copy a source view of this store out under the epoch guard only; EIO if it touches a poisoned block. */
  private copySource(bytes: Uint8Array): Uint8Array {
    const { device } = this.space;
    return this.space.epoch.guard(() => {
      const first = device.blockAt(bytes.byteOffset);
      const last = device.blockAt(bytes.byteOffset + Math.max(bytes.length, 1) - 1);
      for (let b = first; b <= last; b++)
        if (device.isPoisoned(b)) throw new DaxError('EIO', `write(object ${this.id}): source block ${b} is poisoned`);
      const out = new Uint8Array(bytes.length);
      device.media.copyOut(bytes.byteOffset, bytes.length, out);
      return out;
    });
  }

  /**
   * R4: a source that is a view of this space, copied out under the epoch guard only, before any
   * destination entry is locked. Under DAXSTORE_TEST_BREAK=dax-write-copy-locked the view itself
   * is returned: writePage then reads it under the destination's lock, locking its entry too.
   */
  private ownCopy(bytes: Uint8Array): Uint8Array {
    if (isBroken('dax-write-copy-locked')) return bytes;
    return this.copySource(bytes);
  }

  /** DAXSTORE_TEST_BREAK=dax-write-copy-locked: lock the source's entry while holding the destination's. */
  private lockSourceLocked(src: Uint8Array): void {
    const r = this.space.rmap(src.byteOffset);
    r?.release();
  }

  private checkClean(index: number): void {
    if (this.cleanChanged(index)) Atomics.add(this.space.counters, ST_CLEAN_WRITES, 1);
    cleanSums.delete(`${this.id}:${index}`);
  }

  private cleanChanged(index: number): boolean {
    const sum = cleanSums.get(`${this.id}:${index}`);
    if (sum === undefined) return false;
    const [block, hash] = sum;
    const bytes = new Uint8Array(this.space.device.media.buffer, this.space.device.blockOffset(block), PAGE_BYTES);
    return checksum(bytes) !== hash;
  }

  private pageRange(range: ByteRange): [number, number] {
    const offset = range.offset ?? 0;
    const length = range.length ?? Math.max(0, MAX_OBJECT_BYTES - offset);
    this.checkRange(offset, length, 'range', true);
    if (length === 0) return [1, 0];
    return [Math.floor(offset / PAGE_BYTES), Math.floor((offset + length - 1) / PAGE_BYTES)];
  }

  private checkRange(offset: number, length: number, op: string, allowPastSize: boolean): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > MAX_OBJECT_BYTES
    ) {
      throw new DaxError(
        'EINVAL',
        `${op}(object ${this.id}, ${offset}, ${length}): offset and length must be non-negative integers within 2^48`,
      );
    }
    if (!allowPastSize || op === 'read') {
      const size = this.space.objects.size(this.slot);
      if (offset + length > size)
        throw new DaxError('ERANGE', `${op}(object ${this.id}, ${offset}, ${length}): beyond the object size ${size}`);
    }
  }

  private checkLive(op: string): void {
    if (!this.space.objects.isLive(this.slot)) throw new DaxError('ENOENT', `${op}: object ${this.id} was removed`);
  }

  private check(op: string): void {
    this.space.checkOpen(`${op}(object ${this.id})`);
    this.checkLive(op);
  }
}
