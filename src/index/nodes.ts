/**
 * Node layout of the adaptive radix tree (ART: Node4/16/32/48/256 with pessimistic path
 * compression) and leaves, all inside the Arena (offsets are word indices).
 *
 * Header word (word 0 of every node and leaf):
 *   bits 0-7   NODE_MAGIC (0xA5); a freed block has another value here, so readers detect it
 *   bits 8-11  type: LEAF 1, N4 2, N16 3, N32 4, N48 5, N256 6
 *   bits 12-24 inner: number of children (0..256); leaf: key length in bytes (0..4096)
 *
 * Inner node words: 0 header · 1 prefixLen (bytes of path compressed into this node)
 *   · 2 DIRTY leaves below · 3 TOWRITE leaves below · 4 endLeaf (the leaf whose key ends
 *   exactly at this node's branch byte; it sorts before every child) · 5.. prefix bytes
 *   (ceil(prefixLen/4) words) · body:
 *     N4/N16/N32: cap key bytes (count used, distinct, in insertion order: NOT sorted;
 *     gatherChildren sorts) then cap child words; unused key bytes and child words are 0
 *     N48: 256 index bytes (child slot + 1, 0 = none) then 48 child words
 *     N256: 256 child words
 * Leaf words: 0 header · 1 entry word (entry-word.ts) · 2 value low · 3 value high (bits 0-15;
 *   bits 16-31: the value's note, entry-lock.ts replace, masked off by every value reader) · 4.. key.
 *
 * Invariants
 *   - Immutable after publication: header type/magic, prefixLen, prefix, the key bytes
 *     [0, count) of N4/16/32, a leaf's key. Readers read those with plain loads (ordered after
 *     the acquire load (loadWord, word-load.ts) of the pointer that reached the node, which
 *     saw the publishing Atomics.store).
 *   - Mutable in place (Atomics only, under treeLock): child words (a child replaced by its
 *     copy, or an N256 slot filled/cleared), N48 index words and free child slots (add
 *     only: N48 removals copy the node, so an index byte never names a reused slot), the
 *     N48/N256 count, the tag counts, endLeaf; and, where plain loads are acquire (x86,
 *     word-load.ts), an APPEND to an N4/16/32 with room: child word at index count, then key
 *     byte at count, then the header with count + 1, each an Atomics.store. A reader orders
 *     its loads after its header load (TSO), so with the old count it ignores index count
 *     (a match there reads as absent) and with the new one it sees byte and child. Removals
 *     and growth copy the node. Everything else changes by copy-on-write.
 *   - Every inner node has at least two items (children + endLeaf), except transiently
 *     under treeLock.
 */
import { loadWord } from './word-load.js';

/**
 * The layout numbers as a const enum, which tsc writes into every use as a literal. Hot paths
 * (descent, findChild, entry locks) use `Lay.X`: V8 in Node 20 does not constant-fold an
 * imported `const` binding, so each use of NODE_MAGIC etc. in optimized code loaded the
 * module cell and checked it for the TDZ hole, which in the descent outnumbers the compares
 * that matter.
 */
export const enum Lay {
  NODE_MAGIC = 0xa5,
  LEAF = 1,
  N4 = 2,
  N16 = 3,
  N32 = 4,
  N48 = 5,
  N256 = 6,
  W_PREFIX_LEN = 1,
  W_DIRTY = 2,
  W_TOWRITE = 3,
  W_END_LEAF = 4,
  INNER_HEADER_WORDS = 5,
  W_ENTRY = 1,
  W_VALUE_LO = 2,
  W_VALUE_HI = 3,
  LEAF_HEADER_WORDS = 4,
  /** (hdr & 0xfff) of a live block of each type: magic and type in one compare */
  LEAF_TAG = (1 << 8) | 0xa5,
  N4_TAG = (2 << 8) | 0xa5,
  N16_TAG = (3 << 8) | 0xa5,
  N32_TAG = (4 << 8) | 0xa5,
  N48_TAG = (5 << 8) | 0xa5,
  N256_TAG = (6 << 8) | 0xa5,
}

