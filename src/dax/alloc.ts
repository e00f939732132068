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
 *
 * Thread death: from the moment device.allocate returns until the caller has published the
 * block and put it in the tree (clearStage), it is recorded in the thread's participant slot
 * (P_STAGE_*: device token, block + 1, final owner, page index and order). The record is
 * written by the statements right after allocate returns, which itself clears its own record
 * right before returning, with no call in between: there is no moment at which neither record
 * names the block (a thread is only terminated at a call or a loop's back edge). space.ts
 * reapStage finishes what a dead thread left: frees a block still staging, or puts a published
 * one into the tree entry the dead thread still holds.
 */
import type { Device } from '../device/device.js';
import { HUGE_BYTES } from '../device/layout.js';
import { transferOwner } from '../device/transfer-owner.js';
import { OWNER_STAGING, PAGE_BYTES } from './layout.js';
import { isBroken } from '../test-break.js';
import {
  P_STAGE_BLOCK,
  P_STAGE_DEVICE,
  P_STAGE_INDEX,
  P_STAGE_OBJECT_HI,
  P_STAGE_OBJECT_LO,
  P_STAGE_ORDER,
  mySlotBase,
  participantTable,
  slotBase,
} from '../device/participants.js';

/** Makes the zeroed bytes durable before the block can be published (step 2). */
function persistZeroes(device: Device, offset: number, bytes: number): void {
  if (isBroken('dax-alloc-zero-unpersisted')) return; // published later over bytes that may not be zero on the media
  device.media.persist(offset, bytes);
}

/** Allocates a staging-owned block (or 2 MiB extent) for `index` whose bytes are durably zero. */
export function allocateZeroed(device: Device, index: number, order: 0 | 9 = 0, ownerId = 0): number {
  const pt = participantTable();
  const rb = mySlotBase();
  const token = device.token;
  const block = device.allocate(OWNER_STAGING, index, order);
  pt[rb + P_STAGE_DEVICE] = token; // no call since allocate returned (file header)
  pt[rb + P_STAGE_BLOCK] = block + 1;
  pt[rb + P_STAGE_OBJECT_LO] = ownerId % 2 ** 32;
  pt[rb + P_STAGE_OBJECT_HI] = Math.floor(ownerId / 2 ** 32);
  pt[rb + P_STAGE_INDEX] = index % 2 ** 31;
  pt[rb + P_STAGE_ORDER] = order | (Math.floor(index / 2 ** 31) << 4);
  try {
    const offset = device.blockOffset(block);
    const bytes = order === 0 ? PAGE_BYTES : HUGE_BYTES;
    new Uint8Array(device.media.buffer, offset, bytes).fill(0);
    persistZeroes(device, offset, bytes);
  } catch (e) {
    pt[rb + P_STAGE_BLOCK] = 0;
    device.free(block);
    throw e;
  }
  return block;
}

/** The block allocateZeroed returned is published and in the tree (or freed): the record is done. */
export function clearStage(): void {
  participantTable()[mySlotBase() + P_STAGE_BLOCK] = 0;
}

/** A dead participant's staging record (file header), or undefined. */
export function deadStage(
  device: Device,
  id: number,
): { block: number; ownerId: number; index: number; order: 0 | 9 } | undefined {
  const pt = participantTable();
  const base = slotBase(id);
  if (pt[base + P_STAGE_BLOCK] === 0 || pt[base + P_STAGE_DEVICE] !== device.token) return undefined;
  const packed = pt[base + P_STAGE_ORDER];
  return {
    block: pt[base + P_STAGE_BLOCK] - 1,
    ownerId: (pt[base + P_STAGE_OBJECT_HI] >>> 0) * 2 ** 32 + (pt[base + P_STAGE_OBJECT_LO] >>> 0),
    index: (packed >>> 4) * 2 ** 31 + pt[base + P_STAGE_INDEX],
    order: (packed & 15) === 9 ? 9 : 0,
  };
}

/** Clears dead participant `id`'s staging record once handled. */
export function forgetDeadStage(id: number): void {
  participantTable()[slotBase(id) + P_STAGE_BLOCK] = 0;
}

/** Makes a zeroed staging block the owner's, durably (step 3). */
export function publishBlock(device: Device, block: number, ownerId: number): void {
  transferOwner(device, block, OWNER_STAGING, ownerId);
}

/** Makes an owner's block unreachable for recovery (owner -> staging); drain batched by the caller when drain is false. */
export function unpublishBlock(device: Device, block: number, ownerId: number, drain = true): void {
  transferOwner(device, block, ownerId, OWNER_STAGING, { drain });
}
