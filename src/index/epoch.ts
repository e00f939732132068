/**
 * Epoch-based reclamation: the grace period that keeps memory a lock-free reader may still
 * be looking at (radix-tree nodes, device blocks) from being reused (docs/ARCHITECTURE.md "Epochs", R6).
 * Everything shared lives in two SharedArrayBuffers, so every thread of the process that
 * attaches the handle takes part in one domain.
 *
 * Invariants
 * - The global epoch word only grows (by 2 in raw units: raw epochs are even so a pin word
 *   can carry the pinned flag in bit 0), and it moves from g to g + 2 only after a scan saw
 *   every pinned participant at g.
 * - An item retired while the global raw epoch was s is handed to a reclaimer only when the
 *   global raw epoch g has g - s >= 4 (two advances), exactly once, never dropped.
 * - A participant slot's pin word and pin sequence are written only by the thread
 *   that claimed the slot.
 *
 * Why two advances are enough (crossbeam-epoch's argument). A reader R pins by storing
 * pin = e_R|1 (e_R read from the global word just before) and only then reads shared
 * pointers; a writer unlinks X, then reads the global word (e_W) to seal X. If R can reach X,
 * R's pin store precedes the unlink, which precedes the writer's read, so e_R <= e_W. The
 * advance e_W + 2 -> e_W + 4 needs a scan (after the global word became e_W + 2, so after R's
 * pin store) that sees R unpinned or pinned at e_W + 2: impossible while that pin lasts.
 * A participant that pins late (behind the global epoch) only blocks further advances.
 *
 * Asymmetric pins (membarrier). The argument above needs R's pin store ordered before R's
 * loads (a store->load fence) and the advance's scan after its read of the global word. With
 * symmetric pins R pays for that fence at every pin (Atomics.store: a builtin call and a locked
 * instruction, a large share of an uncontended grab+unlock). When the domain is asymmetric
 * (H_ASYMMETRIC, decided once at create: x86, where plain loads are acquire (word-load.ts), and
 * a kernel with membarrier(2) MEMBARRIER_CMD_PRIVATE_EXPEDITED, unless DAXSTORE_NO_MEMBARRIER=1)
 * R pins with a plain store and the advance calls membarrier between its read of the global
 * word g and its scan: every CPU running a thread of the process executes a full barrier. If
 * R had stored its pin before that barrier, the scan sees it; if not, R's loads come after the
 * barrier and see every store made before the advance read g, the unlink of anything sealed
 * before g among them, so R cannot reach it. (Linux's sys_membarrier and liburcu's
 * membarrier flavour; folly's asymmetric fences.) A thread that is not running has passed a
 * context switch, itself a full barrier; nobody sleeps pinned. The process's registration for
 * the private expedited command is not waited for at create: the kernel's QUERY says it is
 * offered (with MEMBARRIER_CMD_GLOBAL, which needs no registration), and the first advance's
 * membarrier() waits for the registration, so no barrier is ever issued before it; one that
 * failed after all makes every barrier the global one (addon/membarrier.h).
 *
 * Concurrency
 * - pin: one store to the participant's own pin word: sequentially consistent (the store->load
 *   fence that orders the pin before the reader's loads), or plain in an asymmetric domain
 *   (above). unpin: one release store (storeRelease, word-load.ts): the reads under the pin
 *   are ordered before it. No lock.
 * - advance: Atomics loads of the pin words (after a membarrier in an asymmetric domain),
 *   then a CAS of the global word. Any thread.
 * - limbo: one mutex word guards the chunk lists, the per-kind counts and growing the
 *   limbo buffer. Reclaimers run after the mutex is dropped, so they may retire again.
 *   The limbo mutex is a leaf: nothing else is taken while holding it.
 * - Reclaimers run inside collect(), and inside retire() every RETIRES_PER_COLLECT calls:
 *   a reclaimer must not take a lock its own thread may hold while retiring.
 *
 * Thread death (participants.ts; docs/ARCHITECTURE.md "Thread death"). The domain is where
 * the layers above hang what a thread leaves behind when it ends:
 * - Every participant slot (thread or async guard) records the participants.ts id and
 *   generation of its thread (S_PART, S_PART_GEN). A pin whose thread died never blocks an
 *   advance (allPinsAt skips it: a dead thread reads nothing), and reap() frees its slots.
 * - TOUCH (one word per participant id, after the slots) holds the generation of every thread
 *   that took part in the domain, until the domain reaps it or it leaves (close()): the
 *   participant table keeps a dead id from reuse while any domain still owes it a reap, so no
 *   lock word, entry word or record naming it is inherited by a new thread.
 * - reap(id) runs, one at a time per domain (H_REAP_MUTEX), the death handlers the layers
 *   registered in this thread (onDeath: the key-value store rolls the dead thread's operation
 *   forward or back, the DAX layer returns its locks and blocks, the index releases its entry
 *   locks and wait-table records), then frees its participant slots and clears its TOUCH word.
 *   A handler must be idempotent: a reaper that dies is followed by another that starts over.
 *   offDeath unregisters one (its object closed); a thread left without a handler of some
 *   layer registered anywhere (H_LAYERS) refuses reaps, which a thread with every layer runs.
 *   Triggers: a waiter meeting a dead holder (entry-lock.ts), an advance blocked by a dead pin,
 *   reapDead() checkpoints of the layers above (one load when nobody died). A thread that finds
 *   every participant slot taken frees the dead's slots (not their reap) before refusing EBUSY.
 * - The limbo mutex is a holder-naming spin lock; a waiter that takes it over from a dead
 *   holder repairs the chunk lists (repairLimboLocked) before using them.
 *
 * Persistence ordering: none. Nothing here is persistent; it lives as long as the process.
 */
import { randomFillSync } from 'node:crypto';
import { DaxError } from '../errors.js';
import { assert } from '../assert.js';
import { lockWord, unlockWord } from '../device/spin-lock.js';
import { brokenAtLoad, isBroken } from '../test-break.js';
import { PLAIN_LOADS_ARE_ACQUIRE, loadWord, storeRelease } from './word-load.js';
import { native } from '../native/addon.js';
import {
  MAX_PARTICIPANT,
  P_RELEASE_DOMAIN,
  P_RELEASE_HI,
  P_RELEASE_KIND,
  P_RELEASE_LO,
  mySlotBase,
  participantTable,
  slotBase,
  deathCount,
  enterDomain,
  generationOf,
  highestParticipant,
  isParticipantDead,
  participantGeneration,
  participantId,
  releaseDomain,
} from '../device/participants.js';

export interface EpochHandle {
  /** header + participant table (fixed size) */
  readonly buffer: SharedArrayBuffer;
  /** limbo chunks (growable SharedArrayBuffer, grown under the limbo mutex) */
  readonly limbo: SharedArrayBuffer;
}

/** Retire kinds 0..15: who knows how to release the payload. */
export const RETIRE_ARENA_NODE = 0;
export const RETIRE_DEVICE_BLOCK = 1;
/**
 * Kinds from here up (and RETIRE_DEVICE_BLOCK) are released one at a time under a participant
 * record (releaseRecorded), so a thread that dies between popping one and releasing it loses
 * nothing: for what must not leak (device blocks, large-value objects). Lower kinds go in batches.
 */
