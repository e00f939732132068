/**
 * Bulk load: builds a radix tree bottom-up, straight in the arena, from keys given in
 * strictly increasing order (recovery's index rebuild). One leaf per key and one right-sized
 * inner node per branch point, each written once; the root is published with one
 * Atomics.store. Inserting key by key would copy a node per insert (copy-on-write for
 * lock-free readers) and leave N48/N256 nodes sized for growth; here nobody can read yet.
 *
 * Invariants (of the result; the same ones radix-tree.ts and nodes.ts state)
 *   - Every leaf is LEAF, key length in the header, entry word 0 (state VALUE, order 0, no
 *     lock, no tags) for new keys; leaves already in the tree keep their block and entry word.
 *   - Every inner node has >= 2 items, the smallest type holding its children
 *     (typeForCount), the longest common prefix as its compressed path, endLeaf = the key
 *     that ends at its branch byte, and tag counts = tagged leaves below it.
 *   - H_COUNT = leaves reachable.
 *
 * Concurrency: the caller holds treeLock and the tree was never shared (no handle() taken,
 * not attached): no reader or writer can see any block until the root store publishes it.
 * Inner nodes of the previous shape (a non-empty tree) are retired through the epoch like
 * any replaced node.
 *
 * Persistence ordering: none (the index is volatile).
 */
import { assert } from '../assert.js';
import { DaxError } from '../errors.js';
import { type Arena, H_COUNT, classWords, sizeClassOf, Hw } from './arena.js';
import { MAX_VALUE, Ew } from './entry-word.js';
import {
  MAX_KEY_BYTES,
  countOf,
  fillInner,
  gatherChildren,
  header,
  innerWords,
  leafWords,
  typeForCount,
  typeOf,
  Lay,
} from './nodes.js';

const TWO_32 = 2 ** 32;

/**
 * Entry i: key keys[starts[i] .. starts[i] + lengths[i]), value values[i]. Keys share one
 * buffer and need not be back to back or in buffer order (recovery passes the order of a
 * sort without moving a byte); they must be strictly increasing in i.
 */
export interface BulkEntries {
  readonly count: number;
  readonly keys: Uint8Array;
  readonly starts: Uint32Array | Int32Array | Float64Array;
  readonly lengths: Uint16Array | Uint32Array | Int32Array;
  /** integers in [0, 2^48) */
  readonly values: Float64Array | readonly number[];
}

/** Validates the shape of the arguments (DaxError EINVAL); per-key checks happen in allocLeaves. */
export function checkBulkEntries(e: BulkEntries): void {
  const { count, keys, starts, lengths, values } = e;
  if (!Number.isSafeInteger(count) || count < 0)
    throw new DaxError('EINVAL', `bulkLoad: count ${count} must be a non-negative integer`);
  if (!(keys instanceof Uint8Array)) throw new DaxError('EINVAL', 'bulkLoad: keys must be a Uint8Array');
  if (starts.length < count || lengths.length < count || values.length < count)
    throw new DaxError('EINVAL', `bulkLoad: ${count} entries need ${count} starts, lengths and values`);
}

/** The reason entry i's shape is unacceptable, or undefined (its order is checked on the leaves: allocLeaves). */
function badEntry(e: BulkEntries, i: number): string | undefined {
  const len = e.lengths[i];
  const start = e.starts[i];
  const v = e.values[i];
  if (!(len >= 0 && len <= MAX_KEY_BYTES)) return `key ${i} has length ${len} (at most ${MAX_KEY_BYTES})`;
  if (!(start >= 0 && start + len <= e.keys.length))
    return `key ${i} lies outside the ${e.keys.length}-byte key buffer`;
  if (!Number.isInteger(v) || v < 0 || v > MAX_VALUE) return `value ${v} of key ${i} must be an integer in [0, 2^48)`;
  return undefined;
}

/**
 * Builds the tree of the existing leaves plus `entries` and publishes it. Caller holds
 * treeLock; the tree was never shared; `retire` hands an old inner node (offset, words) to
 * the epoch. Entries must have been checked (checkBulkEntries) and be absent from the tree.
 */
