/**
 * Index checkpoints: at a clean close the store writes what the next open needs to serve
 * without reading the whole log (every live key in key order with its entry's offset, and
 * where each segment's records ended), and the next open loads it and scans only the log
 * written after it.
 *
 * Layout: one DAX object of the space per checkpoint, id CHECKPOINT_ID_FIRST + generation
 * (the top of the key-value object range, which large values never reach: large-values.ts).
 * Byte offsets, little-endian:
 *   0    u64  XXH3-64 of bytes [8, totalBytes)
 *   8    u32  CHECKPOINT_MAGIC
 *   12   u32  CHECKPOINT_VERSION
 *   16   16 B the store's uuid (superblock): a checkpoint copied from another store never matches
 *   32   f64  generation           40  f64 totalBytes        48  f64 maxSequence (highest covered)
 *   56   f64  keys                 64  f64 keyBytes          72  f64 segments
 *   80   f64  records covered      88  f64 entries covered
 *   96   f64  image words          104 f64 image origin      112 f64 image root   120 f64 image inner
 *   128  segments x SEGMENT_SLOTS f64: head block, nonce, used (bytes of records from the
 *        segment's start), offset in the segment of its last record (-1: none), that
 *        record's checksum word (two u32 as two f64), the XXH3-64 of the segment's bytes
 *        [0, used) (two u32 as two f64), the records and the entries in them
 *   then keys x f64 entry offsets, keys x u16 index-key lengths (padded to 8), then either the
 *        image of the index's tree of those keys (src/index/tree-image.ts: image words x u32,
 *        the blocks back to back, the leaves first, in key order, pointers counted from the
 *        image origin, the word its first block was built at), whose leaves hold the keys, or
 *        (image words 0: a checkpoint an older build took while running) the index keys back
 *        to back in key order (padded to 8). A checkpoint taken at close builds its image on
 *        the closing thread (imageOf), one taken while running on a thread of its own (ImageBuild).
 * An open loads the image (one copy and a pass over its inner nodes) instead of bulk-loading
 * the columns, a tail that adds and removes few keys applied to it (recovery.ts imageTail); the
 * columns serve the merge with a tail, a checkpoint loaded without freed segments, and the
 * segment estimate, their keys read from the image's leaves
 * (readCheckpoint: each leaf's place follows from the lengths, addon leafKeyStarts). Both are
 * built from the same walk and covered by the one checksum.
 * An older store opened by a build without checkpoints sees a key-value object no key
 * references and removes it at open (large-values.ts collectOrphans): harmless, the next
 * open scans the whole log.
 *
 * Invariants
 *   - A checkpoint is trusted only if: its checksum holds, magic and version are these, the
 *     uuid is this store's, and for every segment it lists the same segment (block and nonce)
 *     is still owned and its last covered record is still there with the same checksum word
 *     ending at `used`. Otherwise it is ignored (the reason goes to stats().recovery) and the
 *     open scans the whole log. A segment it lists that was freed or reused since (compaction,
 *     a clear) is left out, with every key whose entry lies in it (withoutSegments): compaction
 *     moved the entries the index still needed into the tail first. Records appended after
 *     `used`, and segments it does not list, are the tail.
 *   - Even then, every byte it covers is checked before it is loaded: each listed segment's
 *     bytes [0, used) must hash to the XXH3-64 it stores (recovery.ts verifyCovered); a
 *     mismatch sends open to the full scan, which reports or refuses the damage as it would
 *     without a checkpoint. A stored hash vouches only for records that were checked whole
 *     (header, nonce, xxh64, entries fitting; records.ts) in the very read that hashed them
 *     (hashSegments): a segment the checkpoint loaded at open lists with the same block, nonce
 *     and `used` keeps that checkpoint's hash (verified against its bytes at open; the records
 *     below `used` never change), and so does a segment a full scan at open read whole and
 *     clean (the hash of the copy its records were checked in: recovery.ts vouchFor); every
 *     other segment's records [0, used) are checked and
 *     hashed when the checkpoint is written. So damage to covered records while the store is
 *     closed, or while it runs, is found at the next open (or when the next checkpoint checks
 *     them: then none is written).
 *   - The tail is scanned like any segment (checksums, resync, torn tails), from `used` with
 *     `used` as the durable watermark, and its winners merged over the checkpoint's: a key's
 *     newest entry wins by the same order as a full scan's (recovery-native.ts mergeColumns),
 *     so the index after a checkpoint load equals the index after a full scan.
 *   - At close: written only by the opener, after everything is durable and with no other
 *     writer appending (checked): the checkpoint covers exactly the log as it is then.
 *   - While running (store.ts checkpointSteps, coverRunning, walkStep): it covers, per
 *     segment, the whole records whose entries all have sequences <= S (a snapshot), made
 *     durable, and holds each key's version at S, which must lie in what it covers: its keys
 *     are the winners of the records it covers, as at close (docs/ARCHITECTURE.md).
 *
 * Persistence ordering: the new checkpoint object is written whole and durable (DaxObject
 * write) under a fresh id before the older ones are removed. A crash in between leaves two;
 * open takes the highest generation that validates. A crash inside the write leaves one that
 * fails its checksum (or is shorter than it claims): ignored and removed.
 */
import type { DaxSpace } from '../dax/space.js';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { native, prefaultInBackground, returnCodeError } from '../native/addon.js';
import {
  type SegmentCheckJob,
  type SegmentVerdict,
  checkSegmentsInBackground,
  scratchBytes,
  verifySegments,
} from './recovery-native.js';
import { isBroken, testHooks } from '../test-break.js';
import { BLOCK_BYTES, HUGE_BLOCKS } from '../device/layout.js';
import type { DaxObject } from '../dax/object.js';
import { HUGE_PAGES, PAGE_BYTES, blockOfValue, isHuge } from '../dax/layout.js';
import { lookupCoveringPinned } from '../dax/fault.js';
import {
  KV_KEY_PREFIX,
  OWNER_KV_SEGMENT,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  RETIRED_HEAD_WORD,
  SEGMENT_BYTES,
} from './layout.js';
import type { MediaViews } from './records.js';
import { isDeletion } from './versions.js';
import { type TreeImage, buildTreeImage } from '../index/tree-image.js';

/** Object ids [CHECKPOINT_ID_FIRST, 2^40): generation g is id CHECKPOINT_ID_FIRST + g. */
export const CHECKPOINT_ID_FIRST = 2 ** 40 - 2 ** 20;
const CHECKPOINT_ID_END = 2 ** 40;
export const CHECKPOINT_MAGIC = 0x4b43_4b44; // "DKCK"
export const CHECKPOINT_VERSION = 4;
export const CHECKPOINT_HEADER_BYTES = 128;
const SEGMENT_SLOTS = 10;
const H_MAGIC = 8;
const H_VERSION = 12;
const H_UUID = 16;
const H_GENERATION = 32;
const H_TOTAL = 40;
const H_MAX_SEQUENCE = 48;
const H_KEYS = 56;
const H_KEY_BYTES = 64;
const H_SEGMENTS = 72;
const H_RECORDS = 80;
const H_ENTRIES = 88;
const H_IMAGE_WORDS = 96;
const H_IMAGE_ORIGIN = 104;
const H_IMAGE_ROOT = 112;
const H_IMAGE_INNER = 120;

/** Where one segment's records ended when the checkpoint was taken. */
export interface SegmentEnd {
  readonly block: number;
  readonly nonce: number;
  /** bytes of records from the segment's start */
  readonly used: number;
  /** offset in the segment of the last record, -1 when there is none */
  readonly lastAt: number;
  readonly lastSumLo: number;
  readonly lastSumHi: number;
}

/** A segment as a checkpoint lists it: where its records ended, and what vouches for them. */
export interface CheckpointSegment extends SegmentEnd {
  /** the XXH3-64 of the segment's bytes [0, used), as two u32: taken of records checked whole (hashSegments) */
  readonly hashLo: number;
  readonly hashHi: number;
  /** the records in [0, used), and the entries in them */
  readonly records: number;
  readonly entries: number;
}

/** A checkpoint read and checked whole (header, checksum, uuid): its coverage is checked by `coverage`. */
export interface LoadedCheckpoint {
  readonly generation: number;
  readonly maxSequence: number;
  readonly keys: number;
  readonly records: number;
  readonly entries: number;
  readonly segments: CheckpointSegment[];
  readonly values: Float64Array;
  readonly starts: Uint32Array;
  readonly lengths: Uint16Array;
  readonly keyBytes: Uint8Array;
  /** the tree of the columns' keys (a view of the checkpoint); undefined once keys were left out (withoutSegments) */
  readonly image: TreeImage | undefined;
  readonly bytes: number;
  /** its columns are views of the mapping (inPlace), not of a copy */
  readonly inPlace: boolean;
}

export function isCheckpointId(id: number): boolean {
  return id >= CHECKPOINT_ID_FIRST && id < CHECKPOINT_ID_END;
}

/** Ids of the checkpoint objects in the space, highest generation first. */
export function checkpointIds(space: DaxSpace): number[] {
  return space.objects
    .liveIds()
    .filter(isCheckpointId)
    .sort((a, b) => b - a);
}

const sum = new Uint32Array(2);

/** DAXSTORE_CHECKPOINT_COPY=1 (an A/B knob, docs/TESTING.md): open copies the checkpoint out of the mapping (readObject) even where it can be read in place. */
const CHECKPOINT_COPY = process.env['DAXSTORE_CHECKPOINT_COPY'] === '1';

/** DAXSTORE_CHECKPOINT_SMALL_PAGES=1 (an A/B knob, docs/TESTING.md): a checkpoint's 2 MiB extents are written without first being made huge pages (writeObject). */
const COLLAPSE = process.env['DAXSTORE_CHECKPOINT_SMALL_PAGES'] !== '1';

