/**
 * Large values: a value of more than LARGE_VALUE_THRESHOLD_BYTES (16 KiB) lives in a DAX
 * object of its own; its log entry is a PUT flagged ENTRY_FLAG_LARGE whose 24 inline value
 * bytes are the reference (u64 object id, u64 length, u64 xxh64 of the value; layout.ts).
 *
 * Invariants
 *   - Object ids of large values are in [KV_OBJECT_ID_BASE, CHECKPOINT_ID_FIRST); nothing else
 *     creates objects there (the ids above, to 2^40, are index checkpoints: checkpoint.ts). Each such object is referenced by at most one live entry.
 *   - The reference's checksum is the xxh64 of exactly the bytes written to the object, and
 *     every read checks it (copyLargePinned, viewLargePinned): wrong bytes are ECORRUPT, never
 *     returned. The reference lives in a log record, itself checksummed.
 *   - After open (collectOrphans), every live kv object is referenced by the newest entry of
 *     some live key: objects written but never published, or superseded but not yet
 *     removed when the process stopped (owned-but-unreachable), are removed.
 *
 * Concurrency
 *   - The id counter is one shared Int32 word (NEXT_ID_WORD in the store's shared buffer):
 *     Atomics.add hands each writer a fresh id, in every thread.
 *   - A superseded object is retired through the epoch as RETIRE_KV_OBJECT (R6: a reader
 *     pinned before the overwrite still finds the object and its pages). The reclaimer only
 *     queues the id; the store removes queued objects (obj.remove(): invalidate lock, page
 *     entry locks) from drain(), called with no entry lock held, because reclaimers also run
 *     inside retire() where the caller may hold the tree lock or entry locks.
 *
 * Persistence ordering
 *   - put: object created and written (DaxObject.write is durable on return) BEFORE the
 *     record that references it is sealed and committed: recovery never follows a
 *     reference to unwritten bytes.
 *   - overwrite/delete: the superseding record is durable BEFORE the old object is retired
 *     (in 'group'/'none' mode the store commits first, see KvStore.retireLargeLocked);
 *     otherwise a crash could recover the old entry pointing at a removed object.
 *   - Removal is durable (object table record cleared); a crash before it leaves an
 *     orphan that the next open removes.
 */
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import type { DaxSpace } from '../dax/space.js';
import { lookupCoveringPinned } from '../dax/fault.js';
import { PAGE_BYTES, blockOfValue } from '../dax/layout.js';
import { ENTRY_FLAG_LARGE, KV_KEY_PREFIX, LARGE_REF_BYTES, joinU32, splitHi } from './layout.js';
import { isBroken } from '../test-break.js';
import { entryFlags, entryValueOffset, type MediaViews } from './records.js';
import { native } from '../native/addon.js';
import { CHECKPOINT_ID_FIRST } from './checkpoint.js';

/** Epoch retire kind of a superseded large-value object (0 arena node, 1 device block). */
export const RETIRE_KV_OBJECT = 2;
export const KV_OBJECT_ID_BASE = 2 ** 39;
/** The top of the kv range holds index checkpoints (checkpoint.ts), never large values. */
const MAX_OBJECT_ID = CHECKPOINT_ID_FIRST - 1;

/** Whether object `id` holds a large value (the kv range below the checkpoints'). */
export function isLargeValueId(id: number): boolean {
  return id >= KV_OBJECT_ID_BASE && id <= MAX_OBJECT_ID;
}

/** A large value's reference, read from its entry: the object, the value's length and its xxh64 as two u32 words. */
export interface LargeRef {
  readonly id: number;
  readonly length: number;
  readonly sumLo: number;
  readonly sumHi: number;
}

/** The reference of the entry at `at`, or undefined for an inline value. */
export function largeRefAt(v: MediaViews, at: number): LargeRef | undefined {
  if ((entryFlags(v, at) & ENTRY_FLAG_LARGE) === 0) return undefined;
  v = v.at(at);
  const w = entryValueOffset(v, at) - v.base;
  // the value offset is not 4-aligned in general: read byte-wise through the Buffer
  const id = joinU32(v.buf.readUInt32LE(w + 4), v.buf.readUInt32LE(w));
  const length = joinU32(v.buf.readUInt32LE(w + 12), v.buf.readUInt32LE(w + 8));
  return { id, length, sumLo: v.buf.readUInt32LE(w + 16), sumHi: v.buf.readUInt32LE(w + 20) };
}

