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
