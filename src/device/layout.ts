/**
 * Persistent layout of a daxstore device: where each area lives, computed once at
 * format and recorded in the superblock; open() re-validates it against the media.
 *
 *   offset                       area
 *   0                            superblock copy A (one 4 KiB block)
 *   4096                         superblock copy B (its own block: a torn write hits one copy)
 *   8192                         root area: upper layers' fixed roots (rootBytes, 64 KiB default):
 *                                the kv root at [0, 128) (kv/kv-root.ts), the msgpack structures
 *                                area at [4096, 36864) (kv/structures.ts)
 *   ownerTableOffset             owner table: 16 bytes per data block (owner-table.ts)
 *   badBlockListOffset           bad-block list: count word + capacity entries (bad-blocks.ts)
 *   dataOffset (2 MiB aligned)   dataBlocks data blocks of 4 KiB
 *
 * Every area starts on a 4 KiB boundary; dataOffset on a 2 MiB boundary, so a data block
 * b is the head of a 2 MiB-aligned extent iff b % 512 === 0.
 *
 * Growth: the owner table is sized at format for the largest size the store may grow to
 * (maxBytes: a record per 4 KiB of it), so the data area grows at its end without moving
 * anything; the superblock records the size now (sizeBytes, dataBlocks). The table holds a
 * record for every 4 KiB of maxBytes, metadata included (no fixed point to solve), rounded up to
 * a whole 4 KiB page of records (1 MiB of store); the store's capacity is the data blocks of
 * that many bytes: ownerTableBytes / 16 less the blocks before dataOffset (capacityBlocks), so
 * a store never grows past its maxBytes rounded up to a whole MiB (a fixed-size store of whole
 * MiB: not at all). The records past dataBlocks are unused; growth zeroes any that are not
 * before it publishes them.
 */
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';

export const BLOCK_BYTES = 4096;
export const HUGE_ORDER = 9;
export const HUGE_BLOCKS = 1 << HUGE_ORDER; // 512 blocks
export const HUGE_BYTES = HUGE_BLOCKS * BLOCK_BYTES; // 2 MiB
export const SUPERBLOCK_A_OFFSET = 0;
export const SUPERBLOCK_B_OFFSET = BLOCK_BYTES;
export const ROOT_OFFSET = 2 * BLOCK_BYTES;
export const DEFAULT_ROOT_BYTES = 64 * 1024;
export const DEFAULT_BAD_BLOCK_CAPACITY = 1024;
/** Owner table: two aligned 8-byte words per data block (owner-table.ts). */
export const OWNER_RECORD_BYTES = 16;
/** Bad-block list: count word alone in the first cache line, then 8-byte entries (bad-blocks.ts). */
export const BAD_BLOCK_ENTRIES_OFFSET = 64;

export function badBlockAreaBytes(capacity: number): number {
  return alignUp(BAD_BLOCK_ENTRIES_OFFSET + capacity * 8, BLOCK_BYTES);
}

