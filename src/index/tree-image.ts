/**
 * Tree images: a radix tree written as its blocks back to back, so that a later process loads
 * it with one copy instead of building it key by key (an index checkpoint carries one:
 * src/kv/checkpoint.ts). `buildTreeImage` bulk-loads sorted entries into a scratch arena of
 * their own (bulk-load.ts: the leaves in one run, then the inner nodes in the next), so the
 * image is exactly those runs: every block its size class's full size, every leaf's entry
 * word 0 (no lock, no owner, no tags), nothing per-process in it. A lead the caller asks for is
 * reserved right before the leaves (an index checkpoint lays out its other parts there, and
 * writes the lead and the image out as one buffer). Pointers in it (children,
 * endLeaf) are word offsets counted from `origin`, the word where the image's first block was
 * built; `loadImageLocked` copies the image into a run of a live arena and moves every pointer
 * by the run's distance from `origin` (addon/bulk-load.h JsLoadTreeImage: the leaves, which hold
 * no pointer, in one copy; then the inner nodes, each checked to be a live inner node whose
 * pointers land inside the image), then grafts the image's root into the tree beside the keys
 * already there. The image's owner (a checkpoint) vouches for its bytes with its checksum; the
 * leaves are not walked (a walk of a million leaves cost more than their copy).
 *
 * Invariants
 *   - An image's keys share no first byte with the keys already in the tree it is loaded into
 *     (checked before anything changes: the index checkpoint's keys all begin with
 *     KV_KEY_PREFIX, the space's page keys with 0).
 *   - After a load the tree holds the old keys and the image's, with the invariants bulk-load.ts
 *     states: the root the image's own (an empty tree) or a new prefix-less node branching on the
 *     first byte over the old tree's top and the image's top (a top node whose compressed path
 *     begins with that byte is copied without it), H_COUNT the leaves reachable, tag counts the
 *     sums below.
 *
 * Concurrency: as the bulk load: the caller holds treeLock on a tree never shared; the root is
 * published with one Atomics.store. Nodes replaced by the graft are retired through the epoch.
 *
 * Persistence ordering: none (the image's durability is its checkpoint's).
 */
import { assert } from '../assert.js';
import { native } from '../native/addon.js';
import { Arena, H_BUMP, H_COUNT, HEADER_WORDS, Hw } from './arena.js';
import { type BulkEntries, bulkLoadLocked } from './bulk-load.js';
import { Ew } from './entry-word.js';
import { countOf, fillInner, gatherChildren, innerWords, isLive, typeForCount, typeOf, Lay } from './nodes.js';

/** A tree's blocks back to back: `words` words of `bytes`, pointers counted from `origin`. */
export interface TreeImage {
  /** the blocks (4-byte aligned), at least words * 4 bytes */
  readonly bytes: Uint8Array;
  readonly words: number;
  /** the word the image's first block was built at: pointers are in [origin, origin + words) */
  readonly origin: number;
  /** the root's word (in [origin, origin + words)), 0 for an empty tree */
  readonly root: number;
  /** the word (counted from the image's first) where its inner nodes begin: the leaves lie before it */
  readonly inner: number;
  /** the leaves in it */
  readonly leaves: number;
}

/**
 * The image of the tree of `entries` (sorted, unique; bulk-load.ts checks them), built in a
 * scratch arena of its own; `bytes` is a view of that arena's memory. `leadBytes` (a multiple
 * of 8) are reserved right before the image in the same memory, 8-byte aligned: `whole` views
 * them and the image together, so a caller can write its own header there and hand out both
 * without copying the image (an index checkpoint does).
 */
export function buildTreeImage(
  entries: BulkEntries,
  keyBytes: number,
  leadBytes = 0,
): TreeImage & { readonly whole: Uint8Array } {
  assert(leadBytes % 8 === 0, () => `tree image: ${leadBytes} lead bytes, not a multiple of 8`);
  let initialBytes = Math.ceil((entries.count * (Lay.LEAF_HEADER_WORDS * 4 + 8) + keyBytes) * 1.3) + leadBytes;
  for (;;) {
    const arena = Arena.create(0, { initialBytes: initialBytes + (1 << 20), maxBytes: IMAGE_MAX_BYTES });
    if (HEADER_WORDS % 2 !== 0) arena.allocRunLocked(1); // the lead 8-byte aligned
    const first = arena.allocRunLocked(leadBytes / 4) + leadBytes / 4; // the image right after the lead
    const memoryBytes = arena.u8.length;
    // Keys out of order throw (bulk-load.ts checks each against the one before it): no image.
    // What that retires first is the scratch arena's, dropped with it.
    const inner = bulkLoadLocked(arena, entries, () => {});
    // Grown meanwhile: a run that would have straddled the old end was placed after it, so the
    // leaves may not follow the lead. Built again in a memory twice the size.
    if (arena.u8.length !== memoryBytes) {
      initialBytes = arena.u8.length * 2;
      continue;
    }
    const words = arena.i32[H_BUMP] - first;
    return {
      bytes: new Uint8Array(arena.sab, first * 4, words * 4),
      whole: new Uint8Array(arena.sab, (first - leadBytes / 4) * 4, leadBytes + words * 4),
      words,
      origin: first,
      inner: inner - first,
      root: arena.i32[Hw.ROOT],
      leaves: arena.i32[H_COUNT],
    };
  }
}