/** xxh64 (a record's checksum) of the bytes, or with `xxh3` their XXH3-64 (a checkpoint's). */
function hash(bytes: Uint8Array, offset: number, length: number, xxh3 = false): Uint32Array {
  const rc = native().hashRange(bytes, offset, length, sum, xxh3);
  assert(rc === 0, () => `hashRange: ${rc}`);
  return sum;
}

/**
 * Reads checkpoint object `id` and checks it whole: undefined and the reason when it cannot
 * be trusted for this store (damaged, torn, another store's, another version). `early`, when
 * given, gets the segment list as it reads before the checksum is taken (its header's sizes
 * adding up, its bytes read under the SIGBUS guard), the checkpoint's bytes when they are
 * read in place (a view of the mapping the checksum is about to read through) and its image's
 * words as its header gives them (at most its size over 4), so the caller can start work on
 * them while the checksum runs; that list is unchecked and may hold anything (recovery.ts uses it only
 * once the checkpoint passed, and only when the checked list is the same).
 */
export function readCheckpoint(
  space: DaxSpace,
  v: MediaViews,
  id: number,
  uuid: Uint8Array,
  early?: (segments: CheckpointSegment[], bytes: Uint8Array | undefined, imageWords: number) => void,
): { checkpoint: LoadedCheckpoint } | { reason: string } {
  const obj = space.object(id);
  const name = `checkpoint ${id - CHECKPOINT_ID_FIRST}`;
  const objectSize = obj.size;
  if (objectSize < CHECKPOINT_HEADER_BYTES) return { reason: `${name}: ${objectSize} bytes, torn` };
  let bytes: Uint8Array;
  const mapped = CHECKPOINT_COPY ? undefined : inPlace(space, v, obj, objectSize);
  try {
    bytes = mapped ?? readObject(space, obj, objectSize);
  } catch (e) {
    if (e instanceof DaxError && e.code === 'EIO') return { reason: `${name}: ${e.message}` };
    throw e;
  }
  // In place (inPlace) the header is first read under the SIGBUS guard: a media error the
  // bad-block list does not know makes the checkpoint unusable, not the process dead.
  if (native().hashRange(bytes, 0, CHECKPOINT_HEADER_BYTES, sum) !== 0)
    return { reason: `${name}: media error (SIGBUS) reading it` };
  let dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(H_MAGIC, true) !== CHECKPOINT_MAGIC) return { reason: `${name}: bad magic, damaged or torn` };
  const version = dv.getUint32(H_VERSION, true);
  if (version !== CHECKPOINT_VERSION)
    return { reason: `${name}: version ${version}, this build reads ${CHECKPOINT_VERSION}` };
  const size = dv.getFloat64(H_TOTAL, true);
  if (!(Number.isSafeInteger(size) && size >= CHECKPOINT_HEADER_BYTES + 8 && size <= objectSize))
    return { reason: `${name}: its header gives size ${size} in an object of ${objectSize} bytes: damaged` };
  bytes = bytes.subarray(0, size);
  dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (early !== undefined) {
    const list = uncheckedSegments(bytes, dv);
    if (list !== undefined) early(list, mapped === undefined ? undefined : bytes, dv.getFloat64(H_IMAGE_WORDS, true));
  }
  // In place (inPlace), the first read of the rest of the object's bytes, guarded likewise.
  if (
    (mapped !== undefined && isBroken('kv-checkpoint-in-place-unhashed')) ||
    isBroken('kv-checkpoint-image-unhashed')
  ) {
    sum[0] = dv.getUint32(0, true);
    sum[1] = dv.getUint32(4, true);
  } else if (native().hashRange(bytes, 8, size - 8, sum, true) !== 0)
    return { reason: `${name}: media error (SIGBUS) reading it` };
  if (sum[0] !== dv.getUint32(0, true) || sum[1] !== dv.getUint32(4, true))
    return { reason: `${name}: checksum mismatch, damaged` };
  if (!Buffer.from(bytes.subarray(H_UUID, H_UUID + 16)).equals(uuid))
    return { reason: `${name}: from another store (uuid)` };
  if (dv.getFloat64(H_GENERATION, true) !== id - CHECKPOINT_ID_FIRST)
    return { reason: `${name}: generation does not match its id` };
  const keys = dv.getFloat64(H_KEYS, true);
  const keyBytes = dv.getFloat64(H_KEY_BYTES, true);
  const segmentCount = dv.getFloat64(H_SEGMENTS, true);
  const imageWords = dv.getFloat64(H_IMAGE_WORDS, true);
  const layout = checkpointLayout(segmentCount, keys, keyBytes, imageWords);
  if (layout.total !== size) return { reason: `${name}: sizes in its header do not add up` };
  const segments = segmentsAt(bytes, layout.segments, segmentCount);
  const lengths = new Uint16Array(bytes.buffer, bytes.byteOffset + layout.lengths, keys);
  const imageInner = dv.getFloat64(H_IMAGE_INNER, true);
  // Loops run once over a million keys (cold in JavaScript): the keys back to back (their
  // starts written in the pass that sums their lengths), or each in its leaf of the image (the
  // leaves lie first in it, back to back in key order). With an image only their extent is
  // checked here; where each key lies is worked out when the columns are first read (a tail to
  // merge, segments freed since): a clean reopen loads the image and never reads them.
  const newStarts = (): Uint32Array => new Uint32Array(columnScratch(keys * 4).buffer, 0, keys); // huge pages when big: see ColumnBuilder
  let starts: Uint32Array | undefined;
  let at: number;
  if (imageWords === 0) {
    starts = newStarts();
    at = native().columnStarts(lengths, starts, keys);
    assert(at >= 0, () => `${name}: key starts: ${at}`);
  } else at = native().leafKeyStarts(lengths, null, keys);
  const keyStarts = (): Uint32Array => {
    if (starts !== undefined) return starts;
    starts = newStarts();
    const rc = native().leafKeyStarts(lengths, starts, keys);
    assert(rc >= 0, () => `${name}: key starts: ${rc}`);
    return starts;
  };
  if (imageWords === 0 ? at !== keyBytes : !(at >= 0 && at <= imageInner && imageInner <= imageWords))
    return { reason: `${name}: key lengths do not add up` };
  const imageBytes = new Uint8Array(bytes.buffer, bytes.byteOffset + layout.image, imageWords * 4);
  return {
    checkpoint: {
      generation: id - CHECKPOINT_ID_FIRST,
      maxSequence: dv.getFloat64(H_MAX_SEQUENCE, true),
      keys,
      records: dv.getFloat64(H_RECORDS, true),
      entries: dv.getFloat64(H_ENTRIES, true),
      segments,
      values: new Float64Array(bytes.buffer, bytes.byteOffset + layout.values, keys),
      get starts(): Uint32Array {
        return keyStarts();
      },
      lengths,
      keyBytes: imageWords === 0 ? new Uint8Array(bytes.buffer, bytes.byteOffset + layout.keys, keyBytes) : imageBytes,
      image:
        imageWords === 0 && keys > 0
          ? undefined
          : {
              bytes: imageBytes,
              words: imageWords,
              origin: dv.getFloat64(H_IMAGE_ORIGIN, true),
              root: dv.getFloat64(H_IMAGE_ROOT, true),
              inner: imageInner,
              leaves: keys,
            },
      bytes: size,
      inPlace: mapped !== undefined,
    },
  };
}

/** The segment list of checkpoint bytes `bytes` (read from offset `at`, `count` of them). */
function segmentsAt(bytes: Uint8Array, at: number, count: number): CheckpointSegment[] {
  const segments: CheckpointSegment[] = [];
  const seg = new Float64Array(bytes.buffer, bytes.byteOffset + at, count * SEGMENT_SLOTS);
  for (let i = 0; i < count; i++) {
    const w = i * SEGMENT_SLOTS;
    segments.push({
      block: seg[w],
      nonce: seg[w + 1],
      used: seg[w + 2],
      lastAt: seg[w + 3],
      lastSumLo: seg[w + 4],
      lastSumHi: seg[w + 5],
      hashLo: seg[w + 6],
      hashHi: seg[w + 7],
      records: seg[w + 8],
      entries: seg[w + 9],
    });
  }
  return segments;
}

/**
 * The segment list of checkpoint bytes `bytes` (its header's total already checked against
 * the object) before its checksum is taken: undefined when the header's sizes do not add up to
 * its total, or reading the header and the list hits a media error (read under the SIGBUS
 * guard: the list may lie in the mapping). Nothing in it is checked (readCheckpoint `early`).
 */
function uncheckedSegments(bytes: Uint8Array, dv: DataView): CheckpointSegment[] | undefined {
  const count = dv.getFloat64(H_SEGMENTS, true);
  const layout = checkpointLayout(
    count,
    dv.getFloat64(H_KEYS, true),
    dv.getFloat64(H_KEY_BYTES, true),
    dv.getFloat64(H_IMAGE_WORDS, true),
  );
  if (!(Number.isSafeInteger(count) && count >= 0) || layout.total !== bytes.length || layout.values > bytes.length)
    return undefined;
  if (native().hashRange(bytes, 0, layout.values, sum) !== 0) return undefined;
  return segmentsAt(bytes, layout.segments, count);
}

/** The checksum of checkpoint bytes `bytes` (XXH3-64 of [8, its length)) written into its first 8 bytes (publishCheckpoint; tests reseal edited checkpoints with it). */
export function sealCheckpoint(bytes: Uint8Array): void {
  const s = hash(bytes, 8, bytes.length - 8, true);
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  dv.setUint32(0, s[0], true);
  dv.setUint32(4, s[1], true);
}