export function bulkLoadLocked(arena: Arena, e: BulkEntries, retire: (node: number, words: number) => void): void {
  const fresh = allocLeaves(arena, e, retire);
  const old = collectOld(arena, retire);
  const leaves = old.length === 0 ? fresh : mergeLeaves(arena, old, fresh);
  const b = new Builder(arena, leaves);
  const root = leaves.length === 0 ? 0 : b.build(0, leaves.length, 0, 0);
  const i32 = arena.i32;
  Atomics.store(i32, H_COUNT, leaves.length);
  // Publication: every block above was written with plain stores before this release store.
  Atomics.store(i32, Hw.ROOT, root);
}

/** Leaves already in the tree, in key order; their inner nodes are retired (rebuilt below). */
function collectOld(arena: Arena, retire: (node: number, words: number) => void): Int32Array {
  const root = arena.i32[Hw.ROOT];
  if (root === 0) return new Int32Array(0);
  const out: number[] = [];
  const bytes = new Uint8Array(257);
  const walk = (node: number): void => {
    const i32 = arena.i32;
    const hdr = i32[node];
    if (typeOf(hdr) === Lay.LEAF) {
      out.push(node);
      return;
    }
    const end = i32[node + Lay.W_END_LEAF];
    if (end !== 0) out.push(end);
    const kids = new Int32Array(257);
    const n = gatherChildren(i32, arena.u8, node, bytes, kids);
    for (let i = 0; i < n; i++) walk(kids[i]);
    retire(node, innerWords(typeOf(hdr), i32[node + Lay.W_PREFIX_LEN]));
  };
  walk(root);
  return Int32Array.from(out);
}

/**
 * One leaf per entry, in entry order, back to back in one run of the arena (allocRunLocked:
 * one bump for all; each leaf is still a block of its own size class; the build then reads
 * them in address order). Every entry's shape is validated before anything is allocated;
 * its order is checked against the previous leaf as it is copied (both keys in cache). On a
 * bad order every leaf of the run is retired (never published) and a DaxError EINVAL names
 * the entry, so the tree is unchanged. Words past the key inside a block are left as they
 * are: nothing reads them.
 */
function allocLeaves(arena: Arena, e: BulkEntries, retire: (node: number, words: number) => void): Int32Array {
  const leaves = new Int32Array(e.count);
  const { keys, starts, lengths, values } = e;
  let total = 0;
  for (let i = 0; i < e.count; i++) {
    const bad = badEntry(e, i);
    if (bad !== undefined) throw new DaxError('EINVAL', `bulkLoad: ${bad}`);
    total += classWords(sizeClassOf(leafWords(lengths[i])));
  }
  if (e.count === 0) return leaves;
  let next = arena.allocRunLocked(total);
  for (let i = 0; i < e.count; i++) {
    leaves[i] = next;
    next += classWords(sizeClassOf(leafWords(lengths[i])));
  }
  const i32 = arena.i32; // after the allocation: the buffer may have grown
  const u8 = arena.u8;
  for (let i = 0; i < e.count; i++) {
    const k0 = starts[i];
    const len = lengths[i];
    const leaf = leaves[i];
    const v = values[i];
    i32[leaf] = header(Lay.LEAF, len);
    i32[leaf + Lay.W_ENTRY] = 0;
    i32[leaf + Lay.W_VALUE_LO] = v; // the store is ToInt32(v) = v mod 2^32 (exact below 2^53): no float modulo, a C call per key
    i32[leaf + Lay.W_VALUE_HI] = Math.floor(v / TWO_32);
    if (len > 0) i32[leaf + Lay.LEAF_HEADER_WORDS + ((len - 1) >> 2)] = 0; // bytes after the key in its last word
    const kb = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
    if (len <= 32) for (let j = 0; j < len; j++) u8[kb + j] = keys[k0 + j];
    else u8.set(keys.subarray(k0, k0 + len), kb);
    if (i > 0 && compareLeaves(arena, leaves[i - 1], leaf) >= 0) {
      for (let j = 0; j < e.count; j++) retire(leaves[j], leafWords(lengths[j]));
      throw new DaxError(
        'EINVAL',
        `bulkLoad: key ${i} is not greater than key ${i - 1} (keys must be sorted and unique)`,
      );
    }
  }
  return leaves;
}

function mergeLeaves(arena: Arena, a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) {
    const c = compareLeaves(arena, a[i], b[j]);
    assert(c !== 0, () => `bulkLoad: key of leaf ${b[j]} is already in the tree`);
    out[k++] = c < 0 ? a[i++] : b[j++];
  }
  while (i < a.length) out[k++] = a[i++];
  while (j < b.length) out[k++] = b[j++];
  return out;
}

