/**
 * Writeback: make every page dirtied through a write fault durable (the kernel's
 * dax_writeback_mapping_range).
 *
 * Protocol: tagRange DIRTY -> TOWRITE over the range; then per TOWRITE entry: lock, clear
 * TOWRITE, flush its block, clear DIRTY, unlock; an entry whose block changed since the
 * scan (truncated and refaulted, poisoned and rewritten) is skipped; ONE drain at the end.
 * A page dirtied again after its TOWRITE was cleared is caught by the next writeback.
 *
 * Batching (the per-entry costs were two treeLock round trips and one native call): entries
 * are taken up to BATCH at a time, in key order, and the steps run batch-wide — lock all,
 * clear every TOWRITE under one treeLock, flush each run of device-contiguous blocks with
 * one call, clear every DIRTY under one treeLock, unlock all. Every entry still goes through
 * lock, clear TOWRITE, flush, clear DIRTY, unlock in that order, with its lock held from the
 * first step to the last. Only the batch's first entry is taken with a blocking grab; the
 * others with tryGrab: a held one ends the batch (written back first, then waited for), so
 * writeback never sleeps while holding an entry lock (no lock-order cycle with a fault whose
 * mkwrite hook waits on another entry).
 *
 * Serialized per object (the object's writeback mutex, held to the final drain): otherwise
 * writeback B could clear the TOWRITE that writeback A's tagRange set and flush the page
 * only after A drained and returned — A would report a page durable that was not (the
 * batch-wide TOWRITE clear made this window wide enough for the worker test to hit it).
 * With the mutex, a page DIRTY when A's tagRange runs is written back and drained by A, and
 * one cleaned earlier was drained by a writeback that finished before A began. (Clearing
 * TOWRITE before the flush, as the kernel does, narrows but does not close that window:
 * the mutex is what closes it.)
 *
 * Concurrency: object writeback mutex -> entry locks -> treeLock (for the tag bits). An
 * mkwrite hook must not call writeback of its own object (it holds an entry lock: same
 * thread EDEADLK from grab; another thread's writeback would wait for it forever).
 * R1: a write fault holds the entry lock from mkwrite to the DIRTY tag, so writeback never
 * cleans in between. Persistence: flushes, then one drain before returning: every page
 * this call cleaned is durable on return.
 *
 * Debug mode (space option debugCleanPages): a checksum of each page it cleaned, checked
 * at the next write fault or verifyClean(): a clean page that changed was written without
 * a write fault (a stale writable view), counted in stats().cleanPageWrites.
 */
import { grab, tryGrab, unlock, type EntryRef } from '../index/entry-lock.js';
import { Ew } from '../index/entry-word.js';
import { Lay } from '../index/nodes.js';
import { ST_WRITEBACK_PAGES, type DaxSpace } from './space.js';
import { blockOfValue, keyPageIndex, pageKey, sameKey, valueBytes } from './layout.js';
import { isBroken, testHooks } from '../test-break.js';
import { lockWord, unlockWord } from '../device/spin-lock.js';
import type { Device } from '../device/device.js';

export interface WritebackResult {
  pages: number;
  bytes: number;
}

/** Per thread debug checksums: `${objectId}:${index}` -> [block, hash]. */
export const cleanSums = new Map<string, [number, number]>();

/** Entries a batch locks at once. */
const BATCH = 64;

interface Batch {
  refs: EntryRef[];
  /** block of each ref when the scan saw it */
  blocks: number[];
}

/** Flushes [offset, offset + n) of the device (one call for a run of contiguous blocks). */
function flushRun(device: Device, offset: number, n: number): void {
  if (isBroken('dax-writeback-no-flush')) return; // the tags are cleared over bytes never flushed
  device.media.flush(offset, n);
}

export function writeback(
  space: DaxSpace,
  id: number,
  slot: number,
  firstPage: number,
  lastPage: number,
): WritebackResult {
  // Under DAXSTORE_TEST_BREAK=dax-writeback-unserialized the mutex is skipped: writebacks of one object overlap.
  if (isBroken('dax-writeback-unserialized')) return writebackSerialized(space, id, firstPage, lastPage);
  const words = space.objects.words;
  const mutex = space.objects.writebackLockIndex(slot);
  lockWord(words, mutex);
  try {
    return writebackSerialized(space, id, firstPage, lastPage);
  } finally {
    unlockWord(words, mutex);
  }
}

