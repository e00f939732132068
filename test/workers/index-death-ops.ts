/** The ops of test/index/index-thread-death.test.ts, shared by its workers and its model. */
import type { RadixTree } from '../../src/index/radix-tree.js';
import { clearTagLocked, grab, setTagLocked, unlock } from '../../src/index/entry-lock.js';
import { rng } from '../helpers/seed.js';
import { testKey } from './index-keys.js';
import { Lay } from '../../src/index/nodes.js';
import { Ew } from '../../src/index/entry-word.js';

export const INDEX_DEATH_KEYS = 700;

export type IndexDeathOp = { t: 'insert'; k: number; v: number } | { t: 'delete'; k: number } | { t: 'tag'; k: number };

export function indexDeathOp(seed: number, i: number): IndexDeathOp {
  const r = rng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
  const k = Math.floor(r() * INDEX_DEATH_KEYS);
  const roll = r();
  // Phases of growth and shrinking, so nodes grow to N256 and collapse back.
  const growing = Math.floor(i / 400) % 2 === 0;
  if (roll < (growing ? 0.65 : 0.3)) return { t: 'insert', k, v: 1 + (i % 100000) };
  if (roll < 0.85) return { t: 'delete', k };
  return { t: 'tag', k };
}

export function runIndexDeathOp(tree: RadixTree, seed: number, i: number): void {
  const op = indexDeathOp(seed, i);
  const key = testKey(op.k);
  if (op.t === 'insert') tree.insert(key, op.v);
  else if (op.t === 'delete') tree.delete(key);
  else {
    const ref = grab(tree, key);
    try {
      if (ref.state === 'value') {
        if ((Atomics.load(tree.arena.i32, ref.leaf + Lay.W_ENTRY) & Ew.DIRTY) !== 0) clearTagLocked(tree, ref, 'dirty');
        else setTagLocked(tree, ref, 'dirty');
      }
    } finally {
      unlock(tree, ref);
    }
  }
}

export function applyIndexDeathOp(model: Map<number, number>, seed: number, i: number): void {
  const op = indexDeathOp(seed, i);
  if (op.t === 'insert') model.set(op.k, op.v);
  else if (op.t === 'delete') model.delete(op.k);
}