/** Where each part of a checkpoint begins (byte offsets), and its total size. */
export function checkpointLayout(
  segments: number,
  keys: number,
  keyBytes: number,
  imageWords: number,
): { segments: number; values: number; lengths: number; keys: number; image: number; total: number } {
  const s = CHECKPOINT_HEADER_BYTES;
  const values = s + segments * SEGMENT_SLOTS * 8;
  const lengths = values + keys * 8;
  const k = lengths + Math.ceil((keys * 2) / 8) * 8;
  // With an image, the keys are its leaves'; without, back to back.
  const image = imageWords > 0 ? k : k + Math.ceil(keyBytes / 8) * 8;
  return { segments: s, values, lengths, keys: k, image, total: image + imageWords * 4 };
}

/**
 * Whether the log still holds what the checkpoint covers. Every segment it lists is either
 * still owned with the same nonce, and then its last covered record must be in place (same
 * checksum word) ending at `used` (else it is stale: the reason), or freed or reused since
 * (compaction, a clear): such segments are `gone`, and loading goes on without them
 * (withoutSegments): compaction moved each entry of theirs the index still needed into a
 * segment written after the checkpoint, so into the tail, with its sequence.
 */
export function coverageProblem(
  space: DaxSpace,
  v: MediaViews,
  cp: LoadedCheckpoint,
  owned: ReadonlyMap<number, number>,
): { problem: string } | { gone: Set<number> } {
  const gone = new Set<number>();
  if (isBroken('kv-checkpoint-trust-stale')) return { gone };
  const device = space.device;
  for (const s of cp.segments) {
    const nonce = owned.get(s.block);
    if (nonce !== s.nonce) {
      gone.add(s.block); // freed, or reused under another nonce (its new records are tail)
      continue;
    }
    // Only offsets of this segment's records are read, and only its bytes hashed (a list under a
    // valid checksum may still be forged or written by a bug: never a read outside the segment).
    const outside = (): { problem: string } => ({
      problem: `checkpoint ${cp.generation} lists the segment at block ${s.block} with records outside it`,
    });
    if (!(Number.isInteger(s.used) && s.used >= 0 && s.used <= SEGMENT_BYTES)) return outside();
    if (s.lastAt < 0) continue;
    if (!(Number.isInteger(s.lastAt) && s.lastAt % 8 === 0 && s.lastAt + RECORD_HEADER_BYTES <= SEGMENT_BYTES))
      return outside();
    const at = device.blockOffset(s.block) + s.lastAt;
    if (device.poisonedBlocks !== 0 && device.isPoisoned(device.blockAt(at)))
      return { problem: `segment at block ${s.block}: its last covered record is in a poisoned block` };
    const win = v.at(at); // the segment lies inside one window
    const u32 = win.u32;
    const w = (at - win.base) / 4;
    if (
      u32[w] !== s.lastSumLo ||
      u32[w + 1] !== s.lastSumHi ||
      (u32[w + 3] & 0xffff) !== RECORD_MAGIC ||
      s.lastAt + u32[w + 4] !== s.used
    )
      return {
        problem: `stale: the last record checkpoint ${cp.generation} covers in the segment at block ${s.block} is not there`,
      };
  }
  return { gone };
}

/**
 * The checkpoint without the segments in `gone` and without the keys whose entries lie in
 * them (a loop over every key, run only when compaction freed a covered segment since);
 * `dropped` receives those keys' index keys (latin1 strings: the log after the checkpoint
 * holds compaction's copies of their entries, which the merge must take: droppedKeysOnly).
 */
export function withoutSegments(
  space: DaxSpace,
  cp: LoadedCheckpoint,
  gone: ReadonlySet<number>,
  dropped: Set<string>,
): LoadedCheckpoint {
  const device = space.device;
  const n = cp.keys;
  const values = new Float64Array(n);
  const lengths = new Uint16Array(n);
  const starts = new Uint32Array(n);
  const keyBytes = new Uint8Array(cp.keyBytes.length);
  let m = 0;
  let kb = 0;
  for (let i = 0; i < n; i++) {
    const at = cp.values[i];
    const b = device.blockAt(at);
    const len = cp.lengths[i];
    if (gone.has(b - (b % HUGE_BLOCKS))) {
      dropped.add(latin1(cp.keyBytes, cp.starts[i], len));
      continue;
    }
    keyBytes.set(cp.keyBytes.subarray(cp.starts[i], cp.starts[i] + len), kb);
    values[m] = at;
    lengths[m] = len;
    starts[m] = kb;
    kb += len;
    m++;
  }
  return {
    ...cp,
    segments: cp.segments.filter((s) => !gone.has(s.block)),
    keys: m,
    values: values.subarray(0, m),
    lengths: lengths.subarray(0, m),
    starts: starts.subarray(0, m),
    keyBytes: keyBytes.subarray(0, kb),
    image: undefined,
  };
}

/**
 * Where each segment's records end: [used, lastAt, lastSum] from hopping record headers
 * (magic, length, nonce) to the end marker: from the end the loaded checkpoint knew (`known`),
 * else from the segment's start in a copy read with read(2) where the media can (recovery.ts
 * readSegment says why). Records here were written or recovered by this process and are
 * durable: their checksums are not checked again.
 */
function segmentEnd(
  space: DaxSpace,
  v: MediaViews,
  block: number,
  nonce: number,
  known: CheckpointSegment | undefined,
  scratch: Uint8Array,
  scratch32: Uint32Array,
): SegmentEnd {
  const device = space.device;
  const base = device.blockOffset(block);
  const win = v.at(base); // the segment lies inside one window
  let u32 = win.u32;
  let origin = (base - win.base) / 4;
  let at = 0;
  let lastAt = -1;
  if (known !== undefined && known.nonce === nonce) {
    // Known at open (the checkpoint loaded): hop on from its end, through the mapping (pages
    // this process wrote, if anything was appended), unless its end marker is still there.
    const w = origin + known.used / 4;
    if (known.used + RECORD_HEADER_BYTES > SEGMENT_BYTES || (u32[w] | u32[w + 1] | u32[w + 2] | u32[w + 3]) === 0)
      return known;
    at = known.used;
    lastAt = known.lastAt;
  } else if (
    device.media.readInto !== undefined &&
    device.poisonedBlocks === 0 &&
    device.media.readInto(base, SEGMENT_BYTES, scratch, 0) === 0
  ) {
    u32 = scratch32;
    origin = 0;
  }
  const lo = nonce >>> 0;
  const hi = Math.floor(nonce / 2 ** 32);
  while (at + RECORD_HEADER_BYTES <= SEGMENT_BYTES) {
    const w = origin + at / 4;
    if (u32[w] === 0 && u32[w + 1] === 0 && u32[w + 2] === 0 && u32[w + 3] === 0) break;
    const total = u32[w + 4];
    if ((u32[w + 3] & 0xffff) !== RECORD_MAGIC || total < RECORD_HEADER_BYTES || total % 8 !== 0) break;
    if (at + total > SEGMENT_BYTES || u32[w + 6] !== lo || (u32[w + 7] & 0xff) !== hi) break;
    lastAt = at;
    at += total;
  }
  // nothing new hopped over (from the end `known` gave, in the same segment life)
  if (known !== undefined && known.nonce === nonce && lastAt >= 0 && lastAt < known.used) return { ...known, used: at };
  return segmentEndAt(block, nonce, at, lastAt, u32, origin);
}

/** A segment's end at `used`, with the checksum words of its last record at `lastAt` (-1: none), read from `u32` (the segment starting at word `origin`). */
function segmentEndAt(
  block: number,
  nonce: number,
  used: number,
  lastAt: number,
  u32: Uint32Array,
  origin: number,
): SegmentEnd {
  const w = origin + lastAt / 4;
  return {
    block,
    nonce,
    used,
    lastAt,
    lastSumLo: lastAt < 0 ? 0 : u32[w],
    lastSumHi: lastAt < 0 ? 0 : u32[w + 1],
  };
}

export interface CheckpointWritten {
  generation: number;
  keys: number;
  bytes: number;
  /** log segments whose records it read and checked (hashSegments); the others kept the hashes taken before */
  segmentsChecked: number;
  timeMs: number;
  /**
   * a clean close wrote none: the newest checkpoint (this one) already covers the whole log as
   * it is (logUnchangedSince), so one written now would hold the same index of the same log
   */
  kept?: true;
}

/** The index keys in key order with their entry offsets: what a checkpoint stores of the index. */
export interface CheckpointColumns {
  count: number;
  values: Float64Array;
  lengths: Uint16Array;
  keys: Uint8Array;
  keyBytes: number;
}

/**
 * Growable columns the index walks append to, in memory advised into huge pages (scratchBytes):
 * a million keys' columns are tens of MB written once, and a fresh 4 KiB page costs a fault
 * each (on a virtual machine a hypervisor exit too), more than its writes.
 */
export class ColumnBuilder implements CheckpointColumns {
  count = 0;
  keyBytes = 0;
  values: Float64Array;
  lengths: Uint16Array;
  keys: Uint8Array;

  /** `expected`: how many keys the walk will append (a hint: room() grows past it). */
  constructor(expected = 1 << 16) {
    const n = Math.max(1 << 16, expected);
    this.values = f64Scratch(n);
    this.lengths = u16Scratch(n);
    this.keys = columnScratch(Math.max(1 << 20, n * 24));
  }