export const RETIRE_RECORDED_FIRST = 2;
export const RETIRE_KINDS = 16;

/** DAXSTORE_TEST_BREAK=epoch: retire() releases at once (no grace period), so R6 tests can go red. */
export const EPOCH_CHECK_BROKEN = brokenAtLoad('epoch');

const MAX_OWNER_ID = 4095; // entry words record the owner in 12 bits
const PAYLOAD_LIMIT = 2 ** 48;
const SIZE_LIMIT = 2 ** 32;
const RETIRES_PER_COLLECT = 64;
const ASYNC_SLOTS_KEPT = 8; // idle async participant slots a thread keeps for its next pinAsync
const RELEASE_BATCH = 256; // records popped per limbo-mutex hold
const GRACE_RAW = 4; // two advances of 2 raw units each

// ---- buffer: Int32 words -------------------------------------------------------------
const MAGIC = 0x45504f43; // 'EPOC'
const H_MAGIC = 0;
const H_MAX_PARTICIPANTS = 2;
const H_SLOTS_HIGH = 3; // highest slot id ever claimed: scans stop there
const H_DOMAIN_ID_LO = 4;
const H_DOMAIN_ID_HI = 5;
const H_ASYMMETRIC = 6; // 1: pins are plain stores and every advance calls membarrier (header: asymmetric pins); written once at create
const H_OVERFLOW_COUNT = 8; // 16 words: per-kind records parked in threads' overflow lists
const H_RELEASED_BIGINT = 12; // BigInt64 index (byte 96 = word 24): items released, total
const H_BASE_TIME_F64 = 14; // Float64 index (byte 112 = word 28): Date.now() at create
const H_REAP_MUTEX = 26; // device/spin-lock word: one reap at a time (reap())
const H_REAPS = 27; // participants reaped so far
const H_LAYERS = 30; // bit per layer that registered death handlers in some thread (onDeath)
// Participant slot id i (1..max) occupies SLOT_WORDS words at HEADER_WORDS + i * SLOT_WORDS:
// 64 bytes, one cache line each, so two threads' pin stores never contend for one line.
const S_OWNER = 0; // 0 free, OWNER_THREAD, OWNER_ASYNC; claimed by CAS from 0
const S_NESTING = 3; // reserved, always 0 (a nested pin is a thread-local count: no shared store)
const S_SEEN_SEQ = 4; // pin sequence an observer last stamped
const S_SEEN_AT_MS = 5; // ms since base time when an observer first saw that pin
const S_PART = 6; // participants.ts id of the thread that owns the slot (thread or async guard)
const S_PART_GEN = 7; // and its generation
/**
 * The pin path's numbers as literals: V8 in Node 20 loads a module-level const from its
 * context cell and checks it for the TDZ hole at each use (src/index/nodes.ts `Lay`).
 */
const enum Lit {
  H_GLOBAL = 1,
  HEADER_WORDS = 32,
  SLOT_WORDS = 16,
  S_PIN = 1,
  S_PIN_SEQ = 2,
}
/** TOUCH words (one per participant id) after the participant slots. */
const TOUCH_WORDS = MAX_PARTICIPANT + 1;
const OWNER_FREE = 0;
const OWNER_THREAD = 1;
const OWNER_ASYNC = 2;

// ---- limbo: Int32 words ----------------------------------------------------------------
// Per kind, a FIFO list of chunks of records; records are appended with the global epoch
// read under the mutex, so seal epochs are non-decreasing along each list.
const L_MUTEX = 0; // 0 free, 1 locked, 2 locked with sleepers
const L_CHUNKS = 1; // chunks ever carved out of the buffer
const L_FREE_HEAD = 2; // free chunk list (chunk number, 0 = none)
/**
 * The limbo buffer's byte length as of its last growth (written under the mutex by the grower,
 * read under the mutex by lockLimbo). Each thread reads the limbo through a FIXED-length view,
 * refreshed in lockLimbo when this word says the buffer grew: a length-tracking view over a
 * growable SharedArrayBuffer costs a runtime call per element access in Node 20 (TurboFan
 * loads the length through one), and a retire makes about a dozen of them.
 */
const L_BYTES = 3;
/** DAXSTORE_TEST_BREAK=limbo-view-stale: lockLimbo keeps this thread's old limbo view after another thread grew the limbo (epoch-cross-thread.test.ts goes red). */
const LIMBO_VIEW_STALE = brokenAtLoad('limbo-view-stale');
const L_COUNT = 4; // 16 words: records in limbo per kind
const L_LIST = 20; // 32 words: per kind head chunk, tail chunk (0 = empty)
const LIMBO_HEADER_WORDS = 64;
const CHUNK_RECORDS = 64;
const RECORD_WORDS = 4; // seal raw epoch, payload low 32 bits, payload high 16 bits, size
const C_NEXT = 0;
const C_READ = 1; // next record to release
const C_WRITE = 2; // next record to fill
const CHUNK_HEADER_WORDS = 4;
const CHUNK_WORDS = CHUNK_HEADER_WORDS + CHUNK_RECORDS * RECORD_WORDS;
const LIMBO_INITIAL_CHUNKS = 8;
const LIMBO_DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

type Reclaimer = (payload: number, size: number) => void;
/** A layer's handler of a participant's death (onDeath): its id and generation. */
export type DeathHandler = (id: number, gen: number) => void;
/** onDeath layer bits. */
export const LAYER_INDEX = 1;
export const LAYER_DAX = 2;
export const LAYER_KV = 4;
interface ParkedRecord {
  kind: number;
  seal: number;
  payload: number;
  size: number;
}

/** Whether a domain created now pins with a plain store (H_ASYMMETRIC) if membarrier allows. */
function wantsMembarrier(): boolean {
  return PLAIN_LOADS_ARE_ACQUIRE && process.env['DAXSTORE_NO_MEMBARRIER'] !== '1';
}

/**
 * Starts the process's membarrier registration on a thread of its own (addon/membarrier.h): the
 * kernel waits for an RCU grace period in it. Nothing waits for it but the first advance's
 * membarrier() (create() only asks the kernel whether it offers the commands), so an open that
 * calls this first overlaps that wait with its own work. Advice: create() starts it itself when
 * nothing did.
 */
export function prepareEpochDomains(): void {
  if (wantsMembarrier()) native().membarrierRegisterAhead();
}

/** Domains this thread has opened, by domain id, so attach() in one thread yields one participant. */
const openDomains = new Map<string, EpochDomain>();

