/**
 * Repair of a radix tree after a treeLock holder died inside a structural step
 * (docs/ARCHITECTURE.md "Thread death"). Runs under treeLock, taken over from the dead holder
 * (tree-lock.ts), before the new holder relies on anything the dead one may have touched.
 *
 * What a step cut short can leave, and why that is all (radix-tree.ts, nodes.ts):
 *   - Every node a reader can reach is published by ONE store of its parent's slot (or of an
 *     in-place child word), after the node is complete; retirement follows publication. So a
 *     death leaves at most unreachable blocks (allocated and never published, or unlinked and
 *     not yet retired): garbage, never a reachable half-built or retired node.
 *   - In-place steps publish with their first store and fix bookkeeping after it: an N4/16/32
 *     append (child word, key byte, then the count: a byte and child past the count are
 *     ignored by readers), an N48 add (child slot, index byte, count: a child slot no index
 *     byte names is unreachable, but it is no longer free), an N256 fill or clear (slot, then
 *     count), the tag counts of an insert, a removal or a tag change (leaf bit, then each
 *     inner node on the path), H_COUNT, and the arena growth (memory, then H_BYTES).
 * The repair walks the whole tree once and recomputes that bookkeeping: each N48/N256 count
 * from its slots, N48 child slots no index byte names cleared, N4/16/32 slots past the count
 * cleared, tag counts from the leaves, H_COUNT, H_BYTES; and bumps the structure version so no
 * descent hint taken before the death is trusted (radix-tree.ts getOrCreateLocked).
 * Readers never depend on those counts (findChild reads N48/N256 slots directly), so the
 * corrections are plain Atomics stores under lock-free readers.
 */
import { H_BYTES, H_COUNT, H_VERSION, Hw } from './arena.js';
import { Ew } from './entry-word.js';
import { Lay, bodyOffset, capacityOf, countOf, header, isLive, typeOf } from './nodes.js';
import type { RadixTree } from './radix-tree.js';

/** Repairs were run in this thread (tests). */
export const treeRepairStats = { repairs: 0 };

export function repairTreeLocked(tree: RadixTree): void {
  const arena = tree.arena;
  const bytes = arena.memory.buffer.byteLength;
  if (Atomics.load(arena.i32, H_BYTES) !== (bytes | 0)) Atomics.store(arena.i32, H_BYTES, bytes | 0);
  arena.refresh();
  const i32 = arena.i32;
  const root = i32[Hw.ROOT];
  const counts = { leaves: 0 };
  if (root !== 0) repairNode(tree, root, counts);
  Atomics.store(i32, H_COUNT, counts.leaves);
  Atomics.store(i32, H_VERSION, (i32[H_VERSION] + 1) | 0);
  treeRepairStats.repairs++;
}

/** Returns the Ew.DIRTY and Ew.TOWRITE leaves below node (as dirty + towrite * 2^20). */
function repairNode(tree: RadixTree, node: number, counts: { leaves: number }): number {
  const i32 = tree.arena.i32;
  const hdr = i32[node];
  if (!isLive(hdr)) return 0; // cannot happen (see the header); never follow a dead block
  if (typeOf(hdr) === Lay.LEAF) {
    counts.leaves++;
    const e = i32[node + Lay.W_ENTRY];
    return ((e & Ew.DIRTY) !== 0 ? 1 : 0) + ((e & Ew.TOWRITE) !== 0 ? TOWRITE_UNIT : 0);
  }
  const type = typeOf(hdr);
  const body = bodyOffset(node, i32[node + Lay.W_PREFIX_LEN]);
  let tags = 0;
  const end = i32[node + Lay.W_END_LEAF];
  if (end !== 0) tags += repairNode(tree, end, counts);
  let count = 0;
  if (type === Lay.N256) {
    for (let b = 0; b < 256; b++) {
      const child = i32[body + b];
      if (child === 0) continue;
      count++;
      tags += repairNode(tree, child, counts);
    }
  } else if (type === Lay.N48) {
    const u8 = tree.arena.u8;
    const named = new Uint8Array(48);
    for (let b = 0; b < 256; b++) {
      const slot = u8[(body << 2) + b];
      if (slot === 0) continue;
      named[slot - 1] = 1;
      const child = i32[body + 64 + slot - 1];
      if (child === 0) continue;
      count++;
      tags += repairNode(tree, child, counts);
    }
    for (let s = 0; s < 48; s++) if (named[s] === 0 && i32[body + 64 + s] !== 0) Atomics.store(i32, body + 64 + s, 0);
  } else {
    count = countOf(hdr);
    const cap = capacityOf(type);
    const u8 = tree.arena.u8;
    for (let i = 0; i < count; i++) tags += repairNode(tree, i32[body + (cap >> 2) + i], counts);
    for (let i = count; i < cap; i++) {
      if (i32[body + (cap >> 2) + i] !== 0) Atomics.store(i32, body + (cap >> 2) + i, 0);
      if (u8[(body << 2) + i] !== 0) Atomics.store(u8, (body << 2) + i, 0);
    }
  }
  if (countOf(hdr) !== count) Atomics.store(i32, node, header(type, count));
  const dirty = tags % TOWRITE_UNIT;
  const towrite = Math.floor(tags / TOWRITE_UNIT);
  if (i32[node + Lay.W_DIRTY] !== dirty) Atomics.store(i32, node + Lay.W_DIRTY, dirty);
  if (i32[node + Lay.W_TOWRITE] !== towrite) Atomics.store(i32, node + Lay.W_TOWRITE, towrite);
  return tags;
}

const TOWRITE_UNIT = 2 ** 26;

/**
 * Every leaf reachable from the root, including EMPTY placeholders, with its entry word.
 * Caller holds treeLock (nothing moves meanwhile).
 */
export function forEachLeafLocked(tree: RadixTree, fn: (leaf: number, entry: number) => void): void {
  const i32 = tree.arena.i32;
  const stack: number[] = [];
  const root = i32[Hw.ROOT];
  if (root !== 0) stack.push(root);
  while (stack.length > 0) {
    const node = stack.pop()!;
    const hdr = i32[node];
    if (!isLive(hdr)) continue;
    const type = typeOf(hdr);
    if (type === Lay.LEAF) {
      fn(node, i32[node + Lay.W_ENTRY]);
      continue;
    }
    const body = bodyOffset(node, i32[node + Lay.W_PREFIX_LEN]);
    const end = i32[node + Lay.W_END_LEAF];
    if (end !== 0) stack.push(end);
    if (type === Lay.N256) {
      for (let b = 0; b < 256; b++) if (i32[body + b] !== 0) stack.push(i32[body + b]);
    } else if (type === Lay.N48) {
      const u8 = tree.arena.u8;
      for (let b = 0; b < 256; b++) {
        const slot = u8[(body << 2) + b];
        if (slot !== 0 && i32[body + 64 + slot - 1] !== 0) stack.push(i32[body + 64 + slot - 1]);
      }
    } else {
      const cap = capacityOf(type);
      for (let i = 0; i < countOf(hdr); i++) stack.push(i32[body + (cap >> 2) + i]);
    }
  }
}