function writebackSerialized(space: DaxSpace, id: number, firstPage: number, lastPage: number): WritebackResult {
  const { tree, device } = space;
  const range = { gte: pageKey(id, firstPage), lte: pageKey(id, lastPage) };
  tree.tagRange(range, 'dirty', 'towrite');
  const total: WritebackResult = { pages: 0, bytes: 0 };
  const batch: Batch = { refs: [], blocks: [] };
  try {
    for (const [key, value] of tree.tagged('towrite', range)) {
      let ref = batch.refs.length === 0 ? grab(tree, key) : tryGrab(tree, key);
      if (ref === undefined) {
        writeBatchLocked(space, id, batch, total); // never sleep holding entry locks
        ref = grab(tree, key);
      }
      if (ref.state === 'empty' || !sameKey(ref.key, key)) {
        unlock(tree, ref); // gone (a placeholder now, removed by unlock) or covered by another entry: not ours to write
        continue;
      }
      batch.refs.push(ref);
      batch.blocks.push(blockOfValue(value));
      if (batch.refs.length === BATCH) writeBatchLocked(space, id, batch, total);
    }
    writeBatchLocked(space, id, batch, total);
  } finally {
    for (const ref of batch.refs) unlock(tree, ref); // a throw mid-batch: release what is held
  }
  device.media.drain();
  Atomics.add(space.counters, ST_WRITEBACK_PAGES, total.pages);
  return total;
}

/** Write back and unlock every entry of the batch (all held by this thread); empties it. */
function writeBatchLocked(space: DaxSpace, id: number, batch: Batch, total: WritebackResult): void {
  const { tree, device } = space;
  const { refs } = batch;
  if (refs.length === 0) return;
  const i32 = tree.arena.i32;
  const live: EntryRef[] = []; // still the scanned block, TOWRITE claimed by us
  const hadDirty: boolean[] = [];
  tree.lockTree();
  try {
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i];
      const e = Atomics.load(i32, ref.leaf + Lay.W_ENTRY);
      if ((e & Ew.TOWRITE) === 0) continue; // cleared meanwhile (memoryFailure poisoned the page; dirty data is gone)
      tree.setTagBitLocked(ref.leaf, ref.key, Ew.TOWRITE, false);
      if (ref.state !== 'value' || blockOfValue(ref.value) !== batch.blocks[i]) continue; // block changed: skip
      live.push(ref);
      hadDirty.push((e & Ew.DIRTY) !== 0);
    }
  } finally {
    tree.unlockTree();
  }
  testHooks.writebackWindow?.();
  // Runs of device-contiguous blocks (pages faulted in order usually are): one flush call each.
  for (let i = 0; i < live.length;) {
    const offset = device.blockOffset(blockOfValue(live[i].value));
    let n = valueBytes(live[i].value);
    let j = i + 1;
    for (; j < live.length && device.blockOffset(blockOfValue(live[j].value)) === offset + n; j++)
      n += valueBytes(live[j].value);
    flushRun(device, offset, n);
    total.pages += j - i;
    total.bytes += n;
    i = j;
  }
  tree.lockTree();
  try {
    for (let i = 0; i < live.length; i++)
      if (hadDirty[i]) tree.setTagBitLocked(live[i].leaf, live[i].key, Ew.DIRTY, false);
  } finally {
    tree.unlockTree();
  }
  if (space.debugCleanPages) {
    for (const ref of live) {
      const offset = device.blockOffset(blockOfValue(ref.value));
      cleanSums.set(`${id}:${keyPageIndex(ref.key)}`, [
        blockOfValue(ref.value),
        checksum(new Uint8Array(device.media.buffer, offset, valueBytes(ref.value))),
      ]);
    }
  }
  while (refs.length > 0) unlock(tree, refs.pop()!);
  batch.blocks.length = 0;
}

export function checksum(bytes: Uint8Array): number {
  const w = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w[i], 0x01000193);
  return h >>> 0;
}
