/**
 * The uncontended entry-lock fast path in WebAssembly: descend to the leaf of a key of at most
 * 24 bytes (WASM_KEY_BYTES: a store's 16-byte keys are 17 with their prefix byte) and CAS
 * LOCKED (with the owner) into its free entry word; and the matching unlock (check held by
 * this thread with nothing to wake or remove, then one CAS).
 * Everything else (absent key, held, deleted, WAITERS, a node past this thread's view, a dead
 * node) returns a code and the caller takes the JS path (entry-lock.ts), which repeats the
 * lookup from scratch: this code only skips work when nothing is in the way.
 *
 * Why wasm: in Node 20 (V8 11.3) Atomics.* are builtin calls and TurboFan re-checks the map and
 * bounds of each typed-array access at every step of a descent; in wasm the descent is plain
 * machine loads (an i32.atomic.load is a mov on x86) and the CAS one inline lock cmpxchg. The
 * JS->wasm call itself (its wrapper inlined by TurboFan) costs about what one Atomics builtin
 * call does, so grab and unlock are one call each. bench/index.bench.ts has the figures.
 *
 * Invariants (the same as the JS descent, radix-tree.ts descendPinned, and grabFree)
 *   - Only reads the tree, except for the one compareExchange of a free entry word (LOCKED and
 *     DELETED clear) to (word & ~OWNER) | LOCKED | owner << 20, which is grabFree's CAS exactly;
 *     and the stat counters a reader bumps when it meets a dead node (H_STAT_RESTARTS,
 *     H_STAT_POISON_HITS), as deadNode does.
 *   - The caller is pinned (EpochDomain.pin, epoch.ts) around grab24: the pin is ordered before
 *     every load here (by its seq-cst store, or by the advance's membarrier: epoch.ts says which).
 *   - Mutable words (root, child slots, endLeaf, headers, N48 index words, entry word) are read
 *     with i32.atomic.load (seq-cst: acquire on every CPU); immutable ones (prefix bytes,
 *     leaf key words) with plain loads, ordered after the atomic load that reached the node.
 *   - A node at or past `limitWords` (this thread's view of the grown arena) is not read: the
 *     JS path refreshes its views and restarts, as it does for a read past its view. Blocks never
 *     straddle a growth boundary (arena.ts), so a node below the limit lies wholly inside memory.
 *   - Keys of at most 24 bytes come in as six little-endian words k0..k5, zero past keyLen.
 *   - Little-endian hosts only (wasm memory is little-endian; the tree mixes byte and word
 *     views of its memory in host order): WASM_GRAB_USABLE says so.
 *
 * Traps. The code reads only at 4-byte aligned addresses below `limitWords`, and the callers
 * pass the tree's wasmLimitWords (radix-tree.ts), a size this instance has been seen to reach:
 * `probe` read its last word without a trap. So no call here can trap, and the callers need no
 * try/catch around it, which matters for speed: V8 (11.3) does not inline a JS->wasm call that
 * sits inside a try block, and an out-of-line call is a large share of an uncontended grab+unlock.
 * Why the probe: with V8's guard regions (the trap handler, on by default on x64 Linux) a read
 * below this thread's view of the memory never traps; where V8 checks bounds explicitly
 * instead (no trap handler, or a process past its guard-region budget), it checks against the
 * size this instance last heard of, which can lag a growth another thread made (V8 updates
 * instances by interrupt) while this thread's typed-array views already see it. Only the
 * probe, called in a try/catch off the hot path, may meet that trap; nodes above the limit
 * take the JS path, which is always correct.
 */
import { FnBuilder, Op, Wasm, encodeModule, type WasmMemory } from './wasm-encoder.js';
import { WASM_GRAB_BYTES } from './wasm-grab-bytes.js';
import { Lay } from './nodes.js';
import { Ew } from './entry-word.js';
import { FLAG_POISON, FREED_HEADER, H_FLAGS, H_STAT_POISON_HITS, H_STAT_RESTARTS, Hw, POISON_WORD } from './arena.js';