export interface Geometry {
  sizeBytes: number;
  blockSize: number;
  rootOffset: number;
  rootBytes: number;
  ownerTableOffset: number;
  ownerTableBytes: number;
  badBlockListOffset: number;
  badBlockCapacity: number;
  dataOffset: number;
  dataBlocks: number;
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** Geometry for a fresh format of a media of sizeBytes; ENOSPC when no data block fits. */
export function computeGeometry(
  sizeBytes: number,
  rootBytes = DEFAULT_ROOT_BYTES,
  badBlockCapacity = DEFAULT_BAD_BLOCK_CAPACITY,
  maxBytes = sizeBytes,
): Geometry {
  if (!Number.isSafeInteger(rootBytes) || rootBytes <= 0)
    throw new DaxError('EINVAL', `format: rootBytes ${rootBytes} must be a positive integer`);
  if (!Number.isSafeInteger(badBlockCapacity) || badBlockCapacity <= 0)
    throw new DaxError('EINVAL', `format: badBlockCapacity ${badBlockCapacity} must be a positive integer`);
  const roundedRoot = alignUp(rootBytes, BLOCK_BYTES);
  // The owner table is sized for an upper bound of data blocks (every block of the media),
  // so the fixed point dataOffset <-> dataBlocks needs no iteration; the slack is small (0.4%).
  const maxBlocks = Math.floor(Math.max(sizeBytes, maxBytes) / BLOCK_BYTES);
  const ownerTableOffset = ROOT_OFFSET + roundedRoot;
  const ownerTableBytes = alignUp(maxBlocks * OWNER_RECORD_BYTES, BLOCK_BYTES);
  const badBlockListOffset = ownerTableOffset + ownerTableBytes;
  const dataOffset = alignUp(badBlockListOffset + badBlockAreaBytes(badBlockCapacity), HUGE_BYTES);
  const dataBlocks = Math.floor((sizeBytes - dataOffset) / BLOCK_BYTES);
  if (!(dataBlocks > 0)) {
    throw new DaxError(
      'ENOSPC',
      `format: media of ${sizeBytes} bytes is too small: metadata needs ${dataOffset} bytes before the first data block`,
    );
  }
  const geometry: Geometry = {
    sizeBytes,
    blockSize: BLOCK_BYTES,
    rootOffset: ROOT_OFFSET,
    rootBytes: roundedRoot,
    ownerTableOffset,
    ownerTableBytes,
    badBlockListOffset,
    badBlockCapacity,
    dataOffset,
    dataBlocks,
  };
  assert(
    geometryProblem(geometry, sizeBytes) === undefined,
    () => `computed geometry invalid: ${geometryProblem(geometry, sizeBytes)}`,
  );
  return geometry;
}

/**
 * The most data blocks the store can grow to: the blocks of the bytes its owner table was sized
 * for (a record per 4 KiB of maxBytes, metadata included) less the metadata's (file header).
 */
export function capacityBlocks(g: Geometry): number {
  return Math.floor(g.ownerTableBytes / OWNER_RECORD_BYTES) - g.dataOffset / BLOCK_BYTES;
}

/** The media size that holds exactly `dataBlocks` data blocks. */
export function sizeForBlocks(g: Geometry, dataBlocks: number): number {
  return g.dataOffset + dataBlocks * BLOCK_BYTES;
}

/**
 * The data-area bytes needed before the first data block for a store of at most maxBytes: the
 * smallest size a store that may grow to maxBytes can start at is this plus its first extents.
 */
export function dataOffsetFor(
  maxBytes: number,
  rootBytes = DEFAULT_ROOT_BYTES,
  badBlocks = DEFAULT_BAD_BLOCK_CAPACITY,
): number {
  const ownerTableBytes = alignUp(Math.floor(maxBytes / BLOCK_BYTES) * OWNER_RECORD_BYTES, BLOCK_BYTES);
  return alignUp(
    ROOT_OFFSET + alignUp(rootBytes, BLOCK_BYTES) + ownerTableBytes + badBlockAreaBytes(badBlocks),
    HUGE_BYTES,
  );
}

/**
 * Why a recorded geometry cannot describe a media of mediaSize bytes, or undefined if it can. A
 * media longer than the geometry is a store that grew (a crash after the file grew and before
 * the superblock said so, or a file grown with truncate): open grows the geometry to it.
 */
export function geometryProblem(g: Geometry, mediaSize: number): string | undefined {
  if (g.sizeBytes > mediaSize)
    return `superblock says ${g.sizeBytes} bytes, media has ${mediaSize} (the file was cut short)`;
  if (g.sizeBytes % BLOCK_BYTES !== 0) return `size ${g.sizeBytes} is not a multiple of ${BLOCK_BYTES}`;
  if (g.sizeBytes !== sizeForBlocks(g, g.dataBlocks))
    return `${g.dataBlocks} data blocks at ${g.dataOffset} do not end at the size ${g.sizeBytes}`;
  if (g.blockSize !== BLOCK_BYTES) return `block size ${g.blockSize} (expected ${BLOCK_BYTES})`;
  if (g.rootOffset !== ROOT_OFFSET) return `root offset ${g.rootOffset} (expected ${ROOT_OFFSET})`;
  if (!(g.badBlockCapacity > 0) || g.badBlockCapacity > mediaSize / 8)
    return `bad-block capacity ${g.badBlockCapacity}`;
  const areas: Array<[string, number, number]> = [
    ['root area', g.rootOffset, g.rootBytes],
    ['owner table', g.ownerTableOffset, g.ownerTableBytes],
    ['bad-block list', g.badBlockListOffset, badBlockAreaBytes(g.badBlockCapacity)],
  ];
  let end = g.rootOffset;
  for (const [name, offset, bytes] of areas) {
    if (offset % BLOCK_BYTES !== 0 || offset < end) return `${name} at ${offset} overlaps or is misaligned`;
    if (!(bytes > 0)) return `${name} has ${bytes} bytes`;
    end = offset + bytes;
  }
  if (g.dataOffset % HUGE_BYTES !== 0 || g.dataOffset < end)
    return `data offset ${g.dataOffset} overlaps metadata or is not 2 MiB aligned`;
  if (!(g.dataBlocks > 0) || g.dataOffset + g.dataBlocks * BLOCK_BYTES > mediaSize)
    return `${g.dataBlocks} data blocks at ${g.dataOffset} exceed the media`;
  if (g.ownerTableBytes < g.dataBlocks * OWNER_RECORD_BYTES)
    return `owner table of ${g.ownerTableBytes} bytes cannot hold ${g.dataBlocks} records`;
  return undefined;
}
