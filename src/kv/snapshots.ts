/**
 * Visibility and snapshots of the key-value store: the sequences in flight, the registry of
 * snapshots held by each store handle, and the reclamation that snapshots hold back.
 *
 * Versions. Every entry carries the sequence of its record (its version) and the device offset
 * of the entry of the same key it superseded (its back pointer, layout.ts); the index points at
 * each key's newest entry. A snapshot at sequence S reads, for a key, the newest entry with a
 * sequence <= S, reached from the index by following back pointers: the key is absent at S
 * when that entry is a DEL or there is none. Reads that are not in a snapshot (get, getView,
 * has) read the newest entry: a batch is published as one step for them (store.ts
 * publishBatchLocked), and a DEL as the newest entry reads as absent.
 *
 * Invariants
 *   - In flight: a writer stores PENDING in its slot's INFLIGHT word before it takes a sequence
 *     and the sequence's tag right after, and clears the word only after its record is
 *     published in the index (every key of it). So once no slot holds PENDING or a sequence
 *     <= S, every record of sequence <= S is published: a snapshot waits for that before it
 *     reads (waitPublished), and never sees part of a batch or a transaction.
 *   - Registry: a handle holding snapshots has SNAP_MIN <= the sequence of each of them and its
 *     bit set in HELD; a handle holding none has SNAP_MIN = +Infinity and its bit clear. The
 *     oldest snapshot (oldest()) is the minimum over the slots.
 *   - Thread death: a slot names the participant (participants.ts) of the handle's thread. When
 *     that thread dies, the store's death handler (store.ts, after writer-reaper.ts has rolled
 *     its record in flight forward or back) releases the slot: its in-flight mark, its snapshots
 *     and its HELD bit (reapDead). A snapshot waiting on the in-flight mark of a dead owner
 *     triggers that reap itself (waitPublished).
 *   - A version superseded at sequence t (the sequence of the entry that replaced it, or of the
 *     DEL) is needed only by snapshots with S < t. What frees memory a superseded version lives
 *     in (a compacted segment, a large value's object) waits until oldest() >= its stamp
 *     (the deferred table below), then goes through the epoch as before (R6).
 *   - A DEL made while any snapshot is held stays in the index as a tombstone (the leaf points
 *     at the DEL entry), so older snapshots still reach the versions behind it; a tombstone is
 *     removed (sweepTombstones in store.ts) once no snapshot is older than its DEL.
 *
 * Concurrency
 *   - Writer (seq taker): plain store PENDING; the Atomics.add that takes the sequence (a locked
 *     instruction: the PENDING store is visible before it); plain store of the tag; ... publish
 *     ...; release store 0. A snapshot reads the last sequence L, then every slot's word
 *     (loads in order on x86: word-load.ts): if the add that took s <= L preceded its read of L,
 *     it sees PENDING, the tag or 0, and 0 comes after the publish.
 *   - Registration (first snapshot of a handle): plain store SNAP_MIN = a lower bound (the last
 *     sequence read just before), then Atomics.or of the handle's HELD bit (locked: the store is
 *     visible before it), then the snapshot's own read of the last sequence S >= the bound.
 *     Anyone who took a sequence t with an Atomics.add and then reads the registry either sees
 *     this snapshot (so keeps what it may need) or took t before the snapshot read S (t <= S:
 *     the snapshot does not need the version t superseded). The same holds for compaction,
 *     which reads the last sequence before it reads the registry.
 *   - SNAP_MIN is a Float64 (sequences reach 2^53) written only by its handle's thread with
 *     plain stores (one aligned 8-byte store on x86 and arm64); raising it or setting it back
 *     to +Infinity needs no fence: a reader that sees the older, lower value only keeps more.
 *   - Slots are claimed by CAS of CLAIMED from 0 to the claimer's participant id and held by
 *     one handle (one thread) until it closes or its thread dies. The HELD bit is the one word
 *     that says whether the slot counts as holding snapshots: set and cleared by single atomic
 *     operations, so a thread that dies anywhere in register() or release() leaves it either
 *     set (the reap clears it) or clear. The deferred table's entries are claimed by CAS of
 *     their state word.
 *
 * Shared words (`buffer`, Int32 unless said otherwise):
 *   header (128 bytes: two cache lines)
 *     0 HIGH             slots ever claimed (slots are claimed lowest first; scans stop here)
 *     1 (unused)
 *     2 TOMBSTONES       tombstone leaves in the index (Atomics.add)
 *     3 SWEEP_AT         TOMBSTONES at which a delete sweeps them (store.ts)
 *     4 DEFERRED         entries in the deferred table (Atomics.add)
 *     16..23 HELD        bit s: slot s holds at least one snapshot (Atomics.or / Atomics.and);
 *                        a line of its own: every transaction sets and clears a bit, and the
 *                        words above are read by every transaction of every thread
 *   slots (MAX_SLOTS lines of 64 bytes): one per handle that writes or takes snapshots
 *     0 CLAIMED          0 free, else the participant id of the handle's thread
 *     1 INFLIGHT         0, PENDING (-1), or the tag of the sequence being published
 *     2 SNAP_COUNT       snapshots this handle holds (stats)
 *     3 SNAP_GEN         bumped each time the oldest changes (other handles' stats: first-seen times)
 *     f64 at byte 16     SNAP_MIN: the oldest of them, +Infinity when none
 *     f64 at byte 24     SNAP_SINCE: Date.now() when the oldest was stamped, 0 while not yet (Ages)
 *   deferred table (DEFERRED_MAX entries of 32 bytes)
 *     0 state            0 free, BUSY, DEFER_SEGMENT, DEFER_LARGE_OBJECT
 *     f64 at byte 8      what: a segment's head block, or a large value's object id
 *     f64 at byte 16     stamp: released once oldest() >= stamp
 *
 * Ages (stats). Reading the clock costs about as much as the rest of taking a snapshot, and
 * most snapshots are closed in the synchronous run that took them (`using`, a loop over
 * range(), a transaction): so a snapshot is not stamped when taken. Its handle stamps the
 * snapshots it still holds at the end of that run (a microtask queued by the run's first
 * registration, at most one per handle at a time), or when its own stats() sees them first.
 * Another handle's stats() that sees a held, unstamped oldest counts it from the first time it
 * saw it (keyed by SNAP_GEN). So oldestSnapshotMs never over-reports: it can fall short of the
 * true age by at most the synchronous run that took the snapshot.
 *
 * Persistence ordering: none; all of this is volatile (no snapshot outlives the process).
 */
