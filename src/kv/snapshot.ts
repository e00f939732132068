/**
 * Snapshots of the key-value store: what a user holds. The versions they read and why those
 * stay readable are in snapshots.ts and versions.ts; the reads themselves are the store's
 * (SnapshotHost, implemented by store.ts), and so is the iterator of range(), keys() and
 * values() (store.ts KvIterator), which owns a snapshot of its own.
 *
 * Invariants
 *   - A KvSnapshot, or an iterator that owns its snapshot, holds exactly one registration of
 *     its sequence from construction until close()/return()/exhaustion, or until it is garbage
 *     collected (releaseWhenCollected), whichever comes first; then none.
 *   - An iterator reads every batch at its snapshot's sequence: it returns the store as of its
 *     creation, each key once, in order.
 *
 * Concurrency: a snapshot belongs to the thread (store handle) that took it; its reads are the
 * store's lock-free reads. Release runs on that thread (finalizers included).
 *
 * Persistence ordering: none.
 */
import { DaxError } from '../errors.js';
import type { KeyInput } from './encodings.js';
import type { KvIterateOptions, KvIterator } from './store.js';

/** What a snapshot needs from its store handle (store.ts implements it). */
export interface SnapshotHost {
  /** Registers a snapshot of the store as it is now; returns its sequence. */
  registerSnapshot(op: string): number;
  /** Drops one registration of sequence S (nothing once the store is closed). */
  releaseSnapshot(S: number): void;
  /** The value of key at S, decoded by the handle's value encoding. */
  getAt(key: unknown, S: number, op: string): unknown;
  /** A view valid while the snapshot at S is held. */
  viewAt(key: unknown, S: number, op: string): Uint8Array | undefined;
  /** The version (sequence) of key at S, undefined when absent. */
  versionAt(key: unknown, S: number, op: string): number | undefined;
  /** A range of the snapshot (options checked as db.range's). */
  rangeIn(opts: unknown, snapshot: KvSnapshot): KvIterator<[unknown, unknown]>;
  checkOpen(op: string): void;
}

/** Releases the snapshot of a snapshot or iterator the program dropped without closing it. */
const dropped = new FinalizationRegistry<{ host: SnapshotHost; sequence: number }>(({ host, sequence }) =>
  host.releaseSnapshot(sequence),
);

/**
 * An owner's (snapshot's or iterator's) claim on release at collection. Registering in the
 * FinalizationRegistry and unregistering cost about as much as the rest of taking and closing
 * a snapshot, and most snapshots are closed in the same synchronous run that took them
 * (`using`, a loop over range()): so a claim starts young, in a list that holds its owner
 * strongly, and is registered only if its owner is still open when the list is flushed — at
 * the end of the current job (a microtask), or once YOUNG_MAX claims wait. An owner dropped
 * while young stays reachable until that flush, and is registered then. An owner may be its own
 * claim (KvSnapshot: one object per snapshot, not two); the registry then takes the owner as
 * its unregister token, which it holds weakly.
 */
export interface CollectClaim {
  owner: object | undefined;
  readonly host: SnapshotHost;
  readonly sequence: number;
  registered: boolean;
  done: boolean;
}

const YOUNG_MAX = 64;
const young: CollectClaim[] = [];
let flushQueued = false;

function flushYoung(): void {
  flushQueued = false;
  for (let i = 0; i < young.length; i++) {
    const c = young[i];
    if (!c.done) {
      dropped.register(c.owner ?? c, { host: c.host, sequence: c.sequence }, c);
      c.registered = true;
    }
    c.owner = undefined;
  }
  young.length = 0;
}

/** Puts a claim in the young list (see CollectClaim). */
function enroll(claim: CollectClaim): void {
  if (young.push(claim) >= YOUNG_MAX) flushYoung();
  else if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushYoung);
  }
}

/** Releases the snapshot at `sequence` when `owner` is garbage collected, unless forgetCollected(claim) came first. */
export function releaseWhenCollected(owner: object, host: SnapshotHost, sequence: number): CollectClaim {
  const claim: CollectClaim = { owner, host, sequence, registered: false, done: false };
  enroll(claim);
  return claim;
}

/** The owner released its snapshot itself. */
export function forgetCollected(claim: CollectClaim): void {
  claim.done = true;
  if (claim.registered) dropped.unregister(claim);
}

/**
 * A consistent view of the store as of db.snapshot(): every read sees exactly the writes
 * acknowledged before it was taken, whatever any thread writes meanwhile. Cheap to take (no
 * copy); while held, the versions it can see are kept (stats() reports it, like a stalled
 * reader). close() it (or `using`); one the program drops is released when it is collected.
 */
export class KvSnapshot<K = any, V = any> implements Disposable {
  /** @internal Its own claim (CollectClaim, structurally: not declared, the published types strip these members): undefined, the young list holds the snapshot itself. */
  owner: object | undefined = undefined;
  /** @internal Registered for release at collection. */
  registered = false;
  /** @internal Closed. */
  done = false;

  constructor(
    /** @internal */
    readonly host: SnapshotHost,
    /** The sequence of the last write the snapshot sees (its version). */
    readonly sequence: number,
  ) {
    enroll(this);
  }

  /** The value of key as of the snapshot (decoded, as db.get), or undefined. */
  get(key: KeyInput<K>): V | undefined {
    this.check('get');
    return this.host.getAt(key, this.sequence, 'snapshot get') as V | undefined;
  }

  /** A zero-copy view of the value as of the snapshot, valid until the snapshot is closed. */
  getView(key: KeyInput<K>): Uint8Array | undefined {
    this.check('getView');
    return this.host.viewAt(key, this.sequence, 'snapshot getView');
  }

  has(key: KeyInput<K>): boolean {
    this.check('has');
    return this.host.versionAt(key, this.sequence, 'snapshot has') !== undefined;
  }

  /** The value and version (the sequence of the write that stored it) of key as of the snapshot. */
  getEntry(key: KeyInput<K>): { value: V; version: number } | undefined {
    this.check('getEntry');
    const version = this.host.versionAt(key, this.sequence, 'snapshot getEntry');
    if (version === undefined) return undefined;
    return { value: this.host.getAt(key, this.sequence, 'snapshot getEntry') as V, version };
  }

  /** [key, value] entries in key order as of the snapshot (options as db.range). */
  range(options?: KvIterateOptions<K>): KvIterator<[K, V]> {
    this.check('range');
    return this.host.rangeIn(options, this) as KvIterator<[K, V]>;
  }

  get closed(): boolean {
    return this.done;
  }

  /** Releases the snapshot: views taken from it are invalid from here on. Idempotent. */
  close(): void {
    if (this.done) return;
    forgetCollected(this);
    this.host.releaseSnapshot(this.sequence);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private check(op: string): void {
    if (this.done) throw new DaxError('ECLOSED', `snapshot ${op}: the snapshot (sequence ${this.sequence}) is closed`);
    this.host.checkOpen(`snapshot ${op}`);
  }
}