export class EpochDomain {
  private readonly meta: Int32Array;
  private limboWords: Int32Array; // fixed-length view of the growable limbo, refreshed under the mutex (L_BYTES)
  private readonly released64: BigInt64Array;
  private readonly baseTimeMs: number;
  private readonly domainKey: string;
  private readonly reclaimers: (Reclaimer | undefined)[] = new Array(RETIRE_KINDS).fill(undefined);
  private readonly overflow: ParkedRecord[] = []; // records the full shared limbo could not take
  private readonly asyncIdle: number[] = [];
  private readonly asyncOwned = new Set<number>();
  /** H_ASYMMETRIC: pin with a plain store, membarrier before each advance's scan. */
  private readonly asymmetric: boolean;
  private thread = 0; // this thread's participant slot, 0 until first use
  private nesting = 0;
  /** S_PIN word of this thread's slot once the short pin path applies (asymmetric, claimed, open); 0 otherwise. */
  private pinAt = 0;
  private retiresSinceCollect = 0;
  private collecting = false;
  private closed = false;
  /** First word of TOUCH. */
  private readonly touchBase: number;
  /** This thread's TOUCH word is set (it took part since it attached or since the domain last forgot it). */
  private touched = false;
  /** Death handlers of this thread's layers over this domain, by rank (onDeath). */
  private readonly deathHandlers: Array<{ rank: number; layer: number; fn: DeathHandler }> = [];
  private myLayers = 0;
  /** deathCount() as of the last reapDead() scan. */
  private deathsSeen = -1;
  /** Participant this thread is reaping now (a nested encounter of it must not reap again). */
  private reapingNow = 0;

  private constructor(private readonly shared: EpochHandle) {
    this.meta = new Int32Array(shared.buffer);
    this.limboWords = new Int32Array(shared.limbo, 0, shared.limbo.byteLength >> 2); // the header at least: lockLimbo extends it
    this.released64 = new BigInt64Array(shared.buffer, 0, Lit.HEADER_WORDS / 2);
    this.baseTimeMs = new Float64Array(shared.buffer, 0, Lit.HEADER_WORDS / 2)[H_BASE_TIME_F64];
    this.domainKey = `${this.meta[H_DOMAIN_ID_HI]}:${this.meta[H_DOMAIN_ID_LO]}`;
    this.asymmetric = this.meta[H_ASYMMETRIC] === 1;
    this.touchBase = Lit.HEADER_WORDS + (this.meta[H_MAX_PARTICIPANTS] + 1) * Lit.SLOT_WORDS;
  }

  static create(opts: { maxParticipants?: number; limboMaxBytes?: number } = {}): EpochDomain {
    const max = opts.maxParticipants ?? 256;
    if (!Number.isInteger(max) || max < 1 || max > MAX_OWNER_ID) {
      throw new DaxError(
        'EINVAL',
        `EpochDomain.create: maxParticipants ${max} is not an integer in [1, ${MAX_OWNER_ID}]`,
      );
    }
    const initialBytes = (LIMBO_HEADER_WORDS + LIMBO_INITIAL_CHUNKS * CHUNK_WORDS) * 4;
    const limboMax = opts.limboMaxBytes ?? LIMBO_DEFAULT_MAX_BYTES;
    if (!Number.isInteger(limboMax) || limboMax < (LIMBO_HEADER_WORDS + CHUNK_WORDS) * 4) {
      throw new DaxError('EINVAL', `EpochDomain.create: limboMaxBytes ${limboMax} is too small for one chunk`);
    }
    const buffer = new SharedArrayBuffer((Lit.HEADER_WORDS + (max + 1) * Lit.SLOT_WORDS + TOUCH_WORDS) * 4);
    const limbo = new SharedArrayBuffer(Math.min(initialBytes, limboMax), { maxByteLength: limboMax });
    const meta = new Int32Array(buffer);
    new Int32Array(limbo, 0, LIMBO_HEADER_WORDS)[L_BYTES] = limbo.byteLength; // published with the header (MAGIC below)
    const id = randomFillSync(new Int32Array(2));
    meta[Lit.H_GLOBAL] = 0;
    meta[H_MAX_PARTICIPANTS] = max;
    // Registration is per process (threads share it), so attachers in worker threads need none.
    // Not waited for here: the first advance's membarrier() waits for it (addon/membarrier.h).
    meta[H_ASYMMETRIC] = wantsMembarrier() && native().membarrierOffered() ? 1 : 0;
    meta[H_DOMAIN_ID_LO] = id[0];
    meta[H_DOMAIN_ID_HI] = id[1];
    new Float64Array(buffer, 0, Lit.HEADER_WORDS / 2)[H_BASE_TIME_F64] = Date.now();
    Atomics.store(meta, H_MAGIC, MAGIC); // last: publishes the header to attachers
    return EpochDomain.open({ buffer, limbo });
  }

  static attach(handle: EpochHandle): EpochDomain {
    const ok =
      handle !== null &&
      typeof handle === 'object' &&
      handle.buffer instanceof SharedArrayBuffer &&
      handle.limbo instanceof SharedArrayBuffer &&
      handle.buffer.byteLength >= Lit.HEADER_WORDS * 4 &&
      Atomics.load(new Int32Array(handle.buffer, 0, Lit.HEADER_WORDS), H_MAGIC) === MAGIC;
    if (!ok) throw new DaxError('EINVAL', 'EpochDomain.attach: not an epoch domain handle');
    return EpochDomain.open(handle);
  }

  private static open(handle: EpochHandle): EpochDomain {
    const domain = new EpochDomain(handle);
    const existing = openDomains.get(domain.domainKey);
    if (existing !== undefined) {
      existing.opens++;
      return existing;
    }
    openDomains.set(domain.domainKey, domain);
    return domain;
  }

  /** create/attach calls in this thread that this instance answered and close() has not yet matched. */
  private opens = 1;

  handle(): EpochHandle {
    return { buffer: this.shared.buffer, limbo: this.shared.limbo };
  }

  /**
   * This thread's participant id (participants.ts: one per thread for the whole process, in
   * [1, 4095]); its participant slot here is claimed on first use. Entry locks record it as owner.
   */
  get threadId(): number {
    this.checkOpen('threadId');
    if (this.thread === 0) this.thread = this.claimSlot(OWNER_THREAD);
    return participantId();
  }

  /** True when participant slot `slot` is this thread's or one of its async guards'. */
  isThisThread(slot: number): boolean {
    return slot !== 0 && (slot === this.thread || this.asyncOwned.has(slot));
  }

  registerReclaimer(kind: number, reclaim: Reclaimer): void {
    this.checkOpen('registerReclaimer');
    checkKind(kind, 'registerReclaimer');
    if (typeof reclaim !== 'function')
      throw new DaxError('EINVAL', `registerReclaimer: kind ${kind}: reclaimer is not a function`);
    this.reclaimers[kind] = reclaim;
  }

  // pin and unpin are kept short (the rest is pinOuter, unpinSlow) so TurboFan inlines them
  // into the lock fast paths within its inlining budget (entry-lock.ts grab).
  pin(): void {
    if (this.nesting === 0) {
      // The common case in three plain accesses: asymmetric, slot claimed, open (pinAt).
      const at = this.pinAt;
      if (at !== 0) {
        const meta = this.meta;
        const seqAt = at + (Lit.S_PIN_SEQ - Lit.S_PIN);
        meta[seqAt] = (meta[seqAt] + 1) | 0;
        meta[at] = meta[Lit.H_GLOBAL] | 1;
      } else this.pinOuter();
    }
    this.nesting++; // a nested pin is this bump only: the depth stays thread-local
  }

