/**
 * How open() maps a store file: its size now, the address space reserved for it to grow into
 * (its maxSize), and whether a new file starts as a hole. The rules (README "open"):
 *
 *   new file, `size` only        a store of exactly `size` bytes that never grows (maxSize = size),
 *                                allocated whole at create
 *   new file, `maxSize`          starts at `size` (default: its metadata and 8 MiB of data) and grows
 *                                online up to maxSize; sparse: only what is used is allocated
 *   new file, neither            as `maxSize` = the file system's size
 *   existing file                maps up to its capacity (the blocks its owner table describes,
 *                                fixed at create), or `maxSize` when smaller; `size` grows it to at
 *                                least that many bytes at open
 *
 * A device-DAX store is the whole device: it neither grows nor takes a reservation. A `maxSize`
 * smaller than the device is EINVAL (the store would be larger than it allows); one at least the
 * device's size holds as it is.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DaxError } from '../errors.js';
import { BLOCK_BYTES, HUGE_BYTES, alignUp, capacityBlocks, dataOffsetFor, sizeForBlocks } from '../device/layout.js';
import { peekSuperblock } from '../device/superblock.js';
import { DEFAULT_SYSFS_ROOT, readDevDaxGeometry } from '../device/sysfs.js';
import type { OpenRegionOptions } from '../device/region.js';
import { errnoToCode } from '../native/addon.js';

/** The data a growable store starts with: four 2 MiB extents. */
export const INITIAL_DATA_BYTES = 8 * 1024 * 1024;

export interface StoreFilePlan {
  readonly region: OpenRegionOptions;
  /** Device.open: grow to at least this many bytes (0: no) */
  readonly minBytes: number;
  /** Device.format: the most the new store may grow to */
  readonly maxBytes: number;
}

export function planStoreFile(
  file: string,
  create: boolean,
  size: number | undefined,
  maxSize: number | undefined,
  minStoreBytes: number,
  sysfsRoot = DEFAULT_SYSFS_ROOT,
): StoreFilePlan {
  if (maxSize !== undefined) checkBytes(file, 'maxSize', maxSize, minStoreBytes);
  if (size !== undefined) checkBytes(file, 'size', size, minStoreBytes);
  if (create) {
    if (size !== undefined && maxSize === undefined)
      return { region: { create: true, sizeBytes: size }, minBytes: 0, maxBytes: size };
    const max = maxSize ?? fileSystemBytes(file, minStoreBytes);
    const floor = dataOffsetFor(max) + INITIAL_DATA_BYTES;
    if (size !== undefined && size > max)
      throw new DaxError('EINVAL', `open ${file}: size ${size} is larger than maxSize ${max}`, { path: file });
    const initial = Math.min(max, Math.max(size ?? 0, floor));
    if (initial < dataOffsetFor(max) + 2 * HUGE_BYTES)
      throw new DaxError(
        'EINVAL',
        `open ${file}: maxSize ${max} leaves no room for data after the ${dataOffsetFor(max)} bytes of metadata it needs`,
        { path: file },
      );
    return {
      region: { create: true, sizeBytes: initial, reserveBytes: max, sparse: max > initial },
      minBytes: 0,
      maxBytes: max,
    };
  }
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (st?.isCharacterDevice() === true && maxSize !== undefined) checkDeviceMaxSize(file, maxSize, sysfsRoot);
  if (st === undefined || !st.isFile()) return { region: {}, minBytes: size ?? 0, maxBytes: 0 }; // device-DAX or an error openRegion names
  const sb = peekSuperblock(file);
  if (sb === undefined) return { region: {}, minBytes: 0, maxBytes: 0 }; // open says what it is not
  const capacity = sizeForBlocks(sb, capacityBlocks(sb));
  if (maxSize !== undefined && maxSize < Math.min(st.size, capacity))
    throw new DaxError('EINVAL', `open ${file}: maxSize ${maxSize} is smaller than the store (${st.size} bytes)`, {
      path: file,
    });
  const reserve = Math.max(st.size, Math.min(capacity, maxSize ?? capacity));
  if (size !== undefined && size > reserve)
    throw new DaxError(
      'ENOSPC',
      `open ${file}: cannot grow to size ${size}: the store can grow to ${Math.min(capacity, reserve)} bytes (its maxSize, fixed when it was created)`,
      { path: file },
    );
  return { region: { reserveBytes: alignUp(reserve, BLOCK_BYTES) }, minBytes: size ?? 0, maxBytes: reserve };
}

/** A device-DAX store is the whole device: a maxSize below the device's size cannot hold (a device that is not device-DAX: openRegion says so). */
function checkDeviceMaxSize(file: string, maxSize: number, sysfsRoot: string): void {
  let device: number;
  try {
    device = readDevDaxGeometry(file, sysfsRoot).sizeBytes;
  } catch {
    return;
  }
  if (maxSize < device)
    throw new DaxError(
      'EINVAL',
      `open ${file}: maxSize ${maxSize} is smaller than the device (${device} bytes): a device-DAX store is the whole device`,
      { path: file },
    );
}

function checkBytes(file: string, name: string, bytes: number, min: number): void {
  if (!Number.isSafeInteger(bytes) || bytes % BLOCK_BYTES !== 0)
    throw new DaxError(
      'EINVAL',
      `open ${file}: ${name} ${bytes} must be a whole number of ${BLOCK_BYTES}-byte blocks`,
      {
        path: file,
      },
    );
  if (bytes < min)
    throw new DaxError(
      'EINVAL',
      `open ${file}: ${name} ${bytes} bytes is below the minimum store size of ${min} bytes (6 MiB)`,
      { path: file },
    );
}

/** The size of the file system the new file goes on (the default maxSize), in whole 2 MiB extents. */
function fileSystemBytes(file: string, min: number): number {
  const dir = path.dirname(path.resolve(file));
  let st: fs.StatsFs;
  try {
    st = fs.statfsSync(dir);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    throw new DaxError(errnoToCode(errno), `open ${file}: statfs of ${dir}: ${errno ?? String(e)}`, {
      path: file,
      errno,
      syscall: 'statfs',
      cause: e,
    });
  }
  return Math.max(min, Math.floor((st.blocks * st.bsize) / HUGE_BYTES) * HUGE_BYTES);
}
