/**
 * Compaction: reclaims log segments whose entries are mostly dead.
 *
 * Invariants
 *   - A live entry is moved by copying its bytes unchanged (sequence included) into a new
 *     record of the compacting handle's segment; the index then points at the copy. Equal
 *     sequences make the two copies interchangeable at recovery, so a crash at any point
 *     recovers the same value.
 *   - A DEL entry whose key is absent from the index is copied too (it may still shadow an
 *     older PUT in another segment); other dead entries are dropped.
 *   - A segment is retired only after every copy made from it is durable (one commit), and
 *     freed only through the epoch, once no pinned reader can hold a view into it (R6).
 *   - Segments listed in the open-segment table (some writer appends there) are never chosen.
 *
 * Concurrency (R3: the entry lock is the only lock about a key)
 *   - For each candidate entry: grab the key's entry lock, re-check that the index still points
 *     at this entry (a concurrent put/delete may have moved on: then skip), copy, publish with
 *     replace(), unlock. Readers never block: they see the old or the new copy, both intact.
 *
 * Persistence ordering: copies sealed and flushed; one drain per segment (writer.commit());
 * then the segment's owner record moves KV -> staging (transferOwner, persisted: recovery
 * stops reading it, and frees it); then retireBlock -> epoch -> device.free when the grace ends.
 */
import type { DaxSpace } from '../dax/space.js';
import { DaxError } from '../errors.js';
import { OWNER_STAGING } from '../dax/layout.js';
import { transferOwner } from '../device/transfer-owner.js';
import { grab, replace, unlock } from '../index/entry-lock.js';
import { ENTRY_DEL, KIND_PUT, KV_KEY_PREFIX, OWNER_KV_SEGMENT, RECORD_HEADER_BYTES, SEGMENT_BYTES, entryBytes } from './layout.js';
import { checkRecord, entryKeyLength, entryOp, entryValueLength, type MediaViews } from './records.js';
import { ALLOCATING, type SegmentWriter } from './segment-writer.js';
import { kvBreak } from './test-break.js';
import { ensureStageBytes, stageViews } from './record-stage.js';

export interface CompactionReport {
  segmentsScanned: number;
  segmentsFreed: number;
  entriesMoved: number;
  tombstonesKept: number;
  bytesReclaimed: number;
}

interface Segment { block: number; base: number; nonce: number; entries: number[]; liveBytes: number; usedBytes: number }

export function compactSegments(space: DaxSpace, v: MediaViews, writer: SegmentWriter, openTable: Int32Array, maxLiveRatio: number): CompactionReport {
  const report: CompactionReport = { segmentsScanned: 0, segmentsFreed: 0, entriesMoved: 0, tombstonesKept: 0, bytesReclaimed: 0 };
  const candidates = listClosedSegments(space, openTable);
  for (const seg of candidates) {
    report.segmentsScanned++;
    measure(space, v, seg);
    if (seg.liveBytes > maxLiveRatio * SEGMENT_BYTES) continue;
    for (const e of seg.entries) moveEntry(space, v, writer, e, report);
    if (!kvBreak('kv-compact-no-commit')) writer.commit(); // every copy durable before the segment can be freed
    if (!unpublish(space, seg.block)) continue; // another thread's compaction retired it
    space.retireBlock(seg.block);
    report.segmentsFreed++;
    report.bytesReclaimed += SEGMENT_BYTES - seg.liveBytes;
  }
  return report;
}

/**
 * Owned segments no writer appends to. List the owned ones FIRST, then read the open table:
 * a writer announces ALLOCATING before its allocation, so a segment owned at listing time is
 * either announced by now or its writer is still ALLOCATING (then list again).
 */