  /**
   * Has the keys' and the offsets' columns populated on the prefault threads (advice: a thread
   * may be refused), so that the walk that fills them, a step at a time on the opener's thread,
   * takes no fault of a fresh 2 MiB page (zeroed: ~5 ms here, one every 30 steps of the keys).
   */
  prefault(): void {
    for (const column of [this.keys, this.values])
      if (column.buffer instanceof SharedArrayBuffer)
        prefaultInBackground(column.buffer, column.byteOffset, column.byteLength);
  }

  /** Room for one more key of at most 65536 bytes. */
  room(): void {
    const count = this.count;
    if (count === this.values.length) {
      const nv = f64Scratch(count * 2);
      nv.set(this.values);
      this.values = nv;
      const nl = u16Scratch(count * 2);
      nl.set(this.lengths);
      this.lengths = nl;
    }
    if (this.keyBytes + 65536 > this.keys.length) {
      const nk = columnScratch(this.keys.length * 2);
      nk.set(this.keys.subarray(0, this.keyBytes));
      this.keys = nk;
    }
  }
}

/**
 * Scratch of `bytes` bytes: in 2 MiB pages (scratchBytes) from BIG_SCRATCH_BYTES up, else an
 * ordinary buffer. A SharedArrayBuffer is not counted in V8's external memory, so nothing
 * collects it soon: a process that opens and closes small stores again and again (the crash
 * checker) would pile them up; big ones are few.
 */
function columnScratch(bytes: number): Uint8Array {
  return bytes >= BIG_SCRATCH_BYTES ? scratchBytes(bytes) : new Uint8Array(bytes);
}
const BIG_SCRATCH_BYTES = 8 * 2 ** 20;

function f64Scratch(n: number): Float64Array {
  return new Float64Array(columnScratch(n * 8).buffer, 0, n);
}

function u16Scratch(n: number): Uint16Array {
  return new Uint16Array(columnScratch(n * 2 + 2).buffer, 0, n);
}

const KV_RANGE = { gte: Uint8Array.of(KV_KEY_PREFIX), lt: Uint8Array.of(KV_KEY_PREFIX + 1) };

/**
 * Writes a checkpoint of the index as it is now (the caller guarantees nothing is being
 * written: close, after the last commit) and removes the older ones. `covered`: the highest
 * sequence in the log, and the records and entries the last recovery counted plus those
 * written since (for stats only).
 */
export function writeCheckpoint(
  space: DaxSpace,
  v: MediaViews,
  uuid: Uint8Array,
  covered: { maxSequence: number; records: number; entries: number },
  known: ReadonlyMap<number, CheckpointSegment> = new Map(),
  tombstones = true,
  writing = 0,
): CheckpointWritten {
  const start = performance.now();
  const device = space.device;
  const segmentList: Array<[number, number]> = [];
  device.forEachOwned((block, owner, index) => {
    if (owner === OWNER_KV_SEGMENT) segmentList.push([block, index]);
  });
  const scratch = new Uint8Array(SEGMENT_BYTES);
  const scratch32 = new Uint32Array(scratch.buffer);
  const ends = segmentList.map(([block, nonce]) =>
    segmentEnd(space, v, block, nonce, known.get(block), scratch, scratch32),
  );
  const checked = { segments: 0 };
  // The index's key-value keys in key order with their entry offsets. A tombstone kept for
  // snapshots (snapshots.ts) is read in the log, so then the segments are checked first (a
  // damaged log fails the close's checkpoint before anything reads it); without one the walk
  // reads only the index, and goes first: the tree image of its columns is then built on a
  // thread of its own (ImageBuild) while this thread checks and hashes the segments.
  let segments = tombstones ? hashSegments(space, v, ends, known, 2, checked) : undefined;
  const tree = space.tree;
  const cols = new ColumnBuilder(tree.count());
  space.epoch.guard(() =>
    tree.scanPinned(KV_RANGE, (value, leaf) => {
      // A tombstone: the key is absent. Read only when the index holds any: the header read is
      // a miss in the log per key, most of the walk's time.
      if (tombstones && isDeletion(v, value)) return;
      cols.room();
      const n = tree.copyLeafKey(leaf, cols.keys, cols.keyBytes);
      cols.values[cols.count] = value;
      cols.lengths[cols.count] = n;
      cols.keyBytes += n;
      cols.count++;
    }),
  );
  const build = new ImageBuild(cols, imageLeadBytes(ends.length, cols));
  let image: BuiltImage | undefined;
  try {
    segments ??= hashSegments(space, v, ends, known, 2, checked);
    while (image === undefined) image = build.take();
  } finally {
    if (image === undefined) build.stop(); // the hash failed: the thread asked to stop, then joined
  }
  assert(segments.length === ends.length, 'checkpoint: a hash per segment');
  const written = publishCheckpoint(space, uuid, covered, segments, cols, image, writing);
  return { ...written, segmentsChecked: checked.segments, timeMs: performance.now() - start };
}

/**
 * Whether the log is exactly what a checkpoint listing `segments` covers: the same segments
 * (block and nonce: none freed, none opened since), each ending where the checkpoint covers it
 * (segmentEnd: its end marker there, or no whole record after it). A checkpoint of the index
 * written now would then hold the same index of the same log, the same hashes included.
 */
export function logUnchangedSince(
  space: DaxSpace,
  v: MediaViews,
  segments: ReadonlyMap<number, CheckpointSegment>,
): boolean {
  let owned = 0;
  let same = true;
  const none = new Uint8Array(0); // segmentEnd reads no copy: each segment is known with its nonce
  space.device.forEachOwned((block, owner, nonce) => {
    if (owner !== OWNER_KV_SEGMENT || !same) return;
    owned++;
    const k = segments.get(block);
    if (k === undefined || k.nonce !== nonce) same = false;
    else if (segmentEnd(space, v, block, nonce, k, none, new Uint32Array(none.buffer)).used !== k.used) same = false;
  });
  return same && owned === segments.size;
}

/**
 * What vouches for each segment's records [0, used) in the checkpoint: a segment `known` lists
 * with the same block, nonce and `used` (the checkpoint loaded at open, whose hashes open
 * compared with the bytes; a segment the full scan at open checked whole in the copy it hashed;
 * or the last checkpoint this process wrote) keeps its hash and counts: the records below
 * `used` never change. Every other one is read once (verifySegments: read(2) where the media
 * can, else the mapping under the SIGBUS guard, on `threads` threads), its records checked
 * whole (header, nonce, xxh64, entries fitting) and its bytes hashed (XXH3-64) in that read,
 * so the hash vouches only for checked records; `checked.segments` grows by the segments read
 * here. A record that fails, or a poisoned block under a segment, is ECORRUPT or EIO: no
 * checkpoint is written (the next open finds the damage, with the older checkpoints or by a
 * full scan). For a checkpoint taken
 * while writers run, the caller holds a snapshot that keeps every segment listed in the log.
 */
export function hashSegments(
  space: DaxSpace,
  v: MediaViews,
  ends: readonly SegmentEnd[],
  known: ReadonlyMap<number, CheckpointSegment>,
  threads: number,
  checked: { segments: number } = { segments: 0 },
): CheckpointSegment[] {
  const plan = planHashes(space, ends, known, checked);
  for (const read of plan.reads) {
    const verdicts = verifySegments(
      v,
      space.device.media.readableRegionId,
      read.segs,
      SEGMENT_BYTES,
      threads,
      read.hashOnly,
    );
    takeVerdicts(plan, read, verdicts);
  }
  return plan.out;
}

/** hashSegments' work before any read: the hashes carried, and the segments to read (each list's segs). */
interface HashPlan {
  readonly ends: readonly SegmentEnd[];
  readonly out: CheckpointSegment[];
  readonly reads: ReadonlyArray<{ list: number[]; segs: Float64Array; hashOnly: boolean }>;
}

function planHashes(
  space: DaxSpace,
  ends: readonly SegmentEnd[],
  known: ReadonlyMap<number, CheckpointSegment>,
  checked: { segments: number },
): HashPlan {
  const device = space.device;
  const out: CheckpointSegment[] = new Array(ends.length);
  const check: number[] = [];
  const unchecked: number[] = []; // sabotaged (kv-checkpoint-carry-changed): hashed, never checked
  ends.forEach((e, i) => {
    const k = known.get(e.block);
    if (e.used === 0) out[i] = { ...e, hashLo: 0, hashHi: 0, records: 0, entries: 0 };
    else if (k !== undefined && k.nonce === e.nonce && k.used === e.used)
      out[i] = { ...e, hashLo: k.hashLo, hashHi: k.hashHi, records: k.records, entries: k.entries };
    else if (k !== undefined && isBroken('kv-checkpoint-carry-changed')) unchecked.push(i);
    else check.push(i);
  });
  checked.segments += check.length + unchecked.length;
  const reads: Array<{ list: number[]; segs: Float64Array; hashOnly: boolean }> = [];
  for (const [list, hashOnly] of [
    [check, false],
    [unchecked, true],
  ] as const) {
    if (list.length === 0) continue;
    const segs = new Float64Array(list.length * 3);
    list.forEach((i, j) => {
      const e = ends[i];
      if (device.poisonedBlocks !== 0 && device.firstPoisoned(e.block, HUGE_BLOCKS) >= 0)
        throw new DaxError('EIO', `checkpoint: the segment at block ${e.block} holds a poisoned block`);
      segs.set([device.blockOffset(e.block), e.used, e.nonce], j * 3);
    });
    reads.push({ list, segs, hashOnly });
  }
  return { ends, out, reads };
}

/**
 * The verdicts of one of the plan's reads into its out; ECORRUPT at the first segment that
 * failed. With `retired`: false instead when a segment failed at its first record and
 * `retired` says its head holds the mark compaction's retirement stores there.
 */
