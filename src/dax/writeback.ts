/**
 * Writeback: make every page dirtied through a write fault durable (the kernel's
 * dax_writeback_mapping_range).
 *
 * Protocol: tagRange DIRTY -> TOWRITE over the range; then per TOWRITE entry: lock, clear
 * TOWRITE, flush its block, clear DIRTY, unlock; an entry whose block changed since the
 * scan (truncated and refaulted, poisoned and rewritten) is skipped; ONE drain at the end.
 * A page dirtied again after its TOWRITE was cleared is caught by the next writeback.
 *
 * Concurrency: entry lock only (R1: a write fault holds it from mkwrite to the DIRTY tag,
 * so writeback never cleans in between). Persistence: flushes, then one drain before
 * returning: every page this call cleaned is durable on return.
 *
 * Debug mode (space option debugCleanPages): a checksum of each page it cleaned, checked
 * at the next write fault or verifyClean(): a clean page that changed was written without
 * a write fault (a stale writable view), counted in stats().cleanPageWrites.
 */
import { clearTagLocked, grab, unlock } from '../index/entry-lock.js';
import { DIRTY, TOWRITE } from '../index/entry-word.js';
import { W_ENTRY } from '../index/nodes.js';
import { ST_WRITEBACK_PAGES, type DaxSpace } from './space.js';
import { blockOfValue, keyPageIndex, pageKey, sameKey, valueBytes } from './layout.js';

export interface WritebackResult {
  pages: number;
  bytes: number;
}

/** Per thread debug checksums: `${objectId}:${index}` -> [block, hash]. */
export const cleanSums = new Map<string, [number, number]>();

export function writeback(space: DaxSpace, id: number, firstPage: number, lastPage: number): WritebackResult {
  const { tree, device } = space;
  const range = { gte: pageKey(id, firstPage), lte: pageKey(id, lastPage) };
  tree.tagRange(range, 'dirty', 'towrite');
  let pages = 0;
  let bytes = 0;
  for (const [key, value] of tree.tagged('towrite', range)) {
    const ref = grab(tree, key);
    try {
      const e = Atomics.load(tree.arena.i32, ref.leaf + W_ENTRY);
      if (!sameKey(ref.key, key) || (e & TOWRITE) === 0) continue;
      clearTagLocked(tree, ref, 'towrite');
      if (ref.state !== 'value' || blockOfValue(ref.value) !== blockOfValue(value)) continue; // block changed: skip
      const n = valueBytes(ref.value);
      const offset = device.blockOffset(blockOfValue(ref.value));
      device.media.flush(offset, n);
      if ((e & DIRTY) !== 0) clearTagLocked(tree, ref, 'dirty');
      if (space.debugCleanPages) cleanSums.set(`${id}:${keyPageIndex(key)}`, [blockOfValue(ref.value), checksum(new Uint8Array(device.media.buffer, offset, n))]);
      pages++;
      bytes += n;
    } finally {
      unlock(tree, ref);
    }
  }
  device.media.drain();
  Atomics.add(space.counters, ST_WRITEBACK_PAGES, pages);
  return { pages, bytes };
}

export function checksum(bytes: Uint8Array): number {
  const w = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  let h = 0x811c9dc5;
  for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w[i], 0x01000193);
  return h >>> 0;
}