  unpin(): void {
    // Release store: every read made under the pin happens before the slot reads unpinned.
    // No store->load fence is needed here (nothing after an unpin relies on it being seen),
    // and the fence of Atomics.store cost a third of an uncontended grab+unlock.
    // (Asymmetric implies x86, where a plain store is release.)
    const at = this.pinAt;
    if (this.nesting !== 1 || at === 0) return this.unpinSlow();
    this.nesting = 0;
    this.meta[at] = 0;
  }

  private pinOuter(): void {
    if (this.thread === 0 || this.closed) void this.threadId; // checks open, claims the slot on first use
    this.pinSlot(this.thread);
    // From now on pin() and unpin() take the short path when they can (pinAt).
    if (this.asymmetric && !this.closed) this.pinAt = Lit.HEADER_WORDS + this.thread * Lit.SLOT_WORDS + Lit.S_PIN;
  }

  private unpinSlow(): void {
    if (this.closed) this.checkOpen('unpin');
    if (this.nesting === 0) throw new DaxError('EINVAL', `unpin: participant ${this.thread} is not pinned`);
    this.nesting--;
    if (this.nesting === 0) storeRelease(this.meta, Lit.HEADER_WORDS + this.thread * Lit.SLOT_WORDS + Lit.S_PIN, 0);
  }

  isPinned(): boolean {
    return this.nesting > 0;
  }

  /** Pin, run fn, unpin (also when fn throws). fn must be synchronous: use pinAsync() across awaits. */
  guard<T>(fn: () => T): T {
    this.pin();
    try {
      return fn();
    } finally {
      this.unpin();
    }
  }

  /** Pin a participant slot of its own, for a read that spans awaits; release() is idempotent. */
  pinAsync(): { readonly id: number; release(): void } {
    this.checkOpen('pinAsync');
    const id = this.asyncIdle.pop() ?? this.claimSlot(OWNER_ASYNC);
    this.asyncOwned.add(id);
    this.pinSlot(id);
    let released = false;
    return {
      id,
      release: () => {
        if (released) return;
        released = true;
        Atomics.store(this.meta, slotWord(id, Lit.S_PIN), 0);
        if (!this.closed && this.asyncIdle.length < ASYNC_SLOTS_KEPT) {
          this.asyncIdle.push(id);
        } else {
          this.asyncOwned.delete(id);
          this.freeSlot(id);
        }
      },
    };
  }

  /** Put (kind, payload, size) in limbo; it is released once no pin can still see it. Safe pinned or not. */
  retire(kind: number, payload: number, size = 0): void {
    this.checkOpen('retire');
    checkKind(kind, 'retire');
    if (!Number.isInteger(payload) || payload < 0 || payload >= PAYLOAD_LIMIT) {
      throw new DaxError('EINVAL', `retire: kind ${kind}: payload ${payload} is not an integer in [0, 2^48)`);
    }
    if (!Number.isInteger(size) || size < 0 || size >= SIZE_LIMIT) {
      throw new DaxError(
        'EINVAL',
        `retire: kind ${kind} payload ${payload}: size ${size} is not an integer in [0, 2^32)`,
      );
    }
    if (EPOCH_CHECK_BROKEN) return this.retireBroken(kind, payload, size);
    this.lockLimbo();
    // Read under the mutex so seal epochs never decrease along a list; after the caller's
    // unlink (program order + seq-cst), which is what the safety argument needs.
    const seal = Atomics.load(this.meta, Lit.H_GLOBAL);
    const stored = this.appendLocked(kind, seal, payload, size);
    this.unlockLimbo();
    if (!stored) {
      this.overflow.push({ kind, seal, payload, size });
      Atomics.add(this.meta, H_OVERFLOW_COUNT + kind, 1);
    }
    if (++this.retiresSinceCollect >= RETIRES_PER_COLLECT) {
      this.retiresSinceCollect = 0;
      this.collect();
    }
  }

  /** Try one advance of the global epoch, then release what is two advances old. Returns items released. */
  collect(): number {
    this.checkOpen('collect');
    if (this.collecting) return 0; // a reclaimer that retires must not recurse into release
    this.collecting = true;
    try {
      this.tryAdvance();
      return this.releaseEligible();
    } finally {
      this.collecting = false;
    }
  }

  stats(): { epoch: number; pinned: number; oldestPinAgeMs: number; limbo: number[]; released: number } {
    const high = Atomics.load(this.meta, H_SLOTS_HIGH);
    const now = this.nowMs();
    let pinned = 0;
    let oldestPinAgeMs = 0;
    for (let id = 1; id <= high; id++) {
      if ((Atomics.load(this.meta, slotWord(id, Lit.S_PIN)) & 1) === 0) continue;
      pinned++;
      oldestPinAgeMs = Math.max(oldestPinAgeMs, this.observePinAgeMs(id, now));
    }
    const limbo: number[] = [];
    for (let kind = 0; kind < RETIRE_KINDS; kind++) {
      limbo.push(Atomics.load(this.limboWords, L_COUNT + kind) + Atomics.load(this.meta, H_OVERFLOW_COUNT + kind));
    }
    return {
      epoch: Atomics.load(this.meta, Lit.H_GLOBAL) >>> 1,
      pinned,
      oldestPinAgeMs,
      limbo,
      released: Number(Atomics.load(this.released64, H_RELEASED_BIGINT)),
    };
  }

  /** Unregister this thread's participant (once every attach of this thread was matched by a close). Refused (EBUSY) while pinned or while retired items could not be handed to the shared limbo. */
  close(): void {
    if (this.closed) return;
    if (this.opens > 1) {
      this.opens--; // another handle of this thread still uses the domain
      return;
    }
    if (this.nesting > 0) throw new DaxError('EBUSY', `close: participant ${this.thread} is still pinned`);
    if (this.overflow.length > 0) {
      this.drainOverflowIntoLimbo();
      if (this.overflow.length > 0) {
        throw new DaxError(
          'EBUSY',
          `close: ${this.overflow.length} retired items are parked in this thread (shared limbo full); unpin stalled participants and collect() first`,
        );
      }
    }
    this.untouch();
    this.closed = true;
    this.pinAt = 0;
    openDomains.delete(this.domainKey);
    for (const id of this.asyncIdle) {
      this.asyncOwned.delete(id);
      this.freeSlot(id);
    }
    this.asyncIdle.length = 0;
    if (this.thread !== 0) this.freeSlot(this.thread);
  }

  // ---- thread death ----------------------------------------------------------------------

