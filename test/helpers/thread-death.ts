/**
 * The operations of the thread-death tests (test/kv/kv-thread-death.test.ts), shared by the
 * dying worker (test/workers/kv-dying.ts), the survivor (test/workers/kv-survivor.ts) and the
 * model in the test: op i of a trial is a pure function of (kind, seed, i), so the test can
 * replay what the worker had acknowledged when it died, and the one operation it may have been
 * in the middle of.
 */
import { rng } from './seed.js';
import type { KvStore } from '../../src/kv/store.js';

export const KINDS = [
  'put',
  'large-put',
  'delete',
  'batch',
  'delete-range',
  'compaction',
  'range',
  'read',
  'get-view',
  'tree-growth',
  'snapshot',
  'transaction',
] as const;
export type Kind = (typeof KINDS)[number];

export type Op =
  | { t: 'put'; k: string; v: string }
  | { t: 'del'; k: string }
  | { t: 'batch'; ops: Array<{ type: 'put'; key: string; value: string } | { type: 'del'; key: string }> }
  | { t: 'delRange'; gte: string; lt: string }
  | { t: 'compact' }
  | { t: 'range' }
  | { t: 'snap' }
  | { t: 'txn'; ops: Array<{ type: 'put'; key: string; value: string } | { type: 'del'; key: string }> }
  | { t: 'read'; keys: string[]; views: boolean };

/** The fixed keys every kind works on (the survivor's checks and writes are about them). */
export const KEYS = Array.from({ length: 8 }, (_, i) => `k${i}`);
export const LARGE_BYTES = 20 * 1024;

/** A value that names its writer: torn or foreign bytes cannot pass for it. */
export function valueOf(tag: string, bytes: number): string {
  const head = `${tag}|`;
  let fill = '';
  let h = 0;
  for (let i = 0; i < tag.length; i++) h = (h * 31 + tag.charCodeAt(i)) >>> 0;
  const ch = String.fromCharCode(97 + (h % 26));
  if (bytes > head.length) fill = ch.repeat(bytes - head.length);
  return head + fill;
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}

/** Op i of a dying worker of `kind` in trial `seed`. */
export function opAt(kind: Kind, seed: number, i: number): Op {
  const r = rng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
  const tag = `${seed}:${i}`;
  const small = (k: string): Op => ({ t: 'put', k, v: valueOf(`${tag}:${k}`, 8 + Math.floor(r() * 120)) });
  switch (kind) {
    case 'put':
      return small(pick(r, KEYS));
    case 'large-put':
      return { t: 'put', k: pick(r, KEYS), v: valueOf(`${tag}:L`, LARGE_BYTES + Math.floor(r() * 4096)) };
    case 'delete':
      return i % 2 === 0 ? small(pick(r, KEYS)) : { t: 'del', k: pick(r, KEYS) };
    case 'batch': {
      const keys = [...KEYS].sort(() => r() - 0.5).slice(0, 2 + Math.floor(r() * 3));
      return {
        t: 'batch',
        ops: keys.map((key) =>
          r() < 0.25
            ? { type: 'del' as const, key }
            : {
                type: 'put' as const,
                key,
                value: valueOf(`${tag}:${key}`, r() < 0.15 ? LARGE_BYTES : 8 + Math.floor(r() * 200)),
              },
        ),
      };
    }
    case 'delete-range': {
      if (i % 3 !== 2) return small(pick(r, KEYS));
      const a = Math.floor(r() * KEYS.length);
      const b = Math.min(KEYS.length, a + 1 + Math.floor(r() * 4));
      return { t: 'delRange', gte: KEYS[a], lt: b < KEYS.length ? KEYS[b] : 'l' };
    }
    case 'compaction':
      return i % 24 === 23 ? { t: 'compact' } : { t: 'put', k: pick(r, KEYS), v: valueOf(`${tag}:c`, 3000) };
    case 'range':
      return i % 3 === 0 ? small(pick(r, KEYS)) : { t: 'range' };
    case 'read':
      return i % 3 === 0 ? small(pick(r, KEYS)) : { t: 'read', keys: KEYS, views: false };
    case 'get-view':
      return i % 3 === 0 ? small(pick(r, KEYS)) : { t: 'read', keys: KEYS, views: true };
    case 'snapshot':
      return i % 3 === 0 ? small(pick(r, KEYS)) : { t: 'snap' };
    case 'transaction': {
      const keys = [...KEYS].sort(() => r() - 0.5).slice(0, 2 + Math.floor(r() * 3));
      return {
        t: 'txn',
        ops: keys.map((key) =>
          r() < 0.25
            ? { type: 'del' as const, key }
            : { type: 'put' as const, key, value: valueOf(`${tag}:${key}`, 8 + Math.floor(r() * 200)) },
        ),
      };
    }
    case 'tree-growth':
      if (i % 9 === 8) return { t: 'del', k: `g${seed}-${i - 4}` };
      return { t: 'put', k: `g${seed}-${i}`, v: valueOf(tag, 4 + Math.floor(r() * 12)) };
  }
}

