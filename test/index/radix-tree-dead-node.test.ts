/**
 * The descent's liveness check, kind by kind: a lock-free reader that reaches a block whose
 * header is not a live node (freed, poisoned, another magic, a type nibble out of range) must
 * restart from the root, never follow the block's words. descendPinned folds this check into
 * its dispatch on (hdr & 0xfff), so each node kind (N4, N16, N32, N48, N256, leaf) and each
 * kind of dead header is tried on the path of a key: the lookup keeps restarting until the
 * reader's restart bound trips (the assertion that reports broken epoch protection), and the
 * same lookup succeeds once the header is restored. Deterministic: no seed.
 */
import { test, expect } from 'vitest';
import { EpochDomain } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { FREED_HEADER, POISON_WORD, Hw } from '../../src/index/arena.js';
import { bodyOffset, findChild, typeOf, Lay } from '../../src/index/nodes.js';

function key(...bytes: number[]): Uint8Array {
  const k = new Uint8Array(8);
  k.set(bytes);
  return k;
}

/** Nodes (word offsets) on the path of `k`, root first, leaf last, with their types. */
function pathOf(tree: RadixTree, k: Uint8Array): { node: number; type: number }[] {
  const { i32, u8 } = tree.arena;
  const path: { node: number; type: number }[] = [];
  let node = i32[Hw.ROOT];
  let depth = 0;
  while (node !== 0) {
    const hdr = i32[node];
    path.push({ node, type: typeOf(hdr) });
    if (typeOf(hdr) === Lay.LEAF) break;
    const plen = i32[node + Lay.W_PREFIX_LEN];
    depth += plen;
    node = findChild(i32, u8, hdr, bodyOffset(node, plen), k[depth++]);
  }
  return path;
}

test('a descent that meets a dead header at any node kind restarts instead of following it', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  // Root: 60 first bytes (N256). Below 0: 3 children (N4), 1: 10 (N16), 2: 20 (N32),
  // 3: 40 (N48); below 4 a shared prefix (7, 7) before the branch (N4 with a prefix).
  const fanout = [3, 10, 20, 40];
  let value = 1;
  for (let b0 = 0; b0 < 60; b0++) {
    const n = b0 < 4 ? fanout[b0] : 1;
    for (let b1 = 0; b1 < n; b1++) tree.insert(key(b0, b1), value++);
  }
  tree.insert(key(4, 7, 7, 1), value++);
  tree.insert(key(4, 7, 7, 2), value++);
  const probes = [key(0, 2), key(1, 9), key(2, 19), key(3, 39), key(4, 7, 7, 2)];
  const seen = new Set<number>();
  const { i32 } = tree.arena;
  for (const k of probes) {
    const expected = tree.lookup(k);
    expect(expected).toBeGreaterThan(0);
    for (const { node, type } of pathOf(tree, k)) {
      seen.add(type);
      const hdr = i32[node];
      const dead = [
        FREED_HEADER,
        POISON_WORD,
        (hdr & ~0xff) | 0x5a,
        hdr & ~0xf00,
        (hdr & ~0xf00) | (7 << 8),
        (hdr & ~0xf00) | (15 << 8),
      ];
      for (const bad of dead) {
        const restartsBefore = tree.stats().restarts;
        i32[node] = bad;
        expect(() => tree.lookup(k), `type ${type} header ${bad.toString(16)}`).toThrow(/reaching freed nodes/);
        i32[node] = hdr;
        expect(tree.stats().restarts - restartsBefore).toBeGreaterThan(1000);
        expect(tree.lookup(k)).toBe(expected);
      }
    }
  }
  expect([...seen].sort()).toEqual([Lay.LEAF, Lay.N4, Lay.N16, Lay.N32, Lay.N48, Lay.N256].sort());
  epoch.close();
});