const IMAGE_MAX_BYTES = 4 * 1024 * 1024 * 1024 - 65536;

/**
 * A tail merged over the image's keys (an index checkpoint's and the log written after it:
 * src/kv/recovery.ts), applied to the image's leaves as they are copied in (addon/bulk-load.h
 * JsPatchImageLeaves): each key the tail replaces gets the tail's value in its leaf; the keys
 * the tail adds or removes are listed in `added` and `removed` for the caller to make through
 * the tree after the load.
 */
export interface ImageTail {
  /** where each of the image's keys lies in its bytes (the checkpoint's columns: leafKeyStarts), one per key */
  readonly starts: Uint32Array;
  /** the tail's winners' values, one per winner */
  readonly values: Float64Array;
  /** the merge's tape over the image's keys (a) and the tail's winners (b) */
  readonly tape: Uint32Array;
  /** filled by the load: the tail's winners whose keys the image lacks (b's index), as many as the merge added */
  readonly added: Int32Array;
  /** filled by the load: the image's keys a winning DEL removes (a's index), as many as the merge removed */
  readonly removed: Int32Array;
  /** false only under the switch kv-checkpoint-tail-unpatched: the replaced values are not written */
  readonly write: boolean;
}

/**
 * Loads `image` into the tree of `arena` beside the keys already there and publishes the
 * root. Caller holds treeLock; the tree was never shared; `retire` hands a replaced node to
 * the epoch. With `tail`, its replaced values are written into the copied leaves before the
 * root is published, and its added and removed keys listed in it. false (nothing reachable
 * changed; the run copied into stays allocated, unused) when the image is not a well-formed
 * tree whose first bytes the tree's keys leave free, or `tail` does not fit its leaves.
 * `confirm`, when given, is asked once the image is copied (and patched) and before anything
 * is grafted: false (the caller's own check of what the image stands for failed) gives the run
 * back (Arena.releaseRunLocked) and returns false, nothing reachable changed. `reserved`: a run
 * of exactly image.words words the caller allocated for it (RadixTree.reserveRun), used instead
 * of a fresh one (and given back, or left unused, as that one would be).
 */
export function loadImageLocked(
  arena: Arena,
  image: TreeImage,
  retire: (node: number, words: number) => void,
  tail?: ImageTail,
  confirm?: () => boolean,
  reserved?: number,
): boolean {
  if (image.words === 0) return image.leaves === 0 && image.root === 0 && tail === undefined; // a tail: bulk-loaded
  if (image.root < image.origin || image.root >= image.origin + image.words) return false;
  const run = reserved ?? arena.allocRunLocked(image.words);
  if (native().loadTreeImage(arena.sab, run, image.bytes, image.words, image.origin, image.inner) < 0) return false;
  if (
    tail !== undefined &&
    native().patchImageLeaves(
      arena.sab,
      run,
      image.inner,
      tail.starts,
      tail.values,
      tail.tape,
      tail.added,
      tail.removed,
      tail.write,
    ) < 0
  )
    return false;
  const top = image.root - image.origin + run;
  if (!isLive(arena.i32[top])) return false;
  if (confirm !== undefined && !confirm()) {
    arena.releaseRunLocked(run, image.words);
    return false;
  }
  const old = arena.i32[Hw.ROOT];
  let root = top;
  if (old !== 0) {
    const got = graftLocked(arena, old, top, retire);
    if (got === 0) return false;
    root = got;
  }
  const i32 = arena.i32;
  Atomics.store(i32, H_COUNT, i32[H_COUNT] + image.leaves);
  // Publication: every block above was written with plain stores before this release store.
  Atomics.store(i32, Hw.ROOT, root);
  return true;
}