/** The model after op: key -> value. */
export function applyOp(model: Map<string, string>, op: Op): void {
  switch (op.t) {
    case 'put':
      model.set(op.k, op.v);
      return;
    case 'del':
      model.delete(op.k);
      return;
    case 'batch':
    case 'txn':
      for (const o of op.ops) {
        if (o.type === 'put') model.set(o.key, o.value);
        else model.delete(o.key);
      }
      return;
    case 'delRange':
      for (const k of [...model.keys()]) if (k >= op.gte && k < op.lt) model.delete(k);
      return;
    default:
      return;
  }
}

/** The survivor's writes after a death, on the same keys (step `step` of the test). */
export function survivorOps(seed: number, step: number): Op[] {
  const tag = `s${seed}:${step}`;
  const ops: Op[] = KEYS.map((k) => ({ t: 'put', k, v: valueOf(`${tag}:${k}`, 40) }));
  ops.push({ t: 'del', k: KEYS[step % KEYS.length] });
  ops.push({
    t: 'batch',
    ops: [
      { type: 'put', key: KEYS[(step + 1) % KEYS.length], value: valueOf(`${tag}:b`, 60) },
      { type: 'del', key: KEYS[(step + 2) % KEYS.length] },
    ],
  });
  ops.push({ t: 'delRange', gte: KEYS[(step + 3) % KEYS.length], lt: KEYS[((step + 3) % KEYS.length) + 1] ?? 'l' });
  return ops;
}

/** Store content as [key, value] strings in key order (what the model is compared with). */
export function sortedEntries(model: Map<string, string>): Array<[string, string]> {
  return [...model.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Runs op against db (the dying worker's and the survivor's way of applying it). */
export function runOp(db: KvStore, op: Op): void {
  switch (op.t) {
    case 'put':
      db.put(op.k, op.v);
      return;
    case 'del':
      db.delete(op.k);
      return;
    case 'batch':
      db.batch(op.ops);
      return;
    case 'delRange':
      db.deleteRange({ gte: op.gte, lt: op.lt });
      return;
    case 'compact':
      db.compact({ maxLiveRatio: 0.9 });
      return;
    case 'range': {
      let n = 0;
      for (const [k, v] of db.range()) n += k.length + v.length;
      sink ^= n;
      return;
    }
    case 'snap': {
      // Takes a snapshot and a range iterator left unfinished, reads through both, and keeps up
      // to three of each open: a worker that dies holds some (their release is the reaper's).
      const snap = db.snapshot();
      for (const [k, v] of snap.range()) sink ^= k.length + v.length + (snap.get(k)?.length ?? 0);
      const it = db.range()[Symbol.iterator]();
      sink ^= it.next().done === true ? 1 : 0;
      held.push(snap, { close: () => it.return?.() });
      while (held.length > 6) held.shift()!.close();
      return;
    }
    case 'txn':
      db.transactionSync((txn) => {
        for (const o of op.ops) {
          sink ^= txn.get(o.key)?.length ?? 0;
          if (o.type === 'put') txn.put(o.key, o.value);
          else txn.delete(o.key);
        }
      });
      return;
    case 'read':
      db.read(() => {
        for (const k of op.keys) {
          const v = op.views ? db.getView(k) : db.get(k);
          if (v !== undefined) sink ^= v[0] ^ v[v.length - 1];
        }
        for (let i = 0; i < 2000; i++) sink ^= i; // stay pinned a little
      });
      return;
  }
}

let sink = 0;
/** Snapshots and unfinished iterators a 'snap' op keeps open. */
const held: Array<{ close(): unknown }> = [];

/** Everything in the store, as strings in key order. */
export function contentOf(db: KvStore): Array<[string, string]> {
  const td = new TextDecoder();
  const out: Array<[string, string]> = [];
  for (const [k, v] of db.range()) out.push([td.decode(k), td.decode(v)]);
  return out;
}