export const MAX_KEY_BYTES = 4096;

export function header(type: number, countOrKeyLen: number): number {
  return Lay.NODE_MAGIC | (type << 8) | (countOrKeyLen << 12);
}
export function isLive(hdr: number): boolean {
  return (hdr & 0xff) === Lay.NODE_MAGIC && ((hdr >>> 8) & 15) >= Lay.LEAF && ((hdr >>> 8) & 15) <= Lay.N256;
}
export function typeOf(hdr: number): number {
  return (hdr >>> 8) & 15;
}
export function countOf(hdr: number): number {
  return (hdr >>> 12) & 0x1fff;
}
export function capacityOf(type: number): number {
  return type === Lay.N4 ? 4 : type === Lay.N16 ? 16 : type === Lay.N32 ? 32 : type === Lay.N48 ? 48 : 256;
}
export function typeForCount(count: number): number {
  return count <= 4 ? Lay.N4 : count <= 16 ? Lay.N16 : count <= 32 ? Lay.N32 : count <= 48 ? Lay.N48 : Lay.N256;
}
export function bodyOffset(node: number, prefixLen: number): number {
  return node + Lay.INNER_HEADER_WORDS + ((prefixLen + 3) >> 2);
}
export function innerWords(type: number, prefixLen: number): number {
  const base = Lay.INNER_HEADER_WORDS + ((prefixLen + 3) >> 2);
  if (type === Lay.N48) return base + 64 + 48;
  if (type === Lay.N256) return base + 256;
  const cap = capacityOf(type);
  return base + (cap >> 2) + cap;
}
export function leafWords(keyLen: number): number {
  return Lay.LEAF_HEADER_WORDS + ((keyLen + 3) >> 2);
}
/** Size in words of the block at `node` (from its live header). */
export function blockWords(i32: Int32Array, node: number): number {
  const hdr = i32[node];
  const type = typeOf(hdr);
  return type === Lay.LEAF ? leafWords(countOf(hdr)) : innerWords(type, i32[node + Lay.W_PREFIX_LEN]);
}

/**
 * Child pointer for branch byte `b`, or 0. Lock-free: child words are read with
 * loadWord (acquire); the sorted keys are immutable.
 */
