/**
 * RadixTree: an adaptive radix tree (ART) over byte keys in a shared-memory arena (arena.ts), one
 * index shared by every thread of the process. Keys are ordered as memcmp with the shorter
 * prefix first; integer page indices are 8-byte big-endian keys (`*Index` fast paths).
 *
 * Invariants
 *   - Each key has at most one leaf; the leaf never moves while it is in the tree (its entry
 *     word is the entry lock), and leaves are removed only by the holder of their lock.
 *   - Multi-order: a huge (order 9) leaf has an 8-byte key n with n % 512 == 0 and no other
 *     leaf has a key in (n, n+511]; lookups of a covered index find it.
 *   - Every inner node's W_DIRTY/W_TOWRITE equal the number of leaves below it carrying
 *     that tag (changed only under treeLock, copied on node replacement).
 *   - H_COUNT is the number of leaves reachable from the root.
 *
 * Concurrency
 *   - Readers are lock-free: inside an epoch pin they do acquire loads (loadWord: word-load.ts
 *     says why a plain load is one on x86, Atomics.load elsewhere) of every mutable word
 *     (root, child slots, endLeaf, N48 index, entry and value words) and plain loads of the
 *     words that are immutable once published (nodes.ts), and they write nothing shared.
 *   - Structural changes hold treeLock (tree-lock.ts), build replacements off to the side,
 *     publish them with one Atomics.store of the parent's slot, then retire the old block
 *     (RETIRE_ARENA_NODE), so a pinned reader keeps seeing a whole old or a whole new node.
 *     The in-place changes nodes.ts lists are the exceptions (N48/N256 slots, and on x86 an
 *     append to an N4/16/32 with room: child, key byte, then count; addChildLocked).
 *   - Lock order: entry lock, then treeLock. Tags change only with treeLock held.
 *   - Iteration is not a snapshot: it returns each key at most once, in order, and sees every
 *     key that was present for the whole iteration; keys inserted or deleted meanwhile may
 *     or may not appear. It restarts from the root after the last key every BATCH entries,
 *     and holds the pin only while producing a batch.
 *
 * Persistence ordering: none; the index is volatile and rebuilt from the store at open.
 */
import { assert } from '../assert.js';
import { DaxError } from '../errors.js';
import { EpochDomain, RETIRE_ARENA_NODE } from './epoch.js';
import { WaitTable, type WaitTableHandle } from './wait-table.js';
import {
  Arena,
  FLAG_POISON,
  FREED_HEADER,
  H_COUNT,
  H_FLAGS,
  H_STAT_LOST_WAKEUPS,
  H_STAT_POISON_HITS,
  H_STAT_RECLAIMED,
  H_STAT_RESTARTS,
  H_STAT_WAITS,
  H_TREE_ID,
  HEADER_WORDS,
  H_VERSION,
  H_TOKEN,
  Hw,
  POISON_WORD,
  classWords,
  sizeClassOf,
  type HugePagesState,
} from './arena.js';
import { lockTree, unlockTree } from './tree-lock.js';
import { brokenAtLoad, isBroken } from '../test-break.js';
import { collapseInBackground, native } from '../native/addon.js';
import { repairTreeLocked } from './tree-repair.js';
import { reapTreeParticipant, settleDeadWriter } from './entry-lock.js';
import { LAYER_INDEX } from './epoch.js';
import { holderBits, mySlotBase, participantTable } from '../device/participants.js';
import { type BulkEntries, bulkLoadLocked, checkBulkEntries } from './bulk-load.js';
import { type ImageTail, type TreeImage, loadImageLocked } from './tree-image.js';
import { PLAIN_LOADS_ARE_ACQUIRE, loadWord, storeRelease } from './word-load.js';
import { checkIndex, checkKey, checkValue, indexKey } from './keys.js';
import { deleteLocked, grab, replace, unlock } from './entry-lock.js';
import { type WasmMemory } from './wasm-encoder.js';
import { WASM_GRAB_USABLE, instantiateWasmGrab, type WasmGrabExports } from './wasm-grab.js';
import { Ew, STATE_NAMES, type EntryState, type EntryTag, orderOf, stateOf, tagBit } from './entry-word.js';
import {
  Lay,
  MAX_KEY_BYTES,
  bodyOffset,
  capacityOf,
  countOf,
  fillInner,
  findChild,
  findChildSlot,
  gatherChildren,
  header,
  innerWords,
  isLive,
  leafWords,
  typeForCount,
  typeOf,
} from './nodes.js';

/** DAXSTORE_TEST_BREAK=tree-lock-unpinned: treeLock holders are not pinned (see lockTree). */
export const TREE_LOCK_UNPINNED = brokenAtLoad('tree-lock-unpinned');

/**
 * DAXSTORE_TEST_BREAK=append-shift: adding a child to an N4/16/32 with room inserts it at its
 * sorted place by shifting the later key bytes and children in place, under lock-free readers
 * (what the append order of nodes.ts avoids), so radix-tree-append.test.ts can go red.
 */
export const APPEND_SHIFT_BROKEN = brokenAtLoad('append-shift');

export interface RadixTreeHandle {
  /** the arena: a shared WebAssembly.Memory (arena.ts) */
  readonly arena: WasmMemory;
  readonly waitTable: WaitTableHandle;
}

export interface RadixTreeOptions {
  initialBytes?: number;
  maxBytes?: number;
  /** Debug: overwrite reclaimed memory with a poison pattern and count readers that reach it. */
  poisonReclaimed?: boolean;
  /** Wait table for entry locks; a private one is created when absent. */
  waitTable?: WaitTable;
}

export interface RangeOptions {
  gt?: Uint8Array;
  gte?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
  reverse?: boolean;
  limit?: number;
}

export interface EntryInfo {
  readonly state: EntryState;
  readonly order: number;
  readonly dirty: boolean;
  readonly towrite: boolean;
  readonly locked: boolean;
}

export type RangeItem = [key: Uint8Array, value: number, info: EntryInfo];

export interface TreeStats {
  count: number;
  liveBytes: number;
  arenaBytes: number;
  poisonHits: number;
  restarts: number;
  lostWakeups: number;
  waits: number;
  reclaimed: number;
  /** Whether the arena's memory was advised to use 2 MiB transparent huge pages. */
  hugePages: HugePagesState;
}

const TWO_32 = 2 ** 32;
const BATCH = 128;
const MAX_RESTARTS = 100_000;
const EMPTY_KEY = new Uint8Array(0);
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;
/** The most keys one lookupManyPinned call walks together. */
export const LOOKUP_MANY_MAX = 32;

/** Whether the leaf at word `leaf` (its key length already checked) holds exactly `key`. */
function leafHoldsKey(u8: Uint8Array, leaf: number, key: Uint8Array): boolean {
  const kb = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
  for (let i = 0; i < key.length; i++) if (u8[kb + i] !== key[i]) return false;
  return true;
}

/** Per thread and epoch domain: tree id -> arena, for the one RETIRE_ARENA_NODE reclaimer. */
const arenasByDomain = new WeakMap<EpochDomain, Map<number, Arena>>();

function registerArena(epoch: EpochDomain, treeId: number, arena: Arena): void {
  let arenas = arenasByDomain.get(epoch);
  if (arenas === undefined) {
    const map = new Map<number, Arena>();
    arenas = map;
    arenasByDomain.set(epoch, map);
    epoch.registerReclaimer(RETIRE_ARENA_NODE, (payload, size) => {
      const id = Math.floor(payload / TWO_32);
      const owner = map.get(id);
      // A tree this thread never attached: leave it for a thread that did.
      if (owner === undefined) epoch.retire(RETIRE_ARENA_NODE, payload, size);
      else owner.free(payload - id * TWO_32, size);
    });
  }
  const known = arenas.get(treeId);
  assert(
    known === undefined || known.memory === arena.memory,
    () => `radix tree id ${treeId} names two trees in one epoch domain`,
  );
  arenas.set(treeId, arena);
}

function freshTreeId(epoch: EpochDomain): number {
  const taken = arenasByDomain.get(epoch);
  for (;;) {
    const id = 1 + Math.floor(Math.random() * 0xfffe);
    if (taken === undefined || !taken.has(id)) return id;
  }
}

export class RadixTree {
  /** @internal */
  readonly arena: Arena;
  readonly epoch: EpochDomain;
  /** @internal */
  readonly waitTable: WaitTable;
  readonly treeId: number;
  /** @internal EpochDomain.threadId of this thread, cached (owner id of entry locks taken here). */
  readonly threadId: number;
  /** @internal LOCKED | threadId << OWNER_SHIFT: what a grab of a free entry sets (entry-word.ts). */
  readonly lockBits: number;
  /** @internal participants.ts holderBits of this thread: what its treeLock word carries. */
  readonly holderBits: number;
  /** @internal Random id of this tree's arena (H_TOKEN): names the tree in participant records (entry-lock.ts replace). */
  readonly token: number;
  /** @internal The participant table and this thread's slot in it (entry-lock.ts replace writes its record there). */
  readonly participants: Int32Array;
  /** @internal */
  readonly mySlot: number;
  /** @internal This thread's instance of the wasm entry-lock fast path over the arena (wasm-grab.ts); undefined on big-endian hosts. */
  readonly wasmGrab: WasmGrabExports | undefined;
  /**
   * Words of the arena wasmGrab may read: a size its instance has been seen to reach (wasm-grab.ts
   * "Traps"). Only grows; raiseWasmLimit moves it up to this thread's view after a growth.
   * @internal
   */
  wasmLimitWords = 0;
  /** @internal Probes that trapped (the instance had not yet heard of a growth): diagnostics and tests. */
  wasmProbeMisses = 0;
  /** @internal Nodes visited by this thread's iterations so far (monotonic; tests compare tagged vs full scans). */
  visitedNodes = 0;

