/**
 * daxstore inject poison|enospc|eio: faults planted in a store file for users' own tests.
 *   poison  durably records a data block as bad (Device.poison): reads of it fail with EIO
 *   enospc  allocates blocks to a filler owner until N are left: later writes get ENOSPC
 *           (`daxstore check --repair` frees them again: the filler owner is unknown)
 *   eio     flips bytes of the record holding a key: recovery reports a checksum mismatch
 * Each opens the file for real (flock), changes it, and closes it cleanly.
 */
import { DaxError, isDaxError } from '../errors.js';
import { Device } from '../device/device.js';
import { open } from '../kv/index.js';
import { openRegion } from '../device/region.js';
import { EXIT_OK, emit, parseKeyArg, UsageError } from './output.js';

/** An owner id no layer uses, so `check` reports the filler as leaked. */
const FILLER_OWNER = 7;

export function runPoison(path: string, o: { block?: number; offset?: number; key?: string; json?: boolean }): number {
  const given = [o.block, o.offset, o.key].filter((x) => x !== undefined).length;
  if (given !== 1) throw new UsageError('inject poison: give exactly one of --block, --offset, --key');
  const device = Device.open(openRegion(path, {}));
  try {
    const block =
      o.block ?? (o.offset !== undefined ? device.blockAt(o.offset) : recordBlock(device, path, o.key as string));
    device.poison(block);
    emit(
      o.json === true,
      { path, poisonedBlock: block, offset: device.blockOffset(block) },
      () => `${path}: block ${block} (offset ${device.blockOffset(block)}) is now poisoned`,
    );
    return EXIT_OK;
  } finally {
    device.close();
  }
}

/** The data block holding the newest record of `key`: the block whose bytes contain key + value. */
function recordBlock(device: Device, path: string, keyText: string): number {
  const key = parseKeyArg(keyText);
  const offset = findRecord(device, key);
  if (offset < 0) throw new DaxError('ENOENT', `${path}: no record of key ${keyText} found`);
  return device.blockAt(offset);
}

/** Device offset of the last occurrence of the key's bytes in the data area (the newest record). */
function findRecord(device: Device, key: Uint8Array): number {
  const bytes = Buffer.from(device.media.buffer, device.dataOffset, device.dataBlocks * device.blockSize);
  const at = bytes.lastIndexOf(Buffer.from(key));
  return at < 0 ? -1 : device.dataOffset + at;
}

export function runEnospc(path: string, o: { leave: number; json?: boolean }): number {
  const device = Device.open(openRegion(path, {}));
  let filled = 0;
  try {
    while (device.stats().freeBlocks > o.leave) {
      try {
        device.allocate(FILLER_OWNER, filled);
      } catch (e) {
        if (isDaxError(e, 'ENOSPC')) break;
        throw e;
      }
      filled++;
    }
    emit(
      o.json === true,
      { path, filledBlocks: filled, freeBlocks: device.stats().freeBlocks },
      () =>
        `${path}: ${filled} blocks filled, ${device.stats().freeBlocks} free (undo: daxstore check --repair ${path})`,
    );
    return EXIT_OK;
  } finally {
    device.close();
  }
}

export function runEio(path: string, o: { key: string; json?: boolean }): number {
  // Verify it is a key-value store with that key first (and recover it), then damage it.
  const kv = open(path);
  const key = parseKeyArg(o.key);
  const present = kv.has(key);
  kv.close();
  if (!present) throw new DaxError('ENOENT', `${path}: key ${o.key} is not in the store`);
  const device = Device.open(openRegion(path, {}));
  try {
    const offset = findRecord(device, key);
    const bytes = new Uint8Array(device.media.buffer);
    bytes[offset] ^= 0xff;
    device.media.persist(offset, 1);
    emit(
      o.json === true,
      { path, flippedOffset: offset },
      () => `${path}: flipped the byte at offset ${offset} (in the record of ${o.key}); recovery will drop that record`,
    );
    return EXIT_OK;
  } finally {
    device.close();
  }
}