  /**
   * Registers this thread's handler of a participant's death for one layer (bit `layer`,
   * a power of two) at `rank` (lower runs first: the key-value store 10, the DAX layer 20,
   * the index 40; the domain frees the epoch slots itself, last). The handler receives the
   * dead participant's id and generation and must be idempotent.
   */
  onDeath(layer: number, rank: number, fn: DeathHandler): void {
    this.checkOpen('onDeath');
    this.deathHandlers.push({ rank, layer, fn });
    this.deathHandlers.sort((a, b) => a.rank - b.rank);
    this.myLayers |= layer;
    Atomics.or(this.meta, H_LAYERS, layer);
  }

  /**
   * Unregisters a handler onDeath registered (its layer's object in this thread closed). A
   * layer none of this thread's remaining handlers serves is no longer this thread's: its
   * reaps of a participant are refused (reap returns false) and left to a thread that can run
   * every layer, rather than completed without that layer's part.
   */
  offDeath(fn: DeathHandler): void {
    const i = this.deathHandlers.findIndex((h) => h.fn === fn);
    if (i < 0) return;
    this.deathHandlers.splice(i, 1);
    this.myLayers = 0;
    for (const h of this.deathHandlers) this.myLayers |= h.layer;
  }

  /**
   * Repairs everything dead participant `id` left in this domain and the layers over it, then
   * forgets it. False when this thread cannot (it is reaping `id` already, further up its
   * stack, or lacks a layer another thread registered); the caller then deals with what it met
   * on its own (entry-lock.ts releases that one entry).
   */
  reap(id: number): boolean {
    if (this.closed || id <= 0 || id > MAX_PARTICIPANT) return false;
    if (this.reapingNow === id) return false;
    const gen = Atomics.load(this.meta, this.touchBase + id);
    if (gen === 0) return true; // never took part, or reaped already
    if (!isParticipantDead(id) && generationOf(id) === gen) return true; // alive
    if ((Atomics.load(this.meta, H_LAYERS) & ~this.myLayers) !== 0) return false;
    const outer = this.reapingNow;
    lockWord(this.meta, H_REAP_MUTEX); // a reaper that died: the next one starts over (handlers are idempotent)
    try {
      if (Atomics.load(this.meta, this.touchBase + id) !== gen) return true; // reaped meanwhile
      this.reapingNow = id;
      let failed: unknown;
      for (const h of this.deathHandlers) {
        try {
          h.fn(id, gen);
        } catch (e) {
          failed ??= e;
        }
      }
      if (failed !== undefined) throw failed;
      this.finishDeadRelease(id);
      this.freeSlotsOf(id, gen);
      if (Atomics.compareExchange(this.meta, this.touchBase + id, gen, 0) === gen) releaseDomain(id);
      Atomics.add(this.meta, H_REAPS, 1);
      return true;
    } finally {
      this.reapingNow = outer;
      unlockWord(this.meta, H_REAP_MUTEX);
    }
  }

  /**
   * Reaps every dead participant of this domain; one load when nobody died since the last
   * call that reaped them all. True when none is left to reap.
   */
  reapDead(): boolean {
    const deaths = deathCount();
    if (deaths === this.deathsSeen || this.closed) return true;
    const high = highestParticipant();
    let all = true;
    for (let id = 1; id <= high; id++) {
      const gen = Atomics.load(this.meta, this.touchBase + id);
      if (gen !== 0 && (isParticipantDead(id) || generationOf(id) !== gen)) all = this.reap(id) && all;
    }
    if (all) this.deathsSeen = deaths;
    return all;
  }

  /** True when (kind, payload) waits in the shared limbo now (a reaper's check before retiring what a dead thread may already have retired). */
  inLimbo(kind: number, payload: number): boolean {
    checkKind(kind, 'inLimbo');
    const lo = (payload % 2 ** 32) | 0;
    const hi = Math.floor(payload / 2 ** 32);
    this.lockLimbo();
    try {
      const l = this.limboWords;
      const chunks = l[L_CHUNKS];
      let chunk = l[L_LIST + 2 * kind];
      for (let steps = 0; chunk !== 0 && steps <= chunks; steps++) {
        for (let i = l[chunkWord(chunk, C_READ)]; i < l[chunkWord(chunk, C_WRITE)]; i++) {
          const r = chunkWord(chunk, CHUNK_HEADER_WORDS + i * RECORD_WORDS);
          if (l[r + 1] === lo && l[r + 2] === hi) return true;
        }
        chunk = l[chunkWord(chunk, C_NEXT)];
      }
      return false;
    } finally {
      this.unlockLimbo();
    }
  }

  /** The participant whose death this thread is handling now (0: none). */
  get reaping(): number {
    return this.reapingNow;
  }

  /** Participants reaped in this domain so far. */
  get reaps(): number {
    return Atomics.load(this.meta, H_REAPS);
  }

  /**
   * The domain is going away (its store closes): reap the dead, forget the living (their
   * later close() finds nothing to forget). Best effort: a handler that fails is skipped.
   */
  forgetAll(): void {
    const high = highestParticipant();
    for (let id = 1; id <= high; id++) {
      const gen = Atomics.load(this.meta, this.touchBase + id);
      if (gen === 0) continue;
      if (isParticipantDead(id) || generationOf(id) !== gen) {
        try {
          this.reap(id);
        } catch {
          // forgotten below all the same: the store is closing
        }
      }
      if (Atomics.compareExchange(this.meta, this.touchBase + id, gen, 0) === gen) releaseDomain(id);
    }
    this.touched = false;
  }

  /** Frees the participant slots (thread and async guards) of dead participant id. */
  private freeSlotsOf(id: number, gen: number): number {
    const high = Atomics.load(this.meta, H_SLOTS_HIGH);
    let freed = 0;
    for (let slot = 1; slot <= high; slot++) {
      if (Atomics.load(this.meta, slotWord(slot, S_OWNER)) === OWNER_FREE) continue;
      if (Atomics.load(this.meta, slotWord(slot, S_PART)) !== id) continue;
      if (Atomics.load(this.meta, slotWord(slot, S_PART_GEN)) !== gen) continue;
      Atomics.store(this.meta, slotWord(slot, Lit.S_PIN), 0);
      this.freeSlot(slot);
      freed++;
    }
    return freed;
  }

  /**
   * Frees the participant slots of every dead participant this domain still owes a reap; the
   * reap itself (handlers, TOUCH) is left for later. Matched by (participant, generation) as
   * recorded in TOUCH, so a slot a live thread is claiming (its S_PART set, S_PART_GEN not yet)
   * is never taken for a dead one's. Under the reap mutex: no reap frees the same slots at once.
   */
  private freeDeadSlots(): number {
    if (this.reapingNow !== 0) return 0; // inside a reap: the mutex is held further up this stack
    let freed = 0;
    lockWord(this.meta, H_REAP_MUTEX);
    try {
      const high = highestParticipant();
      for (let id = 1; id <= high; id++) {
        const gen = Atomics.load(this.meta, this.touchBase + id);
        if (gen === 0 || (!isParticipantDead(id) && generationOf(id) === gen)) continue;
        freed += this.freeSlotsOf(id, gen);
      }
    } finally {
      unlockWord(this.meta, H_REAP_MUTEX);
    }
    return freed;
  }