/** The 24 inline bytes of a reference. */
export function encodeLargeRef(id: number, length: number, sum: Uint32Array): Uint8Array {
  const out = Buffer.alloc(LARGE_REF_BYTES);
  out.writeUInt32LE(id >>> 0, 0);
  out.writeUInt32LE(splitHi(id), 4);
  out.writeUInt32LE(length >>> 0, 8);
  out.writeUInt32LE(splitHi(length), 12);
  out.writeUInt32LE(sum[0], 16);
  out.writeUInt32LE(sum[1], 20);
  return new Uint8Array(out.buffer, out.byteOffset, LARGE_REF_BYTES);
}

const sumScratch = new Uint32Array(2);

/** xxh64 of bytes[offset, offset + length) into out (low word first), hashed in place; EIO on a media error. */
function hashInto(bytes: Uint8Array, offset: number, length: number, out: Uint32Array, what: string): void {
  const rc = native().hashRange(bytes, offset, length, out);
  if (rc === -5) throw new DaxError('EIO', `${what}: media error (SIGBUS) reading the value`);
  assert(rc === 0, () => `hashRange: ${rc}`);
}

/** ECORRUPT unless bytes[offset, offset + ref.length) hash to the reference's checksum. */
function verify(bytes: Uint8Array, offset: number, ref: LargeRef, op: string): void {
  hashInto(bytes, offset, ref.length, sumScratch, op);
  if ((sumScratch[0] !== ref.sumLo || sumScratch[1] !== ref.sumHi) && !isBroken('kv-large-no-verify'))
    throw new DaxError(
      'ECORRUPT',
      `${op}: the large value in DAX object ${ref.id} (${ref.length} bytes) fails its checksum: its bytes were damaged; overwrite or delete the key`,
    );
}

