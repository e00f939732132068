/**
 * Shared by the index-checkpoint tests (kv-checkpoint*.test.ts): stores of utf8 keys and values
 * with checkpoints on, a model of hex keys and values, the random workload they both run, and
 * the state compared between an open with a checkpoint and `recovery: 'full'`; a checkpoint's
 * bytes, and the rewrite of one, for tests that edit or plant one.
 */
import { expect } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { DaxSpace } from '../../src/dax/space.js';
import { verifyTree } from '../../src/index/tree-verify.js';
import { checkpointIds, checkpointLayout, isCheckpointId, sealCheckpoint } from '../../src/kv/checkpoint.js';
import { openMedia as openKv } from '../../src/kv/index.js';
import type { OpenMediaOptions } from '../../src/kv/store.js';

/** Stores of utf8 keys and values (what the workload writes). */
export function openMedia(media: SimMedia, opts: OpenMediaOptions = {}) {
  return openKv(media, { checkpoint: true, ...opts, keyEncoding: 'utf8', valueEncoding: 'utf8' });
}
export type KvStore = ReturnType<typeof openMedia>;
export type Model = Map<string, string>;

export const hex = (s: string | Uint8Array): string => Buffer.from(s).toString('hex');

export function dump(db: KvStore): Model {
  const m: Model = new Map();
  for (const [k, v] of db.range()) m.set(hex(k), hex(v));
  return m;
}

export function expectModel(db: KvStore, model: Model): void {
  const got = dump(db);
  expect(got.size).toBe(model.size);
  for (const [k, v] of model) if (got.get(k) !== v) expect({ key: k, got: got.get(k) }).toEqual({ key: k, got: v });
}

export interface Snapshot {
  content: Model;
  keys: number;
  sequence: number;
  segments: number;
  freeBlocks: number;
}

export function snapshot(db: KvStore): Snapshot {
  const s = db.stats();
  return {
    content: dump(db),
    keys: s.keys,
    sequence: s.sequence,
    segments: s.segments,
    freeBlocks: s.freeBlocks + reclaimableBlocks(db),
  };
}

/**
 * Blocks not free yet that hold nothing the store serves: those of objects removed at open (an
 * orphaned large value whose record the crash lost, a torn checkpoint) wait in the epoch's limbo
 * until it advances (truncate.ts retireBlock), how many have left it when the open returns
 * depends on its timing; and index checkpoints' blocks, which an open with the checkpoint
 * removes when it finds them torn or superseded and `recovery: 'full'` leaves to the next one.
 */
function reclaimableBlocks(db: KvStore): number {
  const device = db.dax.device;
  let n = db.dax.stats().limboBlocks;
  for (let b = 0; b < device.dataBlocks; b++) {
    const o = device.ownerOf(b);
    if (o.state === 'owned' && isCheckpointId(o.ownerId)) n++;
    else if (o.state === 'covered' && isCheckpointId(device.ownerOf(o.head).ownerId)) n++;
  }
  return n;
}

/** snapshot() and the log's counts (stats().recovery, daxstore info): the covered records' and the tail's. */
export function snapshotWithLog(db: KvStore): Snapshot & { records: number; entries: number } {
  return { ...snapshot(db), records: db.recovery!.records, entries: db.recovery!.entries };
}

/**
 * A store of `keys` random keys (`key-<random>-<i>`, value `value <i>`) on media of `bytes`,
 * closed with a checkpoint: its image, the keys in the order written, the model.
 */
export function closedStoreOfKeys(
  r: () => number,
  keys: number,
  bytes: number,
): { image: SimMedia; names: string[]; model: Model } {
  const media = createSimMedia(bytes);
  const model: Model = new Map();
  const names: string[] = [];
  const db = openMedia(media, { durability: 'none' });
  for (let i = 0; i < keys; i++) {
    const key = `key-${Math.floor(r() * 1e9)}-${i}`;
    names.push(key);
    db.put(key, `value ${i}`);
    model.set(hex(key), hex(`value ${i}`));
  }
  db.close();
  return { image: media.crashImage({ mode: 'none' }), names, model };
}

/**
 * Opens `image` with recovery: 'full' and with its checkpoint (each on its own copy): the
 * checkpoint loaded, nothing ignored, the tree verified, equal to the full scan (snapshotWithLog).
 */