  /** True when slot's owning thread has died (its pin no longer protects anything). */
  private slotOwnerDead(slot: number): boolean {
    const id = Atomics.load(this.meta, slotWord(slot, S_PART));
    return (
      id !== 0 && (isParticipantDead(id) || generationOf(id) !== Atomics.load(this.meta, slotWord(slot, S_PART_GEN)))
    );
  }

  /** This thread takes part from now on: TOUCH it (once per attach), so its death is owed a reap here. */
  private touch(): void {
    if (this.touched) return;
    const id = participantId();
    const gen = participantGeneration();
    const prev = Atomics.compareExchange(this.meta, this.touchBase + id, 0, gen);
    assert(prev === 0 || prev === gen, () => `epoch domain: participant ${id} inherited a TOUCH of generation ${prev}`);
    if (prev === 0) enterDomain();
    this.touched = true;
  }

  /** This thread leaves: it no longer owes... (close()). */
  private untouch(): void {
    if (!this.touched) return;
    this.touched = false;
    const id = participantId();
    if (Atomics.compareExchange(this.meta, this.touchBase + id, participantGeneration(), 0) === participantGeneration())
      releaseDomain(id);
  }

  // ---- participants -------------------------------------------------------------------

  private claimSlot(owner: number): number {
    this.touch();
    const slot = this.tryClaimSlot(owner);
    if (slot > 0) return slot;
    // Full: the slots of threads that died are freed only by their reap, and nothing may trigger
    // one (a domain with no store over it, workers that die before their first operation), while
    // a reap needs a slot of its own (its handlers pin). A dead thread's slots protect nothing
    // (advances skip them), so a full table frees them first; the reap it is owed still runs.
    if (!isBroken('epoch-full-keeps-dead') && this.freeDeadSlots() > 0) {
      const again = this.tryClaimSlot(owner);
      if (again > 0) return again;
    }
    const max = this.meta[H_MAX_PARTICIPANTS];
    throw new DaxError('EBUSY', `epoch domain: all ${max} participant slots are in use (threads + async guards)`);
  }

  /** A free participant slot claimed for `owner` (this thread), or 0 when every one is taken. */
  private tryClaimSlot(owner: number): number {
    const max = this.meta[H_MAX_PARTICIPANTS];
    for (let id = 1; id <= max; id++) {
      const w = slotWord(id, S_OWNER);
      if (Atomics.load(this.meta, w) !== OWNER_FREE) continue;
      if (Atomics.compareExchange(this.meta, w, OWNER_FREE, owner) !== OWNER_FREE) continue;
      Atomics.store(this.meta, slotWord(id, S_PART), participantId());
      Atomics.store(this.meta, slotWord(id, S_PART_GEN), participantGeneration());
      assert(Atomics.load(this.meta, slotWord(id, Lit.S_PIN)) === 0, () => `claimed epoch slot ${id} is pinned`);
      let high = Atomics.load(this.meta, H_SLOTS_HIGH);
      while (high < id) {
        const seen = Atomics.compareExchange(this.meta, H_SLOTS_HIGH, high, id);
        if (seen === high) break;
        high = seen;
      }
      return id;
    }
    return 0;
  }

  private freeSlot(id: number): void {
    assert(Atomics.load(this.meta, slotWord(id, Lit.S_PIN)) === 0, () => `freeing pinned epoch slot ${id}`);
    this.meta[slotWord(id, S_NESTING)] = 0;
    Atomics.store(this.meta, slotWord(id, S_PART), 0);
    Atomics.store(this.meta, slotWord(id, S_OWNER), OWNER_FREE);
  }

  private pinSlot(id: number): void {
    const meta = this.meta;
    const slot = Lit.HEADER_WORDS + id * Lit.SLOT_WORDS;
    // A stale read of the global epoch only makes this pin older, which delays advances and
    // never frees early (see the file header: late pins only block), so an acquire load will do.
    // Asymmetric: a plain store, ordered by the advance's membarrier (file header); pin() does
    // the same with its precomputed slot. Otherwise a seq-cst store: the pin is visible before
    // any shared read after it.
    const global = loadWord(meta, Lit.H_GLOBAL);
    meta[slot + Lit.S_PIN_SEQ] = (meta[slot + Lit.S_PIN_SEQ] + 1) | 0;
    if (this.asymmetric) meta[slot + Lit.S_PIN] = global | 1;
    else Atomics.store(meta, slot + Lit.S_PIN, global | 1);
  }

  /**
   * Age of slot id's current pin, measured from the first time an observer (stats or a
   * collect blocked by it) saw this pin: pins do not read the clock (a clock read costs more than a pin).
   */
  private observePinAgeMs(id: number, now: number): number {
    const seq = Atomics.load(this.meta, slotWord(id, Lit.S_PIN_SEQ));
    if (Atomics.load(this.meta, slotWord(id, S_SEEN_SEQ)) !== seq) {
      Atomics.store(this.meta, slotWord(id, S_SEEN_AT_MS), now); // before the seq: a reader of the seq sees this time
      Atomics.store(this.meta, slotWord(id, S_SEEN_SEQ), seq);
      return 0;
    }
    return Math.max(0, now - Atomics.load(this.meta, slotWord(id, S_SEEN_AT_MS)));
  }

  private nowMs(): number {
    return Math.min(0x7fffffff, Math.round(Date.now() - this.baseTimeMs));
  }

  private tryAdvance(): boolean {
    const global = Atomics.load(this.meta, Lit.H_GLOBAL);
    if (!this.allPinsAt(global)) return false;
    if (this.asymmetric) {
      // After the read of the global word, before the scan that decides (file header): pins
      // still in a store buffer become visible, or their readers see what preceded `global`.
      // The scan above only spared the system call when the advance was blocked anyway.
      const rc = native().membarrier();
      assert(rc === 0, () => `epoch advance: membarrier failed (${rc}) although the kernel offered it`);
      if (!this.allPinsAt(global)) return false;
    }
    return Atomics.compareExchange(this.meta, Lit.H_GLOBAL, global, (global + 2) | 0) === global;
  }

  /** No participant is pinned at an epoch other than `global` (a blocking one gets its pin age observed). */
  private allPinsAt(global: number): boolean {
    const high = Atomics.load(this.meta, H_SLOTS_HIGH);
    for (let id = 1; id <= high; id++) {
      const pin = Atomics.load(this.meta, slotWord(id, Lit.S_PIN));
      if ((pin & 1) !== 0 && (pin ^ global) !== 1) {
        if (this.slotOwnerDead(id)) continue; // a dead thread reads nothing: its pin protects nothing
        this.observePinAgeMs(id, this.nowMs());
        return false;
      }
    }
    return true;
  }

  /** @internal How pins are ordered before a reader's loads: 'membarrier' (asymmetric, plain-store pins) or 'seq-cst' (each pin fences). */
  pinOrdering(): 'membarrier' | 'seq-cst' {
    return this.asymmetric ? 'membarrier' : 'seq-cst';
  }

  // ---- limbo --------------------------------------------------------------------------