function takeVerdicts(
  plan: HashPlan,
  read: HashPlan['reads'][number],
  verdicts: readonly SegmentVerdict[],
  retired?: (base: number) => boolean,
): boolean {
  for (let j = 0; j < read.list.length; j++) {
    const i = read.list[j];
    const e = plan.ends[i];
    const { records, entries, hashLo, hashHi, bad } = verdicts[j];
    if (bad !== undefined) {
      const base = read.segs[j * 3];
      if (retired !== undefined && bad.at === base && retired(base)) return false;
      throw new DaxError(
        'ECORRUPT',
        `checkpoint: a record in the segment at block ${e.block} (device offset ${bad.at}) fails its checks: ${bad.reason}`,
      );
    }
    plan.out[i] = { ...e, hashLo, hashHi, records, entries };
  }
  return true;
}

/**
 * hashSegments on a thread of its own (recovery-native.ts checkSegmentsInBackground), for a
 * checkpoint taken while writers run (store.ts checkpointSteps): the covered segments are read,
 * their records checked and hashed in that read, while the opener's thread goes on serving its
 * writes; the step after waits for it (`ready`, then take). The caller holds the snapshot that
 * keeps every listed segment in the log until the job is taken or stopped (the same records
 * checked under the same snapshot as hashSegments checks them), and stops it on every way out.
 */
export class SegmentHashes {
  private readonly plan: HashPlan;
  private jobs: SegmentCheckJob[];

  constructor(
    space: DaxSpace,
    private readonly v: MediaViews,
    ends: readonly SegmentEnd[],
    known: ReadonlyMap<number, CheckpointSegment>,
    readonly checked: { segments: number } = { segments: 0 },
  ) {
    this.plan = planHashes(space, ends, known, checked);
    this.jobs = [];
    try {
      for (const read of this.plan.reads)
        this.jobs.push(
          checkSegmentsInBackground(v, space.device.media.readableRegionId, read.segs, SEGMENT_BYTES, read.hashOnly),
        );
    } catch (e) {
      this.stop();
      throw e;
    }
  }

  /** Every read has ended (take() will not wait). */
  get ready(): boolean {
    return this.jobs.every((j) => j.ready);
  }

  /**
   * Waits for the reads: each segment's hash, records and entries; ECORRUPT or EIO as
   * hashSegments. Undefined when a segment's first record failed because a compaction retired
   * the segment during the read: retiring stores a mark over its head's SEAL (compaction.ts
   * markRetired), the one change a segment's bytes see while a snapshot keeps it in the log.
   * Nothing is damaged: the caller captures again (the retired segment is no longer listed).
   */
  take(): CheckpointSegment[] | undefined {
    const jobs = this.jobs;
    this.jobs = [];
    const retired = isBroken('kv-checkpoint-retired-unretried')
      ? undefined
      : (base: number): boolean => {
          const w = this.v.at(base);
          return Atomics.load(w.u64, (base - w.base + 8) / 8) === RETIRED_HEAD_WORD;
        };
    try {
      for (let r = 0; r < jobs.length; r++)
        if (!takeVerdicts(this.plan, this.plan.reads[r], jobs[r].finish(), retired)) return undefined;
    } finally {
      for (const job of jobs) job.stop(); // the rest, when one failed
    }
    return this.plan.out;
  }

  /** Ends the reads unused (their thread joined); nothing once taken. */
  stop(): void {
    for (const job of this.jobs.splice(0)) job.stop();
  }
}

/**
 * Lays out, checksums and writes a checkpoint of `segments` and `cols` under the next
 * generation, durable (body first, header page last), then removes the older ones (all but
 * `writing`, a checkpoint another handle is writing over several steps: CheckpointWrite).
 */
export function publishCheckpoint(
  space: DaxSpace,
  uuid: Uint8Array,
  covered: { maxSequence: number; records: number; entries: number },
  segments: readonly CheckpointSegment[],
  cols: CheckpointColumns,
  withImage: boolean | BuiltImage = false,
  writing = 0,
): CheckpointWritten {
  const body = new CheckpointBody(uuid, covered, segments, cols, withImage);
  body.fill(Infinity);
  return publishBody(space, body, writing);
}

/** publishCheckpoint of a body laid out and filled already. */
export function publishBody(space: DaxSpace, body: CheckpointBody, writing = 0): CheckpointWritten {
  const w = new CheckpointWrite(space, body);
  try {
    w.writeBody(Infinity);
  } catch (e) {
    w.abandon();
    throw e;
  }
  return w.finish(writing);
}

/**
 * A checkpoint's bytes laid out: its header (all but its generation and checksum, which
 * CheckpointWrite sets), its segment list, and its columns, copied in by fill (all at once, or a
 * bounded number of keys a step: a running checkpoint's steps, store.ts checkpointSteps). With
 * an image, laid out in the image's own memory, its other parts in the lead reserved before it
 * (they do not depend on the image's size): the image is not copied. One built already
 * (ImageBuild: a running checkpoint's) was built of these columns with this lead.
 */
export class CheckpointBody {
  readonly bytes: Uint8Array;
  readonly keys: number;
  private readonly layout: ReturnType<typeof checkpointLayout>;
  private withKeys: boolean;
  /** keys whose offsets and lengths are copied in */
  private copied = 0;

  constructor(
    uuid: Uint8Array,
    covered: { maxSequence: number; records: number; entries: number },
    segments: readonly CheckpointSegment[],
    private readonly cols: CheckpointColumns,
    withImage: boolean | BuiltImage,
  ) {
    const count = cols.count;
    const keyBytes = cols.keyBytes;
    const built =
      withImage === true
        ? imageOf(cols, imageLeadBytes(segments.length, cols))
        : withImage === false
          ? undefined
          : withImage;
    assert(
      built === undefined || built.whole.byteOffset + imageLeadBytes(segments.length, cols) === built.bytes.byteOffset,
      'checkpoint: the image was built with the lead its layout gives',
    );
    const image = built ?? NO_IMAGE;
    const layout = checkpointLayout(segments.length, count, keyBytes, image.words);
    const bytes = built?.whole ?? columnScratch(layout.total); // huge pages when big: see ColumnBuilder
    assert(bytes.length >= layout.total, () => `checkpoint: ${bytes.length} bytes laid out for ${layout.total}`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, layout.total);
    dv.setUint32(H_MAGIC, CHECKPOINT_MAGIC, true);
    dv.setUint32(H_VERSION, CHECKPOINT_VERSION, true);
    bytes.set(uuid, H_UUID);
    dv.setFloat64(H_TOTAL, layout.total, true);
    dv.setFloat64(H_MAX_SEQUENCE, covered.maxSequence, true);
    dv.setFloat64(H_KEYS, count, true);
    dv.setFloat64(H_KEY_BYTES, keyBytes, true);
    dv.setFloat64(H_SEGMENTS, segments.length, true);
    dv.setFloat64(H_RECORDS, covered.records, true);
    dv.setFloat64(H_ENTRIES, covered.entries, true);
    dv.setFloat64(H_IMAGE_WORDS, image.words, true);
    dv.setFloat64(H_IMAGE_ORIGIN, image.origin, true);
    dv.setFloat64(H_IMAGE_ROOT, image.root, true);
    dv.setFloat64(H_IMAGE_INNER, image.inner, true);
    const seg = new Float64Array(bytes.buffer, bytes.byteOffset + layout.segments, segments.length * SEGMENT_SLOTS);
    segments.forEach((s, i) =>
      seg.set(
        [s.block, s.nonce, s.used, s.lastAt, s.lastSumLo, s.lastSumHi, s.hashLo, s.hashHi, s.records, s.entries],
        i * SEGMENT_SLOTS,
      ),
    );
    assert(
      image.words === 0 || bytes.byteOffset + layout.image === image.bytes.byteOffset,
      'checkpoint: the image lies where its layout puts it',
    );
    this.bytes = bytes.subarray(0, layout.total);
    this.keys = count;
    this.layout = layout;
    this.withKeys = image.words === 0;
  }

  /** Every column is copied in. */
  get filled(): boolean {
    return this.copied === this.keys && !this.withKeys;
  }

  /**
   * Copies the next `keys` keys' offsets and lengths in (without an image, the key bytes too,
   * with the last of them), or fewer when `deadline` (performance.now()) passes first: the
   * clock looked at every FILL_CLOCK_KEYS keys (the first touch of the body's fresh memory is
   * most of the cost); true once every column is.
   */
  fill(keys: number, deadline = Infinity): boolean {
    const end = Math.min(this.keys, this.copied + keys);
    if (deadline === Infinity) this.fillTo(end);
    else
      do this.fillTo(Math.min(end, this.copied + FILL_CLOCK_KEYS));
      while (this.copied < end && performance.now() < deadline);
    return this.filled;
  }

  private fillTo(to: number): void {
    const { bytes, cols, layout } = this;
    const from = this.copied;
    new Float64Array(bytes.buffer, bytes.byteOffset + layout.values, this.keys).set(
      cols.values.subarray(from, to),
      from,
    );
    new Uint16Array(bytes.buffer, bytes.byteOffset + layout.lengths, this.keys).set(
      cols.lengths.subarray(from, to),
      from,
    );
    this.copied = to;
    if (to === this.keys && this.withKeys) {
      bytes.set(cols.keys.subarray(0, cols.keyBytes), layout.keys);
      this.withKeys = false;
    }
  }
}