/** Longest key the wasm descent takes: six little-endian words. */
export const WASM_KEY_BYTES = 24;

/** Per thread: the key of the next grab24 call as six little-endian words, zero past its end (packKeyWords). */
const keyBytes = new Uint8Array(WASM_KEY_BYTES);
export const keyWords = new Int32Array(keyBytes.buffer);

/**
 * Packs `key` (len <= WASM_KEY_BYTES bytes) into keyWords: whole words four bytes at a time,
 * then the tail's bytes, then zeros.
 */
export function packKeyWords(key: Uint8Array, len: number): void {
  const w = keyWords;
  let j = 0;
  let i = 0;
  for (; i + 4 <= len; i += 4) w[j++] = key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24);
  let tail = 0;
  for (let shift = 0; i < len; i++, shift += 8) tail |= key[i] << shift;
  while (j < 6) {
    w[j++] = tail;
    tail = 0;
  }
}

/** Per thread: the keys of the next touch4 call, six words each (packTouchWords). */
export const touchWords = new Int32Array(4 * 6);

/** Packs `key` (len <= WASM_KEY_BYTES bytes) into touchWords as key j (packKeyWords' layout). */
export function packTouchWords(key: Uint8Array, len: number, j: number): void {
  const w = touchWords;
  let at = 6 * j;
  const end = at + 6;
  let i = 0;
  for (; i + 4 <= len; i += 4) w[at++] = key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24);
  let tail = 0;
  for (let shift = 0; i < len; i++, shift += 8) tail |= key[i] << shift;
  while (at < end) {
    w[at++] = tail;
    tail = 0;
  }
}

/** grab24 results besides a leaf offset (> 0). */
export const enum WasmGrab {
  ABSENT = 0, // no leaf of exactly this key (the JS path creates the placeholder)
  SLOW = -1, // held, deleted, lost CAS, dead node or past the view: take the JS path
}

export const WASM_GRAB_USABLE = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

export interface WasmGrabExports {
  /** (k0..k5, keyLen, limitWords, lockBits) -> offset of the leaf it locked | WasmGrab */
  grab24(
    k0: number,
    k1: number,
    k2: number,
    k3: number,
    k4: number,
    k5: number,
    keyLen: number,
    limitWords: number,
    lockBits: number,
  ): number;
  /** (entry word index, word as locked, bits to set) -> 1 when released by one CAS, 0 when the word changed */
  release(at: number, e: number, extra: number): number;
  /**
   * (entry word index, lockBits, limitWords) -> 1 when the entry was held by lockBits' owner
   * with nothing else to do (not DELETED, no WAITERS, not an EMPTY placeholder) and one CAS
   * released it; 0 for anything else (the caller takes the JS path: checks, wake-ups, removal).
   */
  unlock(at: number, lockBits: number, limitWords: number): number;
  /** (word index) -> the word, read plainly: succeeds when this instance reaches that word (the callers' limit; see "Traps") */
  probe(at: number): number;
  /**
   * (four keys' words k0..k23, their lengths (0: no key), limitWords) -> the sum of the leaves
   * the walks ended at: the paths of up to four keys walked together (buildTouch4), read only.
   */
  touch4(...wordsLengthsLimit: number[]): number;
}

// Parameters of grab24.
const K0 = 0;
const KEY_LEN = 6;
const LIMIT = 7;
const LOCK_BITS = 8;

/** Push key word k + w when byte `d` (local index) lies in it, else key word k + w + 1 (k: the key's first word). */
function wordPair(f: FnBuilder, w: number, d: number, k: number): void {
  f.get(k + w)
    .get(k + w + 1)
    .get(d)
    .const(4 * w + 4)
    .op(Op.i32_lt_u)
    .op(Op.select);
}

