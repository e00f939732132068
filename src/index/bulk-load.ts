/**
 * Bulk load: builds a radix tree bottom-up, straight in the arena, from keys given in
 * strictly increasing order (recovery's index rebuild). One leaf per key and one right-sized
 * inner node per branch point, each written once; the root is published with one
 * Atomics.store. Inserting key by key would copy a node per insert (copy-on-write for
 * lock-free readers) and leave N48/N256 nodes sized for growth; here nobody can read yet.
 * The two loops over every key (writing the leaves, building the inner nodes over them) run in
 * the addon (addon/bulk-load.cc), each sized first by a plan of the same inputs and then
 * written into one run of the arena (Arena.allocRunLocked; every block still its size class's
 * full size, so each is freed on its own later). It writes the layouts nodes.ts defines.
 *
 * Invariants (of the result; the same ones radix-tree.ts and nodes.ts state)
 *   - Every leaf is LEAF, key length in the header, entry word 0 (state VALUE, order 0, no
 *     lock, no tags) for new keys, or only the state the entries give (`states`); leaves
 *     already in the tree keep their block and entry word.
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
import { native, returnCodeError } from '../native/addon.js';
import { type Arena, H_BUMP, H_COUNT, Hw } from './arena.js';
import { Ew, MAX_VALUE } from './entry-word.js';

/** What the native inner-node build returns when its scratch could not be allocated. */
const ENOMEM = 12;
import { MAX_KEY_BYTES, countOf, gatherChildren, innerWords, leafWords, typeOf, Lay } from './nodes.js';

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
  /**
   * When set, entry i's state (Ew.STATE_VALUE, STATE_ZERO or STATE_POISONED; not EMPTY, the
   * locked placeholder's) goes into its leaf's entry word; without it every new leaf is VALUE.
   * Order, tags, lock and owner stay clear. Not with `merge`.
   */
  readonly states?: Uint8Array;
  /**
   * When set, the entries are not the columns above taken whole but a merge of them (set a)
   * with a second set (b): `tape` says which entry of a or b each step takes or skips
   * (addon/bulk-load.h, written by recovery's merge), `count` entries taken in all. Recovery
   * after a checkpoint loads its columns and the tail's this way without copying them.
   */
  readonly merge?: {
    readonly keys: Uint8Array;
    readonly starts: Uint32Array;
    readonly lengths: Uint16Array;
    readonly values: Float64Array;
    readonly tape: Uint32Array;
  };
}

