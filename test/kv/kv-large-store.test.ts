/**
 * A store past 4 GiB: one SharedArrayBuffer over the whole mapping, seen through windowed views
 * (src/kv/media-views.ts), since a typed array ends at 2^32 elements. A sparse 16 GiB file on
 * /dev/shm holds keys and large values placed beyond 4 GiB and beyond 8 GiB (the allocator's
 * next-fit start is moved there, so nothing before them is touched), read back in the same
 * run, after a reopen through open(), and from a worker thread attached with share().
 * A snapshot taken before the keys beyond 4 GiB are overwritten near the top of the store
 * reads their old versions (the back pointer of the newest entry leads from one window into
 * another), in get, getView, getEntry and range; a transaction reads and writes them.
 *
 * The red case: DAXSTORE_TEST_BREAK=kv-no-window sends every offset to the first window, as a
 * single 4 GiB view would; what is stored beyond 4 GiB is then lost or read wrong.
 */
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { openRegion } from '../../src/device/region.js';
import { open, openMedia } from '../helpers/kv-bytes.js';
import { rng, scaled, withSeed } from '../helpers/seed.js';
import { withBroken } from '../../src/test-break.js';
import { KV_KEY_PREFIX } from '../../src/kv/layout.js';
import { runWorker } from '../helpers/workers.js';
import type { KvStore } from '../../src/kv/index.js';
import { tempPaths } from '../helpers/temp-paths.js';

const FILE = 'test/kv/kv-large-store.test.ts';
const GiB = 2 ** 30;
const STORE_BYTES = 16 * GiB;
const temp = tempPaths('large');

function sparseFile(): string {
  const p = temp.next();
  fs.writeFileSync(p, '');
  fs.truncateSync(p, STORE_BYTES);
  return p;
}

interface Placed {
  key: Buffer;
  value: Buffer;
  /** the device offset the value must lie beyond */
  beyond: number;
}

/** The entry offset the index holds for key (caller: no operation in flight). */
function entryOffset(db: KvStore, key: Buffer): number | undefined {
  return db.dax.tree.lookup(Uint8Array.of(KV_KEY_PREFIX, ...key));
}

/**
 * Writes keys (small values, and large ones that become DAX objects) with the allocator's next
 * fit moved to just past `beyond`; enough small records to make the writer open a segment there.
 */
function writeBeyond(db: KvStore, r: () => number, beyond: number, tag: string): Placed[] {
  const device = db.dax.device;
  device.injectFault({ allocateFrom: Math.max(0, Math.ceil((beyond - device.dataOffset) / device.blockSize)) });
  const placed: Placed[] = [];
  const smallBytes = 2 * 1024 * 1024 + 64 * 1024; // more than one segment: the next one is past `beyond`
  for (let written = 0, i = 0; written < smallBytes; i++) {
    const value = Buffer.alloc(200 + Math.floor(r() * 800), `${tag}-${i}-`);
    const key = Buffer.from(`${tag}/small/${i}`);
    db.put(key, value);
    placed.push({ key, value, beyond: -1 });
    written += value.length + key.length + 64;
  }
  // The last small keys were written after the writer moved to a segment past `beyond`.
  for (const p of placed.slice(-20)) p.beyond = beyond;
  for (let i = 0; i < scaled(4); i++) {
    const value = Buffer.alloc(20_000 + Math.floor(r() * 300_000));
    for (let j = 0; j < value.length; j += 4096) value[j] = Math.floor(r() * 256);
    value.write(`${tag}-large-${i}`);
    const key = Buffer.from(`${tag}/large/${i}`);
    db.put(key, value);
    placed.push({ key, value, beyond: -1 });
  }
  return placed;
}

function checkAll(db: KvStore, placed: Placed[]): void {
  for (const p of placed) {
    const got = db.get(p.key);
    if (got === undefined || !Buffer.from(got).equals(p.value))
      throw new Error(`key ${p.key.toString()}: ${got === undefined ? 'missing' : 'wrong value'}`);
    if (p.beyond > 0) {
      const at = entryOffset(db, p.key);
      if (at === undefined || at < p.beyond)
        throw new Error(`key ${p.key.toString()} at ${at}, not beyond ${p.beyond}`);
    }
  }
}

async function readInWorker(db: KvStore, placed: Placed[]): Promise<number> {
  const expect = placed.filter((p) => p.beyond > 0 || p.value.length > 16_384).map((p) => [p.key, p.value]);
  return runWorker<number>('kv-large-reader', { handle: db.share(), expect }, 120_000);
}