function compareLeaves(arena: Arena, x: number, y: number): number {
  const i32 = arena.i32;
  const xb = (x + Lay.LEAF_HEADER_WORDS) << 2;
  const yb = (y + Lay.LEAF_HEADER_WORDS) << 2;
  const u8 = arena.u8;
  const n = Math.min(countOf(i32[x]), countOf(i32[y]));
  for (let i = 0; i < n; i++) {
    const d = u8[xb + i] - u8[yb + i];
    if (d !== 0) return d;
  }
  return countOf(i32[x]) - countOf(i32[y]);
}

/** Recursive bottom-up construction over a sorted array of leaves; keys are read from the leaves. */
class Builder {
  private readonly levelBytes: Uint8Array[] = [];
  private readonly levelKids: Int32Array[] = [];
  /** tag counts of the subtree returned by the last build() */
  private dirty = 0;
  private towrite = 0;

  constructor(
    private readonly arena: Arena,
    private readonly leaves: Int32Array,
  ) {}

  /**
   * The subtree of leaves[lo, hi) whose keys all share bytes [0, depth): a leaf, or an inner
   * node whose prefix starts at `depth`. `level` indexes the per-level scratch.
   */
  build(lo: number, hi: number, depth: number, level: number): number {
    const leaves = this.leaves;
    let i32 = this.arena.i32;
    const first = leaves[lo];
    if (hi - lo === 1) {
      const entry = i32[first + Lay.W_ENTRY];
      this.dirty = (entry & Ew.DIRTY) !== 0 ? 1 : 0;
      this.towrite = (entry & Ew.TOWRITE) !== 0 ? 1 : 0;
      return first;
    }
    const firstKey = (first + Lay.LEAF_HEADER_WORDS) << 2;
    const firstLen = countOf(i32[first]);
    const branch = this.commonPrefixEnd(first, leaves[hi - 1], depth);
    let end = 0;
    let next = lo;
    let dirty = 0;
    let towrite = 0;
    if (firstLen === branch) {
      // Sorted and unique: only the first key can end at the branch byte.
      end = this.build(lo, lo + 1, branch, level + 1);
      dirty += this.dirty;
      towrite += this.towrite;
      next = lo + 1;
    }
    if (this.levelBytes.length <= level) {
      this.levelBytes.push(new Uint8Array(257));
      this.levelKids.push(new Int32Array(257));
    }
    const bytes = this.levelBytes[level];
    const kids = this.levelKids[level];
    let n = 0;
    while (next < hi) {
      const u8 = this.arena.u8; // recursion may have grown the buffer
      const b = u8[((leaves[next] + Lay.LEAF_HEADER_WORDS) << 2) + branch];
      let stop = next + 1;
      while (stop < hi && u8[((leaves[stop] + Lay.LEAF_HEADER_WORDS) << 2) + branch] === b) stop++;
      bytes[n] = b;
      kids[n++] = this.build(next, stop, branch + 1, level + 1);
      dirty += this.dirty;
      towrite += this.towrite;
      next = stop;
    }
    // The message only on failure (a closure made per node was most of recovery's load-phase scavenges).
    if (!(n + (end !== 0 ? 1 : 0) >= 2 && n <= 256))
      assert(false, `bulkLoad: node at depth ${depth} would have ${n} children (keys not sorted and unique?)`);
    const type = typeForCount(n);
    const plen = branch - depth;
    const node = this.arena.allocLocked(innerWords(type, plen));
    i32 = this.arena.i32;
    // The prefix is read from the first leaf's key, inside the same (possibly regrown) arena.
    fillInner(
      i32,
      this.arena.u8,
      node,
      type,
      this.arena.u8,
      firstKey + depth,
      plen,
      n,
      bytes,
      kids,
      end,
      dirty,
      towrite,
    );
    this.dirty = dirty;
    this.towrite = towrite;
    return node;
  }

  /** First depth >= `depth` where the keys of leaves a and b differ or one ends (a < b). */
  private commonPrefixEnd(a: number, b: number, depth: number): number {
    const i32 = this.arena.i32;
    const u8 = this.arena.u8;
    const n = Math.min(countOf(i32[a]), countOf(i32[b]));
    const ab = (a + Lay.LEAF_HEADER_WORDS) << 2;
    const bb = (b + Lay.LEAF_HEADER_WORDS) << 2;
    let d = depth;
    while (d < n && u8[ab + d] === u8[bb + d]) d++;
    return d;
  }
}
