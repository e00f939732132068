/**
 * DaxLevel: a daxstore as an abstract-level database (the `level` ecosystem's interface), for
 * code written against level, classic-level or memory-level. abstract-level does the
 * encodings, sublevels, deferred open, events and hooks; this class stores the bytes it is
 * given in a daxstore opened with 'binary' keys and values, and declares exactly what the
 * store supports in its manifest (the suite's manifest-driven tests check each claim).
 *
 * Snapshots: an iterator reads the store as of its creation (implicit snapshot: a store
 * snapshot of its own, so seek() stays on it too, released when the iterator closes);
 * db.snapshot() is a store snapshot (explicit), and every read given { snapshot } — get,
 * getSync, getMany, has, hasMany, iterators, and clear's choice of keys — reads through it.
 *
 * Concurrency: one DaxLevel owns its store (open() takes the file's lock); worker threads
 * share a store through daxstore's own share()/attach(), not through this class.
 */
import { existsSync } from 'node:fs';
import { AbstractIterator, AbstractLevel, AbstractSnapshot, type AbstractDatabaseOptions } from 'abstract-level';
import { DaxError } from '../errors.js';
import { checkOptions } from '../options.js';
import {
  open,
  type Durability,
  type KvIterateOptions,
  type KvIterator,
  type KvSnapshot,
  type KvStore,
} from '../kv/index.js';

/** Options of the DaxLevel constructor: level's, plus the store's size and durability. */
export interface DaxLevelOptions<K, V> extends AbstractDatabaseOptions<K, V> {
  /** bytes of the store file when it is created (default 256 MiB: a sparse file) */
  size?: number;
  /** when writes become durable (default 'sync'; see daxstore's open()) */
  durability?: Durability;
}

type Bytes = Uint8Array;
type Store = KvStore<Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>>;

/** What abstract-level passes to _iterator (encoded range options and flags). */
interface IteratorOptions {
  gt?: Bytes;
  gte?: Bytes;
  lt?: Bytes;
  lte?: Bytes;
  reverse: boolean;
  keys: boolean;
  values: boolean;
  limit: number;
  snapshot?: DaxSnapshot;
}

/** What abstract-level passes to the reads that take a snapshot. */
interface ReadOptions {
  snapshot?: DaxSnapshot;
}

/** A store snapshot (KvSnapshot) as level's explicit snapshot: closed with it, or with the database. */
class DaxSnapshot extends AbstractSnapshot {
  constructor(
    options: object,
    readonly inner: KvSnapshot<Bytes, Bytes>,
  ) {
    // @ts-expect-error abstract-level's declaration omits the constructor's options ({ owner })
    super(options);
  }

  async _close(): Promise<void> {
    this.inner.close();
  }
}

const DEFAULT_SIZE = 256 * 2 ** 20;
const STORE_OPTIONS = { size: 'positiveInteger', durability: ['sync', 'group', 'none'] } as const;

export class DaxLevel<KDefault = string, VDefault = string> extends AbstractLevel<Bytes, KDefault, VDefault> {
  /** The store file. */
  readonly location: string;
  private readonly size: number;
  private readonly durability: Durability;
  private store: Store | undefined;

  constructor(location: string, options?: DaxLevelOptions<KDefault, VDefault>) {
    if (typeof location !== 'string' || location.length === 0)
      throw new DaxError('EINVAL', `DaxLevel: location must be a non-empty string`);
    if (options !== undefined && (options === null || typeof options !== 'object'))
      throw new DaxError('EINVAL', `DaxLevel: options must be an object`);
    // level's own options are open-ended (plugins and hooks read theirs): only the store's are checked here
    const { size, durability, ...levelOptions } = options ?? {};
    checkOptions('DaxLevel', { size, durability }, STORE_OPTIONS);
    super(
      {
        encodings: { view: true },
        has: true,
        getSync: true,
        seek: true,
        createIfMissing: true,
        errorIfExists: true,
        permanence: true,
        deferredOpen: true,
        implicitSnapshots: true,
        explicitSnapshots: true,
      } as never, // level-supports' declared manifest lags abstract-level 3 (getSync, has, snapshots)
      levelOptions,
    );
    this.location = location;
    this.size = size ?? DEFAULT_SIZE;
    this.durability = durability ?? 'sync';
  }

  /** The daxstore underneath (open only): its stats(), compact(), share() … */
  get kv(): Store {
    if (this.store === undefined) throw new DaxError('ECLOSED', `DaxLevel ${this.location} is not open`);
    return this.store;
  }

  async _open(options: { createIfMissing: boolean; errorIfExists: boolean }): Promise<void> {
    const exists = existsSync(this.location);
    if (exists && options.errorIfExists)
      throw new DaxError('EEXIST', `DaxLevel: ${this.location} exists (errorIfExists)`);
    if (!exists && !options.createIfMissing)
      throw new DaxError('ENOENT', `DaxLevel: ${this.location} does not exist (createIfMissing is false)`);
    this.store = open(this.location, {
      ...(exists ? {} : { size: this.size }),
      durability: this.durability,
      keyEncoding: 'binary',
      valueEncoding: 'binary',
    });
  }

  async _close(): Promise<void> {
    const store = this.store;
    this.store = undefined;
    store?.close();
  }

  _snapshot(options: object): DaxSnapshot {
    return new DaxSnapshot(options, this.kv.snapshot());
  }

  async _get(key: Bytes, options?: ReadOptions): Promise<Bytes | undefined> {
    return this._getSync(key, options);
  }

  _getSync(key: Bytes, options?: ReadOptions): Bytes | undefined {
    const snapshot = options?.snapshot;
    return snapshot === undefined ? this.kv.get(key) : snapshot.inner.get(key);
  }