import { AssertionError, assert } from '../assert.js';
import { DaxError } from '../errors.js';
import { loadWord, storeRelease } from '../index/word-load.js';
import { isParticipantDead, participantId } from '../device/participants.js';
import { isBroken } from '../test-break.js';

export const MAX_SLOTS = 256; // HELD_WORDS * 32
const HEADER_BYTES = 128;
const SLOT_BYTES = 64;
const SLOT_WORDS = SLOT_BYTES / 4;
const HIGH = 0;
const HELD = 16;
const HELD_WORDS = 8;
const TOMBSTONES = 2;
const SWEEP_AT = 3;
const DEFERRED = 4;
const S_CLAIMED = 0;
const S_INFLIGHT = 1;
const S_SNAP_COUNT = 2;
const S_SNAP_GEN = 3;
const S_SNAP_MIN_F64 = 2; // Float64 index within the slot's line (byte 16)
const S_SNAP_SINCE_F64 = 3; // byte 24
const PENDING = -1;
const SLOTS_OFFSET = HEADER_BYTES;
export const DEFERRED_MAX = 1024;
const DEFERRED_BYTES = 32;
const DEFERRED_OFFSET = SLOTS_OFFSET + MAX_SLOTS * SLOT_BYTES;
export const SNAPSHOTS_BYTES = DEFERRED_OFFSET + DEFERRED_MAX * DEFERRED_BYTES;
const D_FREE = 0;
const D_BUSY = 1;
export const DEFER_SEGMENT = 2;
export const DEFER_LARGE_OBJECT = 3;
/** Tags of in-flight sequences: (sequence - base) modulo TAG_SPAN, plus 1 (0 and -1 are taken). */
const TAG_SPAN = 2 ** 30;
/**
 * A snapshot waiting for a writer to publish spins for up to SPIN_MS (the clock read every
 * SPIN_CHECKS checks), then sleeps in short slices. A writer is in flight for a few
 * microseconds (its seal, commit and publish): a waiter that slept instead (a slice is 50 us
 * at least, more with the wake-up) lost many times that, and two threads writing at once
 * waited on each other's commits in one snapshot out of several. The bound is a few times
 * that window: a writer still in flight after it was preempted (a machine with more runnable
 * threads than cores), and spinning on then burns the waiter's CPU (and pulls the writer's
 * slot line away from it) for nothing. So each handle adapts its bound between SPIN_MIN_MS
 * and SPIN_MAX_MS: halved by a spin that ran out, doubled by one that saw the publish.
 */