/** Push key byte `d` (local index) of the key in words k..k+5: its word picked from three pairs, then the byte. */
function keyByte(f: FnBuilder, d: number, k = K0): void {
  wordPair(f, 0, d, k);
  wordPair(f, 2, d, k);
  f.get(d).const(8).op(Op.i32_lt_u).op(Op.select);
  wordPair(f, 4, d, k);
  f.get(d).const(16).op(Op.i32_lt_u).op(Op.select);
  f.get(d).const(3).op(Op.i32_and).const(3).op(Op.i32_shl).op(Op.i32_shr_u).const(0xff).op(Op.i32_and);
}

/** Push the byte address of word (local w) + k. */
function wordAddr(f: FnBuilder, w: number, k = 0): void {
  f.get(w);
  if (k !== 0) f.const(k).op(Op.i32_add);
  f.const(2).op(Op.i32_shl);
}

function buildGrab24(): FnBuilder {
  const f = new FnBuilder('grab24', 9);
  const node = f.local();
  const depth = f.local();
  const hdr = f.local();
  const tag = f.local();
  const body = f.local();
  const plen = f.local();
  const b = f.local();
  const t = f.local();
  const i = f.local();
  const x = f.local();
  const e = f.local();

  f.const(Hw.ROOT << 2)
    .atomicLoad()
    .set(node);
  f.loop(); // $descend (depth 0 inside it)
  {
    f.get(node).op(Op.i32_eqz).if().ret(WasmGrab.ABSENT).end();
    f.get(node).get(LIMIT).op(Op.i32_ge_u).if().ret(WasmGrab.SLOW).end();
    wordAddr(f, node);
    f.atomicLoad().tee(hdr).const(0xfff).op(Op.i32_and).set(tag);

    // ---- leaf: compare the whole key (words, masked past keyLen), then CAS the entry word
    f.get(tag).const(Lay.LEAF_TAG).op(Op.i32_eq).if();
    {
      f.get(hdr).const(12).op(Op.i32_shr_u).get(KEY_LEN).op(Op.i32_ne).if().ret(WasmGrab.ABSENT).end();
      for (let w = 0; w < 6; w++) {
        // if (keyLen > 4w) { rest = keyLen - 4w; mask = rest >= 4 ? -1 : (1 << 8 rest) - 1; ... }
        f.get(KEY_LEN)
          .const(4 * w)
          .op(Op.i32_gt_u)
          .if();
        {
          f.const(-1);
          f.const(1)
            .get(KEY_LEN)
            .const(4 * w)
            .op(Op.i32_sub)
            .const(3)
            .op(Op.i32_shl)
            .op(Op.i32_shl)
            .const(1)
            .op(Op.i32_sub);
          f.get(KEY_LEN)
            .const(4 * w + 4)
            .op(Op.i32_ge_u)
            .op(Op.select)
            .set(x);
          wordAddr(f, node, Lay.LEAF_HEADER_WORDS + w);
          f.load()
            .get(K0 + w)
            .op(Op.i32_xor)
            .get(x)
            .op(Op.i32_and)
            .if()
            .ret(WasmGrab.ABSENT)
            .end();
        }
        f.end();
      }
      wordAddr(f, node, Lay.W_ENTRY);
      f.atomicLoad()
        .tee(e)
        .const(Ew.LOCKED | Ew.DELETED)
        .op(Op.i32_and)
        .if()
        .ret(WasmGrab.SLOW)
        .end();
      wordAddr(f, node, Lay.W_ENTRY);
      f.get(e);
      f.get(e).const(~Ew.OWNER_MASK).op(Op.i32_and).get(LOCK_BITS).op(Op.i32_or);
      f.cmpxchg().get(e).op(Op.i32_ne).if().ret(WasmGrab.SLOW).end();
      f.get(node).op(Op.return_);
    }
    f.end();

    // ---- not a live inner node: count the restart as deadNode does, then the JS path
    f.get(tag).const(Lay.N4_TAG).op(Op.i32_lt_u).get(tag).const(Lay.N256_TAG).op(Op.i32_gt_u).op(Op.i32_or);
    f.get(tag).const(0xff).op(Op.i32_and).const(Lay.NODE_MAGIC).op(Op.i32_ne).op(Op.i32_or).if();
    {
      f.const(H_STAT_RESTARTS << 2)
        .const(1)
        .atomicAdd()
        .op(Op.drop);
      f.const(H_FLAGS << 2)
        .atomicLoad()
        .const(FLAG_POISON)
        .op(Op.i32_and);
      f.get(hdr).const(POISON_WORD).op(Op.i32_eq).get(hdr).const(FREED_HEADER).op(Op.i32_eq).op(Op.i32_or);
      f.op(Op.i32_and).if();
      f.const(H_STAT_POISON_HITS << 2)
        .const(1)
        .atomicAdd()
        .op(Op.drop);
      f.end();
      f.ret(WasmGrab.SLOW);
    }
    f.end();

    // ---- inner node: prefix (pessimistic: every byte compared), then the branch byte
    f.get(node).const(Lay.INNER_HEADER_WORDS).op(Op.i32_add).set(body);
    wordAddr(f, node, Lay.W_PREFIX_LEN);
    f.load().tee(plen).if();
    {
      f.get(depth).get(plen).op(Op.i32_add).get(KEY_LEN).op(Op.i32_gt_u).if().ret(WasmGrab.ABSENT).end();
      f.const(0).set(i);
      f.loop();
      {
        f.get(depth).get(i).op(Op.i32_add).set(t);
        wordAddr(f, node, Lay.INNER_HEADER_WORDS);
        f.get(i).op(Op.i32_add).load8();
        keyByte(f, t);
        f.op(Op.i32_ne).if().ret(WasmGrab.ABSENT).end();
        f.get(i).const(1).op(Op.i32_add).tee(i).get(plen).op(Op.i32_lt_u).brIf(0);
      }
      f.end();
      f.get(depth).get(plen).op(Op.i32_add).set(depth);
      f.get(body).get(plen).const(3).op(Op.i32_add).const(2).op(Op.i32_shr_u).op(Op.i32_add).set(body);
    }
    f.end();
    // the key ends at this node: its endLeaf
    f.get(depth).get(KEY_LEN).op(Op.i32_eq).if();
    wordAddr(f, node, Lay.W_END_LEAF);
    f.atomicLoad().set(node).br(1);
    f.end();
    keyByte(f, depth);
    f.set(b);
    f.get(depth).const(1).op(Op.i32_add).set(depth);

    f.get(tag).const(Lay.N256_TAG).op(Op.i32_eq).if();
    f.get(body).get(b).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().set(node).br(1);
    f.end();

    f.get(tag).const(Lay.N48_TAG).op(Op.i32_eq).if();
    {
      // index byte b (slot + 1, 0 = none) from its word, then the child word
      f.get(body).get(b).const(2).op(Op.i32_shr_u).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad();
      f.get(b).const(3).op(Op.i32_and).const(3).op(Op.i32_shl).op(Op.i32_shr_u).const(0xff).op(Op.i32_and).tee(t);
      f.op(Op.i32_eqz).if().ret(WasmGrab.ABSENT).end();
      f.get(body).get(t).op(Op.i32_add).const(63).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().set(node).br(1);
    }
    f.end();

    // N4/N16/N32: key bytes four per word (Mycroft's has-zero-byte test, as descendPinned),
    // children after cap/4 key words; a match at or past count (an append newer than hdr) is absent.
    // i = count, t = capWords, x = rep, e = word index
    f.get(hdr).const(12).op(Op.i32_shr_u).set(i);
    f.const(1).const(4).const(8).get(tag).const(Lay.N16_TAG).op(Op.i32_eq).op(Op.select);
    f.get(tag).const(Lay.N4_TAG).op(Op.i32_eq).op(Op.select).set(t);
    f.get(b).const(0x01010101).op(Op.i32_mul).set(x);
    f.const(0).set(e);
    f.const(0).set(node);
    f.block();
    f.loop();
    {
      f.get(e).const(2).op(Op.i32_shl).get(i).op(Op.i32_ge_u).brIf(1);
      f.get(body).get(e).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().get(x).op(Op.i32_xor).set(plen); // plen: scratch
      f.get(plen)
        .const(0x01010101)
        .op(Op.i32_sub)
        .get(plen)
        .const(-1)
        .op(Op.i32_xor)
        .op(Op.i32_and)
        .const(0x80808080 | 0)
        .op(Op.i32_and)
        .tee(plen);
      f.if();
      {
        f.get(e).const(2).op(Op.i32_shl).get(plen).op(Op.i32_ctz).const(3).op(Op.i32_shr_u).op(Op.i32_add).tee(plen);
        f.get(i).op(Op.i32_lt_u).if();
        f.get(body).get(t).op(Op.i32_add).get(plen).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().set(node);
        f.end();
        f.br(2);
      }
      f.end();
      f.get(e).const(1).op(Op.i32_add).set(e).br(0);
    }
    f.end();
    f.end();
    f.br(0);
  }
  f.end();
  f.op(Op.unreachable);
  return f;
}

