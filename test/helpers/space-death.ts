/**
 * The operations of test/kv/kv-space-death.test.ts, shared by the dying worker
 * (test/workers/kv-space-dying.ts) and the model in the test: op i of a trial is a pure
 * function of (keys, seed, i), so the test can replay what the worker had acknowledged when it
 * died, and the one operation it may have been in the middle of. Every op frees space or moves
 * it: in a full store they all run through the priority writer (deletes that find no segment of
 * their own, and every compaction).
 */
import { rng } from './seed.js';
import type { Op } from './thread-death.js';

/** Op i of a dying worker of trial `seed`, over `keys` (the store's keys when it started, sorted). */
export function spaceOpAt(keys: readonly string[], seed: number, i: number): Op {
  const r = rng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
  const at = Math.floor(r() * keys.length);
  const pick = (): string => keys[Math.floor(r() * keys.length)];
  const how = r();
  if (how < 0.1) return { t: 'compact' };
  if (how < 0.5) return { t: 'del', k: pick() };
  if (how < 0.75) {
    const n = 2 + Math.floor(r() * 6);
    return { t: 'batch', ops: Array.from({ length: n }, () => ({ type: 'del' as const, key: pick() })) };
  }
  const last = keys[Math.min(keys.length - 1, at + 1 + Math.floor(r() * 8))];
  return { t: 'delRange', gte: keys[at], lt: last > keys[at] ? last : `${keys[at]}~` };
}

/** Value of the n-th key a fill of trial `tag` puts: names its key, 40-340 bytes. */
export function fillValue(key: string, n: number): string {
  const body = `${key}|${n}|`;
  const length = 40 + (((n * 2654435761) >>> 0) % 300);
  return body + 'v'.repeat(Math.max(0, length - body.length));
}