  async _getMany(keys: Bytes[], options?: ReadOptions): Promise<Array<Bytes | undefined>> {
    const snapshot = options?.snapshot;
    if (snapshot === undefined) return this.kv.getMany(keys);
    return keys.map((k) => snapshot.inner.get(k));
  }

  async _has(key: Bytes, options?: ReadOptions): Promise<boolean> {
    const snapshot = options?.snapshot;
    return snapshot === undefined ? this.kv.has(key) : snapshot.inner.has(key);
  }

  async _hasMany(keys: Bytes[], options?: ReadOptions): Promise<boolean[]> {
    const reader = options?.snapshot?.inner ?? this.kv;
    return keys.map((k) => reader.has(k));
  }

  async _put(key: Bytes, value: Bytes): Promise<void> {
    await this.kv.putAsync(key, value);
  }

  async _del(key: Bytes): Promise<void> {
    await this.kv.deleteAsync(key);
  }

  async _batch(operations: Array<{ type: 'put' | 'del'; key: Bytes; value?: Bytes }>): Promise<void> {
    await this.kv.batchAsync(
      operations.map((op) =>
        op.type === 'put' ? { type: 'put', key: op.key, value: op.value! } : { type: 'del', key: op.key },
      ),
    );
  }

  async _clear(options: IteratorOptions): Promise<void> {
    const snapshot = options.snapshot;
    if (snapshot === undefined) {
      this.kv.deleteRange(rangeOf(options, options.limit));
      return;
    }
    // the keys the snapshot holds in the range, deleted now (keys written since it are kept)
    const keys = [...snapshot.inner.range({ ...rangeOf(options, options.limit), values: false })].map(([k]) => k);
    if (keys.length > 0) await this.kv.batchAsync(keys.map((key) => ({ type: 'del' as const, key })));
  }

  _iterator(options: IteratorOptions): DaxIterator<KDefault, VDefault> {
    return new DaxIterator(this, options);
  }
}

/**
 * The store's range options for level's: gte wins over gt and lte over lt when both are given
 * (level's rule); a limit of -1 is no limit.
 */
function rangeOf(o: Partial<IteratorOptions>, limit: number | undefined): KvIterateOptions {
  const r: KvIterateOptions = { reverse: o.reverse === true };
  if (o.gte !== undefined) r.gte = o.gte;
  else if (o.gt !== undefined) r.gt = o.gt;
  if (o.lte !== undefined) r.lte = o.lte;
  else if (o.lt !== undefined) r.lt = o.lt;
  if (limit !== undefined && limit >= 0) r.limit = limit;
  return r;
}

function compare(a: Bytes, b: Bytes): number {
  return Buffer.compare(a, b);
}

/**
 * An iterator over the store's range(): entries come from the store's read-ahead batches;
 * seek() starts a new range at the target, inside the original bounds. abstract-level counts
 * the limit itself (it stops calling _next when it is reached).
 */
class DaxIterator<K, V> extends AbstractIterator<DaxLevel<K, V>, K, V> {
  /**
   * The store range, started at the first read or seek (not here: a read through a closed
   * explicit snapshot must fail at the read, with level's LEVEL_SNAPSHOT_NOT_OPEN, and only
   * abstract-level's read checks that); its bounds are `from`.
   */
  private range: KvIterator<[Bytes, Bytes]> | undefined;
  private from: Partial<IteratorOptions>;
  /** entries yielded so far (the limit left for a range started by seek) */
  private yielded = 0;
  /** what the iterator reads: the explicit snapshot it was given, or one of its own (implicit, closed with it) */
  private readonly snapshot: KvSnapshot<Bytes, Bytes>;
  private readonly ownsSnapshot: boolean;

  constructor(
    db: DaxLevel<K, V>,
    private readonly opts: IteratorOptions,
  ) {
    super(db, opts as never);
    this.ownsSnapshot = opts.snapshot === undefined;
    this.snapshot = opts.snapshot?.inner ?? db.kv.snapshot();
    this.from = opts;
  }

  private get inner(): KvIterator<[Bytes, Bytes]> {
    if (this.range === undefined) {
      const limit = this.opts.limit >= 0 ? this.opts.limit - this.yielded : undefined;
      this.range = this.snapshot.range({
        ...rangeOf(this.from, limit),
        keys: this.opts.keys,
        values: this.opts.values,
      }) as KvIterator<[Bytes, Bytes]>;
    }
    return this.range;
  }

  async _next(): Promise<[Bytes, Bytes] | undefined> {
    const r = this.inner.next();
    if (r.done) return undefined;
    this.yielded++;
    return r.value;
  }

  async _nextv(size: number): Promise<Array<[Bytes, Bytes]>> {
    const out: Array<[Bytes, Bytes]> = [];
    while (out.length < size) {
      const r = this.inner.next();
      if (r.done) break;
      out.push(r.value);
    }
    this.yielded += out.length;
    return out;
  }

  async _all(): Promise<Array<[Bytes, Bytes]>> {
    const out = [...this.inner];
    this.yielded += out.length;
    return out;
  }

  /** The next entry is the first at or after `target` (at or before it in reverse), within the original bounds. */
  _seek(target: Bytes): void {
    const o = this.opts;
    const next: Partial<IteratorOptions> = { ...o };
    if (!o.reverse) {
      const lower = o.gte ?? o.gt;
      if (lower === undefined || compare(target, lower) > 0) {
        delete next.gt;
        next.gte = target;
      }
    } else {
      const upper = o.lte ?? o.lt;
      if (upper === undefined || compare(target, upper) < 0) {
        delete next.lt;
        next.lte = target;
      }
    }
    this.range?.return();
    this.range = undefined;
    this.from = next;
  }

  async _close(): Promise<void> {
    this.range?.return();
    if (this.ownsSnapshot) this.snapshot.close();
  }
}