// Parameters of touch4: four keys' words, then their lengths, then the limit.
const TOUCH_KEYS = 4;
const TOUCH_LEN0 = 6 * TOUCH_KEYS;
const TOUCH_LIMIT = TOUCH_LEN0 + TOUCH_KEYS;

/** Scratch locals one touch step uses (shared by the keys: a step runs to its end before the next). */
interface StepScratch {
  hdr: number;
  tag: number;
  body: number;
  plen: number;
  b: number;
  t: number;
  i: number;
  x: number;
  e: number;
}

/**
 * One node of key j's walk (touch4): from `node` (0: this key's walk is over) to its child on
 * the key's path, or to 0 where the walk ends (a leaf, reached or not the key's, an absent
 * child, anything that is not a live inner node, a node past the limit). Prefix bytes are
 * skipped, not compared: a key whose path leaves the tree there walks to some other leaf,
 * which costs a few loads and nothing else. Adds the leaf to `reached` when the walk ends at one.
 */
function touchStep(f: FnBuilder, j: number, node: number, depth: number, reached: number, s: StepScratch): void {
  const k = 6 * j;
  const len = TOUCH_LEN0 + j;
  const stop = (depthToBlock: number): void => {
    f.const(0).set(node).br(depthToBlock);
  };
  f.block(); // $step: br 0 ends this key's step for the round
  f.get(node).op(Op.i32_eqz).brIf(0);
  f.get(node).get(TOUCH_LIMIT).op(Op.i32_ge_u).if();
  stop(1);
  f.end();
  wordAddr(f, node);
  f.atomicLoad().tee(s.hdr).const(0xfff).op(Op.i32_and).tee(s.tag);
  f.const(Lay.LEAF_TAG).op(Op.i32_eq).if();
  f.get(reached).get(node).op(Op.i32_add).set(reached);
  stop(1);
  f.end();
  f.get(s.tag).const(Lay.N4_TAG).op(Op.i32_lt_u).get(s.tag).const(Lay.N256_TAG).op(Op.i32_gt_u).op(Op.i32_or);
  f.get(s.tag).const(0xff).op(Op.i32_and).const(Lay.NODE_MAGIC).op(Op.i32_ne).op(Op.i32_or).if();
  stop(1);
  f.end();
  f.get(node).const(Lay.INNER_HEADER_WORDS).op(Op.i32_add).set(s.body);
  wordAddr(f, node, Lay.W_PREFIX_LEN);
  f.load().tee(s.plen).if();
  f.get(depth).get(s.plen).op(Op.i32_add).set(depth);
  f.get(s.body).get(s.plen).const(3).op(Op.i32_add).const(2).op(Op.i32_shr_u).op(Op.i32_add).set(s.body);
  f.end();
  f.get(depth).get(len).op(Op.i32_gt_u).if();
  stop(1);
  f.end();
  f.get(depth).get(len).op(Op.i32_eq).if(); // the key ends at this node: its endLeaf
  wordAddr(f, node, Lay.W_END_LEAF);
  f.atomicLoad().set(node).br(1);
  f.end();
  keyByte(f, depth, k);
  f.set(s.b);
  f.get(depth).const(1).op(Op.i32_add).set(depth);

  f.get(s.tag).const(Lay.N256_TAG).op(Op.i32_eq).if();
  f.get(s.body).get(s.b).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().set(node).br(1);
  f.end();

  f.get(s.tag).const(Lay.N48_TAG).op(Op.i32_eq).if();
  {
    f.get(s.body).get(s.b).const(2).op(Op.i32_shr_u).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad();
    f.get(s.b).const(3).op(Op.i32_and).const(3).op(Op.i32_shl).op(Op.i32_shr_u).const(0xff).op(Op.i32_and).tee(s.t);
    f.op(Op.i32_eqz).if();
    stop(2);
    f.end();
    f.get(s.body).get(s.t).op(Op.i32_add).const(63).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().set(node).br(1);
  }
  f.end();

  // N4/N16/N32, as grab24: i = count, t = capWords, x = rep, e = word index
  f.get(s.hdr).const(12).op(Op.i32_shr_u).set(s.i);
  f.const(1).const(4).const(8).get(s.tag).const(Lay.N16_TAG).op(Op.i32_eq).op(Op.select);
  f.get(s.tag).const(Lay.N4_TAG).op(Op.i32_eq).op(Op.select).set(s.t);
  f.get(s.b).const(0x01010101).op(Op.i32_mul).set(s.x);
  f.const(0).set(s.e);
  f.const(0).set(node);
  f.loop();
  {
    f.get(s.e).const(2).op(Op.i32_shl).get(s.i).op(Op.i32_ge_u).brIf(1); // not found: node stays 0
    f.get(s.body).get(s.e).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().get(s.x).op(Op.i32_xor).set(s.plen);
    f.get(s.plen)
      .const(0x01010101)
      .op(Op.i32_sub)
      .get(s.plen)
      .const(-1)
      .op(Op.i32_xor)
      .op(Op.i32_and)
      .const(0x80808080 | 0)
      .op(Op.i32_and)
      .tee(s.plen);
    f.if();
    {
      f.get(s.e)
        .const(2)
        .op(Op.i32_shl)
        .get(s.plen)
        .op(Op.i32_ctz)
        .const(3)
        .op(Op.i32_shr_u)
        .op(Op.i32_add)
        .tee(s.plen);
      f.get(s.i).op(Op.i32_lt_u).if();
      f.get(s.body).get(s.t).op(Op.i32_add).get(s.plen).op(Op.i32_add).const(2).op(Op.i32_shl).atomicLoad().set(node);
      f.end();
      f.br(2);
    }
    f.end();
    f.get(s.e).const(1).op(Op.i32_add).set(s.e).br(0);
  }
  f.end();
  f.end(); // $step
}