/** Validates the shape of the arguments (DaxError EINVAL); per-key checks happen in allocLeaves. */
export function checkBulkEntries(e: BulkEntries): void {
  const { count, keys, starts, lengths, values } = e;
  if (!Number.isSafeInteger(count) || count < 0)
    throw new DaxError('EINVAL', `bulkLoad: count ${count} must be a non-negative integer`);
  if (!(keys instanceof Uint8Array)) throw new DaxError('EINVAL', 'bulkLoad: keys must be a Uint8Array');
  const m = e.merge;
  if (m !== undefined) {
    const typed = [starts, lengths, values, m.starts, m.lengths, m.values, m.keys, m.tape];
    const kinds = [
      Uint32Array,
      Uint16Array,
      Float64Array,
      Uint32Array,
      Uint16Array,
      Float64Array,
      Uint8Array,
      Uint32Array,
    ];
    if (typed.some((a, i) => !(a instanceof kinds[i])))
      throw new DaxError(
        'EINVAL',
        'bulkLoad: a merge takes typed columns (Uint32Array starts, Uint16Array lengths, Float64Array values)',
      );
    if (e.states !== undefined) throw new DaxError('EINVAL', 'bulkLoad: states are for entries without a merge');
    return; // the tape's entries are checked as it is read (allocLeaves)
  }
  if (starts.length < count || lengths.length < count || values.length < count)
    throw new DaxError('EINVAL', `bulkLoad: ${count} entries need ${count} starts, lengths and values`);
  const states = e.states;
  if (states === undefined) return;
  if (!(states instanceof Uint8Array) || states.length < count)
    throw new DaxError('EINVAL', `bulkLoad: states must be a Uint8Array of ${count} entry states`);
  for (let i = 0; i < count; i++)
    if (states[i] !== Ew.STATE_VALUE && states[i] !== Ew.STATE_ZERO && states[i] !== Ew.STATE_POISONED)
      throw new DaxError('EINVAL', `bulkLoad: state ${states[i]} of entry ${i} must be value, zero or poisoned`);
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
 * Returns the word where the run of its inner nodes begins (the bump after it when there are
 * none): a tree image (tree-image.ts) walks only that run.
 */
export function bulkLoadLocked(arena: Arena, e: BulkEntries, retire: (node: number, words: number) => void): number {
  const fresh = allocLeaves(arena, e, retire);
  const states = e.states;
  if (states !== undefined) {
    // Plain stores: nothing reads these leaves before the root's release store below.
    const i32 = arena.i32;
    for (let i = 0; i < fresh.length; i++) i32[fresh[i] + Lay.W_ENTRY] = states[i] << Ew.STATE_SHIFT;
  }
  const old = collectOld(arena, retire);
  const leaves = old.length === 0 ? fresh : mergeLeaves(arena, old, fresh);
  const { root, run } = buildInner(arena, leaves);
  const i32 = arena.i32;
  Atomics.store(i32, H_COUNT, leaves.length);
  // Publication: every block above was written with plain stores before this release store.
  Atomics.store(i32, Hw.ROOT, root);
  return run;
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
 * them in address order), written by the addon (addon/bulk-load.h): first every entry's shape
 * is validated and the run sized, then the leaves written, each key's order checked against the
 * previous one (one compare of bytes the copy reads anyway). On a bad order every leaf of the
 * run is retired (never published) and a DaxError ECORRUPT names the entry and the key before
 * it (a bad shape is EINVAL), so the tree is unchanged; recovery then distrusts a checkpoint.
 * Words past the key inside a block are left as they are: nothing reads them.
 */
function allocLeaves(arena: Arena, e: BulkEntries, retire: (node: number, words: number) => void): Int32Array {
  const leaves = new Int32Array(e.count);
  const keys = e.keys;
  const starts = e.starts instanceof Uint32Array ? e.starts : Uint32Array.from(e.starts.slice(0, e.count));
  const lengths = e.lengths instanceof Uint16Array ? e.lengths : Uint16Array.from(e.lengths.slice(0, e.count));
  const values = e.values instanceof Float64Array ? e.values : Float64Array.from(e.values.slice(0, e.count));
  // Shapes the typed copies would change (a start past 2^32, a length past 2^16) are caught here.
  for (let i = 0; i < e.count && starts !== e.starts; i++)
    if (starts[i] !== e.starts[i])
      throw new DaxError('EINVAL', `bulkLoad: ${badEntry(e, i) ?? `key ${i} has start ${e.starts[i]}`}`);
  for (let i = 0; i < e.count && lengths !== e.lengths; i++)
    if (lengths[i] !== e.lengths[i])
      throw new DaxError('EINVAL', `bulkLoad: ${badEntry(e, i) ?? `key ${i} has length ${e.lengths[i]}`}`);
  const m = e.merge;
  const merged = m === undefined ? ([] as []) : ([m.keys, m.starts, m.lengths, m.values, m.tape] as const);
  const total = native().bulkLeaves(arena.sab, 0, keys, starts, lengths, values, e.count, null, ...merged);
  if (total < 0) {
    const i = -total - 1;
    const why =
      m === undefined
        ? badEntry(e, i)
        : `merged entry ${i} has a bad shape, or the tape does not take ${e.count} entries inside its columns`;
    throw new DaxError('EINVAL', `bulkLoad: ${why ?? `entry ${i}`}`);
  }
  if (e.count === 0) return leaves;
  const run = arena.allocRunLocked(total);
  const rc = native().bulkLeaves(arena.sab, run, keys, starts, lengths, values, e.count, leaves, ...merged);
  assert(rc <= 0 && rc !== -22, () => `bulkLeaves: ${rc}`);
  if (rc < 0) {
    const i = -rc - 1;
    // Entry i - 1's leaf is written (entry i's is not): its key names where the order broke.
    const previous = keyHex(arena, leaves[i - 1]);
    const key = m === undefined ? ` (${hex(keys.subarray(starts[i], starts[i] + lengths[i]))})` : '';
    // A merge's entries are not in `lengths`: each leaf's block is the run up to the next (class words).
    for (let j = 0; j < e.count; j++)
      retire(
        leaves[j],
        m === undefined ? leafWords(lengths[j]) : (j + 1 < e.count ? leaves[j + 1] : run + total) - leaves[j],
      );
    throw new DaxError(
      'ECORRUPT',
      `bulkLoad: key ${i}${key} is not greater than key ${i - 1} (${previous}): keys must be sorted and unique`,
    );
  }
  return leaves;
}

/** The inner nodes over `leaves` (sorted, unique) in one run of the arena, written by the addon (addon/bulk-load.h); the root, and where the run begins (the bump when there is none). */
function buildInner(arena: Arena, leaves: Int32Array): { root: number; run: number } {
  if (leaves.length <= 1) return { root: leaves.length === 0 ? 0 : leaves[0], run: arena.i32[H_BUMP] };
  const words = native().bulkInner(arena.sab, leaves, leaves.length, -1);
  if (words === -ENOMEM) throw returnCodeError(words, `bulkLoad: the inner nodes over ${leaves.length} leaves`);
  if (words < 0)
    assert(false, `bulkLoad: the inner nodes over ${leaves.length} leaves: ${words} (keys not sorted and unique?)`);
  const run = arena.allocRunLocked(words);
  const root = native().bulkInner(arena.sab, leaves, leaves.length, run);
  if (root === -ENOMEM) throw returnCodeError(root, `bulkLoad: writing the inner nodes over ${leaves.length} leaves`);
  assert(root > 0, () => `bulkLoad: writing the inner nodes: ${root}`);
  return { root, run };
}

/**
 * The old leaves (few: what the tree held before) merged into the fresh ones (sorted): each
 * old leaf's place found by binary search, the fresh runs between them copied whole.
 */
function mergeLeaves(arena: Arena, old: Int32Array, fresh: Int32Array): Int32Array {
  const out = new Int32Array(old.length + fresh.length);
  let j = 0;
  let k = 0;
  for (const x of old) {
    let lo = j;
    let hi = fresh.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareLeaves(arena, x, fresh[mid]) > 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo < fresh.length && compareLeaves(arena, x, fresh[lo]) === 0)
      assert(false, `bulkLoad: key of leaf ${fresh[lo]} is already in the tree`);
    out.set(fresh.subarray(j, lo), k);
    k += lo - j;
    j = lo;
    out[k++] = x;
  }
  out.set(fresh.subarray(j), k);
  return out;
}

/** A leaf's key in hex (at most 64 bytes shown), for messages. */
function keyHex(arena: Arena, leaf: number): string {
  const at = (leaf + Lay.LEAF_HEADER_WORDS) << 2;
  return hex(arena.u8.subarray(at, at + countOf(arena.i32[leaf])));
}

function hex(key: Uint8Array): string {
  const shown = Buffer.from(key.subarray(0, 64)).toString('hex');
  return key.length > 64 ? `0x${shown}... (${key.length} bytes)` : `0x${shown}`;
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