const SPIN_CHECKS = 64;
const SPIN_MAX_MS = 0.02;
const SPIN_MIN_MS = 0.002;
/** How long a snapshot waits for the records before it to be published before it gives up (a writer died or hangs). */
const PUBLISH_WAIT_LIMIT_MS = 30_000;
/** Tombstones the first sweep waits for, and the least any sweep waits for. */
export const SWEEP_MIN = 1024;

/** The stamping microtask of a handle's Snapshots, holding only its reference box (Snapshots.stampRef). */
function stampTaskOf(ref: { snapshots: Snapshots | undefined }): () => void {
  return () => ref.snapshots?.runQueuedStamp();
}

/** The shared state (header comment), and this handle's slot in it. One per store handle. */
export class Snapshots {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private slot = -1;
  /** Word index of this slot's INFLIGHT word (-1 until the slot is claimed): the writers' hot path. */
  private inflightAt = -1;
  /**
   * Live snapshots of this handle: the distinct sequences held, ascending, in seqs[head..] with
   * how many of each in counts[] (0: released, not yet cut out; `zeros` of them). A handle's
   * sequences only grow, so a snapshot is appended and one released is the first or the last
   * in the common orders; the arrays are cut at both ends and compacted when half are zeros.
   * (A Map of sequence -> count cost a runtime call per delete: its table shrinks each time.)
   */
  private readonly seqs: number[] = [];
  private readonly counts: number[] = [];
  /** Date.now() when each held sequence was stamped, 0 while not yet (the header's Ages); parallel to seqs. */
  private readonly stamps: number[] = [];
  /** A microtask that stamps this handle's snapshots is queued. */
  private stampQueued = false;
  /**
   * What the queued microtask reaches this handle through: emptied by leave(). A process that
   * runs one long synchronous job (the crash checker opens and closes thousands of stores in
   * one) never drains its microtasks, and a task holding the handle itself would keep every
   * closed handle, and the buffers it refers to, alive until then.
   */
  private readonly stampRef: { snapshots: Snapshots | undefined } = { snapshots: this };
  private readonly stampTask = stampTaskOf(this.stampRef);
  /** Other slots' unstamped oldest snapshots as this handle's stats() first saw them: SNAP_GEN and when. */
  private seenGen: Int32Array | undefined;
  private seenAt: Float64Array | undefined;
  private head = 0;
  private zeros = 0;
  private heldCount = 0;
  private heldMin = Infinity;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));
  /** How long waitPublished spins before it sleeps, ms (SPIN_MIN_MS..SPIN_MAX_MS, adapted: SPIN_CHECKS). */
  private spinMs = SPIN_MAX_MS;

  /**
   * `base`: the recovered maximum sequence of the store (every sequence taken since open is
   * above it); tags of in-flight sequences are relative to it.
   */
  constructor(
    readonly buffer: SharedArrayBuffer,
    private readonly base: () => number,
    /**
     * Reaps dead participant `id` (EpochDomain.reap: the store's death handler calls
     * reapDead); false when this thread cannot now. Called by a snapshot that waits on a dead
     * owner's in-flight mark.
     */
    private readonly reapOwner: (id: number) => boolean = () => false,
  ) {
    assert(buffer.byteLength === SNAPSHOTS_BYTES, 'snapshots: shared buffer of the wrong size');
    this.i32 = new Int32Array(buffer);
    this.f64 = new Float64Array(buffer);
  }

  /** A fresh shared buffer (opener): every slot free with SNAP_MIN +Infinity. */
  static create(): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(SNAPSHOTS_BYTES);
    const f64 = new Float64Array(buffer);
    for (let s = 0; s < MAX_SLOTS; s++) f64[(SLOTS_OFFSET + s * SLOT_BYTES) / 8 + S_SNAP_MIN_F64] = Infinity;
    new Int32Array(buffer)[SWEEP_AT] = SWEEP_MIN;
    return buffer;
  }

  private claim(): number {
    const i32 = this.i32;
    const me = participantId();
    for (let s = 0; s < MAX_SLOTS; s++) {
      const w = (SLOTS_OFFSET >> 2) + s * SLOT_WORDS;
      if (Atomics.compareExchange(i32, w + S_CLAIMED, 0, me) !== 0) continue;
      for (let high = Atomics.load(i32, HIGH); high < s + 1; high = Atomics.load(i32, HIGH))
        if (Atomics.compareExchange(i32, HIGH, high, s + 1) === high) break;
      this.slot = s;
      this.inflightAt = w + S_INFLIGHT;
      this.stampRef.snapshots = this;
      return s;
    }
    throw new DaxError('EBUSY', `key-value store: more than ${MAX_SLOTS} handles write or hold snapshots at once`);
  }

  /** Word index of this handle's slot line (claiming one the first time). */
  private line(): number {
    return (SLOTS_OFFSET >> 2) + (this.slot >= 0 ? this.slot : this.claim()) * SLOT_WORDS;
  }

  // ---- sequences in flight (writers) -----------------------------------------------

  /** Before taking a sequence (a plain store; the Atomics.add that takes it orders it). */
  pending(): void {
    this.i32[this.inflightAt >= 0 ? this.inflightAt : this.line() + S_INFLIGHT] = PENDING;
  }

  /** Right after taking the sequence that is `count` sequences above the store's base (the recovered maximum). */
  inflight(count: number): void {
    this.i32[this.inflightAt] = (count % TAG_SPAN) + 1;
  }

  /** After the record of the sequence is published (or abandoned): snapshots may read past it. */
  published(): void {
    if (this.inflightAt >= 0) storeRelease(this.i32, this.inflightAt, 0);
  }

  /**
   * Returns once every record of a sequence <= S is published: no slot holds PENDING or the
   * tag of such a sequence. A writer is in flight from taking its sequence to its publish
   * (its commit included), so this rarely waits; it spins, then sleeps in short slices.
   */
  waitPublished(S: number): void {
    const i32 = this.i32;
    const high = loadWord(i32, HIGH);
    const own = this.slot;
    const nL = (S - this.base()) % TAG_SPAN;
    for (let s = 0; s < high; s++) {
      if (s === own) continue;
      const at = (SLOTS_OFFSET >> 2) + s * SLOT_WORDS + S_INFLIGHT;
      let m = loadWord(i32, at);
      if (m === 0 || (m !== PENDING && !atOrBelow(m, nL))) continue;
      let checks = 0;
      let spinUntil = -1; // performance.now() at which spinning ends: -1 before the first clock read, 0 once sleeping
      const start = Date.now();
      while (m === PENDING || (m !== 0 && atOrBelow(m, nL))) {
        if (++checks > SPIN_CHECKS && spinUntil !== 0) {
          checks = 0;
          const now = performance.now();
          if (spinUntil < 0) spinUntil = now + this.spinMs;
          else if (now > spinUntil) {
            spinUntil = 0; // spun long enough: sleep from here on
            this.spinMs = Math.max(SPIN_MIN_MS, this.spinMs / 2);
          }
        } else if (spinUntil === 0) {
          const owner = loadWord(i32, at - S_INFLIGHT + S_CLAIMED);
          // Its thread died in flight: its record is finished or undone by the reap, then the mark goes.
          if (owner > 0 && isParticipantDead(owner) && this.reapOwner(owner)) this.reapDead(owner);
          else Atomics.wait(this.sleeper, 0, 0, 0.05);
          if (Date.now() - start > PUBLISH_WAIT_LIMIT_MS)
            throw new DaxError(
              'EBUSY',
              `snapshot: a writer (slot ${s}) has not published sequence ${S} or below for ${PUBLISH_WAIT_LIMIT_MS} ms`,
            );
        }
        m = loadWord(i32, at);
      }
      if (spinUntil > 0) this.spinMs = Math.min(SPIN_MAX_MS, this.spinMs * 2); // published while spinning
    }
  }

  // ---- the registry (snapshots) ----------------------------------------------------

  /**
   * Registers a snapshot at the sequence `read()` returns (the last sequence, read after this
   * handle is registered) and returns that sequence. `read` is called twice for a handle's
   * first snapshot: a lower bound first, published before the real read (header).
   */
  register(read: () => number): number {
    const w = this.line();
    const f = w / 2 + S_SNAP_MIN_F64;
    let S: number;
    if (this.heldCount === 0) {
      this.f64[f] = read(); // a lower bound, visible before the or below
      this.newOldest(w, 0);
      Atomics.or(this.i32, HELD + (this.slot >> 5), 1 << (this.slot & 31));
      S = read();
      this.f64[f] = S; // raising it needs no fence (header)
      this.heldMin = S;
    } else {
      S = read();
      assert(S >= this.heldMin, 'snapshot: sequences went backwards');
    }
    this.hold(S);
    this.heldCount++;
    this.i32[w + S_SNAP_COUNT] = this.heldCount;
    if (!this.stampQueued) {
      this.stampQueued = true;
      queueMicrotask(this.stampTask);
    }
    return S;
  }

  /** The slot at word w has a new oldest snapshot, stamped `since` (0: not yet): SNAP_SINCE, in a new generation. */
  private newOldest(w: number, since: number): void {
    this.f64[w / 2 + S_SNAP_SINCE_F64] = since;
    this.i32[w + S_SNAP_GEN] = (this.i32[w + S_SNAP_GEN] + 1) | 0;
  }

  /** @internal The queued stamp runs (stampTaskOf). */
  runQueuedStamp(): void {
    this.stampQueued = false;
    this.stamp();
  }

  /**
   * Stamps this handle's held snapshots not stamped yet with the time now (the header's Ages):
   * the end of the synchronous run that took them, or this handle's stats(). The unstamped ones
   * are the newest (sequences are held in the order taken), so the walk stops at a stamped one.
   */
  stamp(): void {
    if (this.heldCount === 0 || this.slot < 0) return;
    const stamps = this.stamps;
    let i = stamps.length - 1;
    if (i < this.head || stamps[i] !== 0) return;
    const now = Date.now();
    for (; i >= this.head && stamps[i] === 0; i--) stamps[i] = now;
    const w = this.line();
    if (this.f64[w / 2 + S_SNAP_SINCE_F64] === 0) this.f64[w / 2 + S_SNAP_SINCE_F64] = stamps[this.head];
  }

  /** Drops one registration of a snapshot at S. Returns whether this handle's oldest rose (deferred work may be due). */
  release(S: number): boolean {
    const i = this.slot >= 0 ? this.find(S) : -1;
    if (i < 0) throw new AssertionError(`snapshot release of ${S}, not held`);
    const w = this.line();
    const n = this.counts[i]--;
    this.heldCount--;
    this.i32[w + S_SNAP_COUNT] = this.heldCount;
    if (n > 1) return false;
    this.cut(i);
    if (this.heldCount === 0) {
      // cut() left seqs[head..] empty; the prefix before head goes only when there is one (setting length is a runtime call).
      if (this.head !== 0) {
        this.seqs.length = 0;
        this.counts.length = 0;
        this.stamps.length = 0;
        this.head = 0;
      }
      this.zeros = 0;
      this.heldMin = Infinity;
      this.f64[w / 2 + S_SNAP_MIN_F64] = Infinity;
      Atomics.and(this.i32, HELD + (this.slot >> 5), ~(1 << (this.slot & 31)));
      return true;
    }
    if (S !== this.heldMin) return false;
    const min = this.seqs[this.head];
    this.heldMin = min;
    this.newOldest(w, this.stamps[this.head]);
    this.f64[w / 2 + S_SNAP_MIN_F64] = min;
    return true;
  }

  /** One more registration of S (S is at least the oldest held: sequences a handle reads never go back). */
  private hold(S: number): void {
    const seqs = this.seqs;
    const last = seqs.length - 1;
    if (last < this.head || seqs[last] < S) {
      seqs.push(S);
      this.counts.push(1);
      this.stamps.push(0);
      return;
    }
    const i = this.indexOf(S);
    if (i >= 0) {
      if (this.counts[i]++ === 0) this.zeros--;
      return;
    }
    // Between two held sequences (not reached by a handle whose reads only grow; kept correct anyway).
    let at = last;
    while (at >= this.head && seqs[at] > S) at--;
    seqs.splice(at + 1, 0, S);
    this.counts.splice(at + 1, 0, 1);
    this.stamps.splice(at + 1, 0, Date.now()); // stamped now: stamp() walks back only over the newest
  }

  /** The index of S among the held sequences with a count above 0, -1 when not held. */
  private find(S: number): number {
    const i = this.indexOf(S);
    return i >= 0 && this.counts[i] > 0 ? i : -1;
  }

  /** The index of S in seqs[head..] (its count may be 0), -1 when absent. */
  private indexOf(S: number): number {
    const seqs = this.seqs;
    let lo = this.head;
    let hi = seqs.length - 1;
    if (hi >= lo && seqs[hi] === S) return hi; // the newest: the usual case
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = seqs[mid];
      if (v === S) return mid;
      if (v < S) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Entry i's count reached 0: cut it (and the zeros it uncovers) at either end, else count it; compact when half are zeros. */
  private cut(i: number): void {
    const seqs = this.seqs;
    const counts = this.counts;
    const stamps = this.stamps;
    if (i === seqs.length - 1) {
      seqs.pop();
      counts.pop();
      stamps.pop();
      while (counts.length > this.head && counts[counts.length - 1] === 0) {
        seqs.pop();
        counts.pop();
        stamps.pop();
        this.zeros--;
      }
    } else if (i === this.head) {
      this.head++;
      while (this.head < counts.length && counts[this.head] === 0) {
        this.head++;
        this.zeros--;
      }
    } else this.zeros++;
    const live = seqs.length - this.head;
    if (this.head > 32 && this.head > live) {
      seqs.splice(0, this.head);
      counts.splice(0, this.head);
      stamps.splice(0, this.head);
      this.head = 0;
    }
    if (this.zeros > 32 && this.zeros * 2 > live) {
      let to = 0;
      for (let from = this.head; from < seqs.length; from++)
        if (counts[from] > 0) {
          seqs[to] = seqs[from];
          stamps[to] = stamps[from];
          counts[to++] = counts[from];
        }
      seqs.length = to;
      counts.length = to;
      stamps.length = to;
      this.head = 0;
      this.zeros = 0;
    }
  }

  /** Snapshots this handle holds. */
  get count(): number {
    return this.heldCount;
  }

  /** Whether any handle holds a snapshot (plain loads of the HELD words in use: after an Atomics.add, see the header). */
  anyHeld(): boolean {
    const i32 = this.i32;
    if (loadWord(i32, HELD) !== 0) return true;
    const words = (loadWord(i32, HIGH) + 31) >> 5;
    for (let i = 1; i < words; i++) if (loadWord(i32, HELD + i) !== 0) return true;
    return false;
  }

  /** The oldest snapshot's sequence over every handle, +Infinity when none is held. */
  oldest(): number {
    if (!this.anyHeld()) return Infinity;
    const high = loadWord(this.i32, HIGH);
    let min = Infinity;
    for (let s = 0; s < high; s++) {
      const v = this.f64[(SLOTS_OFFSET + s * SLOT_BYTES) / 8 + S_SNAP_MIN_F64];
      if (v < min) min = v;
    }
    return min;
  }

  /**
   * Snapshots held over every handle, and how long the oldest has been held (stats; the
   * header's Ages: never more than its true age).
   */
  stats(): { snapshots: number; oldestMs: number } {
    this.stamp();
    const high = loadWord(this.i32, HIGH);
    const now = Date.now();
    let snapshots = 0;
    let since = Infinity;
    for (let s = 0; s < high; s++) {
      const w = (SLOTS_OFFSET >> 2) + s * SLOT_WORDS;
      const n = this.i32[w + S_SNAP_COUNT];
      if (n === 0) continue;
      snapshots += n;
      let at = this.f64[w / 2 + S_SNAP_SINCE_F64];
      if (s !== this.slot) {
        // Another handle's: counted from when this handle first saw it held, if that is earlier.
        const seenGen = (this.seenGen ??= new Int32Array(MAX_SLOTS));
        const seenAt = (this.seenAt ??= new Float64Array(MAX_SLOTS));
        const gen = this.i32[w + S_SNAP_GEN];
        if (seenAt[s] === 0 || seenGen[s] !== gen) {
          seenGen[s] = gen;
          seenAt[s] = now;
        }
        if (at === 0 || seenAt[s] < at) at = seenAt[s];
      }
      if (at !== 0) since = Math.min(since, at);
    }
    return { snapshots, oldestMs: snapshots === 0 || since === Infinity ? 0 : Math.max(0, now - since) };
  }

  /** Leaves the slot (close): every snapshot of this handle released first. */
  leave(): void {
    this.stampRef.snapshots = undefined;
    if (this.slot < 0) return;
    this.seqs.length = 0;
    this.counts.length = 0;
    this.stamps.length = 0;
    this.head = 0;
    this.zeros = 0;
    this.heldCount = 0;
    this.heldMin = Infinity;
    this.freeSlot(this.slot);
    this.slot = -1;
    this.inflightAt = -1;
  }

  /**
   * Releases every slot that dead participant `id` held (the store's death handler, after the
   * writer reap finished or undid its record in flight; idempotent): its in-flight mark, its
   * snapshots and its HELD bit, then the slot itself. Returns how many slots it released.
   * Under DAXSTORE_TEST_BREAK=kv-snapshot-death-kept nothing is released.
   */
  reapDead(id: number): number {
    if (isBroken('kv-snapshot-death-kept')) return 0;
    const high = loadWord(this.i32, HIGH);
    let n = 0;
    for (let s = 0; s < high; s++) {
      const w = (SLOTS_OFFSET >> 2) + s * SLOT_WORDS;
      if (s === this.slot || Atomics.load(this.i32, w + S_CLAIMED) !== id) continue;
      this.freeSlot(s);
      n++;
    }
    return n;
  }

  /** Slot s back to free: no snapshot, nothing in flight (the order keeps every reader's view safe: the bit goes after SNAP_MIN). */
  private freeSlot(s: number): void {
    const w = (SLOTS_OFFSET >> 2) + s * SLOT_WORDS;
    this.i32[w + S_SNAP_COUNT] = 0;
    this.f64[w / 2 + S_SNAP_MIN_F64] = Infinity;
    Atomics.and(this.i32, HELD + (s >> 5), ~(1 << (s & 31)));
    storeRelease(this.i32, w + S_INFLIGHT, 0);
    Atomics.store(this.i32, w + S_CLAIMED, 0);
  }

  /** Slots whose thread is dead and not yet reaped (tests, stats). */
  deadSlots(): number {
    const high = loadWord(this.i32, HIGH);
    let n = 0;
    for (let s = 0; s < high; s++) {
      const id = Atomics.load(this.i32, (SLOTS_OFFSET >> 2) + s * SLOT_WORDS + S_CLAIMED);
      if (id > 0 && isParticipantDead(id)) n++;
    }
    return n;
  }

  // ---- tombstones --------------------------------------------------------------------

  /** One more (or fewer) tombstone leaf in the index. Returns the new count. */
  addTombstones(delta: number): number {
    return Atomics.add(this.i32, TOMBSTONES, delta) + delta;
  }

  /** Tombstone leaves now. A plain load: a writer holding a key's lock sees every tombstone of that key (its creator counted it before unlocking). */
  get tombstones(): number {
    return loadWord(this.i32, TOMBSTONES);
  }

  /** Whether a sweep is due (TOMBSTONES reached SWEEP_AT). */
  sweepDue(): boolean {
    return loadWord(this.i32, TOMBSTONES) >= loadWord(this.i32, SWEEP_AT);
  }

  /**
   * After a sweep that left `remaining` (kept for snapshots) in a store of `keys` keys: the next
   * waits for twice as many, and for at least a quarter of the keys, so the sweeps' walks cost
   * a bounded amount per delete.
   */
  setSweepAt(remaining: number, keys: number): void {
    Atomics.store(this.i32, SWEEP_AT, Math.max(SWEEP_MIN, 2 * remaining, Math.ceil(keys / 4)));
  }

  // ---- deferred reclamation --------------------------------------------------------

  /** Entries waiting in the deferred table. */
  get deferred(): number {
    return loadWord(this.i32, DEFERRED);
  }

  /**
   * Puts (kind, what) in the deferred table until oldest() >= stamp. False when the table is
   * full (the caller keeps the item and tries again later).
   */
  defer(kind: number, what: number, stamp: number): boolean {
    const i32 = this.i32;
    for (let d = 0; d < DEFERRED_MAX; d++) {
      const w = (DEFERRED_OFFSET >> 2) + d * (DEFERRED_BYTES >> 2);
      if (Atomics.compareExchange(i32, w, D_FREE, D_BUSY) !== D_FREE) continue;
      this.f64[w / 2 + 1] = what;
      this.f64[w / 2 + 2] = stamp;
      Atomics.add(i32, DEFERRED, 1);
      Atomics.store(i32, w, kind);
      return true;
    }
    return false;
  }

  /** Hands every deferred item whose stamp oldest() has reached to `release` (each exactly once). */
  drain(release: (kind: number, what: number) => void): number {
    if (loadWord(this.i32, DEFERRED) === 0) return 0;
    const oldest = this.oldest();
    const i32 = this.i32;
    let n = 0;
    for (let d = 0; d < DEFERRED_MAX; d++) {
      const w = (DEFERRED_OFFSET >> 2) + d * (DEFERRED_BYTES >> 2);
      const kind = loadWord(i32, w);
      if (kind === D_FREE || kind === D_BUSY || this.f64[w / 2 + 2] > oldest) continue;
      if (Atomics.compareExchange(i32, w, kind, D_BUSY) !== kind) continue;
      const what = this.f64[w / 2 + 1];
      Atomics.sub(i32, DEFERRED, 1);
      Atomics.store(i32, w, D_FREE);
      release(kind, what);
      n++;
    }
    return n;
  }
}

/** Whether the in-flight tag m names a sequence <= the one whose offset from base is nL (mod TAG_SPAN, within TAG_SPAN / 2). */
function atOrBelow(m: number, nL: number): boolean {
  const d = (m - 1 - nL + TAG_SPAN) % TAG_SPAN; // (s - L) mod TAG_SPAN
  return d === 0 || d > TAG_SPAN / 2;
}
