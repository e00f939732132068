/**
 * Offline access to a store file for info/dump/check: map it copy-on-write (openRegion
 * privateCopy: MAP_PRIVATE over a read-only descriptor; the flock is taken, so a store open
 * elsewhere is EBUSY) and open the key-value store on that mapping. Recovery runs on the
 * private pages, so nothing the tools do — recovery's frees, the superblock's open mark —
 * reaches the file, and memory grows only by the pages recovery writes, not by the store's
 * size. Device-DAX refuses MAP_PRIVATE: there the store is copied into memory (a SimMedia),
 * which needs RAM equal to its size (weak for a large /dev/dax).
 *
 * The superblock copies are read from the raw bytes: the format (superblock.ts) is not
 * part of the public API, so the few fields a checker needs are decoded here.
 */
import fs from 'node:fs';
import { DaxError } from '../errors.js';
import { xxh64 } from '../device/checksum.js';
import { createSimMedia } from '../device/sim-media.js';
import { openMedia, type KvStore } from '../kv/index.js';
import { openRegion } from '../device/region.js';
import { type Media, type MediaInfo } from '../device/media.js';

const SUPERBLOCK_OFFSETS = [0, 4096];
const MAGIC = 'DAXSTOR\0';
const CHECKSUM_OFFSET = 128;
const SEQUENCE_OFFSET = 120;
const CLEAN_OFFSET = 112;
const VERSION_OFFSET = 8;

export interface SuperblockCopy {
  copy: 'A' | 'B';
  offset: number;
  status: 'ok' | 'no-magic' | 'checksum-mismatch';
  sequence: number;
  /** the format version this copy says (meaningful when status is 'ok') */
  formatVersion: number;
  cleanShutdown: boolean;
}

export interface Snapshot {
  path: string;
  info: MediaInfo;
  superblocks: SuperblockCopy[];
  /** the private mapping (or, for device-DAX, an in-memory copy); openSnapshotStore's store closes it */
  media: Media;
}

/** Maps the store at `path` privately (see above). ENOENT / EBUSY / EIO as DaxErrors. Close with closeSnapshot or the store. */
export function takeSnapshot(path: string): Snapshot {
  if (!fs.existsSync(path)) throw new DaxError('ENOENT', `${path} does not exist`);
  const media = fs.statSync(path).isCharacterDevice() ? copyOfDevice(path) : openRegion(path, { privateCopy: true });
  try {
    const info: MediaInfo = {
      kind: media.kind,
      flushMethod: media.flushMethod,
      mapSync: media.mapSync,
      size: media.size,
      alignment: media.alignment,
      path,
    };
    const head = new Uint8Array(SUPERBLOCK_OFFSETS[1] + 4096);
    media.copyOut(0, head.length, head); // guarded: a poisoned superblock page is EIO, not a dead process
    return {
      path,
      info,
      superblocks: SUPERBLOCK_OFFSETS.map((offset, i) => decodeCopy(head, offset, i === 0 ? 'A' : 'B')),
      media,
    };
  } catch (e) {
    media.close();
    throw e;
  }
}

/** Device-DAX: a copy in memory (the whole device). */
function copyOfDevice(path: string): Media {
  const region = openRegion(path, {});
  try {
    const sim = createSimMedia(region.size, { name: path });
    region.copyOut(0, region.size, new Uint8Array(sim.buffer));
    return sim;
  } finally {
    region.close();
  }
}

export function closeSnapshot(snap: Snapshot): void {
  if (!snap.media.closed) snap.media.close();
}

/** Opens the key-value store on the snapshot (runs recovery on the copy). */
export function openSnapshotStore(snap: Snapshot): KvStore {
  try {
    return openMedia(snap.media, {
      formatIfEmpty: false,
      durability: 'none',
      checkpoint: false, // its close writes nothing a later open would read (a private copy)
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
  } catch (e) {
    closeSnapshot(snap);
    throw e;
  }
}

function decodeCopy(bytes: Uint8Array, offset: number, copy: 'A' | 'B'): SuperblockCopy {
  const block = bytes.subarray(offset, offset + CHECKSUM_OFFSET + 8);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const base = {
    copy,
    offset,
    sequence: Number(view.getBigUint64(SEQUENCE_OFFSET, true)),
    formatVersion: view.getUint32(VERSION_OFFSET, true),
    cleanShutdown: view.getUint32(CLEAN_OFFSET, true) === 1,
  };
  if (Buffer.from(block.subarray(0, 8)).toString('latin1') !== MAGIC) return { ...base, status: 'no-magic' };
  const sum = xxh64(block.subarray(0, CHECKSUM_OFFSET));
  return { ...base, status: sum === view.getBigUint64(CHECKSUM_OFFSET, true) ? 'ok' : 'checksum-mismatch' };
}

/** Problems with the two copies: a bad one, or two good ones that disagree (a torn update). */
export function superblockProblems(copies: readonly SuperblockCopy[]): string[] {
  const out = copies
    .filter((c) => c.status !== 'ok')
    .map((c) => `superblock copy ${c.copy} at offset ${c.offset}: ${c.status}`);
  const good = copies.filter((c) => c.status === 'ok');
  if (good.length === 2 && good[0].sequence !== good[1].sequence)
    out.push(`superblock copies disagree: sequence ${good[0].sequence} (A) vs ${good[1].sequence} (B) (torn update)`);
  return out;
}