export function expectCheckpointEqualsFull(image: SimMedia): KvStore {
  const full = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
  const want = snapshotWithLog(full);
  full.close();
  const db = openMedia(image, { formatIfEmpty: false });
  expect(db.recovery!.checkpoint!.ignored).toEqual([]);
  expect(db.recovery!.checkpoint!.loaded).toBeDefined();
  verifyTree(db.dax.tree);
  expect(snapshotWithLog(db)).toEqual(want);
  return db;
}

/** Random writes applied to db and model: puts (some large), overwrites, deletes, batches, now and then a compaction. */
export function workload(db: KvStore, model: Model, r: () => number, ops: number, keySpace: number): void {
  for (let i = 0; i < ops; i++) {
    const key = `k${Math.floor(r() * keySpace)}`;
    const x = r();
    if (x < 0.55) {
      const large = r() < 0.01;
      const value = large
        ? 'L'.repeat(17000 + Math.floor(r() * 3000)) + i
        : `v${i}-${'x'.repeat(Math.floor(r() * 60))}`;
      db.put(key, value);
      model.set(hex(key), hex(value));
    } else if (x < 0.75) {
      db.delete(key);
      model.delete(hex(key));
    } else if (x < 0.995) {
      const ops2 = Array.from({ length: 1 + Math.floor(r() * 4) }, (_, j) =>
        r() < 0.8
          ? { type: 'put' as const, key: `${key}.${j}`, value: `b${i}.${j}` }
          : { type: 'del' as const, key: `${key}.${j}` },
      );
      db.batch(ops2);
      applyBatch(model, ops2);
    } else db.compact({ maxLiveRatio: 0.6 });
  }
}

/** A batch's ops applied to the model as the store applies them: each key's last op wins. */
export function applyBatch(
  model: Model,
  ops: ReadonlyArray<{ type: 'put'; key: string; value: string } | { type: 'del'; key: string }>,
): void {
  const last = new Map<string, (typeof ops)[number]>();
  for (const op of ops) last.set(op.key, op);
  for (const op of last.values()) {
    if (op.type === 'put') model.set(hex(op.key), hex(op.value));
    else model.delete(hex(op.key));
  }
}

/** Checkpoint `id`'s own bytes (its object is whole extents; its header says how many bytes are its). */
export function checkpointBytes(space: DaxSpace, id: number): Uint8Array {
  const head = space.object(id).read(0, 48);
  return space.object(id).read(0, new DataView(head.buffer).getFloat64(40, true));
}

/** The offset in checkpoint bytes `b` of its tree image (its header's counts give the layout). */
export function checkpointImageAt(b: Uint8Array): number {
  const dv = new DataView(b.buffer, b.byteOffset);
  const f = (at: number) => dv.getFloat64(at, true);
  return checkpointLayout(f(72), f(56), f(64), f(96)).image;
}

/** Where a rewritten checkpoint goes instead of over the newest: a new object `id` of generation `generation`. */
export interface PlantAs {
  id: number;
  generation: number;
  /** Bytes to edit and plant instead of a copy of the newest checkpoint's (another store's, say). */
  from?: Uint8Array;
}

/**
 * Rewrites a checkpoint of `image` through `edit`, which gets the bytes and the offset of their tree
 * image and returns true to reseal the checksum; the image after (a crash image). The newest
 * checkpoint is rewritten in place, or, with `plant`, its bytes (or `plant.from`) are written as a
 * new checkpoint under a generation of their own (a higher one is read first).
 */
export function rewriteCheckpoint(
  image: SimMedia,
  edit: (bytes: Uint8Array, imageAt: number) => boolean,
  plant?: PlantAs,
): SimMedia {
  const space = DaxSpace.openMedia(image, { formatIfEmpty: false });
  try {
    const newest = checkpointIds(space)[0];
    const bytes = plant?.from ?? checkpointBytes(space, newest);
    if (plant) new DataView(bytes.buffer, bytes.byteOffset).setFloat64(32, plant.generation, true);
    if (edit(bytes, checkpointImageAt(bytes))) sealCheckpoint(bytes);
    const id = plant?.id ?? newest;
    if (plant) space.object(id, { create: true, size: bytes.length });
    space.object(id).write(0, bytes);
  } finally {
    space.close();
  }
  return image.crashImage({ mode: 'none' });
}

/** The crash image of `db` after its writes (`probability` of each line not made durable lost), db closed. */
export function crash(db: KvStore, r: () => number, probability: number): SimMedia {
  const image = (db.dax.device.media as SimMedia).crashImage({
    mode: probability === 0 ? 'none' : 'random',
    seed: (r() * 2 ** 32) >>> 0,
    probability,
  });
  db.close();
  return image;
}
