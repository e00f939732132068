/**
 * Public API of the key-value store (re-exported by src/api/daxstore.ts, the package entry).
 *
 *   const db = open(path, { size, durability: 'sync' | 'group' | 'none' });
 *   db.put(k, v); db.get(k); db.read(() => db.getView(k)); db.has(k); db.delete(k);
 *   db.batch(ops); await db.batchAsync(ops); db.range(opts); db.deleteRange(opts); await db.flushed(); db.stats(); db.close();
 *   const snap = db.snapshot(); snap.get(k); snap.range(opts); snap.close(); // or `using snap = db.snapshot()`
 *   const h = db.share(); // in a worker: attach(h)
 */
import type { Media } from '../device/media.js';
import { KvStore, type KvHandle, type KvStoreOf, type OpenMediaOptions, type OpenOptions } from './store.js';
import type { KeyEncoding, ValueEncoding } from './encodings.js';

export {
  KvStore,
  MIN_STORE_BYTES,
  type OpenOptions,
  type OpenMediaOptions,
  type KvStoreOf,
  type KvIterateOptions,
  KvIterator,
  type Durability,
  type WriteOptions,
  type BatchOp,
  type KvRangeOptions,
  type KvHandle,
  type KvStats,
} from './store.js';
export { KvSnapshot } from './snapshot.js';
export { KvTransaction } from './transaction.js';
export { KvDamageError, type KvRecoveryReport, type KvDamage, type RecoveryMode } from './recovery.js';
export type { SalvageReport } from './recovery-salvage.js';
export type { CompactionReport } from './compaction.js';
export type { Key, Value } from './keys.js';
export type {
  KeyEncoding,
  ValueEncoding,
  OrderedKey,
  OrderedKeyPart,
  KeyOf,
  ValueOf,
  KeyInput,
  ValueInput,
} from './encodings.js';
export { MAX_KEY_BYTES, MAX_VALUE_BYTES, OWNER_KV_SEGMENT } from './layout.js';

/** Opens the store at path (creating it with opts.size bytes when absent). */
export function open<KE extends KeyEncoding = 'ordered', VE extends ValueEncoding = 'msgpack'>(
  path: string,
  opts?: OpenOptions<KE, VE>,
): KvStoreOf<KE, VE> {
  return KvStore.open(path, opts);
}

/** Opens a store on a Media (formats it when it holds no daxstore). */
export function openMedia<KE extends KeyEncoding = 'ordered', VE extends ValueEncoding = 'msgpack'>(
  media: Media,
  opts?: OpenMediaOptions<KE, VE>,
): KvStoreOf<KE, VE> {
  return KvStore.openMedia(media, opts);
}

/** The store behind a handle from db.share(), in another thread. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function attach<K = any, V = any>(
  handle: KvHandle,
  opts?: { keyEncoding?: 'binary'; valueEncoding?: 'binary' },
): KvStore<K, V> {
  return KvStore.attach<K, V>(handle, opts);
}