/**
 * One checkpoint being written: its body (laid out and filled: CheckpointBody) given the next
 * generation and checksummed (here, or on a thread of its own: sealInBackground, taken by
 * finish), its object created under the next
 * generation (the constructor: the caller holds the checkpoint lock, store.ts CHECKPOINT_LOCK),
 * then its body written a part at a time, each part durable (writeBody), and last its header
 * page, durable, and the older checkpoints removed (finish, under the lock again). Until its
 * header page is durable it is no checkpoint to an open (its magic, size or checksum fail), and
 * a crash leaves it to the next open to remove. Between the parts the caller may serve others
 * (a running checkpoint's steps: store.ts checkpointSteps) as long as nothing removes the object
 * meanwhile: every removal spares the one the store names as being written (`writing`).
 */
export class CheckpointWrite {
  readonly id: number;
  readonly generation: number;
  private readonly bytes: Uint8Array;
  private readonly obj: DaxObject;
  private readonly keys: number;
  private readonly start = performance.now();
  /** the next body byte to write (the header page, [0, BLOCK_BYTES), is written last) */
  private at = BLOCK_BYTES;
  /** the extent writeBody faulted last (its parts then written one at a time) */
  private faulted = -1;
  /** whether that extent was made one huge page (or is not one to be made so) */
  private collapsed = true;
  private begun = false;
  private bodyWritten = false;
  /** the checksum being taken on a thread of its own (sealInBackground), until finish takes it */
  private seal: SealJob | undefined;

  constructor(
    private readonly space: DaxSpace,
    body: CheckpointBody,
    sealInBackground = false,
  ) {
    assert(body.filled, 'checkpoint: written before its columns were copied in');
    const bytes = body.bytes;
    const generation = nextGeneration(space);
    new DataView(bytes.buffer, bytes.byteOffset).setFloat64(H_GENERATION, generation, true);
    this.bytes = bytes;
    // The checksum: here, or on a thread of its own while the body is written (it reads the
    // bytes the body's writes copy, and goes in the header page, written last: finish).
    if (!sealInBackground) sealCheckpoint(bytes);
    else this.seal = new SealJob(bytes);
    this.keys = body.keys;
    this.generation = generation;
    this.id = CHECKPOINT_ID_FIRST + generation;
    // Whole 2 MiB extents (each one huge page where the allocator has one) when there is more
    // than one; a small checkpoint in 4 KiB pages (a small store does not pay a 2 MiB extent).
    const total = bytes.length;
    const size =
      total >= EXTENT_BYTES
        ? Math.ceil(total / EXTENT_BYTES) * EXTENT_BYTES
        : Math.ceil(total / BLOCK_BYTES) * BLOCK_BYTES;
    this.obj = space.object(this.id, { create: true, size });
  }

  /**
   * Writes the next `extents` 2 MiB extents' worth of the body (everything after the header
   * page), or less when `deadline` (performance.now()) passes first, durable on return; true
   * once the whole body is. With a deadline it goes a part at a time: an extent's write fault
   * (fresh zeroed blocks), its collapse into one huge page, then WRITE_PART_BYTES copied and
   * flushed at a time, the clock looked at after each part (at least one part a call). The
   * caller removes the checkpoint (abandon) when this throws.
   */
  writeBody(extents: number, deadline = Infinity): boolean {
    if (!this.begun) {
      this.begun = true;
      testHooks.checkpointWrite?.('created');
    }
    const total = this.bytes.length;
    if (this.at < total) {
      const to = Math.min(total, (Math.floor(this.at / EXTENT_BYTES) + extents) * EXTENT_BYTES);
      if (deadline === Infinity) {
        writeObject(this.obj, this.bytes, this.at, to);
        this.at = to;
      } else
        while (this.at < to) {
          const extent = Math.floor(this.at / EXTENT_BYTES);
          if (this.faulted !== extent) {
            // Faulted (fresh zeroed blocks), then made one huge page, each a part: the copies
            // after them take the fault's fast path.
            this.collapsed = !faultExtent(this.obj, extent);
            this.faulted = extent;
            this.collapseAhead();
          } else if (!this.collapsed) {
            collapseExtent(this.obj, extent);
            this.collapsed = true;
          } else {
            const end = Math.min(to, this.at + WRITE_PART_BYTES, (extent + 1) * EXTENT_BYTES);
            writeObject(this.obj, this.bytes, this.at, end, false);
            this.at = end;
          }
          if (performance.now() >= deadline) break;
        }
    }
    if (this.at < total) return false;
    if (!this.bodyWritten) {
      this.bodyWritten = true;
      testHooks.checkpointWrite?.('body-written');
    }
    return true;
  }

  /**
   * The header page, durable (torn anywhere before, the checkpoint fails its magic, size or
   * checksum), then every other checkpoint but `writing` (one another handle is writing over
   * several steps) removed. The caller holds the checkpoint lock. When a checkpoint of a
   * higher generation was written meanwhile (this one was written over several steps), this
   * one is removed instead, unwritten: the newer one serves. Throws (the object removed) when
   * the write fails.
   */
  finish(writing = 0): CheckpointWritten {
    assert(this.bodyWritten, 'checkpoint: its header written before its body');
    if (this.seal !== undefined) {
      const seal = this.seal;
      this.seal = undefined;
      try {
        seal.take(this.bytes);
      } catch (e) {
        this.abandon();
        throw e;
      }
    }
    const newer = checkpointIds(this.space).some((id) => id > this.id);
    if (!newer)
      try {
        writeObject(this.obj, this.bytes, 0, Math.min(BLOCK_BYTES, this.bytes.length));
      } catch (e) {
        this.abandon();
        throw e;
      }
    for (const old of checkpointIds(this.space))
      if ((old < this.id && old !== writing) || (old === this.id && newer)) removeCheckpoint(this.space, old);
    return {
      generation: this.generation,
      keys: this.keys,
      bytes: this.bytes.length,
      segmentsChecked: 0,
      timeMs: performance.now() - this.start,
    };
  }

  /**
   * The free extent the body's next extent will likely take made one huge page on a background
   * thread (media.collapse, as the log's next segment is: segment-writer.ts), so that its write
   * fault zeroes one huge page instead of faulting in 512 pages of 4 KiB. Advice: a wrong guess
   * only costs the collapse of a free extent.
   */
  private collapseAhead(): void {
    if (this.at + EXTENT_BYTES >= this.bytes.length || isBroken('kv-checkpoint-body-not-collapsed-ahead')) return;
    const device = this.space.device;
    const next = device.nextFreeExtent();
    if (next >= 0) device.media.collapse?.(device.blockOffset(next), EXTENT_BYTES);
  }

  /** Whether finish would run without waiting for the checksum's thread. */
  get sealed(): boolean {
    return this.seal?.ready ?? true;
  }

  /** Removes the checkpoint being written (failed or abandoned). */
  abandon(): void {
    this.seal?.stop();
    this.seal = undefined;
    removeCheckpoint(this.space, this.id);
  }
}

/**
 * A checkpoint's checksum (sealCheckpoint's) taken on a thread of its own (addon
 * hashRangeStart): the bytes must not change until it is taken. Collected untaken, its thread
 * is joined.
 */
class SealJob {
  private job: object | undefined;

  constructor(bytes: Uint8Array) {
    const job = native().hashRangeStart(bytes, 8, bytes.length - 8, true);
    if (typeof job === 'number') throw returnCodeError(job, `checkpoint: its checksum over ${bytes.length} bytes`);
    this.job = job;
  }

  get ready(): boolean {
    return this.job === undefined || native().hashRangeDone(this.job);
  }

  /** Waits for the checksum and writes it into the first 8 bytes, as sealCheckpoint does. */
  take(bytes: Uint8Array): void {
    const job = this.job;
    assert(job !== undefined, 'checkpoint: its checksum taken twice');
    this.job = undefined;
    const s = new Uint32Array(2);
    const rc = native().hashRangeFinish(job, s);
    if (rc !== 0) throw returnCodeError(rc, `checkpoint: its checksum over ${bytes.length} bytes`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    dv.setUint32(0, s[0], true);
    dv.setUint32(4, s[1], true);
  }

  /** Waits for the thread, the checksum unused. */
  stop(): void {
    const job = this.job;
    this.job = undefined;
    if (job !== undefined) native().hashRangeFinish(job, new Uint32Array(2));
  }
}

const NO_IMAGE: TreeImage = { bytes: new Uint8Array(0), words: 0, origin: 0, root: 0, inner: 0, leaves: 0 };

/** A tree image built with the rest of its checkpoint's lead reserved before it: `whole` views both. */
export type BuiltImage = TreeImage & { readonly whole: Uint8Array };

/** The bytes of a checkpoint of `segments` segments and these columns before its tree image (a multiple of 8). */
export function imageLeadBytes(segments: number, cols: CheckpointColumns): number {
  return checkpointLayout(segments, cols.count, cols.keyBytes, 1).image;
}

/** The tree image of the columns' keys and offsets (tree-image.ts): built in a scratch arena, `leadBytes` reserved before it. */
function imageOf(cols: CheckpointColumns, leadBytes: number): BuiltImage {
  const count = cols.count;
  const starts = new Uint32Array(columnScratch(count * 4 + 4).buffer, 0, count);
  const at = native().columnStarts(cols.lengths, starts, count);
  assert(at === cols.keyBytes, () => `checkpoint: key lengths add up to ${at}, not ${cols.keyBytes}`);
  return buildTreeImage(
    { count, keys: cols.keys, starts, lengths: cols.lengths, values: cols.values },
    cols.keyBytes,
    leadBytes,
  );
}

/**
 * The tree image of a running checkpoint's columns, built on a thread of its own (addon
 * buildTreeImageStart: the leaves and inner nodes a bulk load writes, into memory of its own)
 * while the opener's thread goes on serving its writes, so no step of the checkpoint holds that
 * thread for the build (store.ts checkpointSteps). Started once the index walk has ended: the
 * columns are then complete and nothing writes them any more (the thread reads them until it is
 * taken or stopped). The image is laid out as imageOf's: `leadBytes` reserved before it for the
 * rest of the checkpoint, its origin the word right after them. Its memory is sized for the
 * leaves (leafKeyStarts) and as many words again of inner nodes; a tree that needs more is
 * built again in memory of the size the first build worked out (take() then starts it and
 * returns undefined).
 */
export class ImageBuild {
  private job: object | undefined;
  private memory: Uint8Array = new Uint8Array(0);
  private readonly outcome = new Float64Array(4);