/**
 * A prefix-less node over the first bytes of the trees at `a` and `b` (each a leaf or inner
 * node whose keys start at depth 0), or 0 when they share a first byte (or either holds the
 * empty key) and nothing was changed.
 */
function graftLocked(arena: Arena, a: number, b: number, retire: (node: number, words: number) => void): number {
  const bytes: number[] = [];
  const kids: number[] = [];
  const tops = [a, b];
  for (const t of tops) if (!firstBytes(arena, t, bytes)) return 0;
  if (new Set(bytes).size !== bytes.length || bytes.length > 256) return 0;
  bytes.length = 0;
  let dirty = 0;
  let towrite = 0;
  for (const t of tops) {
    const i32 = arena.i32;
    const hdr = i32[t];
    if (typeOf(hdr) === Lay.LEAF) {
      bytes.push(arena.u8[(t + Lay.LEAF_HEADER_WORDS) << 2]);
      kids.push(t);
      const entry = i32[t + Lay.W_ENTRY];
      dirty += (entry & Ew.DIRTY) !== 0 ? 1 : 0;
      towrite += (entry & Ew.TOWRITE) !== 0 ? 1 : 0;
      continue;
    }
    dirty += i32[t + Lay.W_DIRTY];
    towrite += i32[t + Lay.W_TOWRITE];
    const prefixLen = i32[t + Lay.W_PREFIX_LEN];
    if (prefixLen === 0) {
      // its children become the new root's (its endLeaf is 0: firstBytes)
      const b8 = new Uint8Array(256);
      const k32 = new Int32Array(256);
      const n = gatherChildren(i32, arena.u8, t, b8, k32);
      for (let i = 0; i < n; i++) {
        bytes.push(b8[i]);
        kids.push(k32[i]);
      }
      retire(t, innerWords(typeOf(hdr), 0));
    } else {
      bytes.push(arena.u8[(t + Lay.INNER_HEADER_WORDS) << 2]);
      kids.push(withoutFirstByte(arena, t, retire));
    }
  }
  const order = bytes.map((_, i) => i).sort((x, y) => bytes[x] - bytes[y]);
  const n = order.length;
  const type = typeForCount(n);
  const node = arena.allocLocked(innerWords(type, 0));
  fillInner(
    arena.i32,
    arena.u8,
    node,
    type,
    arena.u8,
    0,
    0,
    n,
    Uint8Array.from(order, (i) => bytes[i]),
    Int32Array.from(order, (i) => kids[i]),
    0,
    dirty,
    towrite,
  );
  return node;
}

/** Pushes the first bytes of the keys below `node` to `out`; false when one is the empty key. */
function firstBytes(arena: Arena, node: number, out: number[]): boolean {
  const { i32, u8 } = arena;
  const hdr = i32[node];
  if (typeOf(hdr) === Lay.LEAF) {
    if (countOf(hdr) === 0) return false;
    out.push(u8[(node + Lay.LEAF_HEADER_WORDS) << 2]);
    return true;
  }
  if (i32[node + Lay.W_PREFIX_LEN] > 0) {
    out.push(u8[(node + Lay.INNER_HEADER_WORDS) << 2]);
    return true;
  }
  if (i32[node + Lay.W_END_LEAF] !== 0) return false;
  const b8 = new Uint8Array(256);
  const n = gatherChildren(i32, u8, node, b8, new Int32Array(256));
  for (let i = 0; i < n; i++) out.push(b8[i]);
  return true;
}

/** A copy of inner node `node` whose compressed path lacks its first byte (one level deeper); the old one retired. */
function withoutFirstByte(arena: Arena, node: number, retire: (node: number, words: number) => void): number {
  const i32 = arena.i32;
  const hdr = i32[node];
  const type = typeOf(hdr);
  const prefixLen = i32[node + Lay.W_PREFIX_LEN];
  const b8 = new Uint8Array(256);
  const k32 = new Int32Array(256);
  const n = gatherChildren(i32, arena.u8, node, b8, k32);
  const copy = arena.allocLocked(innerWords(type, prefixLen - 1));
  const u8 = arena.u8; // after the allocation (it may grow the memory)
  fillInner(
    arena.i32,
    u8,
    copy,
    type,
    u8,
    ((node + Lay.INNER_HEADER_WORDS) << 2) + 1,
    prefixLen - 1,
    n,
    b8,
    k32,
    arena.i32[node + Lay.W_END_LEAF],
    arena.i32[node + Lay.W_DIRTY],
    arena.i32[node + Lay.W_TOWRITE],
  );
  retire(node, innerWords(type, prefixLen));
  return copy;
}