/**
 * touch4(k0..k23, len0..len3, limitWords) -> the sum of the leaves the walks ended at (mod 2^32).
 * Walks the paths of up to four keys (len 0: none) one node of each in turn, so the cache
 * misses of the four walks overlap where one grab after another waits for each in turn. It
 * reads the tree and writes nothing: a warm-up before grabs of the same keys.
 */
function buildTouch4(): FnBuilder {
  const f = new FnBuilder('touch4', TOUCH_LIMIT + 1);
  const nodes: number[] = [];
  const depths: number[] = [];
  for (let j = 0; j < TOUCH_KEYS; j++) {
    nodes.push(f.local());
    depths.push(f.local());
  }
  const reached = f.local();
  const root = f.local();
  const s: StepScratch = {
    hdr: f.local(),
    tag: f.local(),
    body: f.local(),
    plen: f.local(),
    b: f.local(),
    t: f.local(),
    i: f.local(),
    x: f.local(),
    e: f.local(),
  };
  f.const(Hw.ROOT << 2)
    .atomicLoad()
    .set(root);
  for (let j = 0; j < TOUCH_KEYS; j++) {
    f.get(root)
      .const(0)
      .get(TOUCH_LEN0 + j)
      .op(Op.select)
      .set(nodes[j]);
  }
  f.loop();
  for (let j = 0; j < TOUCH_KEYS; j++) touchStep(f, j, nodes[j], depths[j], reached, s);
  f.get(nodes[0]).get(nodes[1]).op(Op.i32_or).get(nodes[2]).op(Op.i32_or).get(nodes[3]).op(Op.i32_or).brIf(0);
  f.end();
  f.get(reached);
  return f;
}