/**
 * Holds a snapshot while every key placed beyond 4 GiB (`past4/`) is overwritten (the writer's
 * segment is the one near the top, so the new entries lie in another window and their back
 * pointers lead into the window beyond 4 GiB); the snapshot reads the old versions, the store
 * the new ones, and a transaction moves bytes between two of them. Updates `placed`.
 */
function snapshotsAcrossWindows(db: KvStore, placed: Placed[]): void {
  const past4 = placed.filter((x) => x.key.toString().startsWith('past4/'));
  const deep = past4.filter((x) => x.beyond > 0 || x.value.length > 16_384);
  if (deep.length < 2) throw new Error('nothing placed beyond 4 GiB');
  for (const x of deep) {
    const at = entryOffset(db, x.key);
    if (at === undefined || at < 4 * GiB) throw new Error(`key ${x.key.toString()} at ${at}, not beyond 4 GiB`);
  }
  const snap = db.snapshot();
  const old = new Map(past4.map((x) => [x.key.toString(), x.value]));
  const versions = new Map(deep.map((x) => [x.key.toString(), db.getEntry(x.key)!.version]));
  for (const x of deep) {
    x.value = Buffer.concat([x.value, Buffer.from('+v2')]);
    db.put(x.key, x.value);
    const at = entryOffset(db, x.key)!;
    if (Math.floor(at / (4 * GiB)) === 1) throw new Error(`the new version of ${x.key.toString()} stayed in window 1`);
  }
  db.delete(deep[0].key);
  try {
    for (const x of deep) {
      const want = old.get(x.key.toString())!;
      const got = snap.get(x.key);
      if (got === undefined || !Buffer.from(got).equals(want))
        throw new Error(`snapshot get of ${x.key.toString()}: ${got === undefined ? 'missing' : 'wrong value'}`);
      if (!Buffer.from(snap.getView(x.key)!).equals(want)) throw new Error(`snapshot view of ${x.key.toString()}`);
      expect(snap.getEntry(x.key)!.version).toBe(versions.get(x.key.toString()));
    }
    const scanned = [...snap.range({ gte: Buffer.from('past4/'), lt: Buffer.from('past40') })];
    expect(scanned.length).toBe(old.size);
    for (const [k, value] of scanned)
      if (!Buffer.from(value).equals(old.get(Buffer.from(k).toString())!))
        throw new Error(`snapshot range: ${Buffer.from(k).toString()} wrong value`);
  } finally {
    snap.close();
  }
  expect(db.get(deep[0].key)).toBeUndefined();
  placed.splice(placed.indexOf(deep[0]), 1);
  const [a, b] = [deep[1], deep[deep.length - 1]];
  const moved = db.transactionSync((txn) => {
    const va = txn.get(a.key)!;
    const vb = txn.get(b.key)!;
    txn.put(a.key, Buffer.concat([va, Buffer.from('<')]));
    txn.put(b.key, Buffer.concat([vb, Buffer.from(String(va.length))]));
    return va.length;
  });
  b.value = Buffer.concat([b.value, Buffer.from(String(moved))]);
  a.value = Buffer.concat([a.value, Buffer.from('<')]);
  for (const x of [a, b]) x.beyond = -1; // rewritten near the top
}

async function runLargeStore(seed: number): Promise<void> {
  const r = rng(seed);
  const p = sparseFile();
  let db = openMedia(openRegion(p), { formatIfEmpty: true });
  const placed: Placed[] = [];
  try {
    expect(db.dax.device.media.size).toBe(STORE_BYTES);
    placed.push(...writeBeyond(db, r, 0, 'low'));
    placed.push(...writeBeyond(db, r, 4 * GiB + Math.floor(r() * 64) * 2 ** 21, 'past4'));
    placed.push(...writeBeyond(db, r, 8 * GiB + Math.floor(r() * 64) * 2 ** 21, 'past8'));
    placed.push(...writeBeyond(db, r, STORE_BYTES - 64 * 2 ** 21, 'top'));
    checkAll(db, placed);
    expect(await readInWorker(db, placed)).toBe(0);
    snapshotsAcrossWindows(db, placed);
    checkAll(db, placed);
  } finally {
    db.close();
  }
  db = open(p);
  try {
    checkAll(db, placed);
    // Overwrite and delete beyond 8 GiB after the reopen, then reopen again.
    const victims = placed.filter((x) => x.key.toString().startsWith('past8/'));
    for (const v of victims.slice(0, 5)) db.delete(v.key);
    const kept = placed.filter((x) => !victims.slice(0, 5).includes(x));
    checkAll(db, kept);
    for (const v of victims.slice(0, 5)) expect(db.get(v.key)).toBeUndefined();
    placed.splice(0, placed.length, ...kept);
  } finally {
    db.close();
  }
  db = open(p);
  try {
    checkAll(db, placed);
  } finally {
    db.close();
  }
  const used = fs.statSync(p).blocks * 512;
  if (used > 1 * GiB) throw new Error(`the sparse store holds ${used} bytes: the test touched too much`);
}

