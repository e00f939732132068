/**
 * A broken index never makes a scan endless, and a checkpoint whose keys are out of order is
 * not trusted.
 * 1. An index leaf that names another key's entry (what a checkpoint that named records it did
 *    not cover once left behind): range() resumes each batch after the key of its last entry,
 *    so a leaf at a batch's end naming a key a whole batch back sent it round the same keys
 *    for ever. Every iterator (range, keys, values, reverse, a snapshot's, a transaction's) now
 *    ends with ECORRUPT at that batch boundary. Red with kv-scan-progress-unchecked: the scan
 *    returns the same keys again and again (stopped by a cap on what it may return).
 * 2. A checkpoint taken while running whose keys are out of order (two neighbours swapped, its
 *    checksum resealed), with and without a tail after it: the bulk load refuses it (ECORRUPT), the open ignores
 *    it (stats().recovery.checkpoint.ignored says why), scans the log whole, removes it, and
 *    equals `recovery: 'full'`. Red with kv-checkpoint-order-trusted: the open fails.
 * Not covered: the leaf-keyed scans (getCount, deleteRange, the tombstone sweep, a running
 * checkpoint's walk) cannot be sent back by a leaf naming another key's entry (they resume
 * after the leaf's own key, which the walk compares with its bounds); they carry the same check.
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia, type SimMedia } from '../../src/device/sim-media.js';
import { DaxSpace } from '../../src/dax/space.js';
import { openMedia as openKv } from '../../src/kv/index.js';
import type { OpenMediaOptions } from '../../src/kv/store.js';
import { checkpointIds, checkpointLayout, sealCheckpoint } from '../../src/kv/checkpoint.js';
import { withBroken } from '../../src/test-break.js';
import { expectCode } from '../helpers/expect-code.js';
import { checkpointBytes } from './kv-checkpoint-helpers.js';

const MEDIA_BYTES = 24 * 2 ** 20;
const KEYS = 2000;
/** range()'s batches without a limit: 64, 128, 256, then 512 each (store.ts RANGE_BATCH_*). */
const BATCH_ENDS = [63, 191, 447, 959, 1471, 1983];
const key = (i: number): string => `k${String(i).padStart(5, '0')}`;
const indexKey = (k: string): Uint8Array => Uint8Array.of(1, ...Buffer.from(k));

function openMedia(media: SimMedia, opts: OpenMediaOptions = {}) {
  return openKv(media, { ...opts, keyEncoding: 'utf8', valueEncoding: 'utf8' });
}
type KvStore = ReturnType<typeof openMedia>;

/** A store of KEYS keys whose leaf of key `at` names the entry of key `to` (the index broken on purpose). */
function brokenIndex(at: number, to: number): KvStore {
  const db = openMedia(createSimMedia(MEDIA_BYTES), { durability: 'none', autoCompact: false });
  for (let i = 0; i < KEYS; i++) db.put(key(i), `v${i}`);
  const tree = db.dax.tree;
  const entry = tree.lookup(indexKey(key(to)));
  expect(entry).toBeDefined();
  expect(tree.insert(indexKey(key(at)), entry!)).toBe(true);
  return db;
}

/** Items an iterator hands out, at most `cap` (a scan going round for ever stops there). */
function drain(it: Iterable<unknown>, cap: number): number {
  let n = 0;
  for (const _ of it) if (++n >= cap) break;
  return n;
}

// Forward: the leaf at a 512-batch's end names the key 512 back, so the next batch ends on it
// again. Reverse (batches from the top: ends at 1936, 1808, 1552, 1040, ...): the leaf at 1040
// names key 1552, the batch after it started from.
const FORWARD = { at: BATCH_ENDS[3], to: BATCH_ENDS[2] };
const REVERSE = { at: KEYS - 1 - 959, to: KEYS - 1 - 447 };
const CAP = 10 * KEYS;

const scans: Array<[string, typeof FORWARD, (db: KvStore) => Iterable<unknown>]> = [
  ['range()', FORWARD, (db) => db.range()],
  ['range({ reverse: true })', REVERSE, (db) => db.range({ reverse: true })],
  ['keys()', FORWARD, (db) => db.keys()],
  ['values()', FORWARD, (db) => db.values()],
  ['a snapshot range()', FORWARD, (db) => db.snapshot().range()],
  [
    'a transaction range()',
    FORWARD,
    (db) => ({
      *[Symbol.iterator]() {
        const items: unknown[] = [];
        // the transaction's range is read inside the callback; CAP bounds it there
        db.transactionSync((txn) => {
          for (const item of txn.range()) if (items.push(item) >= CAP) break;
        });
        yield* items;
      },
    }),
  ],
];

describe('scans of a broken index end', () => {
  for (const [name, where, scan] of scans) {
    it(`${name} over a leaf naming an earlier batch's key ends with ECORRUPT naming both keys`, () => {
      const db = brokenIndex(where.at, where.to);
      try {
        const e = expectCode(() => drain(scan(db), CAP), 'ECORRUPT');
        expect(e.message).toContain(key(where.to));
        expect(e.message).toContain('out of order');
      } finally {
        db.close();
      }
    }, 60_000);
  }

  it('goes red with DAXSTORE_TEST_BREAK=kv-scan-progress-unchecked: range() comes round to the same keys for ever', () => {
    const db = brokenIndex(FORWARD.at, FORWARD.to);
    try {
      withBroken('kv-scan-progress-unchecked', () => expect(drain(db.range(), CAP)).toBe(CAP));
    } finally {
      db.close();
    }
  }, 60_000);
});