  // Scratch, reused by the writer paths (treeLock) and by readers of this thread.
  private readonly kidBytes = new Uint8Array(257);
  private readonly kidPtrs = new Int32Array(257);
  private readonly prefixScratch = new Uint8Array(MAX_KEY_BYTES + 1);
  private readonly pathSlots = new Int32Array(MAX_KEY_BYTES + 2);
  private readonly idxKey = new Uint8Array(8);
  private readonly alignedKey = new Uint8Array(8);
  private readonly levelBytes: Uint8Array[] = [];
  private readonly levelPtrs: Int32Array[] = [];
  /** @internal set by findLeafPinned: the leaf found has exactly the key asked for (not a covering huge one). */
  foundExact = false;
  /** @internal set by getOrCreateLocked: the leaf was created by this call. */
  created = false;
  /** Set by descendPinned when the key is absent: the slot of the last node it examined, and the depth there. */
  private missSlot = 0;
  private missDepth = 0;
  /** findExactHintPinned's hint for getOrCreateLocked (key, structure version, start slot and depth). */
  private hintKey: Uint8Array | undefined = undefined;
  private hintVersion = 0;
  private hintSlot = 0;
  private hintDepth = 0;
  /** handle() was taken or this is an attached copy: another thread may see the tree (bulkLoad refuses). */
  private everShared = false;

  // DFS state (one iteration at a time per thread; batches are produced synchronously).
  private lo: Uint8Array = EMPTY_KEY;
  private loIncl = true;
  private hasLo = false;
  private hi: Uint8Array = EMPTY_KEY;
  private hiIncl = true;
  private hasHi = false;
  private hiPrefix = false;
  private reverse = false;
  private tagMask = 0;
  private includeEmpty = false;
  private batch = new Int32Array(BATCH);
  private batchLen = 0;
  private batchMax = BATCH;
  private restartNeeded = false;
  /** scanPinned's visitor: when set, leaves go to it directly instead of into `batch`. */
  private visitFn: ((value: number, leaf: number) => boolean | void) | undefined = undefined;
  private visitSeen = 0;
  /** @internal Sink for the header touches in dfs (kept so the loads are not dead code). */
  touched = 0;
  private lastVisited = 0;

  private constructor(arena: Arena, epoch: EpochDomain, waitTable: WaitTable) {
    this.arena = arena;
    this.epoch = epoch;
    this.waitTable = waitTable;
    this.treeId = arena.i32[H_TREE_ID];
    this.threadId = epoch.threadId;
    assert(
      this.threadId > 0 && this.threadId <= 0xfff,
      () => `epoch threadId ${this.threadId} does not fit the 12-bit owner field`,
    );
    this.lockBits = Ew.LOCKED | (this.threadId << Ew.OWNER_SHIFT);
    this.holderBits = holderBits();
    this.token = arena.i32[H_TOKEN];
    this.participants = participantTable();
    this.mySlot = mySlotBase();
    this.repairOnSteal = (): void => repairTreeLocked(this);
    epoch.onDeath(LAYER_INDEX, 40, (id, gen) => reapTreeParticipant(this, id, gen));
    this.wasmGrab = WASM_GRAB_USABLE ? instantiateWasmGrab(arena.memory) : undefined;
    this.raiseWasmLimit();
    registerArena(epoch, this.treeId, arena);
  }

  /**
   * Raise wasmLimitWords to this thread's view of the arena when the wasm instance reaches it
   * (its probe of the last word does not trap). Cheap when nothing grew; the lock fast paths
   * call it when wasm declined a node past the limit (wasm-grab.ts "Traps").
   * @internal
   */
  raiseWasmLimit(): void {
    const wasm = this.wasmGrab;
    const words = this.arena.i32.length;
    if (wasm === undefined || words <= this.wasmLimitWords) return;
    try {
      wasm.probe(words - 1);
      this.wasmLimitWords = words;
    } catch {
      // The instance has not heard of the growth yet: keep the old limit (the JS path serves
      // the nodes above it) and try again at a later decline.
      this.wasmProbeMisses++;
    }
  }

  static create(epoch: EpochDomain, opts: RadixTreeOptions = {}): RadixTree {
    const arena = Arena.create(freshTreeId(epoch), opts);
    return new RadixTree(arena, epoch, opts.waitTable ?? WaitTable.create());
  }

  /** Attach in another thread to the tree behind `handle` (same memory, no copy). */
  static attach(handle: RadixTreeHandle, epoch: EpochDomain): RadixTree {
    const tree = new RadixTree(Arena.attach(handle.arena), epoch, WaitTable.attach(handle.waitTable));
    tree.everShared = true;
    return tree;
  }

  handle(): RadixTreeHandle {
    this.everShared = true;
    return { arena: this.arena.memory, waitTable: this.waitTable.handle() };
  }

  // ---- lock-free reads (caller pinned) ------------------------------------------------

  /** @internal Leaf holding `key`, or the huge leaf covering it (8-byte keys), or 0. Caller is pinned. */
  findLeafPinned(key: Uint8Array): number {
    const leaf = this.findExactPinned(key);
    if (leaf !== 0 || key.length !== 8 || (key[7] === 0 && (key[6] & 1) === 0)) {
      this.foundExact = true;
      return leaf;
    }
    const a = this.alignedKey;
    for (let i = 0; i < 6; i++) a[i] = key[i];
    a[6] = key[6] & 0xfe;
    a[7] = 0;
    const huge = this.findExactPinned(a);
    this.foundExact = false;
    if (huge !== 0 && (loadWord(this.arena.i32, huge + Lay.W_ENTRY) & Ew.ORDER_MASK) >>> Ew.ORDER_SHIFT === 9)
      return huge;
    return 0;
  }

  /** descendPinned's absent result: records where the descent ended (missSlot, missDepth). */
  private missAt(slot: number, depth: number): 0 {
    this.missSlot = slot;
    this.missDepth = depth;
    return 0;
  }

  /**
   * findExactPinned, and when the key is absent, a hint for the getOrCreateLocked that the
   * caller will make under treeLock: the slot and depth where this descent ended, valid only
   * while the structure version read before the descent (arena.ts H_VERSION) is unchanged,
   * i.e. the tree is still the one this descent saw. getOrCreateLocked(key, entry, true)
   * starts there instead of at the root (a new key's put made the same descent twice).
   * @internal
   */
  findExactHintPinned(key: Uint8Array): number {
    const version = loadWord(this.arena.i32, H_VERSION);
    const found = this.findExactPinned(key);
    if (found === 0) {
      this.hintKey = key;
      this.hintVersion = version;
      this.hintSlot = this.missSlot;
      this.hintDepth = this.missDepth;
    }
    return found;
  }

  /** @internal The leaf with exactly `key`, or 0. Caller is pinned. */
  findExactPinned(key: Uint8Array): number {
    const found = this.descendPinned(key);
    return found >= 0 ? found : this.findExactSlow(key);
  }

  private findExactSlow(key: Uint8Array): number {
    let restarts = 0;
    for (;;) {
      this.deadNode(this.deadHeader, ++restarts);
      const found = this.descendPinned(key);
      if (found >= 0) return found;
    }
  }

