/**
 * Superblock: the device's geometry and state, in two copies (blocks 0 and 1).
 *
 * Fields, little-endian, at the start of each copy's 4 KiB block (the rest is zero):
 *   offset  type      field
 *   0       8 bytes   magic 'DAXSTOR\0'
 *   8       u32       formatVersion (= FORMAT_VERSION; 2: key-value records carry a directory
 *                     check and a durable watermark, SEAL records, checksummed large values;
 *                     3: the empty key is a key (entries of key length 0), the root area
 *                     holds the key-value root with the store's encodings; 4: owner records
 *                     carry check bytes; 5: so do the words of object-table records; 6: index
 *                     checkpoints, DAX objects at the top of the key-value object range,
 *                     src/kv/checkpoint.ts; 7: each key-value entry carries a back pointer to
 *                     the version it superseded; 8: the root area holds the msgpack shared
 *                     structures area, src/kv/structures.ts)
 *   12      u32       flags (none defined; must be 0)
 *   16      16 bytes  uuid (random at format)
 *   32      u64       sizeBytes (the store's size now: set at format, raised by each growth;
 *                     dataOffset + dataBlocks * 4096; the file may be longer, see layout.ts)
 *   40      u32       blockSize (4096)
 *   44      u32       reserved (0)
 *   48      u64       rootOffset
 *   56      u64       rootBytes
 *   64      u64       ownerTableOffset
 *   72      u64       ownerTableBytes
 *   80      u64       badBlockListOffset
 *   88      u64       badBlockCapacity (entries)
 *   96      u64       dataOffset (2 MiB aligned)
 *   104     u64       dataBlocks
 *   112     u32       cleanShutdown (1 = closed cleanly, 0 = open or crashed)
 *   116     u32       reserved (0)
 *   120     u64       sequence (bumped by every update; both copies get the same value)
 *   128     u64       checksum: xxh64 of bytes [0, 128)
 *
 * Invariants
 *   - At every instant at least one copy is valid (magic, version, checksum), because a
 *     copy is overwritten only while the other is durable and valid.
 *
 * Concurrency
 *   - Written by format, open and close on the opener and by a growth on any thread, one at a
 *     time under the device's growth lock (device.ts), each a read-modify-write of the newest copy.
 *
 * Persistence ordering
 *   - Update: write copy A, persist; then copy B, persist. A crash tears at most one copy;
 *     open() takes the valid copy with the highest sequence.
 */
import fs from 'node:fs';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { xxh64 } from './checksum.js';
import type { Media } from './media.js';
import { isBroken } from '../test-break.js';
import { SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET, type Geometry } from './layout.js';

/**
 * 2: records with a directory check and a durable watermark, SEAL records (src/kv/layout.ts).
 * 3: the empty key is a key; the key-value root with the store's encodings.
 * 4: owner records carry check bytes. 5: so do the words of object-table records.
 * 6: index checkpoints (src/kv/checkpoint.ts).
 * 7: key-value entries carry a back pointer (entry header of 24 bytes).
 * 8: the msgpack shared structures area in the root area (src/kv/structures.ts).
 * Version 7 still opens: its structures area is all zero (the empty set), and the open's
 * superblock update makes it 8 before anything can be written to that area. An older version
 * is refused as corrupt, a newer one with EVERSION.
 */
export const FORMAT_VERSION = 8;
/** The oldest format version this daxstore opens (upgrading it to FORMAT_VERSION at open). */
export const OLDEST_FORMAT_VERSION = 7;
export const MAGIC = new Uint8Array([0x44, 0x41, 0x58, 0x53, 0x54, 0x4f, 0x52, 0x00]); // 'DAXSTOR\0'
export const SUPERBLOCK_BYTES = 136;
const CHECKSUM_OFFSET = 128;

export interface Superblock extends Geometry {
  formatVersion: number;
  flags: number;
  uuid: Uint8Array;
  cleanShutdown: boolean;
  sequence: number;
}

export type CopyStatus =
  | { status: 'ok'; superblock: Superblock }
  | { status: 'no-magic' }
  | { status: 'newer'; formatVersion: number }
  | { status: 'corrupt'; reason: string };

const U64_FIELDS: Array<[keyof Geometry, number]> = [
  ['sizeBytes', 32],
  ['rootOffset', 48],
  ['rootBytes', 56],
  ['ownerTableOffset', 64],
  ['ownerTableBytes', 72],
  ['badBlockListOffset', 80],
  ['badBlockCapacity', 88],
  ['dataOffset', 96],
  ['dataBlocks', 104],
];

