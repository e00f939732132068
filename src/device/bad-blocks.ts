/**
 * Bad blocks: a persistent list of poisoned data-block numbers, plus a parser for the
 * kernel's badblocks file (/sys/block/<dev>/badblocks, or a dax region's).
 *
 * Area at badBlockListOffset (layout.ts):
 *   offset 0     u64  count: entries in use (alone in its cache line)
 *   offset 64    u64  entry[i], i < capacity: a data block number (< dataBlocks)
 *
 * Invariants
 *   - count <= capacity; entry[i] for i < count are distinct block numbers < dataBlocks.
 *
 * Concurrency
 *   - appendLocked() must be called with the allocator lock held (it serialises appends
 *     and the poisoned bitmap that dedups them). Reads of count/entries happen on open only.
 *
 * Persistence ordering
 *   - Append: store entry[count], persist; then store count + 1 (one 8-byte store),
 *     persist. A crash leaves the entry either listed or beyond count (ignored).
 */
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import type { Media } from './media.js';
import { BAD_BLOCK_ENTRIES_OFFSET, type Geometry } from './layout.js';

export class BadBlockList {
  private readonly countWord: BigUint64Array;
  private readonly entries: BigUint64Array;

  constructor(
    private readonly media: Media,
    private readonly geometry: Geometry,
  ) {
    this.countWord = new BigUint64Array(media.buffer, geometry.badBlockListOffset, 1);
    this.entries = new BigUint64Array(
      media.buffer,
      geometry.badBlockListOffset + BAD_BLOCK_ENTRIES_OFFSET,
      geometry.badBlockCapacity,
    );
  }

  /** Listed blocks; ECORRUPT when the count or an entry is out of range. Changes nothing. */
  read(): number[] {
    const count = Atomics.load(this.countWord, 0);
    if (count > BigInt(this.geometry.badBlockCapacity)) {
      throw new DaxError(
        'ECORRUPT',
        `${this.media.path}: bad-block list at ${this.geometry.badBlockListOffset} counts ${count} entries, capacity ${this.geometry.badBlockCapacity}`,
      );
    }
    const blocks: number[] = [];
    for (let i = 0; i < Number(count); i++) {
      const entry = Atomics.load(this.entries, i);
      if (entry >= BigInt(this.geometry.dataBlocks)) {
        throw new DaxError(
          'ECORRUPT',
          `${this.media.path}: bad-block entry ${i} names block ${entry}, device has ${this.geometry.dataBlocks}`,
        );
      }
      blocks.push(Number(entry));
    }
    return blocks;
  }

  count(): number {
    return Number(Atomics.load(this.countWord, 0));
  }

  /** Durably appends block; ENOSPC when the list is full (nothing changed). Allocator lock held. */
  appendLocked(block: number): void {
    assert(
      Number.isInteger(block) && block >= 0 && block < this.geometry.dataBlocks,
      () => `bad block ${block} out of range`,
    );
    const count = this.count();
    if (count >= this.geometry.badBlockCapacity) {
      throw new DaxError(
        'ENOSPC',
        `${this.media.path}: bad-block list is full (${this.geometry.badBlockCapacity} entries), cannot record block ${block}`,
      );
    }
    const entryOffset = this.geometry.badBlockListOffset + BAD_BLOCK_ENTRIES_OFFSET + count * 8;
    Atomics.store(this.entries, count, BigInt(block));
    this.media.persist(entryOffset, 8);
    // The entry is durable before the count that makes it part of the list.
    Atomics.store(this.countWord, 0, BigInt(count + 1));
    this.media.persist(this.geometry.badBlockListOffset, 8);
  }
}

/** One line of a kernel badblocks file: `count` 512-byte sectors from `sector`. */
export interface BadSectorRange {
  sector: number;
  count: number;
}

export const KERNEL_SECTOR_BYTES = 512;

/**
 * Parses the kernel's badblocks format: one "<first sector> <sector count>" pair per line,
 * decimal, sectors of 512 bytes. Blank lines are ignored; anything else is EINVAL naming
 * the line.
 */
export function parseKernelBadblocks(text: string, source = 'badblocks'): BadSectorRange[] {
  const ranges: BadSectorRange[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const match = /^(\d+)\s+(\d+)$/.exec(line);
    const sector = match ? Number(match[1]) : NaN;
    const count = match ? Number(match[2]) : NaN;
    if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(count) || count <= 0) {
      throw new DaxError('EINVAL', `${source}: line ${i + 1} is not "<sector> <count>": ${JSON.stringify(line)}`);
    }
    ranges.push({ sector, count });
  }
  return ranges;
}

/**
 * Data blocks touched by bad sector ranges, for a device whose media starts at
 * mediaStartBytes within the kernel's block device (0 for a whole device-DAX).
 */
export function dataBlocksInRanges(
  ranges: BadSectorRange[],
  geometry: Pick<Geometry, 'dataOffset' | 'dataBlocks' | 'blockSize'>,
  mediaStartBytes = 0,
): number[] {
  const blocks = new Set<number>();
  for (const { sector, count } of ranges) {
    const start = sector * KERNEL_SECTOR_BYTES - mediaStartBytes - geometry.dataOffset;
    const end = start + count * KERNEL_SECTOR_BYTES;
    const first = Math.max(0, Math.floor(start / geometry.blockSize));
    const last = Math.min(geometry.dataBlocks - 1, Math.floor((end - 1) / geometry.blockSize));
    for (let b = first; b <= last; b++) blocks.add(b);
  }
  return [...blocks].sort((a, b) => a - b);
}