  /**
   * One descent from the root: the leaf with exactly `key`, 0 when absent, -1 when a dead
   * block was met (its header left in deadHeader; the caller restarts). The hot path of
   * every lookup and grab, written for TurboFan and for the CPU:
   *   - one dispatch per node on (hdr & 0xfff), the magic and the type together, so the
   *     liveness check (isLive) is the dispatch itself: a freed block (FREED_HEADER,
   *     POISON_WORD), any other type, or a read past this thread's view (undefined & 0xfff
   *     = 0) falls to `default`;
   *   - each kind's step is straight-line: N256 one indexed load, N48 index byte + slot,
   *     N4/16/32 a word-at-a-time search, all inline;
   *   - the body offset starts at node + INNER_HEADER_WORDS and moves past the prefix only
   *     in the (predicted) prefix branch, so without a prefix the child's address depends on
   *     `node` and the key byte alone, not on the prefixLen load: one dependent load per
   *     level instead of two.
   * The index bench's "floor: descent" row measures it (docs/PERFORMANCE.md lists what was
   * tried and did not help: peeling the root step, unrolling the node loop, eight-byte leaf key
   * compares, a branch-free N16 search).
   * Layout numbers are literals (`Lay`) and the load kind is read once. Inner nodes store
   * their whole prefix (pessimistic path compression) and every branch byte matched, so at
   * the leaf only the key bytes past the depth reached are compared.
   */
  private descendPinned(key: Uint8Array): number {
    const plain = PLAIN_LOADS_ARE_ACQUIRE;
    const i32 = this.arena.i32;
    const u8 = this.arena.u8;
    const keyLen = key.length;
    let slot: number = Hw.ROOT; // the word `node` was loaded from
    let node = plain ? i32[slot] : Atomics.load(i32, slot);
    let depth = 0;
    // Where an absent key's descent ended (the slot of the last node examined, and the depth
    // there): missSlot/missDepth, for getOrCreateLocked's hint (findExactHintPinned).
    let atSlot = slot;
    let atDepth = 0;
    while (node !== 0) {
      atSlot = slot;
      atDepth = depth;
      const hdr = i32[node];
      switch (hdr & 0xfff) {
        case Lay.N256_TAG: {
          let body = node + Lay.INNER_HEADER_WORDS;
          const plen = i32[node + Lay.W_PREFIX_LEN];
          if (plen !== 0) {
            depth = matchPrefix(u8, node, plen, key, depth);
            if (depth < 0) return this.missAt(atSlot, atDepth);
            body += (plen + 3) >> 2;
          }
          if (depth === keyLen) {
            slot = node + Lay.W_END_LEAF;
            node = plain ? i32[slot] : Atomics.load(i32, slot);
            break;
          }
          const b = key[depth++];
          slot = body + b;
          node = plain ? i32[slot] : Atomics.load(i32, slot);
          break;
        }
        case Lay.N16_TAG:
        case Lay.N4_TAG:
        case Lay.N32_TAG: {
          let body = node + Lay.INNER_HEADER_WORDS;
          const plen = i32[node + Lay.W_PREFIX_LEN];
          if (plen !== 0) {
            depth = matchPrefix(u8, node, plen, key, depth);
            if (depth < 0) return this.missAt(atSlot, atDepth);
            body += (plen + 3) >> 2;
          }
          if (depth === keyLen) {
            slot = node + Lay.W_END_LEAF;
            node = plain ? i32[slot] : Atomics.load(i32, slot);
            break;
          }
          const b = key[depth++];
          const count = hdr >>> 12; // sound: bits 25-31 of a live header are 0
          const capWords = (hdr & 0xf00) === Lay.N4 << 8 ? 1 : (hdr & 0xf00) === Lay.N16 << 8 ? 4 : 8;
          let child = 0;
          if (LITTLE_ENDIAN) {
            // Four key bytes per step: the lowest zero byte of (word ^ b repeated) is the first
            // match (Mycroft's has-zero-byte test; borrows only ever mark bytes above a true
            // zero). The key bytes below count are distinct and immutable once published
            // (plain loads); a match at or past count (an append this header predates) is absent.
            const rep = Math.imul(b, 0x01010101);
            const words = (count + 3) >> 2;
            for (let w = 0; w < words; w++) {
              const x = i32[body + w] ^ rep;
              const m = (x - 0x01010101) & ~x & 0x80808080;
              if (m !== 0) {
                const i = (w << 2) + ((31 - Math.clz32(m & -m)) >> 3);
                if (i < count) {
                  slot = body + capWords + i;
                  child = plain ? i32[slot] : Atomics.load(i32, slot);
                }
                break;
              }
            }
          } else {
            const kb = body << 2;
            for (let i = 0; i < count; i++) {
              if (u8[kb + i] === b) {
                slot = body + capWords + i;
                child = plain ? i32[slot] : Atomics.load(i32, slot);
                break;
              }
            }
          }
          node = child;
          break;
        }
        case Lay.LEAF_TAG: {
          if (hdr >>> 12 !== keyLen) return this.missAt(atSlot, atDepth);
          // Key bytes [depth, keyLen) against the leaf's (immutable once published: plain
          // loads), four at a time against its words where aligned. Inline, not a helper:
          // TurboFan left the helper as a call (perf: a tenth of grab+unlock).
          const kw = node + Lay.LEAF_HEADER_WORDS;
          const kb = kw << 2;
          let i = depth;
          if (LITTLE_ENDIAN) {
            for (; (i & 3) !== 0 && i < keyLen; i++) if (u8[kb + i] !== key[i]) return this.missAt(atSlot, atDepth);
            for (; i + 4 <= keyLen; i += 4) {
              if (i32[kw + (i >> 2)] !== (key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24)))
                return this.missAt(atSlot, atDepth);
            }
          }
          for (; i < keyLen; i++) if (u8[kb + i] !== key[i]) return this.missAt(atSlot, atDepth);
          return node;
        }
        case Lay.N48_TAG: {
          let body = node + Lay.INNER_HEADER_WORDS;
          const plen = i32[node + Lay.W_PREFIX_LEN];
          if (plen !== 0) {
            depth = matchPrefix(u8, node, plen, key, depth);
            if (depth < 0) return this.missAt(atSlot, atDepth);
            body += (plen + 3) >> 2;
          }
          if (depth === keyLen) {
            slot = node + Lay.W_END_LEAF;
            node = plain ? i32[slot] : Atomics.load(i32, slot);
            break;
          }
          const b = key[depth++];
          const iw = plain ? i32[body + (b >> 2)] : Atomics.load(i32, body + (b >> 2));
          const si = (iw >>> ((b & 3) << 3)) & 0xff;
          slot = body + 63 + si;
          node = si === 0 ? 0 : plain ? i32[slot] : Atomics.load(i32, slot);
          break;
        }
        default:
          this.deadHeader = hdr;
          return -1;
      }
    }
    return this.missAt(atSlot, atDepth);
  }

  /** A reader met a block that is no live node: refresh views (growth) or count it, then restart. */
  private deadNode(hdr: number, restarts: number): void {
    if (this.arena.refresh()) return;
    const i32 = this.arena.i32;
    Atomics.add(i32, H_STAT_RESTARTS, 1);
    if ((i32[H_FLAGS] & FLAG_POISON) !== 0 && (hdr === POISON_WORD || hdr === FREED_HEADER))
      Atomics.add(i32, H_STAT_POISON_HITS, 1);
    assert(restarts < MAX_RESTARTS, 'radix tree reader keeps reaching freed nodes (epoch protection broken?)');
  }

  /**
   * Read a leaf's value through the seqlock; returns -1 when the leaf holds no value
   * (EMPTY placeholder or DELETED). The last entry word read is left in `lastEntry`.
   * @internal
   */
  readValuePinned(leaf: number): number {
    // The common case straight-line, its loads written out (loadWord and isLive stay calls
    // where the caller's inlining budget is spent): no writer between its seq bumps, the same
    // seq before and after, a value, a live leaf. Anything else: readValueSlowPinned, the loop.
    const plain = PLAIN_LOADS_ARE_ACQUIRE;
    const i32 = this.arena.i32;
    const e1 = plain ? i32[leaf + Lay.W_ENTRY] : Atomics.load(i32, leaf + Lay.W_ENTRY);
    const lo = plain ? i32[leaf + Lay.W_VALUE_LO] : Atomics.load(i32, leaf + Lay.W_VALUE_LO);
    const hi = plain ? i32[leaf + Lay.W_VALUE_HI] : Atomics.load(i32, leaf + Lay.W_VALUE_HI);
    const e2 = plain ? i32[leaf + Lay.W_ENTRY] : Atomics.load(i32, leaf + Lay.W_ENTRY);
    if (
      (e1 & (Ew.SEQ_ONE | Ew.DELETED)) === 0 &&
      ((e1 ^ e2) & Ew.SEQ_MASK) === 0 &&
      (e2 & Ew.DELETED) === 0 &&
      ((e2 >>> Ew.STATE_SHIFT) & 3) !== Ew.STATE_EMPTY &&
      (i32[leaf] & 0xfff) === Lay.LEAF_TAG
    ) {
      this.lastEntry = e2;
      return (hi & 0xffff) * TWO_32 + (lo >>> 0);
    }
    return this.readValueSlowPinned(leaf);
  }

  /** readValuePinned past its common case: waits out a writer between its seq bumps, reports a dead leaf. */
  private readValueSlowPinned(leaf: number): number {
    const i32 = this.arena.i32;
    for (let spins = 0; ; spins++) {
      const e1 = loadWord(i32, leaf + Lay.W_ENTRY);
      if ((e1 & Ew.SEQ_ONE) !== 0 || !isLive(i32[leaf])) {
        // A writer is between its two seq bumps, or (a bug) the leaf was reclaimed. A writer
        // that died there never finishes: after a while, look at who holds the entry.
        if (isLive(i32[leaf])) {
          if ((spins & 0xfff) === 0xfff) settleDeadWriter(this, leaf);
          continue;
        }
        this.deadNode(i32[leaf], 1);
        return -1;
      }
      const lo = loadWord(i32, leaf + Lay.W_VALUE_LO);
      const hi = loadWord(i32, leaf + Lay.W_VALUE_HI);
      const e2 = loadWord(i32, leaf + Lay.W_ENTRY);
      if (((e1 ^ e2) & Ew.SEQ_MASK) !== 0) continue;
      this.lastEntry = e2;
      if ((e2 & Ew.DELETED) !== 0 || ((e2 >>> Ew.STATE_SHIFT) & 3) === Ew.STATE_EMPTY) return -1;
      if (!isLive(i32[leaf])) {
        this.deadNode(i32[leaf], 1);
        return -1;
      }
      return (hi & 0xffff) * TWO_32 + (lo >>> 0);
    }
  }
  /** @internal */
  lastEntry = 0;

  /**
   * @internal lookupPinned of keys[0..n), each answer in values[i] (the value, or -1 when
   * absent), with the descents walked in lockstep: one level of every key per step. One
   * descent's cache misses form a chain (each node's address comes from the load before), but
   * the chains of different keys are independent, so stepping them together lets their misses
   * overlap. A walk that ends on a live leaf holding exactly its key, whose seqlock read
   * (readValuePinned) gives a value, answers with it: that leaf is the key's, as lookupPinned
   * would have found it. Any other end (no leaf, another key's leaf, no value, a dead node or
   * one past this thread's view) is answered by lookupPinned itself, so the walk may skip
   * comparing prefixes (the leaf's whole key is compared) and read nodes with plain loads
   * (a stale word only leads to a fallback). Caller pinned; n <= LOOKUP_MANY_MAX.
   */
  lookupManyPinned(keys: readonly Uint8Array[], n: number, values: Float64Array): void {
    assert(n <= LOOKUP_MANY_MAX, 'lookupManyPinned: too many keys');
    const i32 = this.arena.i32;
    const u8 = this.arena.u8;
    const nodes = this.walkNodes;
    const depths = this.walkDepths;
    const root = i32[Hw.ROOT];
    for (let j = 0; j < n; j++) {
      nodes[j] = root;
      depths[j] = 0;
      values[j] = -1;
    }
    const hdrs = this.walkHeaders;
    const slots = this.walkSlots;
    for (;;) {
      // Each level in three passes, so that no load of one key waits on another's miss and the
      // loads of the misses are issued close together: the header word of every key's node;
      // then each key's step from its header (the prefix length shares the header's line, an
      // N4/16/32's key bytes follow it), which yields the word that holds its child; then
      // those words. No loaded value is used before the pass after the one that loads it.
      let walking = 0;
      for (let j = 0; j < n; j++) {
        const node = nodes[j];
        if (node > 0) {
          hdrs[j] = i32[node]; // undefined (past the view) stores as 0
          walking++;
        }
      }
      if (walking === 0) break;
      for (let j = 0; j < n; j++) {
        const node = nodes[j];
        if (node <= 0) {
          slots[j] = node;
          continue;
        }
        const key = keys[j];
        const hdr = hdrs[j];
        const tag = hdr & 0xfff;
        let slot = 0; // the word of the child, or 0: the walk ends (-leaf: found)
        if (tag === Lay.LEAF_TAG) {
          if (hdr >>> 12 === key.length && leafHoldsKey(u8, node, key)) slot = -node;
        } else if (tag >= Lay.N4_TAG && tag <= Lay.N256_TAG && (tag & 0xff) === Lay.NODE_MAGIC) {
          const plen = i32[node + Lay.W_PREFIX_LEN];
          let depth = depths[j] + plen;
          const body = node + Lay.INNER_HEADER_WORDS + ((plen + 3) >> 2);
          if (depth >= key.length) slot = node + Lay.W_END_LEAF;
          else {
            const b = key[depth++];
            if (tag === Lay.N256_TAG) slot = body + b;
            else if (tag === Lay.N48_TAG) {
              const si = (i32[body + (b >> 2)] >>> ((b & 3) << 3)) & 0xff;
              slot = si === 0 ? 0 : body + 63 + si;
            } else {
              const count = hdr >>> 12;
              const capWords = tag === Lay.N4_TAG ? 1 : tag === Lay.N16_TAG ? 4 : 8;
              const kb = body << 2;
              for (let i = 0; i < count; i++)
                if (u8[kb + i] === b) {
                  slot = body + capWords + i;
                  break;
                }
            }
          }
          depths[j] = depth;
        }
        slots[j] = slot;
      }
      for (let j = 0; j < n; j++) {
        const slot = slots[j];
        nodes[j] = slot > 0 ? i32[slot] : slot; // undefined (past the view) stores as 0
      }
    }
    for (let j = 0; j < n; j++) {
      const leaf = -nodes[j];
      const v = leaf > 0 ? this.readValuePinned(leaf) : -1;
      if (v >= 0) values[j] = v;
      else {
        const found = this.lookupPinned(keys[j]);
        values[j] = found === undefined ? -1 : found;
      }
    }
  }
  private readonly walkNodes = new Int32Array(LOOKUP_MANY_MAX);
  private readonly walkDepths = new Int32Array(LOOKUP_MANY_MAX);
  private readonly walkHeaders = new Int32Array(LOOKUP_MANY_MAX);
  private readonly walkSlots = new Int32Array(LOOKUP_MANY_MAX);

  /** Value stored under `key` (or the huge entry covering it), undefined if none. Caller pinned. */
  lookupPinned(key: Uint8Array): number | undefined {
    const leaf = this.findLeafPinned(key);
    if (leaf === 0) return undefined;
    const v = this.readValuePinned(leaf);
    return v < 0 ? undefined : v;
  }

  lookupIndexPinned(n: number): number | undefined {
    return this.lookupPinned(indexKey(n, this.idxKey));
  }

  /** Pins around lookupPinned. */
  lookup(key: Uint8Array): number | undefined {
    checkKey(key, 'lookup');
    this.epoch.pin();
    try {
      return this.lookupPinned(key);
    } finally {
      this.epoch.unpin();
    }
  }

  lookupIndex(n: number): number | undefined {
    checkIndex(n, 'lookupIndex');
    return this.lookup(indexKey(n, this.idxKey));
  }

  has(key: Uint8Array): boolean {
    return this.lookup(key) !== undefined;
  }

  /** Entry details of `key` (or its covering huge entry), or undefined. */
  entryInfo(key: Uint8Array): (EntryInfo & { value: number; key: Uint8Array }) | undefined {
    checkKey(key, 'entryInfo');
    this.epoch.pin();
    try {
      const leaf = this.findLeafPinned(key);
      if (leaf === 0) return undefined;
      const v = this.readValuePinned(leaf);
      if (v < 0) return undefined;
      return { ...infoOf(this.lastEntry), value: v, key: this.leafKey(leaf) };
    } finally {
      this.epoch.unpin();
    }
  }

  count(): number {
    return Atomics.load(this.arena.i32, H_COUNT);
  }

  /** @internal Copy of a leaf's key. Caller pinned (or holds the leaf's entry lock). */
  leafKey(leaf: number): Uint8Array {
    const len = countOf(this.arena.i32[leaf]);
    const kb = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
    return this.arena.u8.slice(kb, kb + len);
  }

  /** Copies a leaf's key into dest at `at` (room checked by the caller) and returns its length. Caller pinned. */
  copyLeafKey(leaf: number, dest: Uint8Array, at: number): number {
    const len = countOf(this.arena.i32[leaf]);
    const kb = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
    const u8 = this.arena.u8;
    for (let i = 0; i < len; i++) dest[at + i] = u8[kb + i]; // short keys: no subarray per key
    return len;
  }

  // ---- writes through the entry lock ----------------------------------------------------

  /**
   * Store `value` under `key` (grab, replace, unlock). Order 9 (8-byte aligned index keys):
   * returns false when smaller entries exist in the range (fall back to small). A key covered
   * by a real huge entry returns false (never split); a ZERO or EMPTY huge one is deleted
   * and replaced by this small entry.
   */
  insert(key: Uint8Array, value: number, opts: { order?: 0 | 9; state?: EntryState } = {}): boolean {
    const order = opts.order ?? 0;
    // Validate before taking the lock: a bad argument must leave nothing behind.
    checkKey(key, 'insert');
    checkValue(value, 'insert');
    const state = opts.state ?? 'value';
    if (!STATE_NAMES.includes(state) || state === 'empty')
      throw new DaxError('EINVAL', `insert: state ${String(state)} must be value, zero or poisoned`);
    for (;;) {
      const ref = grab(this, key, { order });
      if (ref === undefined) return false;
      if (ref.order !== order || ref.key.length !== key.length || compareKey(ref.key, 0, ref.key.length, key) !== 0) {
        if (ref.state === 'zero' || ref.state === 'empty') {
          deleteLocked(this, ref);
          continue;
        }
        unlock(this, ref);
        return false;
      }
      replace(this, ref, value, state);
      unlock(this, ref);
      return true;
    }
  }

  insertIndex(n: number, value: number, opts: { order?: 0 | 9; state?: EntryState } = {}): boolean {
    checkIndex(n, 'insertIndex');
    return this.insert(indexKey(n), value, opts);
  }

  /** Remove the entry whose key is exactly `key`; false if there was none. */
  delete(key: Uint8Array): boolean {
    checkKey(key, 'delete');
    if (this.lookup(key) === undefined) return false;
    const ref = grab(this, key);
    if (ref.state === 'empty' || ref.key.length !== key.length || compareKey(ref.key, 0, ref.key.length, key) !== 0) {
      unlock(this, ref);
      return false;
    }
    deleteLocked(this, ref);
    return true;
  }

  deleteIndex(n: number): boolean {
    checkIndex(n, 'deleteIndex');
    return this.delete(indexKey(n));
  }

  /**
   * Adds `entries` (strictly increasing keys, values < 2^48, state VALUE, order 0) in one
   * bottom-up build (bulk-load.ts): every node written once and right-sized, the root
   * published with one store. For recovery, before anyone else can see the tree: asserts
   * the tree was never shared (no handle() taken, not attached). Keys already in the tree
   * are kept (the tree is rebuilt around them) and must not equal a new key, nor be a huge
   * entry covering one. Bad entries throw DaxError EINVAL (keys out of order: ECORRUPT) before
   * anything changes.
   * @internal
   */
  bulkLoad(entries: BulkEntries): void {
    assert(
      !this.everShared,
      'bulkLoad: the tree was shared (handle() or attach); bulk loading is for unshared trees only',
    );
    checkBulkEntries(entries);
    this.lockTree();
    try {
      bulkLoadLocked(this.arena, entries, (node, words) => this.retireBlock(node, words));
    } finally {
      this.unlockTree();
    }
  }

  /**
   * Loads a tree image (tree-image.ts) beside the keys already in the tree: one copy and a
   * pass over its inner nodes instead of a bulk load. Like bulkLoad, only for a tree never
   * shared. false when the image is not a well-formed tree whose first key bytes are free here
   * (nothing reachable changed). With `tail`, the tail's replaced values are written into the
   * copied leaves and its added and removed keys listed there (tree-image.ts ImageTail): the
   * caller makes those through insert and delete after. `confirm`: asked after the copy and
   * before the graft; false gives the copy back and returns false (tree-image.ts). `reserved`:
   * a run reserveRun allocated for exactly image.words words, copied into instead of a new one.
   * @internal
   */
  loadImage(image: TreeImage, tail?: ImageTail, confirm?: () => boolean, reserved?: number): boolean {
    assert(
      !this.everShared,
      'loadImage: the tree was shared (handle() or attach); loading an image is for unshared trees only',
    );
    this.lockTree();
    try {
      return loadImageLocked(
        this.arena,
        image,
        (node, words) => this.retireBlock(node, words),
        tail,
        confirm,
        reserved,
      );
    } finally {
      this.unlockTree();
    }
  }

  /**
   * A run of `words` words allocated now for an image loadImage copies in later (`reserved`),
   * and a view of its memory (so that its first touch can be made ahead, on another thread).
   * Only for a tree never shared. @internal
   */
  reserveRun(words: number): { run: number; bytes: Uint8Array } {
    assert(!this.everShared, 'reserveRun: the tree was shared');
    this.lockTree();
    try {
      const run = this.arena.allocRunLocked(words);
      return { run, bytes: new Uint8Array(this.arena.sab, run * 4, words * 4) };
    } finally {
      this.unlockTree();
    }
  }

  /**
   * The arena's huge-page advice given again over a run reserveRun allocated, whose pages may
   * have been populated small (the covered check's thread advises them so when fresh huge pages
   * come dear: recovery.ts), and its whole 2 MiB pages collapsed into huge ones on a background
   * thread (addon/prefault.h; the index's lookups get their TLB reach back), whether the run
   * was used or given back. Nothing for an arena not advised huge. @internal
   */
  restoreHugePages(run: number, words: number): void {
    if (this.arena.hugePages() !== 'advised') return;
    if (isBroken('kv-checkpoint-run-left-small')) return;
    native().adviseRange(this.arena.sab, run * 4, words * 4, true);
    collapseInBackground(this.arena.sab, run * 4, words * 4);
  }

  /** Gives back a run reserveRun allocated and nothing used (Arena.releaseRunLocked); false when anything was allocated after it. @internal */
  releaseRun(run: number, words: number): boolean {
    this.lockTree();
    try {
      return this.arena.releaseRunLocked(run, words);
    } finally {
      this.unlockTree();
    }
  }

  // ---- structural changes (treeLock) ----------------------------------------------------

  /**
   * Take treeLock. The holder is also pinned in the epoch until unlockTree(): a writer retires
   * nodes under the lock and may still touch them afterwards (deleteLocked marks the removed
   * leaf DELETED, copy-on-write reads the node it replaced), and treeLock does not stop other
   * threads' collect(). Unpinned, two epoch advances between a retire and that last touch
   * let the block be freed, and the touch then wrote into a free-list link.
   * @internal
   */
  lockTree(): void {
    if (TREE_LOCK_UNPINNED) return this.lockTreeUnpinned();
    this.epoch.pin();
    lockTree(this.arena.i32, this.holderBits, this.repairOnSteal);
    // Another thread may have grown the arena since this thread's views were made, and a
    // writer touches nodes it allocated: a plain typed-array store past the end of a stale
    // view is silently dropped. The lock orders us after that growth, so refresh here.
    this.arena.refresh();
  }

  /** @internal */
  unlockTree(): void {
    unlockTree(this.arena.i32);
    if (!TREE_LOCK_UNPINNED) this.epoch.unpin(); // lockTreeUnpinned took no pin
  }

  /** lockTree under DAXSTORE_TEST_BREAK=tree-lock-unpinned: the holder is not pinned (what it retires can be freed under it). */
  private lockTreeUnpinned(): void {
    lockTree(this.arena.i32, this.holderBits, this.repairOnSteal);
    this.arena.refresh();
  }

  /** repairTreeLocked bound to this tree: what lockTree runs after taking over a dead holder's lock. */
  private readonly repairOnSteal: () => void;

  private retireBlock(off: number, words: number): void {
    this.epoch.retire(RETIRE_ARENA_NODE, this.treeId * TWO_32 + off, words);
  }

  private newLeafLocked(key: Uint8Array, entry: number): number {
    const keyLen = key.length;
    const words = leafWords(keyLen);
    const leaf = this.arena.allocLocked(words);
    const i32 = this.arena.i32;
    const u8 = this.arena.u8;
    // Every word of the block is written (a reused block holds its earlier life), by plain
    // loops: the fill and set builtins cost more than the few words of a short key.
    const end = leaf + classWords(sizeClassOf(words));
    i32[leaf] = header(Lay.LEAF, keyLen);
    i32[leaf + Lay.W_ENTRY] = entry;
    for (let w = leaf + Lay.W_VALUE_LO; w < end; w++) i32[w] = 0;
    const kb = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
    for (let i = 0; i < keyLen; i++) u8[kb + i] = key[i];
    return leaf;
  }

  /** No treeLock holder has unlocked since the hint's descent (each bumps H_VERSION): the tree is the one it saw. */
  private hintStillValid(): boolean {
    if (isBroken('tree-hint-unchecked')) return true;
    return this.hintVersion === this.arena.i32[H_VERSION];
  }

  /**
   * The leaf of exactly `key`, created with entry word `entry` if absent (this.created says
   * which). Caller holds treeLock and has checked multi-order coverage.
   * @internal
   */
  getOrCreateLocked(key: Uint8Array, entry: number, hinted = false): number {
    this.created = false;
    const keyLen = key.length;
    let slot = Hw.ROOT;
    let depth = 0;
    if (hinted && this.hintKey === key) {
      // The hint of this key's lock-free descent (findExactHintPinned): the tree is the one it
      // saw when no treeLock holder has unlocked since (the version is bumped by each).
      if (this.hintStillValid()) {
        slot = this.hintSlot;
        depth = this.hintDepth;
      }
    }
    this.hintKey = undefined;
    for (;;) {
      const i32 = this.arena.i32;
      const u8 = this.arena.u8;
      const node = i32[slot];
      if (node === 0) return this.publishNewLeafLocked(slot, key, entry);
      const hdr = i32[node];
      assert(isLive(hdr), () => `radix tree: dead node ${node} reachable under treeLock`);
      if (typeOf(hdr) === Lay.LEAF) {
        const lk = (node + Lay.LEAF_HEADER_WORDS) << 2;
        const lkLen = countOf(hdr);
        let c = depth;
        while (c < keyLen && c < lkLen && u8[lk + c] === key[c]) c++;
        if (c === keyLen && c === lkLen) return node;
        return this.splitLeafLocked(slot, node, key, depth, c, entry);
      }
      const plen = i32[node + Lay.W_PREFIX_LEN];
      const pb = (node + Lay.INNER_HEADER_WORDS) << 2;
      let i = 0;
      while (i < plen && depth + i < keyLen && u8[pb + i] === key[depth + i]) i++;
      if (i < plen) return this.splitPrefixLocked(slot, node, key, depth, i, entry);
      depth += plen;
      if (depth === keyLen) {
        const end = i32[node + Lay.W_END_LEAF];
        if (end !== 0) return end;
        return this.publishNewLeafLocked(node + Lay.W_END_LEAF, key, entry);
      }
      const cs = findChildSlot(i32, u8, hdr, bodyOffset(node, plen), key[depth]);
      if (cs >= 0) {
        slot = cs;
        depth++;
        continue;
      }
      const leaf = this.newLeafLocked(key, entry);
      this.addChildLocked(slot, node, key[depth], leaf);
      this.finishCreate();
      return leaf;
    }
  }

  /**
   * The insert path's stores under treeLock (finishCreate, the publishing slot stores, the
   * in-place appends of addChildLocked) are release stores (storeRelease: plain on x86, where
   * a plain store is one): they order the node's contents before the word that publishes it,
   * which is all a lock-free reader relies on. The seq-cst Atomics.store (a builtin call, not
   * inlined by Node 20, plus a full fence) bought nothing more: writers are serialized by
   * treeLock, whose unlock is a full fence. H_COUNT changes only under treeLock.
   */
  private finishCreate(): void {
    const i32 = this.arena.i32;
    storeRelease(i32, H_COUNT, i32[H_COUNT] + 1);
    this.created = true;
  }

  private publishNewLeafLocked(slot: number, key: Uint8Array, entry: number): number {
    const leaf = this.newLeafLocked(key, entry);
    storeRelease(this.arena.i32, slot, leaf);
    this.finishCreate();
    return leaf;
  }

  /** Leaf `old` at `slot` shares key[depth..c) with `key`: put both under a new N4. */
  private splitLeafLocked(slot: number, old: number, key: Uint8Array, depth: number, c: number, entry: number): number {
    const leaf = this.newLeafLocked(key, entry);
    const i32 = this.arena.i32;
    const u8 = this.arena.u8;
    const oldLen = countOf(i32[old]);
    const ob = (old + Lay.LEAF_HEADER_WORDS) << 2;
    const e = loadWord(i32, old + Lay.W_ENTRY); // its tag bits change only under treeLock (held)
    let n = 0;
    let end = 0;
    const bytes = this.kidBytes;
    const kids = this.kidPtrs;
    if (oldLen === c) end = old;
    if (key.length === c) end = leaf;
    if (oldLen > c && key.length > c) {
      const ob0 = u8[ob + c];
      const nb0 = key[c];
      bytes[0] = Math.min(ob0, nb0);
      kids[0] = ob0 < nb0 ? old : leaf;
      bytes[1] = Math.max(ob0, nb0);
      kids[1] = ob0 < nb0 ? leaf : old;
      n = 2;
    } else {
      bytes[0] = oldLen > c ? u8[ob + c] : key[c];
      kids[0] = oldLen > c ? old : leaf;
      n = 1;
    }
    const node = this.buildInnerLocked(
      key,
      depth,
      c - depth,
      n,
      end,
      (e & Ew.DIRTY) !== 0 ? 1 : 0,
      (e & Ew.TOWRITE) !== 0 ? 1 : 0,
    );
    storeRelease(this.arena.i32, slot, node);
    this.finishCreate();
    return leaf;
  }

  /** `key` leaves `node`'s prefix after i bytes: a new N4 holds the shortened node and the new leaf. */
  private splitPrefixLocked(
    slot: number,
    node: number,
    key: Uint8Array,
    depth: number,
    i: number,
    entry: number,
  ): number {
    const leaf = this.newLeafLocked(key, entry);
    let i32 = this.arena.i32;
    const plen = i32[node + Lay.W_PREFIX_LEN];
    const pb = (node + Lay.INNER_HEADER_WORDS) << 2;
    const branch = this.arena.u8[pb + i];
    const dirty = i32[node + Lay.W_DIRTY];
    const towrite = i32[node + Lay.W_TOWRITE];
    // The shortened copy keeps prefix bytes after the branch byte.
    const tail = this.prefixScratch;
    tail.set(this.arena.u8.subarray(pb + i + 1, pb + plen), 0);
    const shortened = this.copyNodeLocked(node, tail, 0, plen - i - 1);
    const bytes = this.kidBytes;
    const kids = this.kidPtrs;
    let n = 1;
    let end = 0;
    if (depth + i === key.length) {
      bytes[0] = branch;
      kids[0] = shortened;
      end = leaf;
    } else {
      const nb = key[depth + i];
      bytes[0] = Math.min(nb, branch);
      kids[0] = nb < branch ? leaf : shortened;
      bytes[1] = Math.max(nb, branch);
      kids[1] = nb < branch ? shortened : leaf;
      n = 2;
    }
    const top = this.buildInnerLocked(key, depth, i, n, end, dirty, towrite);
    i32 = this.arena.i32;
    Atomics.store(i32, slot, top); // seq-cst: the old node is retired next (addChildLocked's copy path says why)
    this.retireBlock(node, innerWords(typeOf(i32[node]), plen));
    this.finishCreate();
    return leaf;
  }

  /** Allocate and fill an inner node from kidBytes/kidPtrs[0..n). */
  private buildInnerLocked(
    prefix: Uint8Array,
    start: number,
    plen: number,
    n: number,
    end: number,
    dirty: number,
    towrite: number,
  ): number {
    const type = typeForCount(n);
    const node = this.arena.allocLocked(innerWords(type, plen));
    fillInner(
      this.arena.i32,
      this.arena.u8,
      node,
      type,
      prefix,
      start,
      plen,
      n,
      this.kidBytes,
      this.kidPtrs,
      end,
      dirty,
      towrite,
    );
    return node;
  }

  /** Copy of inner `node` with a new prefix (children, endLeaf and counts kept). */
  private copyNodeLocked(node: number, prefix: Uint8Array, start: number, plen: number): number {
    const i32 = this.arena.i32;
    const n = gatherChildren(i32, this.arena.u8, node, this.kidBytes, this.kidPtrs);
    return this.buildInnerLocked(
      prefix,
      start,
      plen,
      n,
      i32[node + Lay.W_END_LEAF],
      i32[node + Lay.W_DIRTY],
      i32[node + Lay.W_TOWRITE],
    );
  }

  /** Give `node` (published at `slot`) a child for byte b: in place for N48/N256, else copy-on-write. */
  private addChildLocked(slot: number, node: number, b: number, child: number): void {
    let i32 = this.arena.i32;
    const hdr = i32[node];
    const type = typeOf(hdr);
    const plen = i32[node + Lay.W_PREFIX_LEN];
    const body = bodyOffset(node, plen);
    const count = countOf(hdr);
    // In place (N256, N48, appends): release stores (finishCreate says why that is enough under
    // treeLock: nothing is retired here). The copy path below stays seq-cst.
    if (type === Lay.N256) {
      storeRelease(i32, body + b, child);
      storeRelease(i32, node, header(Lay.N256, count + 1));
      return;
    }
    if (PLAIN_LOADS_ARE_ACQUIRE && type !== Lay.N48 && count < capacityOf(type)) {
      // Append in place (nodes.ts: the order that makes it safe for lock-free readers) instead
      // of copy, publish and retire: a new key's insert had spent about a third of its time
      // on that copy and on the retire and later free of the old node.
      const cap = capacityOf(type);
      if (APPEND_SHIFT_BROKEN) return this.insertShiftingBrokenLocked(node, body, cap, count, b, child, type);
      // Plain stores: this branch runs only where they are release stores (x86), in this order.
      i32[body + (cap >> 2) + count] = child;
      this.arena.u8[(body << 2) + count] = b;
      i32[node] = header(type, count + 1);
      return;
    }
    if (type === Lay.N48 && count < 48) {
      let free = 0;
      while (i32[body + 64 + free] !== 0) free++;
      storeRelease(i32, body + 64 + free, child); // child first: the index byte publishes it
      const w = body + (b >> 2);
      const shift = (b & 3) << 3;
      storeRelease(i32, w, (i32[w] & ~(0xff << shift)) | ((free + 1) << shift));
      storeRelease(i32, node, header(Lay.N48, count + 1));
      return;
    }
    const bytes = this.kidBytes;
    const kids = this.kidPtrs;
    let n = gatherChildren(i32, this.arena.u8, node, bytes, kids);
    let at = n;
    while (at > 0 && bytes[at - 1] > b) {
      bytes[at] = bytes[at - 1];
      kids[at] = kids[at - 1];
      at--;
    }
    bytes[at] = b;
    kids[at] = child;
    n++;
    const prefix = this.prefixScratch;
    prefix.set(
      this.arena.u8.subarray((node + Lay.INNER_HEADER_WORDS) << 2, ((node + Lay.INNER_HEADER_WORDS) << 2) + plen),
      0,
    );
    const copy = this.buildInnerLocked(
      prefix,
      0,
      plen,
      n,
      i32[node + Lay.W_END_LEAF],
      i32[node + Lay.W_DIRTY],
      i32[node + Lay.W_TOWRITE],
    );
    i32 = this.arena.i32;
    // Seq-cst, not a release store: the old node is retired next, and the retire's read of the
    // epoch must not pass this store (a reader pinned at a later epoch must not still find it).
    Atomics.store(i32, slot, copy);
    this.retireBlock(node, innerWords(type, plen));
  }

  /** The unsafe in-place insert APPEND_SHIFT_BROKEN stands for: keep the bytes sorted by shifting them under readers. */
  private insertShiftingBrokenLocked(
    node: number,
    body: number,
    cap: number,
    count: number,
    b: number,
    child: number,
    type: number,
  ): void {
    const i32 = this.arena.i32;
    const u8 = this.arena.u8;
    const kb = body << 2;
    const cw = body + (cap >> 2);
    let at = count;
    while (at > 0 && u8[kb + at - 1] > b) {
      Atomics.store(u8, kb + at, u8[kb + at - 1]);
      Atomics.store(i32, cw + at, i32[cw + at - 1]);
      at--;
    }
    Atomics.store(u8, kb + at, b);
    Atomics.store(i32, cw + at, child);
    Atomics.store(i32, node, header(type, count + 1));
  }

  /**
   * Unlink `leaf` (key `key`) from the tree and retire it. Caller holds treeLock and the
   * leaf's entry lock. Tag counts above it drop by its tags.
   * @internal
   */
  removeLeafLocked(leaf: number, key: Uint8Array): void {
    const i32 = this.arena.i32;
    const e = Atomics.load(i32, leaf + Lay.W_ENTRY);
    this.adjustTagCountsLocked(key, (e & Ew.DIRTY) !== 0 ? -1 : 0, (e & Ew.TOWRITE) !== 0 ? -1 : 0);
    const slots = this.pathSlots;
    let levels = 0;
    let slot = Hw.ROOT;
    let depth = 0;
    for (;;) {
      slots[levels++] = slot;
      const node = i32[slot];
      assert(node !== 0, () => `radix tree remove: leaf ${leaf} not reachable`);
      if (node === leaf) break;
      const hdr = i32[node];
      assert(typeOf(hdr) !== Lay.LEAF, () => `radix tree remove: leaf ${leaf} not reachable (met leaf ${node})`);
      depth += i32[node + Lay.W_PREFIX_LEN];
      if (depth === key.length) {
        slot = node + Lay.W_END_LEAF;
      } else {
        slot = findChildSlot(i32, this.arena.u8, hdr, bodyOffset(node, i32[node + Lay.W_PREFIX_LEN]), key[depth]);
        assert(slot >= 0, () => `radix tree remove: leaf ${leaf} not reachable (no child)`);
        depth++;
      }
    }
    if (levels === 1) Atomics.store(i32, Hw.ROOT, 0);
    else this.removeFromParentLocked(slots[levels - 2], slot, key, depth);
    Atomics.sub(this.arena.i32, H_COUNT, 1);
    this.retireBlock(leaf, leafWords(key.length));
  }

  /** Remove the item at `slot` of the node published at `parentSlot`; collapse a node left with one item. */
  private removeFromParentLocked(parentSlot: number, slot: number, key: Uint8Array, depth: number): void {
    let i32 = this.arena.i32;
    const parent = i32[parentSlot];
    const hdr = i32[parent];
    const type = typeOf(hdr);
    const plen = i32[parent + Lay.W_PREFIX_LEN];
    const isEnd = slot === parent + Lay.W_END_LEAF;
    const end = i32[parent + Lay.W_END_LEAF];
    const items = countOf(hdr) + (end !== 0 ? 1 : 0) - 1;
    if (items >= 2) {
      if (isEnd) {
        Atomics.store(i32, slot, 0);
        return;
      }
      if (type === Lay.N256 && countOf(hdr) > 40) {
        Atomics.store(i32, slot, 0);
        Atomics.store(i32, parent, header(Lay.N256, countOf(hdr) - 1));
        return;
      }
      const n = this.gatherWithoutLocked(parent, key[depth - 1]);
      const prefix = this.prefixScratch;
      const pb = (parent + Lay.INNER_HEADER_WORDS) << 2;
      prefix.set(this.arena.u8.subarray(pb, pb + plen), 0);
      const copy = this.buildInnerLocked(
        prefix,
        0,
        plen,
        n,
        end,
        i32[parent + Lay.W_DIRTY],
        i32[parent + Lay.W_TOWRITE],
      );
      i32 = this.arena.i32;
      Atomics.store(i32, parentSlot, copy);
      this.retireBlock(parent, innerWords(type, plen));
      return;
    }
    // One item left: the parent disappears (path compression).
    let rest = end;
    let restByte = -1;
    if (isEnd || end === 0) {
      const n = this.gatherWithoutLocked(parent, isEnd ? -1 : key[depth - 1]);
      assert(n === 1, () => `radix tree remove: node ${parent} left with ${n} children`);
      rest = this.kidPtrs[0];
      restByte = this.kidBytes[0];
    }
    let replacement = rest;
    if (typeOf(i32[rest]) !== Lay.LEAF) {
      // Merged prefix: parent prefix + branch byte + child prefix.
      const prefix = this.prefixScratch;
      const u8 = this.arena.u8;
      const pb = (parent + Lay.INNER_HEADER_WORDS) << 2;
      const cplen = i32[rest + Lay.W_PREFIX_LEN];
      const cb = (rest + Lay.INNER_HEADER_WORDS) << 2;
      prefix.set(u8.subarray(pb, pb + plen), 0);
      prefix[plen] = restByte;
      prefix.set(u8.subarray(cb, cb + cplen), plen + 1);
      replacement = this.copyNodeLocked(rest, prefix, 0, plen + 1 + cplen);
      i32 = this.arena.i32;
    }
    // Publish first, then retire: a holder that dies in between leaves garbage, never a
    // retired node still reachable (its grace period would end once its pin is dropped).
    Atomics.store(i32, parentSlot, replacement);
    if (replacement !== rest) this.retireBlock(rest, innerWords(typeOf(i32[rest]), i32[rest + Lay.W_PREFIX_LEN]));
    this.retireBlock(parent, innerWords(type, plen));
  }

  /** kidBytes/kidPtrs := children of node except byte `skip` (-1: none skipped). */
  private gatherWithoutLocked(node: number, skip: number): number {
    const n = gatherChildren(this.arena.i32, this.arena.u8, node, this.kidBytes, this.kidPtrs);
    if (skip < 0) return n;
    let j = 0;
    for (let i = 0; i < n; i++) {
      if (this.kidBytes[i] === skip) continue;
      this.kidBytes[j] = this.kidBytes[i];
      this.kidPtrs[j++] = this.kidPtrs[i];
    }
    assert(j === n - 1, () => `radix tree remove: byte ${skip} not a child of node ${node}`);
    return j;
  }

  /** Add dDirty/dTowrite to the tag counts of every inner node on `key`'s path. Caller holds treeLock. */
  private adjustTagCountsLocked(key: Uint8Array, dDirty: number, dTowrite: number): void {
    if (dDirty === 0 && dTowrite === 0) return;
    const i32 = this.arena.i32;
    let node = i32[Hw.ROOT];
    let depth = 0;
    while (node !== 0) {
      const hdr = i32[node];
      if (typeOf(hdr) === Lay.LEAF) return;
      if (dDirty !== 0) Atomics.add(i32, node + Lay.W_DIRTY, dDirty);
      if (dTowrite !== 0) Atomics.add(i32, node + Lay.W_TOWRITE, dTowrite);
      const plen = i32[node + Lay.W_PREFIX_LEN];
      depth += plen;
      if (depth >= key.length) node = i32[node + Lay.W_END_LEAF];
      else node = findChild(i32, this.arena.u8, hdr, bodyOffset(node, plen), key[depth++]);
    }
  }

  /** @internal Set or clear `bit` (DIRTY/TOWRITE) on a leaf and keep the counts above it. Caller holds treeLock. */
  setTagBitLocked(leaf: number, key: Uint8Array, bit: number, on: boolean): boolean {
    const i32 = this.arena.i32;
    let e = Atomics.load(i32, leaf + Lay.W_ENTRY);
    for (;;) {
      if (((e & bit) !== 0) === on) return false;
      const next = on ? e | bit : e & ~bit;
      const seen = Atomics.compareExchange(i32, leaf + Lay.W_ENTRY, e, next);
      if (seen === e) break;
      e = seen;
    }
    const d = on ? 1 : -1;
    this.adjustTagCountsLocked(key, bit === Ew.DIRTY ? d : 0, bit === Ew.TOWRITE ? d : 0);
    return true;
  }

  /** @internal True if some leaf (placeholders included) has a key in [lo, hi]. Caller pinned or holding treeLock. */
  anyKeyInPinned(lo: Uint8Array, hi: Uint8Array): boolean {
    this.setBounds({ gte: lo, lte: hi }, 0, true);
    this.runBatchPinned(1);
    return this.batchLen > 0;
  }

  // ---- iteration -----------------------------------------------------------------------

  private setBounds(opts: RangeOptions, tagMask: number, includeEmpty: boolean, prefix?: Uint8Array): void {
    if (opts.gt !== undefined && opts.gte !== undefined) throw new DaxError('EINVAL', 'range: both gt and gte given');
    if (opts.lt !== undefined && opts.lte !== undefined) throw new DaxError('EINVAL', 'range: both lt and lte given');
    const lo = prefix ?? opts.gt ?? opts.gte;
    const hi = prefix ?? opts.lt ?? opts.lte;
    if (lo !== undefined) checkKey(lo, 'range bound');
    if (hi !== undefined) checkKey(hi, 'range bound');
    this.hasLo = lo !== undefined;
    this.lo = lo ?? EMPTY_KEY;
    this.loIncl = prefix !== undefined || opts.gt === undefined;
    this.hasHi = hi !== undefined;
    this.hi = hi ?? EMPTY_KEY;
    this.hiIncl = prefix !== undefined || opts.lt === undefined;
    this.hiPrefix = prefix !== undefined;
    this.reverse = opts.reverse === true;
    this.tagMask = tagMask;
    this.includeEmpty = includeEmpty;
  }

  /** Collect up to `max` leaves in range order into `batch`, restarting if a dead node is met. Caller pinned. */
  private runBatchPinned(max: number): void {
    let restarts = 0;
    for (;;) {
      this.batchLen = 0;
      this.batchMax = max;
      this.restartNeeded = false;
      const root = loadWord(this.arena.i32, Hw.ROOT);
      if (root !== 0) this.dfs(root, 0, this.hasLo ? 0 : 1, this.hasHi ? 0 : 1, 0);
      if (!this.restartNeeded) return;
      this.deadNode(this.deadHeader, ++restarts);
    }
  }
  private deadHeader = 0;

  /** In-order walk below `node` (path depth `depth`); states: 0 = path equals the bound so far, 1 = inside. False = stop. */
  private dfs(node: number, depth: number, loState: number, hiState: number, level: number): boolean {
    const i32 = this.arena.i32;
    const u8 = this.arena.u8;
    const hdr = i32[node];
    if (!isLive(hdr)) {
      this.deadHeader = hdr;
      this.restartNeeded = true;
      return false;
    }
    this.visitedNodes++;
    if (typeOf(hdr) === Lay.LEAF) return this.visitLeaf(node, hdr, loState, hiState);
    const mask = this.tagMask;
    if (mask !== 0) {
      const tagged =
        ((mask & Ew.DIRTY) !== 0 ? loadWord(i32, node + Lay.W_DIRTY) : 0) +
        ((mask & Ew.TOWRITE) !== 0 ? loadWord(i32, node + Lay.W_TOWRITE) : 0);
      if (tagged === 0) return true;
    }
    const plen = i32[node + Lay.W_PREFIX_LEN];
    const pb = (node + Lay.INNER_HEADER_WORDS) << 2;
    const lo = this.lo;
    const hi = this.hi;
    for (let i = 0; i < plen && (loState === 0 || hiState === 0); i++) {
      const c = u8[pb + i];
      const d = depth + i;
      if (loState === 0) {
        if (d >= lo.length || c > lo[d]) loState = 1;
        else if (c < lo[d]) return true;
      }
      if (hiState === 0) {
        if (d >= hi.length) {
          if (!this.hiPrefix) return true;
          hiState = 1;
        } else if (c > hi[d]) return true;
        else if (c < hi[d]) hiState = 1;
      }
    }
    const d = depth + plen;
    const end = loadWord(i32, node + Lay.W_END_LEAF);
    if (!this.reverse && end !== 0 && !this.dfs(end, d, loState, hiState, level + 1)) return false;
    if (this.levelBytes.length <= level) {
      this.levelBytes.push(new Uint8Array(256));
      this.levelPtrs.push(new Int32Array(256));
    }
    const bytes = this.levelBytes[level];
    const kids = this.levelPtrs[level];
    const n = gatherChildren(i32, u8, node, bytes, kids);
    // Touch every child's header first: independent loads overlap their cache misses
    // (memory-level parallelism), instead of paying one miss per recursive step.
    let touched = 0;
    for (let k = 0; k < n; k++) touched |= i32[kids[k]] ?? 0;
    this.touched = touched;
    const loB = loState === 0 && d < lo.length ? lo[d] : -1;
    // hiB -1: the path already has hi's length, so every child is longer than a non-prefix hi.
    const hiB = hiState === 0 ? (d < hi.length ? hi[d] : this.hiPrefix ? 256 : -1) : 256;
    for (let k = 0; k < n && hiB >= 0; k++) {
      const i = this.reverse ? n - 1 - k : k;
      const b = bytes[i];
      if (b < loB) {
        if (this.reverse) break;
        continue;
      }
      if (b > hiB) {
        if (this.reverse) continue;
        break;
      }
      const cl = loState === 0 && b === loB ? 0 : 1;
      const ch = hiState === 0 && b === hiB ? 0 : 1;
      const child = kids[i];
      const childHdr = i32[child];
      if ((childHdr & 0xfff) === ((Lay.LEAF << 8) | Lay.NODE_MAGIC)) {
        // Leaf children inline: the common case of a scan, without a recursive call.
        this.visitedNodes++;
        if (!this.visitLeaf(child, childHdr, cl, ch)) return false;
      } else if (!this.dfs(child, d + 1, cl, ch, level + 1)) return false;
    }
    if (this.reverse && end !== 0 && !this.dfs(end, d, loState, hiState, level + 1)) return false;
    return true;
  }

  private visitLeaf(leaf: number, hdr: number, loState: number, hiState: number): boolean {
    const i32 = this.arena.i32;
    const e = loadWord(i32, leaf + Lay.W_ENTRY);
    if (this.tagMask !== 0 && (e & this.tagMask) === 0) return true;
    if (!this.includeEmpty && ((e & Ew.DELETED) !== 0 || ((e >>> Ew.STATE_SHIFT) & 3) === Ew.STATE_EMPTY)) return true;
    if (loState === 0 || hiState === 0) {
      const len = countOf(hdr);
      const kb = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
      if (loState === 0) {
        const c = compareKey(this.arena.u8, kb, len, this.lo);
        if (c < 0 || (c === 0 && !this.loIncl)) return true;
      }
      if (hiState === 0) {
        if (this.hiPrefix) {
          if (compareKey(this.arena.u8, kb, Math.min(len, this.hi.length), this.hi) !== 0 || len < this.hi.length)
            return true;
        } else {
          const c = compareKey(this.arena.u8, kb, len, this.hi);
          if (c > 0 || (c === 0 && !this.hiIncl)) return true;
        }
      }
    }
    const visit = this.visitFn;
    if (visit !== undefined) {
      // Seqlock read reusing `e` (loaded above, header already checked by the caller).
      let v: number;
      const lo = loadWord(i32, leaf + Lay.W_VALUE_LO);
      const hi = loadWord(i32, leaf + Lay.W_VALUE_HI);
      if ((e & Ew.SEQ_ONE) === 0 && ((loadWord(i32, leaf + Lay.W_ENTRY) ^ e) & Ew.SEQ_MASK) === 0)
        v = (hi & 0xffff) * TWO_32 + (lo >>> 0);
      else v = this.readValuePinned(leaf);
      if (v < 0) return true;
      this.visitSeen++;
      this.lastVisited = leaf;
      return visit(v, leaf) !== false;
    }
    this.batch[this.batchLen++] = leaf;
    return this.batchLen < this.batchMax;
  }

  /**
   * Ordered iteration: batches of leaves produced under a pin, then yielded unpinned. After a
   * full batch the walk restarts from the root strictly after the last key returned.
   */
  private *iterate(opts: RangeOptions, tagMask: number, prefix?: Uint8Array): Generator<RangeItem> {
    let limit = opts.limit ?? Infinity;
    if (!(limit >= 0)) throw new DaxError('EINVAL', `range: limit ${limit} must be >= 0`);
    let bounds: RangeOptions = { ...opts };
    let first = true;
    while (limit > 0) {
      const items: RangeItem[] = [];
      let full = false;
      let last: Uint8Array | undefined;
      this.epoch.pin();
      try {
        this.setBounds(bounds, tagMask, false, first ? prefix : undefined);
        if (!first && prefix !== undefined) {
          // Keep the prefix bound on the side the walk has not passed yet.
          if (this.reverse) ((this.lo = prefix), (this.hasLo = true), (this.loIncl = true));
          else ((this.hi = prefix), (this.hasHi = true), (this.hiPrefix = true));
        }
        const want = Math.min(BATCH, limit);
        this.runBatchPinned(want);
        full = this.batchLen === want;
        if (full) last = this.leafKey(this.batch[this.batchLen - 1]);
        for (let i = 0; i < this.batchLen; i++) {
          const leaf = this.batch[i];
          const v = this.readValuePinned(leaf);
          if (v < 0) continue;
          items.push([this.leafKey(leaf), v, infoOf(this.lastEntry)]);
        }
      } finally {
        this.epoch.unpin();
      }
      for (const item of items) yield item;
      limit -= items.length;
      if (!full || last === undefined) return;
      first = false;
      bounds = this.reverse
        ? { gt: opts.gt, gte: opts.gte, lt: last, reverse: true }
        : { gt: last, lt: opts.lt, lte: opts.lte };
    }
  }

  /** Entries with gt/gte <= key <= lt/lte, in key order (or reverse). Not a snapshot (see file header). */
  range(opts: RangeOptions = {}): IterableIterator<RangeItem> {
    return this.iterate(opts, 0);
  }

  /** Entries whose key starts with `prefix`. */
  prefix(prefix: Uint8Array, opts: { reverse?: boolean; limit?: number } = {}): IterableIterator<RangeItem> {
    checkKey(prefix, 'prefix');
    return this.iterate({ reverse: opts.reverse, limit: opts.limit }, 0, prefix);
  }

  /** Entries carrying `tag`, skipping subtrees whose tag count is 0. */
  tagged(tag: EntryTag, range: RangeOptions = {}): IterableIterator<RangeItem> {
    return this.iterate(range, tagBit(tag));
  }

  /**
   * Fast ordered scan for hot loops: calls visit(value, leaf) for each entry in range, in
   * order, straight from the tree walk; visit returns false to stop. Returns how many were
   * visited. Caller pinned for the whole scan; leaf offsets are valid only while pinned
   * (leafKey(leaf) copies a key). visit must not start another iteration on this tree
   * object (range/prefix/tagged/scan/tagRange/huge grab): they share the walk state.
   */
  scanPinned(opts: RangeOptions, visit: (value: number, leaf: number) => boolean | void): number {
    this.setBounds(opts, 0, false);
    this.visitFn = visit;
    this.visitSeen = 0;
    this.lastVisited = 0;
    let restarts = 0;
    try {
      for (;;) {
        this.restartNeeded = false;
        this.batchLen = 0;
        this.batchMax = BATCH;
        const root = loadWord(this.arena.i32, Hw.ROOT);
        if (root !== 0) this.dfs(root, 0, this.hasLo ? 0 : 1, this.hasHi ? 0 : 1, 0);
        if (!this.restartNeeded) return this.visitSeen;
        this.deadNode(this.deadHeader, ++restarts);
        if (this.lastVisited !== 0) this.resumeAfterLeaf(this.lastVisited);
      }
    } finally {
      this.visitFn = undefined;
    }
  }

  /** Narrow the bounds to strictly after (or before, reverse) a leaf already visited. */
  private resumeAfterLeaf(leaf: number): void {
    const len = countOf(this.arena.i32[leaf]);
    const kb = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
    const last = this.arena.u8.slice(kb, kb + len);
    if (this.reverse) ((this.hi = last), (this.hasHi = true), (this.hiIncl = false), (this.hiPrefix = false));
    else ((this.lo = last), (this.hasLo = true), (this.loIncl = false));
  }

  /**
   * Copy tag `from` to tag `to` on every entry in range (the kernel's
   * tag_pages_for_writeback). Returns how many entries carry `from` in range. Takes treeLock
   * per batch, so a huge range does not stall writers for long.
   */
  tagRange(range: RangeOptions, from: EntryTag, to: EntryTag): number {
    const fromBit = tagBit(from);
    const toBit = tagBit(to);
    let total = 0;
    let bounds: RangeOptions = { gt: range.gt, gte: range.gte, lt: range.lt, lte: range.lte };
    for (;;) {
      let n = 0;
      let last: Uint8Array | undefined;
      this.epoch.pin();
      this.lockTree();
      try {
        this.setBounds(bounds, fromBit, false);
        this.runBatchPinned(BATCH);
        n = this.batchLen;
        for (let i = 0; i < n; i++) {
          const key = this.leafKey(this.batch[i]);
          this.setTagBitLocked(this.batch[i], key, toBit, true);
          last = key;
        }
      } finally {
        this.unlockTree();
        this.epoch.unpin();
      }
      total += n;
      if (n < BATCH || last === undefined) return total;
      bounds = { gt: last, lt: range.lt, lte: range.lte };
    }
  }

  stats(): TreeStats {
    const i32 = this.arena.i32;
    return {
      count: Atomics.load(i32, H_COUNT),
      liveBytes: (this.arena.liveWords() + HEADER_WORDS) * 4,
      arenaBytes: this.arena.memory.buffer.byteLength,
      poisonHits: Atomics.load(i32, H_STAT_POISON_HITS),
      restarts: Atomics.load(i32, H_STAT_RESTARTS),
      lostWakeups: Atomics.load(i32, H_STAT_LOST_WAKEUPS),
      waits: Atomics.load(i32, H_STAT_WAITS),
      reclaimed: Atomics.load(i32, H_STAT_RECLAIMED),
      hugePages: this.arena.hugePages(),
    };
  }

  /** Bytes of index memory per entry (header excluded), for the size target. */
  bytesPerKey(): number {
    const count = this.count();
    return count === 0 ? 0 : (this.arena.liveWords() * 4) / count;
  }
}

/**
 * Depth after matching inner node `node`'s prefix (plen > 0 bytes, immutable once published)
 * against key[depth..], or -1 when the key does not continue with it.
 */
function matchPrefix(u8: Uint8Array, node: number, plen: number, key: Uint8Array, depth: number): number {
  if (depth + plen > key.length) return -1;
  const pb = (node + Lay.INNER_HEADER_WORDS) << 2;
  for (let i = 0; i < plen; i++) if (u8[pb + i] !== key[depth + i]) return -1;
  return depth + plen;
}

/** memcmp order, shorter prefix first: compare arena bytes u8[kb..kb+len) with `key`. */
function compareKey(u8: Uint8Array, kb: number, len: number, key: Uint8Array): number {
  const n = Math.min(len, key.length);
  for (let i = 0; i < n; i++) {
    const d = u8[kb + i] - key[i];
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return len === key.length ? 0 : len < key.length ? -1 : 1;
}

export function infoOf(e: number): EntryInfo {
  return {
    state: STATE_NAMES[stateOf(e)],
    order: orderOf(e),
    dirty: (e & Ew.DIRTY) !== 0,
    towrite: (e & Ew.TOWRITE) !== 0,
    locked: (e & Ew.LOCKED) !== 0,
  };
}