export function encodeSuperblock(sb: Superblock): Uint8Array {
  const bytes = new Uint8Array(SUPERBLOCK_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  view.setUint32(8, sb.formatVersion, true);
  view.setUint32(12, sb.flags, true);
  assert(sb.uuid.length === 16, 'uuid must be 16 bytes');
  bytes.set(sb.uuid, 16);
  for (const [field, offset] of U64_FIELDS) view.setBigUint64(offset, BigInt(sb[field]), true);
  view.setUint32(40, sb.blockSize, true);
  view.setUint32(112, sb.cleanShutdown ? 1 : 0, true);
  view.setBigUint64(120, BigInt(sb.sequence), true);
  view.setBigUint64(CHECKSUM_OFFSET, xxh64(bytes.subarray(0, CHECKSUM_OFFSET)), true);
  return bytes;
}

/** Decodes one copy; never throws on bad bytes (the caller decides what a bad copy means). */
export function decodeSuperblock(bytes: Uint8Array): CopyStatus {
  assert(bytes.length >= SUPERBLOCK_BYTES, 'superblock buffer too short');
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return { status: 'no-magic' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_BYTES);
  const formatVersion = view.getUint32(8, true);
  // A newer format may move anything, the checksum included: do not judge it further, unless
  // the copy's checksum holds with this format's version in place of the one read (a damaged
  // version field of a copy of this format, not a newer store).
  if (formatVersion > FORMAT_VERSION) {
    const asThis = bytes.slice(0, CHECKSUM_OFFSET);
    new DataView(asThis.buffer).setUint32(8, FORMAT_VERSION, true);
    if (view.getBigUint64(CHECKSUM_OFFSET, true) === xxh64(asThis))
      return { status: 'corrupt', reason: `format version field damaged (${formatVersion})` };
    return { status: 'newer', formatVersion };
  }
  if (view.getBigUint64(CHECKSUM_OFFSET, true) !== xxh64(bytes.subarray(0, CHECKSUM_OFFSET)))
    return { status: 'corrupt', reason: 'checksum mismatch' };
  if (formatVersion < OLDEST_FORMAT_VERSION) return { status: 'corrupt', reason: `format version ${formatVersion}` };
  const geometry = {} as Geometry;
  for (const [field, offset] of U64_FIELDS) {
    const value = view.getBigUint64(offset, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) return { status: 'corrupt', reason: `${field} ${value} out of range` };
    geometry[field] = Number(value);
  }
  geometry.blockSize = view.getUint32(40, true);
  const clean = view.getUint32(112, true);
  const flags = view.getUint32(12, true);
  if (clean > 1 || flags !== 0) return { status: 'corrupt', reason: `unknown flags ${flags} / cleanShutdown ${clean}` };
  const sequence = view.getBigUint64(120, true);
  if (sequence > BigInt(Number.MAX_SAFE_INTEGER))
    return { status: 'corrupt', reason: `sequence ${sequence} out of range` };
  return {
    status: 'ok',
    superblock: {
      ...geometry,
      formatVersion,
      flags,
      uuid: bytes.slice(16, 32),
      cleanShutdown: clean === 1,
      sequence: Number(sequence),
    },
  };
}

/** One copy, decoded; a copy whose page cannot be read (poison, EIO) is a corrupt copy. */
export function readCopy(media: Media, offset: number): CopyStatus {
  const bytes = new Uint8Array(SUPERBLOCK_BYTES);
  try {
    media.copyOut(offset, SUPERBLOCK_BYTES, bytes);
  } catch (e) {
    if (e instanceof DaxError && e.code === 'EIO') return { status: 'corrupt', reason: 'media error reading it' };
    throw e;
  }
  return decodeSuperblock(bytes);
}

/**
 * Picks the superblock to open from: the valid copy with the highest sequence.
 * Throws ENOTSTORE (no copy has the magic), EVERSION (a copy is of a newer format),
 * ECORRUPT (no valid copy). `repairNeeded` is true when one copy is bad or stale.
 */
export function chooseSuperblock(media: Media): { superblock: Superblock; repairNeeded: boolean } {
  const copies = [readCopy(media, SUPERBLOCK_A_OFFSET), readCopy(media, SUPERBLOCK_B_OFFSET)];
  if (copies.every((c) => c.status === 'no-magic'))
    throw new DaxError(
      'ENOTSTORE',
      `${media.path} is not a daxstore (no superblock magic at offsets ${SUPERBLOCK_A_OFFSET} and ${SUPERBLOCK_B_OFFSET})`,
    );
  for (const c of copies) {
    if (c.status === 'newer')
      throw new DaxError(
        'EVERSION',
        `${media.path}: format version ${c.formatVersion} is newer than this daxstore understands (${FORMAT_VERSION})`,
      );
  }
  const valid = copies.flatMap((c) => (c.status === 'ok' ? [c.superblock] : []));
  if (valid.length === 0) {
    const reasons = copies.map(
      (c, i) => `copy ${'AB'[i]} at ${i * SUPERBLOCK_B_OFFSET}: ${c.status === 'corrupt' ? c.reason : c.status}`,
    );
    throw new DaxError('ECORRUPT', `${media.path}: both superblock copies are invalid (${reasons.join('; ')})`);
  }
  const best = valid.reduce((a, b) => (b.sequence > a.sequence ? b : a));
  const repairNeeded = valid.length < 2 || valid[0].sequence !== valid[1].sequence;
  return { superblock: best, repairNeeded };
}

/**
 * Durably writes sb (with its sequence as given) to both copies, one after the other,
 * starting with the copy that is NOT the newest valid one: that copy stays intact until the
 * other is durable, so a crash inside this update leaves at least one valid copy even when
 * the other was already torn (a crash during close tears B; the next open must not then
 * overwrite A, the only good copy, first).
 */
export function writeSuperblock(media: Media, sb: Superblock): void {
  if (isBroken('superblock-single-persist')) return writeSuperblockOneFence(media, sb);
  const bytes = encodeSuperblock(sb);
  const working = new Uint8Array(media.buffer, 0, SUPERBLOCK_B_OFFSET + SUPERBLOCK_BYTES);
  for (const offset of writeOrder(media)) {
    working.set(bytes, offset);
    media.persist(offset, SUPERBLOCK_BYTES);
  }
}

/** writeSuperblock under DAXSTORE_TEST_BREAK=superblock-single-persist: both copies written, then one fence (a crash can tear both). */
function writeSuperblockOneFence(media: Media, sb: Superblock): void {
  const bytes = encodeSuperblock(sb);
  const working = new Uint8Array(media.buffer, 0, SUPERBLOCK_B_OFFSET + SUPERBLOCK_BYTES);
  working.set(bytes, SUPERBLOCK_A_OFFSET);
  working.set(bytes, SUPERBLOCK_B_OFFSET);
  media.flush(SUPERBLOCK_A_OFFSET, SUPERBLOCK_BYTES);
  media.flush(SUPERBLOCK_B_OFFSET, SUPERBLOCK_BYTES);
  media.drain();
}

/** Copy offsets in the order to overwrite them: the newest valid copy last. */
function writeOrder(media: Media): [number, number] {
  const a = readCopy(media, SUPERBLOCK_A_OFFSET);
  const b = readCopy(media, SUPERBLOCK_B_OFFSET);
  const aNewest = a.status === 'ok' && (b.status !== 'ok' || a.superblock.sequence >= b.superblock.sequence);
  return aNewest ? [SUPERBLOCK_B_OFFSET, SUPERBLOCK_A_OFFSET] : [SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET];
}

/**
 * The superblock of the store file at `path` read with read(2), before it is mapped (open
 * sizes its mapping by the store's capacity): the valid copy with the highest sequence, or
 * undefined when neither copy is valid (the open that follows then says why).
 */
export function peekSuperblock(path: string): Superblock | undefined {
  const bytes = new Uint8Array(SUPERBLOCK_B_OFFSET + SUPERBLOCK_BYTES);
  let fd: number | undefined;
  try {
    fd = fs.openSync(path, 'r');
    if (fs.readSync(fd, bytes, 0, bytes.length, 0) < bytes.length) return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  const valid = [SUPERBLOCK_A_OFFSET, SUPERBLOCK_B_OFFSET].flatMap((at) => {
    const c = decodeSuperblock(bytes.subarray(at));
    return c.status === 'ok' ? [c.superblock] : [];
  });
  return valid.length === 0 ? undefined : valid.reduce((a, b) => (b.sequence > a.sequence ? b : a));
}
