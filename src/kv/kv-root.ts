/**
 * The key-value store's root: the key and value encodings the store was created with, kept in
 * the device's root area (device/layout.ts) so that a store opened without encoding options
 * reads back what was written, and one opened with different ones is refused.
 *
 * Layout: two copies of KV_ROOT_BYTES at root-area offsets 0 and KV_ROOT_BYTES (the kv layer
 * owns root-area bytes [0, 2 * KV_ROOT_BYTES)), each little-endian:
 *   0   u32  magic 0x52564b44 ('DKVR')
 *   4   u32  version 1
 *   8   u8   key encoding: 1 binary, 2 utf8, 3 ordered
 *   9   u8   value encoding: 1 binary, 2 utf8, 3 json, 4 msgpack
 *   10  ...  zero
 *   56  u64  xxh64 of bytes [0, 56)
 *
 * Invariants: written once, by the opener of a store that has none (a new store, before any
 * record is written), and never changed. A copy counts only if its checksum, magic and
 * version agree.
 * Concurrency: read and written only by the opener, at open.
 * Persistence ordering: both copies are written and persisted before open() returns, so
 * before any record of the store can exist: a store with records always has its root.
 */
import { DaxError } from '../errors.js';
import { xxh64 } from '../device/checksum.js';
import type { Device } from '../device/device.js';
import { KEY_ENCODINGS, VALUE_ENCODINGS, type KeyEncoding, type ValueEncoding } from './encodings.js';

export const KV_ROOT_BYTES = 64;
const MAGIC = 0x52564b44;
const VERSION = 1;
const CHECKSUM_AT = 56;

export interface KvRoot {
  keyEncoding: KeyEncoding;
  valueEncoding: ValueEncoding;
}

/** The root as found: a valid copy, nothing (all zero: never written), or damage. */
export type KvRootState = { state: 'ok'; root: KvRoot } | { state: 'absent' } | { state: 'damaged'; reason: string };

export function readKvRoot(device: Device): KvRootState {
  const { offset } = device.root;
  const u8 = new Uint8Array(device.media.buffer, offset, 2 * KV_ROOT_BYTES).slice();
  const reasons: string[] = [];
  for (let copy = 0; copy < 2; copy++) {
    const bytes = u8.subarray(copy * KV_ROOT_BYTES, (copy + 1) * KV_ROOT_BYTES);
    const parsed = parseCopy(bytes);
    if (typeof parsed !== 'string') return { state: 'ok', root: parsed };
    reasons.push(`copy ${copy}: ${parsed}`);
  }
  if (u8.every((b) => b === 0)) return { state: 'absent' };
  return { state: 'damaged', reason: reasons.join('; ') };
}

function parseCopy(bytes: Uint8Array): KvRoot | string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) return 'no magic';
  if (view.getBigUint64(CHECKSUM_AT, true) !== xxh64(bytes.subarray(0, CHECKSUM_AT))) return 'checksum mismatch';
  if (view.getUint32(4, true) !== VERSION) return `version ${view.getUint32(4, true)}`;
  const keyEncoding = KEY_ENCODINGS[bytes[8] - 1];
  const valueEncoding = VALUE_ENCODINGS[bytes[9] - 1];
  if (keyEncoding === undefined || valueEncoding === undefined) return `unknown encoding ids ${bytes[8]}, ${bytes[9]}`;
  return { keyEncoding, valueEncoding };
}

/** Writes and persists both copies. */
export function writeKvRoot(device: Device, root: KvRoot): void {
  const bytes = new Uint8Array(KV_ROOT_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  bytes[8] = KEY_ENCODINGS.indexOf(root.keyEncoding) + 1;
  bytes[9] = VALUE_ENCODINGS.indexOf(root.valueEncoding) + 1;
  view.setBigUint64(CHECKSUM_AT, xxh64(bytes.subarray(0, CHECKSUM_AT)), true);
  const { offset, length } = device.root;
  if (length < 2 * KV_ROOT_BYTES)
    throw new DaxError('ENOTSUP', `open: the device's root area (${length} bytes) has no room for the kv root`);
  const media = device.media;
  const target = new Uint8Array(media.buffer, offset, 2 * KV_ROOT_BYTES);
  for (let copy = 0; copy < 2; copy++) {
    target.set(bytes, copy * KV_ROOT_BYTES);
    media.persist(offset + copy * KV_ROOT_BYTES, KV_ROOT_BYTES);
  }
}

/**
 * The encodings a store opens with: the recorded ones, unless `wanted` names others (EINVAL,
 * except 'binary', which reads and writes the raw bytes of any store); the wanted ones or the
 * defaults for a store that records none (written now, when `opener`).
 */
export function resolveEncodings(device: Device, wanted: Partial<KvRoot>, defaults: KvRoot, opener: boolean): KvRoot {
  const found = readKvRoot(device);
  const path = device.media.path;
  if (found.state === 'ok') {
    const r = found.root;
    for (const [name, have] of [
      ['keyEncoding', r.keyEncoding],
      ['valueEncoding', r.valueEncoding],
    ] as const) {
      const want = wanted[name];
      if (want !== undefined && want !== have && want !== 'binary')
        throw new DaxError(
          'EINVAL',
          `open: ${path} was created with ${name} '${have}'; open it with ${name} '${have}' (or omit it, or 'binary' for the raw bytes), not '${want}'`,
        );
    }
    return { keyEncoding: wanted.keyEncoding ?? r.keyEncoding, valueEncoding: wanted.valueEncoding ?? r.valueEncoding };
  }
  if (found.state === 'damaged' && (wanted.keyEncoding === undefined || wanted.valueEncoding === undefined))
    throw new DaxError(
      'ECORRUPT',
      `open: the encoding record of ${path} is damaged (${found.reason}); open it with both keyEncoding and valueEncoding to rewrite it`,
    );
  const root = {
    keyEncoding: wanted.keyEncoding ?? defaults.keyEncoding,
    valueEncoding: wanted.valueEncoding ?? defaults.valueEncoding,
  };
  if (opener) writeKvRoot(device, root);
  return root;
}
