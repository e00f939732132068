/**
 * Transactions of the key-value store: db.transactionSync(fn) runs fn with a KvTransaction
 * whose reads see a snapshot plus the transaction's own writes and whose writes are buffered;
 * then the store commits them as ONE record, serializable across every thread of the process,
 * or finds a conflict and runs fn again (up to TXN_ATTEMPTS), then throws ECONFLICT.
 *
 * Invariants
 *   - Nothing is written before commit: put/delete only fill the write set (values copied, so
 *     the caller may reuse its buffers); an exception in fn, a conflict or ECONFLICT leaves the
 *     store exactly as it was.
 *   - The read set holds every key the transaction read from its snapshot (get, getView, has,
 *     getEntry, and delete's "did it exist"), and every range it read, with its bounds; commit
 *     (store.ts commitTransaction) validates them all under the entry locks of every key read or
 *     written, taken in ascending key order: a key read is unchanged iff its newest version is
 *     still <= S; a range is unchanged iff no key in it has a version between S and the
 *     commit's sequence. Then the transaction is equivalent to running alone at its sequence.
 *   - A committed transaction is one BATCH record: all or nothing across crashes, published to
 *     readers as one step, durable per the store's durability on return.
 *
 * Concurrency: a transaction belongs to the thread that runs it; its snapshot is registered
 * (snapshots.ts) from the first attempt's start to the end of the last.
 *
 * Persistence ordering: store.ts (the batch record's).
 */
import { assert } from '../assert.js';
import { DaxError } from '../errors.js';
import { compareBytes } from './keys.js';
import type { KeyInput, ValueInput } from './encodings.js';
import type { SnapshotHost } from './snapshot.js';
import type { KvRangeOptions } from './store.js';

/** Attempts before a conflicting transaction gives up with ECONFLICT. */
export const TXN_ATTEMPTS = 32;

/** A buffered write's stored bytes (encoded), undefined for a delete. */
export type TxnValue = Uint8Array | undefined;

/** A buffered write: the index key (prefix byte first) and its stored bytes (encoded), or undefined for a delete. */
export interface TxnWrite {
  key: Uint8Array;
  value: Uint8Array | undefined;
}

/** Sets of keys up to this size are searched linearly (no string per key); larger ones get a Map by their latin1 string. */
const SMALL_SET = 16;

/**
 * A range of a transaction's snapshot: [encoded key without its prefix byte, stored value
 * bytes] copies, no limit; the test of its bounds on index keys; what limit and order it asked.
 */
export interface TxnRange {
  range: IterableIterator<[Uint8Array, Uint8Array]> & { return(): unknown };
  contains: (indexKey: Uint8Array) => boolean;
  reverse: boolean;
  limit: number;
  bounds: unknown;
}

/** What a transaction needs from its store beyond a snapshot's reads (store.ts). */
export interface TransactionHost extends SnapshotHost {
  /** A range of the snapshot at S (options checked as db.range's, keys/values flags aside). */
  rangeForTransaction(opts: unknown, S: number): TxnRange;
  /** The index key of a key by the handle's key encoding (an own copy). */
  encodeKey(key: unknown, op: string): Uint8Array;
  /** The bytes a value is stored as by the handle's value encoding (an own copy). */
  encodeValue(value: unknown, op: string): Uint8Array;
  /** A key from its encoded bytes (no prefix byte). */
  decodeKey(bytes: Uint8Array): unknown;
  /** A value from its stored bytes. */
  decodeValue(bytes: Uint8Array, op: string): unknown;
  /** The value at S of the key whose index key is k (as getAt; k is not kept). */
  getKeyAt(k: Uint8Array, S: number, op: string, view: boolean): unknown;
  /** The version at S of the key whose index key is k (as versionAt). */
  versionKeyAt(k: Uint8Array, S: number, op: string): number | undefined;
}

const latin1 = (k: Uint8Array): string => Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('latin1');

/** Whether two keys hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length;
  if (n !== b.length) return false;
  for (let i = n - 1; i >= 0; i--) if (a[i] !== b[i]) return false; // from the end: keys sharing a prefix differ there first
  return true;
}

/** The index of k in keys (searched by its Map when there is one), -1 when absent. */
function indexIn(keys: Uint8Array[], index: Map<string, number> | undefined, k: Uint8Array): number {
  if (index !== undefined) return index.get(latin1(k)) ?? -1;
  for (let i = 0; i < keys.length; i++) if (sameBytes(keys[i], k)) return i;
  return -1;
}

/** Appends k (absent) to keys; returns the Map to search them by from now on (made once they outgrow SMALL_SET). */
function addTo(
  keys: Uint8Array[],
  index: Map<string, number> | undefined,
  k: Uint8Array,
): Map<string, number> | undefined {
  keys.push(k);
  if (index !== undefined) return index.set(latin1(k), keys.length - 1);
  if (keys.length <= SMALL_SET) return undefined;
  const made = new Map<string, number>();
  for (let i = 0; i < keys.length; i++) made.set(latin1(keys[i]), i);
  return made;
}