function listClosedSegments(space: DaxSpace, openTable: Int32Array): Segment[] {
  for (;;) {
    const owned: Segment[] = [];
    space.device.forEachOwned((block, owner, index) => {
      if (owner === OWNER_KV_SEGMENT) owned.push({ block, base: space.device.blockOffset(block), nonce: index, entries: [], liveBytes: 0, usedBytes: 0 });
    });
    const open = new Set<number>();
    let allocating = false;
    for (let i = 0; i < openTable.length; i++) {
      const w = Atomics.load(openTable, i);
      if (w === ALLOCATING) allocating = true;
      else if (w !== 0) open.add(w - 1);
    }
    if (!allocating) return owned.filter((seg) => !open.has(seg.block));
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // let the allocating writer finish
  }
}

/**
 * Owner KV -> staging, durably: recovery no longer scans it (DaxSpace recovery frees staging
 * blocks), and no later compaction lists it while it waits in epoch limbo. False when another
 * compaction got there first.
 */
function unpublish(space: DaxSpace, block: number): boolean {
  try {
    transferOwner(space.device, block, OWNER_KV_SEGMENT, OWNER_STAGING);
    return true;
  } catch (e) {
    if (e instanceof DaxError && e.code === 'EINVAL' && /owned by|not owned/.test(e.message)) return false;
    throw e;
  }
}

/** Lists the segment's entries and counts the bytes of those the index still points at. */
function measure(space: DaxSpace, v: MediaViews, seg: Segment): void {
  const end = seg.base + SEGMENT_BYTES;
  let at = seg.base;
  for (;;) {
    const check = checkRecord(v, at, end, seg.nonce);
    if (check.status !== 'ok') break;
    let e = at + RECORD_HEADER_BYTES;
    for (let i = 0; i < check.count; i++) {
      const bytes = entryBytes(entryKeyLength(v, e), entryValueLength(v, e));
      seg.entries.push(e);
      if (space.tree.lookup(indexKey(v, e)) === e) seg.liveBytes += bytes + RECORD_HEADER_BYTES;
      e += bytes;
    }
    at += check.totalBytes;
  }
  seg.usedBytes = at - seg.base;
}

function indexKey(v: MediaViews, e: number): Uint8Array {
  const keyLength = entryKeyLength(v, e);
  const key = new Uint8Array(keyLength + 1);
  key[0] = KV_KEY_PREFIX;
  key.set(v.u8.subarray(e + 16, e + 16 + keyLength), 1);
  return key;
}

function moveEntry(space: DaxSpace, v: MediaViews, writer: SegmentWriter, e: number, report: CompactionReport): void {
  const key = indexKey(v, e);
  if (entryOp(v, e) === ENTRY_DEL) {
    // Lock-free: a concurrent put of this key gets a higher sequence than this old DEL anyway.
    if (space.tree.lookup(key) === undefined) {
      copyEntry(v, writer, e);
      report.tombstonesKept++;
    }
    return;
  }
  const ref = grab(space.tree, key);
  try {
    if ((ref.state !== 'value' || ref.value !== e) && !kvBreak('kv-compact-no-recheck')) return; // moved on meanwhile (R3 re-check)
    replace(space.tree, ref, copyEntry(v, writer, e));
    report.entriesMoved++;
  } finally {
    unlock(space.tree, ref); // an EMPTY placeholder (key gone) is removed by unlock
  }
}

/** Appends a one-entry record holding an exact copy of entry e (composed in the stage, as every record); returns the copy's offset. */
function copyEntry(v: MediaViews, writer: SegmentWriter, e: number): number {
  const bytes = entryBytes(entryKeyLength(v, e), entryValueLength(v, e));
  const total = RECORD_HEADER_BYTES + bytes;
  ensureStageBytes(total);
  v.buf.copy(stageViews.u8, RECORD_HEADER_BYTES, e, e + bytes);
  const at = writer.reserve(total);
  writer.sealStaged(at, KIND_PUT, 1, total);
  if (!kvBreak('kv-compact-no-commit')) writer.flushPending();
  return at + RECORD_HEADER_BYTES;
}
