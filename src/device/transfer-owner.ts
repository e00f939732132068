/**
 * transferOwner: move an owned block (or 2 MiB extent head) from one owner id to another
 * with ONE aligned 8-byte compareExchange of its owner record's word0, then persist it.
 * Added for the DAX layer (src/dax), which needs a block to become reachable only after
 * it was zeroed: allocate it under a staging owner (with its final index, so word1 is
 * already right), zero + persist the data, then transfer staging -> object. The reverse
 * (object -> staging) makes a truncated block unreachable durably while it still waits
 * in epoch limbo. General enough for any layer with the same publish-after-prepare need.
 *
 * Invariants
 *   - Only word0's ownerId (and its check bytes) changes; flags (OWNED, and POISONED if a
 *     concurrent poison set it) and order are kept, word1 (index) is untouched. Allocator counters and bitmaps
 *     do not depend on the owner id, so they stay consistent (Device.audit()).
 *
 * Concurrency
 *   - compareExchange loop: a concurrent poison() (which only ORs POISONED) is re-read
 *     and kept. The caller guarantees nobody frees the block meanwhile (it holds the
 *     reservation, or the entry lock of the only index entry that points at it).
 *
 * Persistence ordering
 *   - The new word0 is flushed; with drain (default) it is durable on return. Callers
 *     batching several transfers pass { drain: false } and drain once themselves.
 */
import { DaxError } from '../errors.js';
import type { Device } from './device.js';
import { FLAG_OWNED, MAX_OWNER_ID, OwnerTable, decodeMeta, encodeMeta, sealMeta } from './owner-table.js';
import { testHooks } from '../test-break.js';

const tables = new WeakMap<Device, OwnerTable>();

function tableOf(device: Device): OwnerTable {
  let table = tables.get(device);
  if (table === undefined) {
    table = new OwnerTable(device.media, { ...device.geometry });
    tables.set(device, table);
  }
  return table;
}

export function transferOwner(
  device: Device,
  block: number,
  fromOwnerId: number,
  toOwnerId: number,
  opts: { drain?: boolean } = {},
): void {
  if (device.closed) throw new DaxError('ECLOSED', `${device.media.path}: transferOwner: device is closed`);
  if (!Number.isSafeInteger(block) || block < 0 || block >= device.dataBlocks)
    throw new DaxError('ERANGE', `transferOwner(${block}): block outside [0, ${device.dataBlocks})`);
  for (const id of [fromOwnerId, toOwnerId]) {
    if (!Number.isSafeInteger(id) || id < 1 || id > MAX_OWNER_ID)
      throw new DaxError('EINVAL', `transferOwner(${block}): owner id ${id} must be an integer in [1, 2^40)`);
  }
  const table = tableOf(device);
  let meta = table.loadMeta(block);
  for (;;) {
    const { flags, order, ownerId } = decodeMeta(meta);
    if ((flags & FLAG_OWNED) === 0 || ownerId !== fromOwnerId) {
      throw new DaxError(
        'EINVAL',
        `${device.media.path}: transferOwner(${block}): block is ${(flags & FLAG_OWNED) === 0 ? 'not owned' : `owned by ${ownerId}`}, not by ${fromOwnerId}`,
      );
    }
    const next = sealMeta(encodeMeta(flags, order, toOwnerId), table.loadIndexWord(block)); // word1 is stable while owned
    const found = table.casMeta(block, meta, next);
    if (found === meta) break;
    meta = found; // a concurrent poison() set POISONED: keep it
  }
  testHooks.transferOwnerExchanged?.(block, fromOwnerId, toOwnerId);
  table.flushMeta(block);
  if (opts.drain !== false) device.media.drain();
}