/**
 * Checkpoint bytes `b` without their tree image, as a build before images in running
 * checkpoints wrote them (image words 0, the index keys back to back after the lengths): each
 * key read from its entry in the log (`media`: the entry's header, then its key bytes), after
 * the index's prefix byte. The open then loads the columns, whose order its bulk load checks.
 */
function withoutImage(b: Uint8Array, media: Uint8Array): Uint8Array {
  const dv = new DataView(b.buffer, b.byteOffset);
  const f = (at: number) => dv.getFloat64(at, true);
  const count = f(56);
  const at = checkpointLayout(f(72), count, f(64), 0);
  const out = new Uint8Array(at.total);
  out.set(b.subarray(0, at.keys));
  let k = at.keys;
  for (let i = 0; i < count; i++) {
    const value = f(at.values + i * 8);
    const entry = value < 0 ? -value - 1 : value;
    const length = dv.getUint16(at.lengths + i * 2, true);
    out[k] = 1; // the key-value prefix
    out.set(media.subarray(entry + 24, entry + 24 + length - 1), k + 1);
    k += length;
  }
  const odv = new DataView(out.buffer);
  odv.setFloat64(40, at.total, true);
  for (const word of [96, 104, 112, 120]) odv.setFloat64(word, 0, true);
  return out;
}

/**
 * The image with its newest checkpoint's keys `i` and `i + 1` (of equal length) swapped with
 * their values, the checksum resealed: whole and of this store, its keys out of order. Layout
 * (checkpoint.ts checkpointLayout): a 128-byte header, 80 bytes per segment, the values (f64), the
 * lengths (u16, padded to 8 bytes), the keys back to back (the checkpoint is rewritten without
 * its tree image first: withoutImage).
 */
function swapNeighbours(image: SimMedia): SimMedia {
  const space = DaxSpace.openMedia(image, { formatIfEmpty: false });
  try {
    const id = checkpointIds(space)[0];
    const b = withoutImage(checkpointBytes(space, id), new Uint8Array(image.buffer));
    const dv = new DataView(b.buffer, b.byteOffset);
    const count = dv.getFloat64(56, true);
    const valuesAt = 128 + dv.getFloat64(72, true) * 80;
    const lengthsAt = valuesAt + count * 8;
    let keyAt = lengthsAt + Math.ceil((count * 2) / 8) * 8;
    const i = Math.floor(count / 2);
    for (let j = 0; j < i; j++) keyAt += dv.getUint16(lengthsAt + j * 2, true);
    const n = dv.getUint16(lengthsAt + i * 2, true);
    expect(dv.getUint16(lengthsAt + (i + 1) * 2, true)).toBe(n);
    const a = b.slice(keyAt, keyAt + n);
    b.copyWithin(keyAt, keyAt + n, keyAt + 2 * n);
    b.set(a, keyAt + n);
    const v = dv.getFloat64(valuesAt + i * 8, true);
    dv.setFloat64(valuesAt + i * 8, dv.getFloat64(valuesAt + (i + 1) * 8, true), true);
    dv.setFloat64(valuesAt + (i + 1) * 8, v, true);
    sealCheckpoint(b);
    space.object(id).write(0, b);
  } finally {
    space.close();
  }
  return image.crashImage({ mode: 'none' });
}

/**
 * A store with a checkpoint taken while running, and with `tail` writes after it, then a crash.
 * Its tree image, which a reopen loads instead of the columns (its order was checked when it was
 * built: kv-checkpoint-image.test.ts), is taken out by swapNeighbours.
 */
function imageWithCheckpoint(tail: number): SimMedia {
  const media = createSimMedia(MEDIA_BYTES);
  const db = openMedia(media, { checkpoint: true, durability: 'sync', autoCompact: false });
  for (let i = 0; i < KEYS; i++) db.put(key(i), `v${i}`);
  for (let i = 0; i < KEYS; i += 7) db.delete(key(i));
  db.checkpoint();
  if (tail === 0) return media.crashImage({ mode: 'none' }); // the handle is abandoned: a crash
  for (let i = 0; i < tail; i++) db.put(key(i * 3 + 1), `w${i}`);
  return media.crashImage({ mode: 'none' }); // the handle is abandoned: a crash
}

function contents(db: KvStore): Array<[string, string]> {
  return [...db.range()];
}

describe('a checkpoint whose keys are out of order', () => {
  for (const tail of [0, 300]) {
    it(`is ignored and removed, the log scanned whole, equal to a full scan (${tail} tail writes)`, () => {
      const image = swapNeighbours(imageWithCheckpoint(tail));
      const full = openMedia(image.crashImage({ mode: 'none' }), { formatIfEmpty: false, recovery: 'full' });
      const want = contents(full);
      full.close();
      const db = openMedia(image, { formatIfEmpty: false, checkpoint: true });
      try {
        const use = db.recovery!.checkpoint!;
        expect(use.loaded).toBeUndefined();
        expect(
          use.ignored.some((s) => /keys do not load.*not greater than key/.test(s)),
          use.ignored.join('; '),
        ).toBe(true);
        expect(contents(db)).toEqual(want);
        expect(checkpointIds(db.dax)).toEqual([]);
      } finally {
        db.close();
      }
    }, 60_000);
  }

  it('goes red with DAXSTORE_TEST_BREAK=kv-checkpoint-order-trusted: the open fails', () => {
    const image = swapNeighbours(imageWithCheckpoint(0));
    withBroken('kv-checkpoint-order-trusted', () =>
      expectCode(() => openMedia(image, { formatIfEmpty: false }).close(), 'ECORRUPT'),
    );
  }, 60_000);
});