  private retireBroken(kind: number, payload: number, size: number): void {
    const reclaim = this.reclaimers[kind];
    if (reclaim !== undefined) {
      reclaim(payload, size);
      Atomics.add(this.released64, H_RELEASED_BIGINT, 1n);
      return;
    }
    this.lockLimbo();
    const sealedLongAgo = (Atomics.load(this.meta, Lit.H_GLOBAL) - GRACE_RAW) | 0;
    const stored = this.appendLocked(kind, sealedLongAgo, payload, size);
    this.unlockLimbo();
    if (!stored) this.overflow.push({ kind, seal: sealedLongAgo, payload, size });
    if (!stored) Atomics.add(this.meta, H_OVERFLOW_COUNT + kind, 1);
  }

  private releaseEligible(): number {
    let total = 0;
    let firstError: unknown;
    const payloads: number[] = [];
    const sizes: number[] = [];
    for (let kind = 0; kind < RETIRE_KINDS; kind++) {
      const reclaim = this.reclaimers[kind];
      if (reclaim === undefined) continue;
      if (kind === RETIRE_DEVICE_BLOCK || kind >= RETIRE_RECORDED_FIRST) {
        total += this.releaseRecorded(kind, reclaim, (e) => (firstError ??= e));
        continue;
      }
      for (;;) {
        payloads.length = 0;
        sizes.length = 0;
        this.lockLimbo();
        const global = Atomics.load(this.meta, Lit.H_GLOBAL);
        this.popEligibleLocked(kind, global, payloads, sizes);
        this.unlockLimbo();
        firstError ??= runReclaimer(reclaim, payloads, sizes);
        total += payloads.length;
        if (payloads.length < RELEASE_BATCH) break;
      }
    }
    total += this.releaseOverflow((e) => (firstError ??= e));
    if (total > 0) Atomics.add(this.released64, H_RELEASED_BIGINT, BigInt(total));
    if (firstError !== undefined) throw firstError;
    return total;
  }

  /**
   * Releases kind's eligible records one at a time, each recorded in this thread's participant
   * slot (P_RELEASE_*) from the pop to the end of its reclaimer: the pop and the record are one
   * run of statements with no call (file header: Thread death), and so are the reclaimer's
   * return and the clear. A thread that dies in between leaves the record, and reap() runs the
   * reclaimer for it. A device block's reclaimer (allocator.ts free) clears the record itself
   * when its own record of the free takes over, so no block is ever named by both.
   */
  private releaseRecorded(kind: number, reclaim: Reclaimer, onError: (e: unknown) => void): number {
    const pt = participantTable();
    const rb = mySlotBase();
    const domain = this.meta[H_DOMAIN_ID_LO];
    let released = 0;
    for (;;) {
      this.lockLimbo();
      const l = this.limboWords;
      const global = Atomics.load(this.meta, Lit.H_GLOBAL);
      let head = l[L_LIST + 2 * kind];
      let r = -1;
      while (head !== 0) {
        const read = l[chunkWord(head, C_READ)];
        const write = l[chunkWord(head, C_WRITE)];
        if (read === write) {
          if (write < CHUNK_RECORDS && l[chunkWord(head, C_NEXT)] === 0) break; // the tail, still filling
          this.unlinkHeadLocked(kind, head);
          head = l[L_LIST + 2 * kind];
          continue;
        }
        r = chunkWord(head, CHUNK_HEADER_WORDS + read * RECORD_WORDS);
        if (((global - l[r]) | 0) < GRACE_RAW) r = -1; // seals only grow along the list
        break;
      }
      if (r < 0) {
        this.unlockLimbo();
        return released;
      }
      const lo = l[r + 1];
      const hi = l[r + 2];
      const size = l[r + 3] >>> 0;
      l[chunkWord(head, C_READ)]++;
      l[L_COUNT + kind]--;
      pt[rb + P_RELEASE_DOMAIN] = domain; // with the pop: no call in between
      pt[rb + P_RELEASE_LO] = lo;
      pt[rb + P_RELEASE_HI] = hi;
      pt[rb + P_RELEASE_KIND] = kind + 1;
      this.unlockLimbo();
      try {
        reclaim((hi >>> 0) * 2 ** 32 + (lo >>> 0), size);
      } catch (e) {
        onError(e);
      }
      pt[rb + P_RELEASE_KIND] = 0;
      released++;
    }
  }

  /** A dead participant's release in flight (releaseRecorded): run this thread's reclaimer for it. */
  private finishDeadRelease(id: number): void {
    const pt = participantTable();
    const base = slotBase(id);
    const kind = pt[base + P_RELEASE_KIND] - 1;
    if (kind < 0 || pt[base + P_RELEASE_DOMAIN] !== this.meta[H_DOMAIN_ID_LO]) return;
    const reclaim = this.reclaimers[kind];
    if (reclaim === undefined) return;
    pt[base + P_RELEASE_KIND] = 0;
    reclaim((pt[base + P_RELEASE_HI] >>> 0) * 2 ** 32 + (pt[base + P_RELEASE_LO] >>> 0), 0);
    Atomics.add(this.released64, H_RELEASED_BIGINT, 1n);
  }

  private releaseOverflow(onError: (e: unknown) => void): number {
    if (this.overflow.length === 0) return 0;
    const global = Atomics.load(this.meta, Lit.H_GLOBAL);
    let released = 0;
    const kept: ParkedRecord[] = [];
    for (const r of this.overflow.splice(0)) {
      const reclaim = this.reclaimers[r.kind];
      if (reclaim === undefined || ((global - r.seal) | 0) < GRACE_RAW) {
        kept.push(r);
        continue;
      }
      Atomics.sub(this.meta, H_OVERFLOW_COUNT + r.kind, 1);
      released++;
      const e = runReclaimer(reclaim, [r.payload], [r.size]);
      if (e !== undefined) onError(e);
    }
    this.overflow.push(...kept);
    this.drainOverflowIntoLimbo();
    return released;
  }

  /** Move parked records into the shared limbo while it has room (so other threads can release them). */
  private drainOverflowIntoLimbo(): void {
    if (this.overflow.length === 0) return;
    this.lockLimbo();
    let moved = 0;
    for (const r of this.overflow) {
      if (!this.appendLocked(r.kind, r.seal, r.payload, r.size)) break;
      Atomics.sub(this.meta, H_OVERFLOW_COUNT + r.kind, 1);
      moved++;
    }
    this.unlockLimbo();
    this.overflow.splice(0, moved);
  }

