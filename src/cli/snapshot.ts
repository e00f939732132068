/**
 * Offline access to a store file for info/dump/check: map it (openRegion takes the flock,
 * so a store open elsewhere is EBUSY, and writes nothing), copy it into a SimMedia, close
 * the file, and open the key-value store on the copy. Recovery runs on the copy, so nothing
 * the tools do — recovery's frees, the superblock's open mark — reaches the file.
 *
 * The superblock copies are read from the raw bytes: the format (superblock.ts) is not
 * part of the public API, so the few fields a checker needs are decoded here.
 * Weak: the copy needs the store's size in memory; fine for files, not for a 1 TiB /dev/dax.
 */
import fs from 'node:fs';
import xxhash from 'xxhash-wasm';
import { DaxError, createSimMedia, openMedia, openRegion, type KvStore, type MediaInfo, type SimMedia } from '../index.js';

const hasher = await xxhash();

const SUPERBLOCK_OFFSETS = [0, 4096];
const MAGIC = 'DAXSTOR\0';
const CHECKSUM_OFFSET = 128;
const SEQUENCE_OFFSET = 120;
const CLEAN_OFFSET = 112;

export interface SuperblockCopy {
  copy: 'A' | 'B';
  offset: number;
  status: 'ok' | 'no-magic' | 'checksum-mismatch';
  sequence: number;
  cleanShutdown: boolean;
}

export interface Snapshot {
  path: string;
  info: MediaInfo;
  superblocks: SuperblockCopy[];
  sim: SimMedia;
}

/** Reads the whole store at `path` into memory. ENOENT / EBUSY / EIO as DaxErrors. */
export function takeSnapshot(path: string): Snapshot {
  if (!fs.existsSync(path)) throw new DaxError('ENOENT', `${path} does not exist`);
  const region = openRegion(path, {});
  try {
    const info: MediaInfo = { kind: region.kind, flushMethod: region.flushMethod, mapSync: region.mapSync, size: region.size, alignment: region.alignment, path };
    const sim = createSimMedia(region.size, { name: path });
    const bytes = new Uint8Array(sim.buffer);
    region.copyOut(0, region.size, bytes);
    return { path, info, superblocks: SUPERBLOCK_OFFSETS.map((offset, i) => decodeCopy(bytes, offset, i === 0 ? 'A' : 'B')), sim };
  } finally {
    region.close();
  }
}

/** Opens the key-value store on the snapshot (runs recovery on the copy). */
export function openSnapshotStore(snap: Snapshot): KvStore {
  return openMedia(snap.sim, { formatIfEmpty: false, durability: 'none' });
}

function decodeCopy(bytes: Uint8Array, offset: number, copy: 'A' | 'B'): SuperblockCopy {
  const block = bytes.subarray(offset, offset + CHECKSUM_OFFSET + 8);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const base = { copy, offset, sequence: Number(view.getBigUint64(SEQUENCE_OFFSET, true)), cleanShutdown: view.getUint32(CLEAN_OFFSET, true) === 1 };
  if (Buffer.from(block.subarray(0, 8)).toString('latin1') !== MAGIC) return { ...base, status: 'no-magic' };
  const sum = hasher.h64Raw(block.subarray(0, CHECKSUM_OFFSET), 0n);
  return { ...base, status: sum === view.getBigUint64(CHECKSUM_OFFSET, true) ? 'ok' : 'checksum-mismatch' };
}

/** Problems with the two copies: a bad one, or two good ones that disagree (a torn update). */
export function superblockProblems(copies: readonly SuperblockCopy[]): string[] {
  const out = copies.filter((c) => c.status !== 'ok').map((c) => `superblock copy ${c.copy} at offset ${c.offset}: ${c.status}`);
  const good = copies.filter((c) => c.status === 'ok');
  if (good.length === 2 && good[0].sequence !== good[1].sequence) out.push(`superblock copies disagree: sequence ${good[0].sequence} (A) vs ${good[1].sequence} (B) (torn update)`);
  return out;
}