function buildRelease(): FnBuilder {
  // release(at, e, extra): CAS e -> (e & ~(LOCKED | OWNER)) | extra; 1 when it took
  const f = new FnBuilder('release', 3);
  f.get(0)
    .const(2)
    .op(Op.i32_shl)
    .get(1)
    .get(1)
    .const(~(Ew.LOCKED | Ew.OWNER_MASK))
    .op(Op.i32_and)
    .get(2)
    .op(Op.i32_or);
  f.cmpxchg().get(1).op(Op.i32_eq);
  return f;
}

function buildUnlock(): FnBuilder {
  const f = new FnBuilder('unlock', 3);
  const e = f.local();
  f.get(0).get(2).op(Op.i32_ge_u).if().ret(0).end();
  f.get(0).const(2).op(Op.i32_shl).atomicLoad().tee(e);
  f.const(Ew.LOCKED | Ew.DELETED | Ew.WAITERS | Ew.OWNER_MASK)
    .op(Op.i32_and)
    .get(1)
    .op(Op.i32_ne)
    .if()
    .ret(0)
    .end();
  f.get(e)
    .const(Ew.STATE_MASK)
    .op(Op.i32_and)
    .const(Ew.STATE_EMPTY << Ew.STATE_SHIFT)
    .op(Op.i32_eq)
    .if()
    .ret(0)
    .end();
  f.get(0)
    .const(2)
    .op(Op.i32_shl)
    .get(e)
    .get(e)
    .const(~(Ew.LOCKED | Ew.OWNER_MASK))
    .op(Op.i32_and);
  f.cmpxchg().get(e).op(Op.i32_eq);
  return f;
}

function buildProbe(): FnBuilder {
  const f = new FnBuilder('probe', 1);
  wordAddr(f, 0);
  f.load();
  return f;
}

/**
 * The module's bytes from the builders above; its memory import is `env.memory`, shared,
 * 1..65536 pages. Threads compile WASM_GRAB_BYTES instead (wasm-grab-bytes.ts), which
 * test/index/wasm-grab.test.ts checks equals this.
 */
export function wasmGrabModuleBytes(): Uint8Array {
  return encodeModule([buildGrab24(), buildRelease(), buildUnlock(), buildProbe(), buildTouch4()], 1, 65536);
}

let compiled: object | undefined;

/** The compiled module (once per thread), of the bytes wasmGrabModuleBytes() builds, stored. */
export function wasmGrabModule(): object {
  compiled ??= new Wasm.Module(Buffer.from(WASM_GRAB_BYTES, 'base64'));
  return compiled;
}

export function instantiateWasmGrab(memory: WasmMemory): WasmGrabExports {
  return new Wasm.Instance(wasmGrabModule(), { env: { memory } }).exports as WasmGrabExports;
}
