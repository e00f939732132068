/**
 * open() and openMedia() for tests of the store's machinery (records, recovery, compaction,
 * workers): stores of raw bytes ('binary' keys and values), so a test states and checks
 * exact bytes. A store's encodings are tested on their own (test/kv/kv-encodings*.test.ts)
 * through the package's open(), whose defaults are 'ordered' keys and 'msgpack' values.
 */
import {
  open as openStore,
  openMedia as openStoreMedia,
  type KvStore,
  type OpenMediaOptions,
  type OpenOptions,
} from '../../src/kv/index.js';
import type { Media } from '../../src/device/media.js';
import { expect } from 'vitest';

export const BYTES = { keyEncoding: 'binary', valueEncoding: 'binary' } as const;

/** Options with the byte encodings added; anything but a plain options object passes unchanged (misuse tests). */
function withBytes<T>(opts: T): T {
  if (opts === undefined) return BYTES as T;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) return opts;
  return { ...BYTES, ...opts };
}

export function open(path: string, opts?: Omit<OpenOptions, 'keyEncoding' | 'valueEncoding'>): KvStore {
  return openStore(path, withBytes(opts) as OpenOptions<'binary', 'binary'>);
}

export function openMedia(media: Media, opts?: Omit<OpenMediaOptions, 'keyEncoding' | 'valueEncoding'>): KvStore {
  return openStoreMedia(media, withBytes(opts) as OpenMediaOptions<'binary', 'binary'>);
}

/** Expects `key` to hold exactly the model's bytes, or to be absent where the model has no such key. */
export function expectKeyMatches(db: KvStore, model: ReadonlyMap<string, Uint8Array>, key: string): void {
  const got = db.get(key);
  const want = model.get(key);
  expect(got === undefined ? undefined : Buffer.from(got).equals(want ?? Buffer.alloc(0)), key).toBe(
    want === undefined ? undefined : true,
  );
}

/** Expects every key of the model to hold exactly its bytes and the store to hold no other key. */
export function expectStoreMatches(db: KvStore, model: ReadonlyMap<string, Uint8Array>): void {
  for (const [k, v] of model) expect(Buffer.from(db.get(k)!).equals(v), k).toBe(true);
  expect(db.stats().keys).toBe(model.size);
}

/**
 * The value of random write `i` of the segment-count and entry-note workloads: 2% large
 * (17 000 to 37 000 bytes), empty while the first draw is below `emptyBelow`,
 * else up to 1500 bytes; every byte i's low byte, i in its first word when it has one.
 */
export function mixedValue(random: () => number, i: number, emptyBelow: number): Buffer {
  const r = random();
  const n = r < 0.02 ? 17_000 + Math.floor(random() * 20_000) : r < emptyBelow ? 0 : Math.floor(random() * 1500);
  const v = Buffer.alloc(n, i & 0xff);
  if (n >= 4) v.writeUInt32LE(i, 0);
  return v;
}