  /** Append one record to kind's list; false when the limbo cannot grow. Needs the limbo mutex. */
  private appendLocked(kind: number, seal: number, payload: number, size: number): boolean {
    let l = this.limboWords;
    let tail = l[L_LIST + 2 * kind + 1];
    if (tail === 0 || l[chunkWord(tail, C_WRITE)] === CHUNK_RECORDS) {
      const chunk = this.allocChunkLocked();
      if (chunk === 0) return false;
      l = this.limboWords; // the view allocChunkLocked may have extended
      if (tail === 0) l[L_LIST + 2 * kind] = chunk;
      else l[chunkWord(tail, C_NEXT)] = chunk;
      l[L_LIST + 2 * kind + 1] = chunk;
      tail = chunk;
    }
    const slot = l[chunkWord(tail, C_WRITE)];
    const r = chunkWord(tail, CHUNK_HEADER_WORDS + slot * RECORD_WORDS);
    l[r] = seal;
    l[r + 1] = (payload % 2 ** 32) | 0;
    l[r + 2] = Math.floor(payload / 2 ** 32);
    l[r + 3] = size | 0;
    l[chunkWord(tail, C_WRITE)] = slot + 1;
    l[L_COUNT + kind]++;
    return true;
  }

  /** Pop up to RELEASE_BATCH records of kind sealed at least two advances before global. Needs the limbo mutex. */
  private popEligibleLocked(kind: number, global: number, payloads: number[], sizes: number[]): void {
    const l = this.limboWords;
    while (payloads.length < RELEASE_BATCH) {
      const head = l[L_LIST + 2 * kind];
      if (head === 0) return;
      const read = l[chunkWord(head, C_READ)];
      const write = l[chunkWord(head, C_WRITE)];
      if (read === write) {
        if (write < CHUNK_RECORDS && l[chunkWord(head, C_NEXT)] === 0) return; // the tail, still filling
        this.unlinkHeadLocked(kind, head);
        continue;
      }
      const r = chunkWord(head, CHUNK_HEADER_WORDS + read * RECORD_WORDS);
      if (((global - l[r]) | 0) < GRACE_RAW) return; // seals only grow along the list
      payloads.push((l[r + 2] >>> 0) * 2 ** 32 + (l[r + 1] >>> 0));
      sizes.push(l[r + 3] >>> 0);
      l[chunkWord(head, C_READ)] = read + 1;
      l[L_COUNT + kind]--;
    }
  }

  private unlinkHeadLocked(kind: number, head: number): void {
    const l = this.limboWords;
    const next = l[chunkWord(head, C_NEXT)];
    l[L_LIST + 2 * kind] = next;
    if (next === 0) l[L_LIST + 2 * kind + 1] = 0;
    l[chunkWord(head, C_NEXT)] = l[L_FREE_HEAD];
    l[L_FREE_HEAD] = head;
  }

  /** A zeroed chunk from the free list or fresh buffer space (growing it); 0 when at the limit. Needs the limbo mutex. */
  private allocChunkLocked(): number {
    let l = this.limboWords;
    let chunk = l[L_FREE_HEAD];
    if (chunk !== 0) {
      l[L_FREE_HEAD] = l[chunkWord(chunk, C_NEXT)];
    } else {
      chunk = l[L_CHUNKS] + 1;
      const neededBytes = (LIMBO_HEADER_WORDS + chunk * CHUNK_WORDS) * 4;
      const limbo = this.shared.limbo;
      if (neededBytes > limbo.byteLength) {
        if (neededBytes > limbo.maxByteLength) return 0;
        limbo.grow(Math.min(limbo.maxByteLength, Math.max(neededBytes, limbo.byteLength * 2)));
        l[L_BYTES] = limbo.byteLength; // under the mutex: the next holder's lockLimbo extends its view
        this.refreshLimboView();
        l = this.limboWords;
      }
      l[L_CHUNKS] = chunk;
    }
    l[chunkWord(chunk, C_NEXT)] = 0;
    l[chunkWord(chunk, C_READ)] = 0;
    l[chunkWord(chunk, C_WRITE)] = 0;
    return chunk;
  }

  /** The limbo mutex (device/spin-lock: Drepper's mutex, spins briefly, then sleeps). */
  private lockLimbo(): void {
    if (LIMBO_VIEW_STALE) return this.lockLimboKeepingView();
    lockWord(this.limboWords, L_MUTEX, this.repairLimbo);
    // After the mutex: a growth by another thread wrote L_BYTES before its unlock.
    if (this.limboWords[L_BYTES] !== this.limboWords.length << 2) this.refreshLimboView();
  }

  /** lockLimbo under DAXSTORE_TEST_BREAK=limbo-view-stale: this thread keeps its view after another thread grew the limbo. */
  private lockLimboKeepingView(): void {
    lockWord(this.limboWords, L_MUTEX);
  }

  /**
   * The limbo mutex was taken over from a dead holder (spin-lock.ts): put right what an append,
   * a chunk allocation, a growth or a head unlink cut short can leave. Each of those publishes
   * with one store (a record by C_WRITE, a chunk by its link), so what is left is: a list tail
   * that is not the last chunk of its list (a link stored, the tail not yet), L_BYTES behind a
   * growth, counts off by one. A chunk unlinked but not yet on the free list stays unused.
   */
  private readonly repairLimbo = (): void => {
    const limbo = this.shared.limbo;
    this.limboWords = new Int32Array(limbo, 0, limbo.byteLength >> 2);
    const l = this.limboWords;
    l[L_BYTES] = limbo.byteLength;
    const chunks = l[L_CHUNKS];
    for (let kind = 0; kind < RETIRE_KINDS; kind++) {
      let chunk = l[L_LIST + 2 * kind];
      let last = 0;
      let records = 0;
      for (let steps = 0; chunk !== 0 && steps <= chunks; steps++) {
        records += l[chunkWord(chunk, C_WRITE)] - l[chunkWord(chunk, C_READ)];
        last = chunk;
        chunk = l[chunkWord(chunk, C_NEXT)];
      }
      l[L_LIST + 2 * kind + 1] = last;
      l[L_COUNT + kind] = records;
    }
  };

  /** This thread's limbo view over L_BYTES bytes (the buffer's length at its last growth). Needs the limbo mutex. */
  private refreshLimboView(): void {
    this.limboWords = new Int32Array(this.shared.limbo, 0, this.limboWords[L_BYTES] >> 2);
  }

  private unlockLimbo(): void {
    unlockWord(this.limboWords, L_MUTEX);
  }

  private checkOpen(op: string): void {
    if (this.closed) throw new DaxError('ECLOSED', `EpochDomain.${op}: this thread closed its participant`);
  }
}

function slotWord(id: number, field: number): number {
  return Lit.HEADER_WORDS + id * Lit.SLOT_WORDS + field;
}

function chunkWord(chunk: number, field: number): number {
  return LIMBO_HEADER_WORDS + (chunk - 1) * CHUNK_WORDS + field;
}

function checkKind(kind: number, op: string): void {
  if (!Number.isInteger(kind) || kind < 0 || kind >= RETIRE_KINDS) {
    throw new DaxError('EINVAL', `${op}: kind ${kind} is not an integer in [0, ${RETIRE_KINDS})`);
  }
}

/** Call reclaim for every record even if one throws; returns the first error. */
function runReclaimer(reclaim: Reclaimer, payloads: number[], sizes: number[]): unknown {
  let firstError: unknown;
  for (let i = 0; i < payloads.length; i++) {
    try {
      reclaim(payloads[i], sizes[i]);
    } catch (e) {
      firstError ??= e;
    }
  }
  return firstError;
}
