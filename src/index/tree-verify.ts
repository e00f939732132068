/**
 * verifyTree: a full structural check of a radix tree for tests and debugging (the
 * xarray test suite's xa_dump/check). Walks every node under treeLock and asserts the
 * invariants radix-tree.ts and nodes.ts state: live headers, sorted and consistent children,
 * at least two items per inner node, keys in order, tag counts equal to the tagged leaves
 * below, multi-order coverage, H_COUNT equal to the leaves reachable.
 */
import { assert } from '../assert.js';
import { H_COUNT, Hw } from './arena.js';
import { orderOf, Ew } from './entry-word.js';
import { countOf, gatherChildren, isLive, typeOf, Lay } from './nodes.js';
import type { RadixTree } from './radix-tree.js';

export interface TreeShape {
  leaves: number;
  innerNodes: number;
  maxDepth: number;
  /** inner nodes by type name (N4, N16, N32, N48, N256) */
  types: Record<string, number>;
}

const TYPE_NAMES = ['', 'LEAF', 'N4', 'N16', 'N32', 'N48', 'N256'];

export function verifyTree(tree: RadixTree): TreeShape {
  tree.lockTree();
  try {
    const shape: TreeShape = { leaves: 0, innerNodes: 0, maxDepth: 0, types: {} };
    const keys: Uint8Array[] = [];
    const root = tree.arena.i32[Hw.ROOT];
    if (root !== 0) walk(tree, root, [], 1, shape, keys);
    assert(
      tree.arena.i32[H_COUNT] === shape.leaves,
      () => `verify: H_COUNT ${tree.arena.i32[H_COUNT]} but ${shape.leaves} leaves`,
    );
    for (let i = 1; i < keys.length; i++)
      assert(Buffer.compare(keys[i - 1], keys[i]) < 0, `verify: keys out of order at ${i}`);
    checkMultiOrder(tree, keys);
    return shape;
  } finally {
    tree.unlockTree();
  }
}

/** Returns [dirty, towrite] leaves below `node`; `path` is the key prefix that reaches it. */
function walk(
  tree: RadixTree,
  node: number,
  path: number[],
  level: number,
  shape: TreeShape,
  keys: Uint8Array[],
): [number, number] {
  const { i32, u8 } = tree.arena;
  const hdr = i32[node];
  assert(isLive(hdr), () => `verify: dead node ${node} reachable`);
  shape.maxDepth = Math.max(shape.maxDepth, level);
  if (typeOf(hdr) === Lay.LEAF) {
    const len = countOf(hdr);
    const kb = (node + Lay.LEAF_HEADER_WORDS) << 2;
    const key = u8.slice(kb, kb + len);
    for (let i = 0; i < path.length; i++)
      assert(key[i] === path[i], () => `verify: leaf ${node} key does not extend its path`);
    keys.push(key);
    shape.leaves++;
    const e = i32[node + Lay.W_ENTRY];
    return [(e & Ew.DIRTY) !== 0 ? 1 : 0, (e & Ew.TOWRITE) !== 0 ? 1 : 0];
  }
  shape.innerNodes++;
  const name = TYPE_NAMES[typeOf(hdr)];
  shape.types[name] = (shape.types[name] ?? 0) + 1;
  const plen = i32[node + Lay.W_PREFIX_LEN];
  const pb = (node + Lay.INNER_HEADER_WORDS) << 2;
  const here = [...path];
  for (let i = 0; i < plen; i++) here.push(u8[pb + i]);
  const bytes = new Uint8Array(257);
  const kids = new Int32Array(257);
  const n = gatherChildren(i32, u8, node, bytes, kids);
  const end = i32[node + Lay.W_END_LEAF];
  assert(
    n + (end !== 0 ? 1 : 0) >= 2,
    () => `verify: inner node ${node} has ${n} children and ${end !== 0 ? 1 : 0} end leaf`,
  );
  let dirty = 0;
  let towrite = 0;
  if (end !== 0) {
    assert(
      typeOf(i32[end]) === Lay.LEAF && countOf(i32[end]) === here.length,
      () => `verify: end leaf of ${node} has the wrong length`,
    );
    [dirty, towrite] = walk(tree, end, here, level + 1, shape, keys);
  }
  for (let i = 0; i < n; i++) {
    if (i > 0) assert(bytes[i - 1] < bytes[i], () => `verify: children of ${node} not sorted`);
    const [d, t] = walk(tree, kids[i], [...here, bytes[i]], level + 1, shape, keys);
    dirty += d;
    towrite += t;
  }
  assert(
    i32[node + Lay.W_DIRTY] === dirty,
    () => `verify: node ${node} DIRTY count ${i32[node + Lay.W_DIRTY]}, leaves ${dirty}`,
  );
  assert(
    i32[node + Lay.W_TOWRITE] === towrite,
    () => `verify: node ${node} TOWRITE count ${i32[node + Lay.W_TOWRITE]}, leaves ${towrite}`,
  );
  return [dirty, towrite];
}

function checkMultiOrder(tree: RadixTree, keys: Uint8Array[]): void {
  tree.epoch.pin();
  try {
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const leaf = tree.findLeafPinned(k);
      if (orderOf(tree.arena.i32[leaf + Lay.W_ENTRY]) !== 9) continue;
      assert(k.length === 8 && k[7] === 0 && (k[6] & 1) === 0, 'verify: huge entry at an unaligned key');
      const next = keys[i + 1];
      if (next === undefined || next.length !== 8) continue;
      const sameBlock = Buffer.compare(next.subarray(0, 6), k.subarray(0, 6)) === 0 && (next[6] & 0xfe) === k[6];
      assert(!sameBlock, () => `verify: key ${Buffer.from(next).toString('hex')} inside a huge entry`);
    }
  } finally {
    tree.epoch.unpin();
  }
}
