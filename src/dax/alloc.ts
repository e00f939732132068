/**
 * Block allocation for the DAX layer: a block becomes reachable only after its bytes are
 * durably zero, so recovery never follows an owner record to another object's old data.
 *
 * Persistence ordering
 *   1. device.allocate(OWNER_STAGING, index, order): owner record durable, owned by staging
 *      (recovery frees staging blocks: a crash here leaks nothing).
 *   2. zero the block, persist it.
 *   3. publishBlock(): transferOwner staging -> final owner (one 8-byte store, persisted).
 * Unpublish is the reverse: transferOwner owner -> staging makes the block unreachable
 * durably; it is then retired through the epoch and freed by the reclaimer.
 */
import type { Device } from '../device/device.js';
import { HUGE_BYTES } from '../device/layout.js';
import { transferOwner } from '../device/transfer-owner.js';
import { OWNER_STAGING, PAGE_BYTES } from './layout.js';
import { isBroken } from '../test-break.js';

/** Makes the zeroed bytes durable before the block can be published (step 2). */
function persistZeroes(device: Device, offset: number, bytes: number): void {
  if (isBroken('dax-alloc-zero-unpersisted')) return; // published later over bytes that may not be zero on the media
  device.media.persist(offset, bytes);
}

/** Allocates a staging-owned block (or 2 MiB extent) for `index` whose bytes are durably zero. */
export function allocateZeroed(device: Device, index: number, order: 0 | 9 = 0): number {
  const block = device.allocate(OWNER_STAGING, index, order);
  try {
    const offset = device.blockOffset(block);
    const bytes = order === 0 ? PAGE_BYTES : HUGE_BYTES;
    new Uint8Array(device.media.buffer, offset, bytes).fill(0);
    persistZeroes(device, offset, bytes);
  } catch (e) {
    device.free(block);
    throw e;
  }
  return block;
}

/** Makes a zeroed staging block the owner's, durably (step 3). */
export function publishBlock(device: Device, block: number, ownerId: number): void {
  transferOwner(device, block, OWNER_STAGING, ownerId);
}

/** Makes an owner's block unreachable for recovery (owner -> staging); drain batched by the caller when drain is false. */
export function unpublishBlock(device: Device, block: number, ownerId: number, drain = true): void {
  transferOwner(device, block, ownerId, OWNER_STAGING, { drain });
}