/**
 * Index checkpoints of a store past 4 GiB: a clean close writes one over keys placed beyond 4
 * and 8 GiB; the reopen loads it (its coverage and covered records are read through the
 * windows) and serves them; then overwrites and deletes of keys beyond 8 GiB are written after
 * it and the handle closes without a new one, so the next open merges that tail (entries past
 * 4 GiB) over the checkpoint. Each open equals `recovery: 'full'` of the same store.
 */
async function runLargeCheckpoint(seed: number): Promise<void> {
  const r = rng(seed);
  const p = sparseFile();
  let db = openMedia(openRegion(p), { formatIfEmpty: true, checkpoint: true });
  const placed: Placed[] = [];
  try {
    placed.push(...writeBeyond(db, r, 0, 'low'));
    placed.push(...writeBeyond(db, r, 4 * GiB + Math.floor(r() * 64) * 2 ** 21, 'past4'));
    placed.push(...writeBeyond(db, r, 8 * GiB + Math.floor(r() * 64) * 2 ** 21, 'past8'));
  } finally {
    db.close();
  }
  if (db.lastCheckpoint === undefined || 'error' in db.lastCheckpoint)
    throw new Error(`no checkpoint written at close: ${JSON.stringify(db.lastCheckpoint)}`);
  db = open(p, { checkpoint: false }); // its close keeps the checkpoint before the tail
  try {
    const use = db.stats().recovery?.checkpoint;
    if (use?.loaded === undefined) throw new Error(`checkpoint not loaded: ${JSON.stringify(use?.ignored)}`);
    checkAll(db, placed);
    // A tail after the checkpoint beyond 8 GiB: overwrites and deletes of keys there, new keys.
    const victims = placed.filter((x) => x.key.toString().startsWith('past8/small/')).slice(-10);
    for (const v of victims.slice(0, 5)) db.delete(v.key);
    for (const v of victims.slice(5)) {
      v.value = Buffer.from(`again-${v.key.toString()}`);
      db.put(v.key, v.value);
    }
    placed.splice(0, placed.length, ...placed.filter((x) => !victims.slice(0, 5).includes(x)));
    placed.push(...writeBeyond(db, r, 12 * GiB + Math.floor(r() * 64) * 2 ** 21, 'past12'));
    for (const v of victims.slice(0, 5)) expect(db.get(v.key)).toBeUndefined();
  } finally {
    db.close();
  }
  for (const recovery of ['strict', 'full'] as const) {
    db = open(p, { recovery });
    try {
      const use = db.stats().recovery?.checkpoint;
      if (recovery === 'strict' && (use?.loaded === undefined || use.tailEntries === 0))
        throw new Error(`the tail was not replayed over the checkpoint: ${JSON.stringify(use)}`);
      checkAll(db, placed);
      for (const k of ['past8/small/0', 'past12/small/0']) expect(db.get(Buffer.from(k)), k).toBeDefined();
    } finally {
      db.close();
    }
  }
  const used = fs.statSync(p).blocks * 512;
  if (used > 1 * GiB) throw new Error(`the sparse store holds ${used} bytes: the test touched too much`);
}

describe('a 16 GiB store (sparse, on /dev/shm)', () => {
  it('an index checkpoint past 4 GiB is written at close, loaded, and a tail past 8 GiB merged over it', async () => {
    await withSeed(FILE, runLargeCheckpoint);
  }, 300_000);

  it('DAXSTORE_TEST_BREAK=kv-no-window: the checkpoint past 4 GiB goes red', async () => {
    await expect(withBroken('kv-no-window', () => withSeed(FILE, runLargeCheckpoint))).rejects.toThrow();
  }, 300_000);

  it('keys and large values beyond 4 GiB and 8 GiB are written, read back, in snapshots and transactions, reopened and read from a worker', async () => {
    await withSeed(FILE, runLargeStore);
  }, 300_000);

  it('DAXSTORE_TEST_BREAK=kv-no-window: one 4 GiB view loses what lies beyond it (goes red)', async () => {
    await expect(withBroken('kv-no-window', () => withSeed(FILE, runLargeStore))).rejects.toThrow();
  }, 300_000);
});
