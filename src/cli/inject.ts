/**
 * daxstore inject poison|enospc|eio: faults planted in a store file for users' own tests.
 *   poison  durably records a data block as bad (Device.poison): reads of it fail with EIO
 *   enospc  allocates blocks to a filler owner until N are left: later writes get ENOSPC
 *           (`daxstore check --repair` frees them again: the filler owner is unknown)
 *   eio     flips a byte of the value in the newest record of a key (two bytes of its key when
 *           the value is empty): past the exact one-byte corrections recovery makes in a
 *           record's directory, so recovery reports the record damaged and the key lost
 * Each opens the file for real (flock), changes it, and closes it cleanly.
 */
import { DaxError, isDaxError } from '../errors.js';
import { Device } from '../device/device.js';
import { open } from '../kv/index.js';
import { ENTRY_HEADER_BYTES, KV_KEY_PREFIX } from '../kv/layout.js';
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
  // By chunks from the end (a view ends at 4 GiB); chunks overlap by the key's length.
  const needle = Buffer.from(key);
  const end = device.dataOffset + device.dataBlocks * device.blockSize;
  const chunk = 2 ** 30;
  for (let to = end; to > device.dataOffset; to -= chunk) {
    const from = Math.max(device.dataOffset, to - chunk);
    const bytes = Buffer.from(device.media.buffer, from, Math.min(end, to + needle.length) - from);
    const at = bytes.lastIndexOf(needle);
    if (at >= 0) return from + at;
  }
  return -1;
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
  const kv = open(path, { keyEncoding: 'binary', valueEncoding: 'binary' });
  const key = parseKeyArg(o.key);
  let entryAt: number | undefined;
  let valueLength = 0;
  try {
    entryAt = kv.dax.tree.lookup(Uint8Array.of(KV_KEY_PREFIX, ...key));
    if (entryAt !== undefined) valueLength = new Uint32Array(kv.dax.device.media.buffer, entryAt, 2)[1];
  } finally {
    kv.close();
  }
  if (entryAt === undefined) throw new DaxError('ENOENT', `${path}: key ${o.key} is not in the store`);
  const device = Device.open(openRegion(path, {}));
  try {
    const keyAt = entryAt + ENTRY_HEADER_BYTES;
    const flipped = valueLength > 0 ? [keyAt + key.length] : [keyAt, entryAt + 8]; // a key byte and a sequence byte
    for (const at of flipped) {
      new Uint8Array(device.media.buffer, at, 1)[0] ^= 0xff;
      device.media.persist(at, 1);
    }
    emit(
      o.json === true,
      { path, flippedOffsets: flipped },
      () =>
        `${path}: flipped the byte(s) at offset ${flipped.join(', ')} (in the record of ${o.key}); recovery will find the record damaged`,
    );
    return EXIT_OK;
  } finally {
    device.close();
  }
}