/**
 * The transaction a db.transactionSync() callback receives: reads of the store as of the
 * transaction's snapshot plus its own writes, and buffered writes. Valid only during the
 * callback.
 */
export class KvTransaction<K = any, V = any> {
  /** The write set: index keys and their stored bytes (undefined: a delete), in the order first written. */
  private readonly wKeys: Uint8Array[] = [];
  private readonly wValues: Array<Uint8Array | undefined> = [];
  /** wKeys by latin1 string, once there are more than SMALL_SET. */
  private wIndex: Map<string, number> | undefined = undefined;
  /** The read set: index keys read from the snapshot, each once. */
  private readonly rKeys: Uint8Array[] = [];
  private rIndex: Map<string, number> | undefined = undefined;
  /** The ranges read, with their bounds (made at the first range read). */
  private ranges: unknown[] | undefined = undefined;
  private open = true;

  constructor(
    private readonly host: TransactionHost,
    /** The sequence of the snapshot the transaction reads. */
    readonly sequence: number,
  ) {}

  /** The value of key (decoded, as db.get): this transaction's own write, else the snapshot's. */
  get(key: KeyInput<K>): V | undefined {
    const k = this.key(key, 'transaction get');
    const w = indexIn(this.wKeys, this.wIndex, k);
    if (w >= 0) {
      const own = this.wValues[w];
      return own === undefined ? undefined : (this.host.decodeValue(own, 'transaction get') as V);
    }
    this.noteRead(k);
    return this.host.getKeyAt(k, this.sequence, 'transaction get', false) as V | undefined;
  }

  /** As get(), as a view valid until the transaction ends (its own writes: a view of the buffered copy). */
  getView(key: KeyInput<K>): Uint8Array | undefined {
    const k = this.key(key, 'transaction getView');
    const w = indexIn(this.wKeys, this.wIndex, k);
    if (w >= 0) return this.wValues[w];
    this.noteRead(k);
    return this.host.getKeyAt(k, this.sequence, 'transaction getView', true) as Uint8Array | undefined;
  }

  has(key: KeyInput<K>): boolean {
    return this.hasKey(this.key(key, 'transaction has'));
  }

  private hasKey(k: Uint8Array): boolean {
    const w = indexIn(this.wKeys, this.wIndex, k);
    if (w >= 0) return this.wValues[w] !== undefined;
    this.noteRead(k);
    return this.host.versionKeyAt(k, this.sequence, 'transaction has') !== undefined;
  }

  /** Buffers a put of key (the value is encoded, so copied, now); nothing is written before commit. */
  put(key: KeyInput<K>, value: ValueInput<V>): void {
    const k = this.key(key, 'transaction put');
    this.write(k, this.host.encodeValue(value, 'transaction put'));
  }

  /** Buffers a delete of key; returns whether the key existed in the transaction's view (a read). */
  delete(key: KeyInput<K>): boolean {
    const k = this.key(key, 'transaction delete');
    const existed = this.hasKey(k);
    this.write(k, undefined);
    return existed;
  }

  private write(k: Uint8Array, value: Uint8Array | undefined): void {
    const w = indexIn(this.wKeys, this.wIndex, k);
    if (w >= 0) {
      this.wValues[w] = value;
      return;
    }
    this.wValues.push(value);
    this.wIndex = addTo(this.wKeys, this.wIndex, k);
  }

  /**
   * [key, value] entries in key order, decoded (options as db.range, without keys/values):
   * the snapshot's, with this transaction's own writes applied. The whole range (its bounds,
   * whatever `limit` stops at) is read for the commit's validation: a key another thread adds
   * there is a conflict.
   */
  *range(opts?: KvRangeOptions<K>): Generator<[K, V]> {
    this.check('transaction range');
    const { range, contains, reverse, limit, bounds } = this.host.rangeForTransaction(opts, this.sequence);
    (this.ranges ??= []).push(bounds);
    // Own writes in the bounds, in the range's order (index keys: the prefix byte compares equal).
    const own = this.writes().filter((w) => contains(w.key));
    if (reverse) own.reverse();
    let o = 0;
    let n = 0;
    const before = (w: TxnWrite, key: Uint8Array): number => {
      const c = compareUserKeys(w.key, key);
      return reverse ? -c : c;
    };
    const decoded = (key: Uint8Array, value: Uint8Array): [K, V] => [
      this.host.decodeKey(key) as K,
      this.host.decodeValue(value, 'transaction range') as V,
    ];
    try {
      for (const item of range) {
        this.check('transaction range');
        const [key] = item;
        for (; o < own.length && before(own[o], key) < 0; o++) {
          if (own[o].value === undefined) continue;
          if (n++ >= limit) return;
          yield decoded(own[o].key.subarray(1), own[o].value!);
        }
        if (o < own.length && before(own[o], key) === 0) {
          const w = own[o++];
          if (w.value === undefined) continue;
          if (n++ >= limit) return;
          yield decoded(key, w.value);
          continue;
        }
        if (n++ >= limit) return;
        yield decoded(item[0], item[1]);
      }
      for (; o < own.length; o++) {
        if (own[o].value === undefined) continue;
        if (n++ >= limit) return;
        yield decoded(own[o].key.subarray(1), own[o].value!);
      }
    } finally {
      range.return();
    }
  }