export function findChild(i32: Int32Array, u8: Uint8Array, hdr: number, body: number, b: number): number {
  const type = typeOf(hdr);
  if (type === Lay.N256) return loadWord(i32, body + b);
  if (type === Lay.N48) {
    const slot = (loadWord(i32, body + (b >> 2)) >>> ((b & 3) << 3)) & 0xff;
    return slot === 0 ? 0 : loadWord(i32, body + 64 + slot - 1);
  }
  const count = countOf(hdr);
  const cap = type === Lay.N4 ? 4 : type === Lay.N16 ? 16 : 32;
  if (LITTLE_ENDIAN) {
    // Four key bytes per step: the lowest zero byte of (word ^ b repeated) is the first
    // match (Mycroft's has-zero-byte test; borrows only ever mark bytes above a true zero).
    const rep = Math.imul(b, 0x01010101);
    const words = (count + 3) >> 2;
    for (let w = 0; w < words; w++) {
      const x = i32[body + w] ^ rep;
      const m = (x - 0x01010101) & ~x & 0x80808080;
      if (m !== 0) {
        const i = (w << 2) + ((31 - Math.clz32(m & -m)) >> 3);
        return i < count ? loadWord(i32, body + (cap >> 2) + i) : 0;
      }
    }
    return 0;
  }
  const kb = body << 2;
  for (let i = 0; i < count; i++) if (u8[kb + i] === b) return loadWord(i32, body + (cap >> 2) + i);
  return 0;
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** Word index of the child slot for byte `b`, or -1 (writers, under treeLock). */
export function findChildSlot(i32: Int32Array, u8: Uint8Array, hdr: number, body: number, b: number): number {
  const type = typeOf(hdr);
  if (type === Lay.N256) return i32[body + b] === 0 ? -1 : body + b;
  if (type === Lay.N48) {
    const slot = (i32[body + (b >> 2)] >>> ((b & 3) << 3)) & 0xff;
    return slot === 0 ? -1 : body + 64 + slot - 1;
  }
  const count = countOf(hdr);
  const cap = capacityOf(type);
  const kb = body << 2;
  for (let i = 0; i < count; i++) if (u8[kb + i] === b) return body + (cap >> 2) + i;
  return -1;
}

/**
 * Copy the (byte, child) pairs of `node` in byte order into bytes/kids; returns how many.
 * Skips 0 children (cleared N256 slots).
 */
export function gatherChildren(
  i32: Int32Array,
  u8: Uint8Array,
  node: number,
  bytes: Uint8Array,
  kids: Int32Array,
): number {
  const hdr = i32[node];
  const type = typeOf(hdr);
  const body = bodyOffset(node, i32[node + Lay.W_PREFIX_LEN]);
  let n = 0;
  if (type === Lay.N256) {
    for (let b = 0; b < 256; b++) {
      const c = loadWord(i32, body + b);
      if (c !== 0) {
        bytes[n] = b;
        kids[n++] = c;
      }
    }
  } else if (type === Lay.N48) {
    const ib = body << 2;
    for (let b = 0; b < 256; b++) {
      const slot = u8[ib + b];
      if (slot !== 0) {
        const c = loadWord(i32, body + 64 + slot - 1);
        if (c !== 0) {
          bytes[n] = b;
          kids[n++] = c;
        }
      }
    }
  } else {
    const count = countOf(hdr);
    const cap = capacityOf(type);
    const kb = body << 2;
    // Key bytes are in insertion order (appends in place: radix-tree.ts addChildLocked):
    // insertion-sort them on the way out (already sorted: one compare each).
    for (let i = 0; i < count; i++) {
      const k = u8[kb + i];
      const c = loadWord(i32, body + (cap >> 2) + i);
      let j = n++;
      while (j > 0 && bytes[j - 1] > k) {
        bytes[j] = bytes[j - 1];
        kids[j] = kids[j - 1];
        j--;
      }
      bytes[j] = k;
      kids[j] = c;
    }
  }
  return n;
}

/**
 * Fill a freshly allocated inner node at `node` (not yet published). The prefix comes from
 * `prefix[prefixStart .. prefixStart+prefixLen)`; pairs must be in byte order.
 */
export function fillInner(
  i32: Int32Array,
  u8: Uint8Array,
  node: number,
  type: number,
  prefix: Uint8Array,
  prefixStart: number,
  prefixLen: number,
  n: number,
  bytes: Uint8Array,
  kids: Int32Array,
  endLeaf: number,
  dirty: number,
  towrite: number,
): void {
  const words = innerWords(type, prefixLen);
  i32.fill(0, node, node + words);
  i32[node] = header(type, n);
  i32[node + Lay.W_PREFIX_LEN] = prefixLen;
  i32[node + Lay.W_DIRTY] = dirty;
  i32[node + Lay.W_TOWRITE] = towrite;
  i32[node + Lay.W_END_LEAF] = endLeaf;
  const pb = (node + Lay.INNER_HEADER_WORDS) << 2;
  for (let i = 0; i < prefixLen; i++) u8[pb + i] = prefix[prefixStart + i];
  const body = bodyOffset(node, prefixLen);
  if (type === Lay.N256) {
    for (let i = 0; i < n; i++) i32[body + bytes[i]] = kids[i];
  } else if (type === Lay.N48) {
    const ib = body << 2;
    for (let i = 0; i < n; i++) {
      u8[ib + bytes[i]] = i + 1;
      i32[body + 64 + i] = kids[i];
    }
  } else {
    const cap = capacityOf(type);
    const kb = body << 2;
    for (let i = 0; i < n; i++) {
      u8[kb + i] = bytes[i];
      i32[body + (cap >> 2) + i] = kids[i];
    }
  }
}