/** The value as bytes (strings encoded once, here, before any lock). */
export function valueBytes(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

/**
 * Creates object `id` holding `bytes`, durable on return, and returns the xxh64 of what it
 * wrote (two u32 words, low first: the reference's checksum). A source that is a view of this
 * store is copied first, so what is hashed is what is written. On any failure (ENOSPC, EIO)
 * the object is removed again and the error rethrown: nothing is left behind.
 */
export function writeLargeObject(space: DaxSpace, id: number, source: Uint8Array): Uint32Array {
  assert(id >= KV_OBJECT_ID_BASE && id <= MAX_OBJECT_ID, () => `kv object id ${id} outside the kv range`);
  const bytes = source.buffer === space.device.media.buffer ? source.slice() : source;
  const sum = new Uint32Array(2);
  hashInto(bytes, 0, bytes.length, sum, `large value of ${bytes.length} bytes`);
  if (isBroken('kv-large-ref-before-data')) return writeLargeObjectUnflushed(space, id, bytes, sum);
  const obj = space.object(id, { create: true, size: bytes.length });
  try {
    obj.write(0, bytes); // R4: write() copies a source that is a view of this store first
  } catch (e) {
    removeQuietly(space, id);
    throw e;
  }
  return sum;
}

/** writeLargeObject under DAXSTORE_TEST_BREAK=kv-large-ref-before-data: stored through write-fault views, never flushed. */
function writeLargeObjectUnflushed(space: DaxSpace, id: number, bytes: Uint8Array, sum: Uint32Array): Uint32Array {
  const obj = space.object(id, { create: true, size: bytes.length });
  try {
    for (let at = 0; at < bytes.length; at += PAGE_BYTES)
      obj.fault(at / PAGE_BYTES, { write: true }).set(bytes.subarray(at, at + PAGE_BYTES));
  } catch (e) {
    removeQuietly(space, id);
    throw e;
  }
  return sum;
}

/** Removes object `id` if it still exists (durable). */
export function removeQuietly(space: DaxSpace, id: number): boolean {
  if (!space.has(id)) return false;
  try {
    space.object(id).remove();
    return true;
  } catch (e) {
    if (e instanceof DaxError && e.code === 'ENOENT') return false; // removed meanwhile
    throw e;
  }
}

/** A copy of a large value, its checksum verified (ECORRUPT). Caller pinned (the object cannot be removed meanwhile: R6). */
export function copyLargePinned(space: DaxSpace, ref: LargeRef, op: string): Uint8Array {
  if (!space.has(ref.id)) throw dangling(ref, op);
  const copy = space.object(ref.id).read(0, ref.length); // EIO on a poisoned page
  verify(copy, 0, ref, op);
  return copy;
}

/**
 * A zero-copy view of a large value when its pages lie on consecutive device blocks (one
 * page run), else a copy; either way its checksum is verified first (ECORRUPT), which reads
 * the whole value once. Caller pinned: the view is valid until the pin ends (R6).
 */
export function viewLargePinned(space: DaxSpace, ref: LargeRef, op: string): Uint8Array {
  if (ref.length === 0) return new Uint8Array(0);
  const { tree, device } = space;
  const pages = Math.ceil(ref.length / PAGE_BYTES);
  let first = -1;
  for (let i = 0; i < pages; i++) {
    const found = lookupCoveringPinned({ space, id: ref.id }, i);
    if (found === undefined || ((tree.lastEntry >>> 3) & 3) !== 0) return copyLargePinned(space, ref, op); // hole or poisoned: read() decides
    const block = blockOfValue(found.value) + (i - found.start);
    if (device.isPoisoned(block)) return copyLargePinned(space, ref, op);
    if (i === 0) first = block;
    else if (block !== first + i) return copyLargePinned(space, ref, op); // not one page run
  }
  const at = device.blockOffset(first);
  const view = new Uint8Array(device.media.buffer, at, ref.length);
  verify(view, 0, ref, op);
  return view;
}

function dangling(ref: LargeRef, op: string): DaxError {
  return new DaxError(
    'ECORRUPT',
    `${op}: the value of this key refers to DAX object ${ref.id} (${ref.length} bytes), which does not exist`,
  );
}

/**
 * Per store handle: receives retired object ids from the epoch (any thread's retire, this
 * thread's collect) and removes them later, from drain(), with no lock held.
 */
export class LargeObjectReaper {
  private readonly ready: number[] = [];
  removed = 0;

  constructor(private readonly space: DaxSpace) {
    space.epoch.registerReclaimer(RETIRE_KV_OBJECT, (id) => {
      this.ready.push(id);
    });
  }

  /** Retires object `id`: removed once no pinned reader can still use it. */
  retire(id: number): void {
    if (isBroken('kv-large-remove-now')) return this.retireWithoutGrace(id);
    this.space.epoch.retire(RETIRE_KV_OBJECT, id, 0);
  }

  /** retire() under DAXSTORE_TEST_BREAK=kv-large-remove-now: queued for removal at once, no grace period (R6). */
  private retireWithoutGrace(id: number): void {
    this.ready.push(id);
  }

  get pending(): number {
    return this.ready.length;
  }

  /** Removes every object whose grace period ended. Call with no entry lock held. */
  drain(): void {
    while (this.ready.length > 0) {
      const id = this.ready.pop()!;
      if (removeQuietly(this.space, id)) this.removed++;
    }
  }
}

export interface OrphanReport {
  /** kv objects referenced by live keys */
  live: number;
  /** kv objects no live key referenced: removed at open */
  orphansRemoved: number;
  /** the next free kv object id */
  nextId: number;
}

/**
 * After the index is rebuilt: removes every kv object no live key references. Costs one
 * index scan, and only when kv objects exist at all.
 */
export function collectOrphans(space: DaxSpace, v: MediaViews): OrphanReport {
  if (isBroken('kv-large-no-orphan-scan')) return orphanReportWithoutScan(space);
  const ids = space.objects.liveIds().filter(isLargeValueId);
  let maxId = KV_OBJECT_ID_BASE - 1;
  for (const id of ids) maxId = Math.max(maxId, id);
  const report: OrphanReport = { live: 0, orphansRemoved: 0, nextId: maxId + 1 };
  if (ids.length === 0) return report;
  const referenced = new Set<number>();
  space.epoch.guard(() =>
    space.tree.scanPinned({ gte: Uint8Array.of(KV_KEY_PREFIX), lt: Uint8Array.of(KV_KEY_PREFIX + 1) }, (at) => {
      const ref = largeRefAt(v, at);
      if (ref !== undefined) referenced.add(ref.id);
    }),
  );
  for (const id of ids) {
    if (referenced.has(id)) report.live++;
    else if (removeQuietly(space, id)) report.orphansRemoved++;
  }
  return report;
}

/** collectOrphans under DAXSTORE_TEST_BREAK=kv-large-no-orphan-scan: nothing scanned, nothing removed. */
function orphanReportWithoutScan(space: DaxSpace): OrphanReport {
  let maxId = KV_OBJECT_ID_BASE - 1;
  for (const id of space.objects.liveIds()) if (isLargeValueId(id)) maxId = Math.max(maxId, id);
  return { live: 0, orphansRemoved: 0, nextId: maxId + 1 };
}