  constructor(
    private readonly cols: CheckpointColumns,
    private readonly leadBytes: number,
  ) {
    assert(leadBytes > 0 && leadBytes % 8 === 0, () => `checkpoint image: a lead of ${leadBytes} bytes`);
    const leafWords = native().leafKeyStarts(cols.lengths, null, cols.count);
    assert(leafWords >= 0, () => `checkpoint image: leafKeyStarts: ${leafWords}`);
    this.start(leadBytes / 4 + 2 * leafWords + 1024);
  }

  private start(words: number): void {
    const cols = this.cols;
    // Huge pages when big (columnScratch); pages the build does not reach are never touched.
    this.memory = columnScratch(words * 4);
    const job = native().buildTreeImageStart(
      cols.keys,
      cols.lengths,
      cols.values,
      cols.count,
      this.memory,
      this.leadBytes / 4,
    );
    assert(typeof job === 'object', () => `buildTreeImageStart: ${String(job)}`);
    this.job = job;
  }

  /** The build has ended (take() will not wait), or none is running. */
  get ready(): boolean {
    return this.job === undefined || native().buildTreeImageDone(this.job);
  }

  /**
   * Waits for the build and returns the image, or undefined when the memory was too short and
   * the build was started again in more (wait again). ECORRUPT when the columns' keys are not
   * in strictly increasing order (the index walk gave them so: no checkpoint).
   */
  take(): BuiltImage | undefined {
    const job = this.job;
    assert(job !== undefined, 'checkpoint image: taken twice');
    this.job = undefined;
    const out = this.outcome;
    const rc = native().buildTreeImageFinish(job, out, false);
    assert(rc === 0, () => `buildTreeImageFinish: ${rc}`);
    const first = this.leadBytes / 4;
    const [status, a, root, inner] = out;
    if (status === 3) {
      assert(a > this.memory.length / 4, () => `checkpoint image: ${a} words needed, ${this.memory.length / 4} given`);
      this.start(a);
      return undefined;
    }
    if (status === 2)
      throw new DaxError('ECORRUPT', `checkpoint: key ${a} of the index walk is not above the key before it`);
    if (status === 4) throw returnCodeError(-12, `checkpoint: the tree image of ${this.cols.count} keys`);
    assert(status === 0, () => `checkpoint image: build status ${status} (entry ${a})`);
    const words = a;
    return {
      bytes: this.memory.subarray(first * 4, (first + words) * 4),
      whole: this.memory.subarray(0, (first + words) * 4),
      words,
      origin: words === 0 ? 0 : first,
      root,
      inner,
      leaves: this.cols.count,
    };
  }

  /** Ends the build unused (its thread asked to stop, then joined); nothing when none runs. */
  stop(): void {
    const job = this.job;
    if (job === undefined) return;
    this.job = undefined;
    native().buildTreeImageFinish(job, this.outcome, true);
  }
}

/**
 * Where each segment's records end for a checkpoint taken while writers run (store.ts
 * checkpoint): hopping on from `known` (the last checkpoint's ends, or the loaded one's),
 * only over records that are whole (magic, length, nonce, xxh64 of the record) and whose
 * every entry has a sequence <= S: a writer's records in one segment carry increasing
 * sequences, so the first record above S, or one still being copied in, ends the coverage
 * there. Everything covered is flushed and drained (durable) on return. Returns the ends and
 * the highest sequence of any covered entry (`knownMax` for what `known` covers).
 * The caller holds the compaction mutex (no segment is freed meanwhile) and a snapshot at S
 * (every record of sequence <= S is published, so whole in memory).
 */
export function coverRunning(
  space: DaxSpace,
  v: MediaViews,
  S: number,
  known: ReadonlyMap<number, CheckpointSegment>,
  knownMax: number,
  ahead?: CoverAhead,
): { segments: SegmentEnd[]; maxSequence: number; records: number } {
  const device = space.device;
  const list: Array<[number, number]> = [];
  device.forEachOwned((block, owner, index) => {
    if (owner === OWNER_KV_SEGMENT) list.push([block, index]);
  });
  let maxSequence = Math.max(knownMax, ahead?.maxSequence ?? 0);
  let records = 0;
  const segments: SegmentEnd[] = [];
  for (const [block, nonce] of list) {
    const k = known.get(block);
    const same = k !== undefined && k.nonce === nonce;
    // Hopped on ahead of the capture (CoverAhead), under a snapshot at or below S: those
    // records are whole, of sequences <= S, and unchanged since (a segment's records below its
    // write position never change while it is in the log; its nonce names this life of it).
    const a = ahead?.ends.get(block);
    const pre = a !== undefined && a.nonce === nonce ? a : undefined;
    if (pre !== undefined) records += pre.records;
    const from = pre?.used ?? (same ? k.used : 0);
    const c = coverSegment(space, v, S, block, nonce, from, pre?.lastAt ?? (same ? k.lastAt : -1), maxSequence);
    records += c.records;
    maxSequence = c.maxSequence;
    const start = same ? k.used : 0;
    segments.push(c.used === start && same ? k : c.end);
  }
  device.media.drain();
  return { segments, maxSequence, records };
}

/**
 * One segment's coverage hopped on from `at` (lastAt: the record before it, -1 none): every
 * whole record with sequences <= S (addon JsCoverRecords: its xxh64 checked, a record being
 * copied in fails it: not published, so above S), in one call, flushed (the caller drains).
 */
function coverSegment(
  space: DaxSpace,
  v: MediaViews,
  S: number,
  block: number,
  nonce: number,
  at: number,
  lastAt: number,
  maxSequence: number,
): { used: number; end: SegmentEnd; records: number; maxSequence: number } {
  const device = space.device;
  const base = device.blockOffset(block);
  const win = v.at(base); // the segment lies inside one window
  const u32 = win.u32;
  const origin = (base - win.base) / 4;
  const from = at;
  let records = 0;
  if (device.poisonedBlocks === 0 || device.firstPoisoned(block, HUGE_BLOCKS) < 0) {
    const rc = native().coverRecords(win.u8, base - win.base, at, lastAt, SEGMENT_BYTES, nonce, S, maxSequence, walked);
    if (rc === -5) throw new DaxError('EIO', `checkpoint: a media error reading the segment at block ${block}`);
    assert(rc === 0, () => `coverRecords: ${rc}`);
    at = walked[0];
    lastAt = walked[1];
    records = walked[2];
    maxSequence = walked[3];
  }
  if (at > from) device.media.flush(base + from, at - from);
  return { used: at, end: segmentEndAt(block, nonce, at, lastAt, u32, origin), records, maxSequence };
}

/**
 * A running checkpoint's coverage hopped on ahead of its capture, a few segments a step
 * (store.ts checkpointSteps), so that the capture, one step under the compaction mutex, hops
 * only what was appended since: hopping every record written since the last checkpoint in that
 * one step held the opener's thread for tens of ms. The caller holds a snapshot at S0 (every
 * record of sequence <= S0 published; no segment freed while it is held) until the capture has
 * registered its own S >= S0. Each segment (as the owner table listed it when this began) is
 * hopped on from the last coverage exactly as the capture would (whole records of sequences <=
 * S0, flushed), so the capture, starting where this stopped in a segment of the same nonce,
 * covers exactly what it would have covered from the last coverage: the records hopped here
 * are whole, of sequences <= S0 <= S, and unchanged since.
 */
export class CoverAhead {
  readonly ends = new Map<number, { nonce: number; used: number; lastAt: number; records: number }>();
  maxSequence: number;
  /** step() calls so far */
  steps = 0;
  private readonly list: Array<[number, number]> = [];
  private next = 0;

  /**
   * `prev`: a pass taken before under a snapshot at or below S0 and held until this one's S0
   * was registered: each segment of the same nonce is hopped on from where that pass stopped
   * (its records are whole, of sequences <= S0, and unchanged since, as the capture's argument
   * above has it), the others from the last coverage.
   */
  constructor(
    private readonly space: DaxSpace,
    private readonly v: MediaViews,
    private readonly S0: number,
    private readonly known: ReadonlyMap<number, CheckpointSegment>,
    knownMax: number,
    private readonly prev?: CoverAhead,
  ) {
    this.maxSequence = Math.max(knownMax, prev?.maxSequence ?? 0);
    space.device.forEachOwned((block, owner, index) => {
      if (owner === OWNER_KV_SEGMENT) this.list.push([block, index]);
    });
  }