  /** Ends the transaction (the store calls it after the callback). */
  end(): void {
    this.open = false;
  }

  /** The write set in ascending key order (the lock order). */
  writes(): TxnWrite[] {
    const keys = this.wKeys;
    const n = keys.length;
    const out: TxnWrite[] = [];
    if (n > SMALL_SET) {
      for (let i = 0; i < n; i++) out.push({ key: keys[i], value: this.wValues[i] });
      return out.sort((a, b) => compareBytes(a.key, b.key));
    }
    // Insertion sort as each write is added (the small sets transactions usually have).
    for (let i = 0; i < n; i++) {
      const w = { key: keys[i], value: this.wValues[i] };
      out.push(w);
      let j = i - 1;
      for (; j >= 0 && compareBytes(out[j].key, w.key) > 0; j--) out[j + 1] = out[j];
      out[j + 1] = w;
    }
    return out;
  }

  /**
   * For the commit, once the transaction has ended: the write set sorted by key in place (the
   * lock order; keys and values kept in step) and the read set likewise, so the commit makes
   * no sorted copies of them. The sets hold what they held; a Map of either is dropped (a
   * search then goes through the keys).
   */
  sortForCommit(): void {
    assert(!this.open, 'sortForCommit: the transaction is still open');
    sortInStep(this.wKeys, this.wValues);
    sortInStep(this.rKeys, undefined);
    this.wIndex = undefined;
    this.rIndex = undefined;
  }

  /** The write set's keys (index keys): in ascending order after sortForCommit. */
  get writeKeys(): readonly Uint8Array[] {
    return this.wKeys;
  }

  /** The write set's stored bytes (undefined: a delete), in step with writeKeys. */
  get writeValues(): ReadonlyArray<Uint8Array | undefined> {
    return this.wValues;
  }

  /** Whether the transaction wrote anything. */
  get wrote(): boolean {
    return this.wKeys.length > 0;
  }

  /** The keys read from the snapshot (index keys, each once; in ascending order after sortForCommit). */
  get reads(): readonly Uint8Array[] {
    return this.rKeys;
  }

  /** The ranges read, with their bounds. */
  get rangesRead(): readonly unknown[] {
    return this.ranges ?? NO_RANGES;
  }

  private noteRead(k: Uint8Array): void {
    if (indexIn(this.rKeys, this.rIndex, k) < 0) this.rIndex = addTo(this.rKeys, this.rIndex, k);
  }

  /** op: the whole name errors give ('transaction get'), a literal: no string is built per call. */
  private key(key: unknown, op: string): Uint8Array {
    this.check(op);
    return this.host.encodeKey(key, op);
  }

  private check(op: string): void {
    if (!this.open) throw new DaxError('ECLOSED', `${op}: the transaction has ended (use it only inside its callback)`);
    this.host.checkOpen(op);
  }
}

const NO_RANGES: readonly unknown[] = Object.freeze([]);

/**
 * Sorts keys in ascending byte order in place, and values (when given) in step with them:
 * an insertion sort with no allocation for the small sets transactions usually have.
 */
function sortInStep(keys: Uint8Array[], values: Array<Uint8Array | undefined> | undefined): void {
  const n = keys.length;
  if (n > SMALL_SET) {
    const order = keys.map((_, i) => i).sort((a, b) => compareBytes(keys[a], keys[b]));
    const k = order.map((i) => keys[i]);
    for (let i = 0; i < n; i++) keys[i] = k[i];
    if (values !== undefined) {
      const v = order.map((i) => values[i]);
      for (let i = 0; i < n; i++) values[i] = v[i];
    }
    return;
  }
  for (let i = 1; i < n; i++) {
    const k = keys[i];
    const v = values === undefined ? undefined : values[i];
    let j = i - 1;
    for (; j >= 0 && compareBytes(keys[j], k) > 0; j--) {
      keys[j + 1] = keys[j];
      if (values !== undefined) values[j + 1] = values[j];
    }
    keys[j + 1] = k;
    if (values !== undefined) values[j + 1] = v;
  }
}

/** memcmp order of an index key (prefix byte first) against a user key. */
function compareUserKeys(indexKey: Uint8Array, userKey: Uint8Array): number {
  const n = Math.min(indexKey.length - 1, userKey.length);
  for (let i = 0; i < n; i++) if (indexKey[i + 1] !== userKey[i]) return indexKey[i + 1] - userKey[i];
  return indexKey.length - 1 - userKey.length;
}