  /** Hops on the next `segments` segments, or fewer when `deadline` (performance.now()) passes first (one at least); true once every one is. */
  step(segments: number, deadline = Infinity): boolean {
    this.steps++;
    const first = this.next;
    const end = Math.min(this.list.length, first + segments);
    for (; this.next < end && (this.next === first || performance.now() < deadline); this.next++) {
      const [block, nonce] = this.list[this.next];
      const k = this.known.get(block);
      const same = k !== undefined && k.nonce === nonce;
      const p = this.prev?.ends.get(block);
      const pre = p !== undefined && p.nonce === nonce ? p : undefined;
      const c = coverSegment(
        this.space,
        this.v,
        this.S0,
        block,
        nonce,
        pre?.used ?? (same ? k.used : 0),
        pre?.lastAt ?? (same ? k.lastAt : -1),
        this.maxSequence,
      );
      this.maxSequence = c.maxSequence;
      this.ends.set(block, { nonce, used: c.used, lastAt: c.end.lastAt, records: (pre?.records ?? 0) + c.records });
    }
    return this.next === this.list.length;
  }
}

const walked = new Float64Array(4);

/**
 * One step of the index walk of a running checkpoint: up to `max` keys after `after` (from the
 * first when undefined), each resolved to its version at the caller's snapshot (`resolve`:
 * the entry offset, -1 when absent at S) and appended to `cols`. Returns the last key walked
 * (undefined when the walk is done), or 'moved' when a version lies outside what the
 * checkpoint covers (`covers`): compaction moved it since the coverage was taken.
 */
export function walkStep(
  space: DaxSpace,
  cols: ColumnBuilder,
  after: Uint8Array | undefined,
  max: number,
  resolve: (newest: number) => number,
  covers: (at: number) => boolean,
  deadline = Infinity,
): Uint8Array | undefined | 'moved' {
  const tree = space.tree;
  let seen = 0;
  let limit = max;
  let moved = false;
  let lastLeafKey: Uint8Array | undefined;
  space.epoch.guard(() => {
    tree.scanPinned(after === undefined ? KV_RANGE : { gt: after, lt: KV_RANGE.lt }, (value, leaf) => {
      if (seen === limit) return false;
      seen++;
      const at = resolve(value);
      if (at >= 0) {
        if (!covers(at)) {
          movedAt = at;
          moved = true;
          return false;
        }
        cols.room();
        const n = tree.copyLeafKey(leaf, cols.keys, cols.keyBytes);
        cols.values[cols.count] = at;
        cols.lengths[cols.count] = n;
        cols.keyBytes += n;
        cols.count++;
      }
      // The clock looked at every WALK_CLOCK_KEYS keys: the step ends there once `deadline` has passed.
      if (seen !== limit && seen % WALK_CLOCK_KEYS === 0 && performance.now() >= deadline) limit = seen;
      if (seen === limit) {
        const len = tree.copyLeafKey(leaf, leafKeyScratch, 0);
        lastLeafKey = leafKeyScratch.slice(0, len);
      }
      return true;
    });
  });
  if (moved) return 'moved';
  return seen === limit ? lastLeafKey : undefined;
}

const leafKeyScratch = new Uint8Array(65536);
/** Keys CheckpointBody.fill copies between two looks at its deadline. */
const FILL_CLOCK_KEYS = 16384;
/** Keys walkStep walks between two looks at its deadline. */
const WALK_CLOCK_KEYS = 256;
/** The offset of the version walkStep found outside the coverage, when it returned 'moved' (diagnostics). */
export let movedAt = -1;

const EXTENT_BYTES = HUGE_PAGES * PAGE_BYTES;
/** Bytes of a checkpoint's body written and flushed between two looks at a step's deadline (CheckpointWrite.writeBody). */
const WRITE_PART_BYTES = 256 * 1024;

/**
 * The write fault of one 2 MiB extent of the object (fresh zeroed blocks), as writeObject makes
 * it before it copies; true when, on a mapped media, its pages are to be made one huge page
 * (collapseExtent, as writeObject does next). writeObject's later writes into it (fresh false)
 * find the extent mapped and copy at once.
 */
function faultExtent(obj: DaxObject, extent: number): boolean {
  const view = obj.fault(extent * HUGE_PAGES, { write: true, huge: true });
  return view.length === EXTENT_BYTES && COLLAPSE && obj.space.device.media.prefault !== undefined;
}

/** The extent faultExtent faulted made one huge page (MADV_COLLAPSE; refused, it stays in small pages). */
function collapseExtent(obj: DaxObject, extent: number): void {
  const view = obj.fault(extent * HUGE_PAGES, { write: true, huge: true });
  native().collapseRange(view.buffer as SharedArrayBuffer, view.byteOffset, EXTENT_BYTES);
}

/**
 * bytes[from, to) into the object at the same offsets, durable on return: through a write
 * fault of each 2 MiB extent (one huge page where the allocator has one, else 4 KiB pages),
 * a copy, and a writeback of the range.
 */
function writeObject(obj: DaxObject, bytes: Uint8Array, from: number, to: number, fresh = true): void {
  const collapse = fresh && COLLAPSE && obj.space.device.media.prefault !== undefined;
  for (let at = from; at < to;) {
    const extent = Math.floor(at / EXTENT_BYTES);
    const end = Math.min(to, (extent + 1) * EXTENT_BYTES);
    const view = obj.fault(extent * HUGE_PAGES, { write: true, huge: true });
    if (view.length === EXTENT_BYTES) {
      // A mapped media's file pages made one huge page first (on tmpfs they are 4 KiB pages):
      // written here with one fault, and read by the next open's checksum through one entry
      // instead of a read fault per 64 KiB. Refused (no huge page to be had), they stay small.
      if (collapse) native().collapseRange(view.buffer as SharedArrayBuffer, view.byteOffset, EXTENT_BYTES);
      view.set(bytes.subarray(at, end), at - extent * EXTENT_BYTES);
    } else obj.write(at, bytes.subarray(at, end)); // 4 KiB pages: write() faults each
    at = end;
  }
  obj.writeback({ offset: from, length: to - from });
}

/**
 * The object's first `size` bytes as a view of the mapping, when the object is whole 2 MiB
 * extents mapped by huge entries at consecutive device blocks inside one window and none of
 * them is on the bad-block list; else undefined (readObject copies). A copy costs its bytes in
 * fresh memory, whose first touch here is the most expensive part of reading a big checkpoint
 * (docs/PERFORMANCE.md). The view is read only during this open, before anything can remove
 * or rewrite the object (the next checkpoint is written under a new id, and only by a later
 * close or running checkpoint). readCheckpoint reads it first under the SIGBUS guard (the
 * header, then the checksum of the rest); what reads it after (the coverage check, the merge,
 * the bulk load) reads bytes already read whole.
 */
function inPlace(space: DaxSpace, v: MediaViews, obj: DaxObject, size: number): Uint8Array | undefined {
  if (size < EXTENT_BYTES) return undefined;
  const device = space.device;
  const extents = Math.ceil(size / EXTENT_BYTES);
  // The first extent's block when every extent follows it, each mapped by one huge entry.
  const first = space.epoch.guard((): number | undefined => {
    let head = 0;
    for (let extent = 0; extent < extents; extent++) {
      const found = lookupCoveringPinned(obj, extent * HUGE_PAGES);
      const mapped = found !== undefined && ((space.tree.lastEntry >>> 3) & 3) === 0;
      if (found === undefined || !mapped || !isHuge(found.value) || found.start !== extent * HUGE_PAGES)
        return undefined;
      const block = blockOfValue(found.value);
      if (extent === 0) head = block;
      else if (block !== head + extent * HUGE_PAGES) return undefined;
    }
    return head;
  });
  if (first === undefined) return undefined;
  if (device.poisonedBlocks !== 0 && device.firstPoisoned(first, extents * HUGE_PAGES) >= 0) return undefined;
  const offset = device.blockOffset(first);
  const win = v.at(offset);
  const at = offset - win.base;
  if (at + extents * EXTENT_BYTES > win.u8.length) return undefined;
  return win.u8.subarray(at, at + size);
}

/**
 * The object's first `size` bytes, read with read(2) where the media can (recovery.ts
 * readSegment says why), else copied from the mapping; a poisoned block is EIO. 2 MiB extents
 * mapped by one huge page are read whole; any other page through DaxObject.read.
 */
function readObject(space: DaxSpace, obj: DaxObject, size: number): Uint8Array {
  const out = columnScratch(size);
  const device = space.device;
  for (let at = 0; at < size;) {
    const extent = Math.floor(at / EXTENT_BYTES);
    const end = Math.min(size, (extent + 1) * EXTENT_BYTES);
    const found = space.epoch.guard(() => lookupCoveringPinned(obj, extent * HUGE_PAGES));
    const mapped = found !== undefined && ((space.tree.lastEntry >>> 3) & 3) === 0;
    if (found !== undefined && mapped && isHuge(found.value) && found.start === extent * HUGE_PAGES) {
      const block = blockOfValue(found.value);
      if (device.poisonedBlocks !== 0 && device.firstPoisoned(block, HUGE_PAGES) >= 0)
        throw new DaxError('EIO', `extent ${extent} (block ${block}) is poisoned`);
      const offset = device.blockOffset(block);
      const rc = device.media.readInto?.(offset, end - at, out, at) ?? -1;
      if (rc !== 0) device.media.copyOut(offset, end - at, out.subarray(at, end));
    } else out.set(obj.read(at, end - at), at);
    at = end;
  }
  return out;
}

function nextGeneration(space: DaxSpace): number {
  const ids = checkpointIds(space);
  const g = ids.length === 0 ? 0 : ids[0] - CHECKPOINT_ID_FIRST + 1;
  if (CHECKPOINT_ID_FIRST + g < CHECKPOINT_ID_END) return g;
  // Generations run out after 2^20 checkpoints: start again at 0 once no older one is left to
  // outrank it (a crash before the new one is written leaves none: the next open scans).
  for (const id of ids) removeCheckpoint(space, id);
  return 0;
}

/** Removes checkpoint object `id` (durable); false when it was not there. */
export function removeCheckpoint(space: DaxSpace, id: number): boolean {
  if (!space.has(id)) return false;
  space.object(id).remove();
  return true;
}

/** Bytes [start, start + length) of `bytes` as a latin1 string (one char a byte): a Set key. */
export function latin1(bytes: Uint8Array, start: number, length: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, length).toString('latin1');
}
