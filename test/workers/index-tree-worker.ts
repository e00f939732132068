/**
 * Worker side of the multi-worker index tests (test/index/*-workers.test.ts). Attaches to
 * the tree and epoch domain posted in workerData and runs one scenario (`mode`), then posts
 * its result. Runs from dist/ (compile first).
 *
 * Control words (Int32Array over workerData.control):
 *   0 stop flag · 2 max threads seen inside one key's critical section · 3 ready count
 *   4 start flag · 5 torn or impossible values seen by readers · 8+k threads inside key k's
 *   critical section
 */
import { workerData, parentPort } from 'node:worker_threads';
import { EpochDomain, type EpochHandle } from '../../src/index/epoch.js';
import { RadixTree, type RadixTreeHandle } from '../../src/index/radix-tree.js';
import { deleteLocked, grab, replace, tryGrab, unlock, waitUnlocked } from '../../src/index/entry-lock.js';
import { testKey } from './index-keys.js';
import { rng } from '../helpers/seed.js';

export interface TreeWorkerData {
  mode:
    | 'mixed'
    | 'mutex'
    | 'contend'
    | 'grab-once'
    | 'reader'
    | 'writer'
    | 'check-all'
    | 'wait-unlocked'
    | 'hold'
    | 'appender'
    | 'append-reader'
    | 'seqlock-writer'
    | 'seqlock-inserter'
    | 'seqlock-reader';
  tree: RadixTreeHandle;
  epoch: EpochHandle;
  control: SharedArrayBuffer;
  seed: number;
  ops: number;
  keys: number;
  holdSpins?: number;
}

const C_STOP = 0;
const C_INSIDE = 8; // + key number
const C_MAX_INSIDE = 2;
const C_READY = 3;
const C_START = 4;
const C_BAD_READS = 5;

const data = workerData as TreeWorkerData;
const epoch = EpochDomain.attach(data.epoch);
const tree = RadixTree.attach(data.tree, epoch);
const control = new Int32Array(data.control);

const random = rng(data.seed);

function spin(n: number): void {
  let x = 0;
  for (let i = 0; i < n; i++) x += i;
  if (x < 0) throw new Error('unreachable');
}

function waitStart(): void {
  Atomics.add(control, C_READY, 1);
  while (Atomics.load(control, C_START) === 0) Atomics.wait(control, C_START, 0, 5);
}

/** Counter increments and deletes on overlapping keys; the main thread checks the sums. */
function mixed(): unknown {
  const incs = new Array<number>(data.keys).fill(0);
  const deleted = new Array<number>(data.keys).fill(0);
  waitStart();
  for (let n = 0; n < data.ops; n++) {
    const k = Math.floor(random() * data.keys);
    const key = testKey(k);
    const r = random();
    if (r < 0.65) {
      const ref = r < 0.1 ? tryGrab(tree, key) : grab(tree, key);
      if (ref === undefined) continue;
      replace(tree, ref, (ref.state === 'empty' ? 0 : ref.value) + 1);
      incs[k]++;
      unlock(tree, ref);
    } else if (r < 0.75) {
      const ref = grab(tree, key);
      if (ref.state !== 'empty') {
        deleted[k] += ref.value;
        deleteLocked(tree, ref);
      } else unlock(tree, ref);
    } else if (r < 0.9) {
      const v = tree.lookup(key);
      if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v <= data.ops * 8))
        Atomics.add(control, C_BAD_READS, 1);
    } else {
      let prev: Uint8Array | undefined;
      for (const [key2] of tree.range({ limit: 20 })) {
        if (prev !== undefined && Buffer.compare(prev, key2) >= 0) Atomics.add(control, C_BAD_READS, 1);
        prev = key2;
      }
    }
  }
  return { incs, deleted };
}

/** Critical sections under an entry lock: the inside counter must never exceed 1. */
function mutex(): unknown {
  waitStart();
  for (let n = 0; n < data.ops; n++) {
    const k = Math.floor(random() * data.keys);
    const ref = grab(tree, testKey(k));
    const inside = Atomics.add(control, C_INSIDE + k, 1) + 1;
    if (inside > Atomics.load(control, C_MAX_INSIDE)) Atomics.store(control, C_MAX_INSIDE, inside);
    spin(data.holdSpins ?? 2000);
    Atomics.sub(control, C_INSIDE + k, 1);
    replace(tree, ref, n);
    unlock(tree, ref);
  }
  return {};
}

/** Many threads on ONE entry: each grab must come back within a bound (no lost wake-ups). */
function contend(): unknown {
  const key = testKey(0);
  let worstMs = 0;
  waitStart();
  for (let n = 0; n < data.ops; n++) {
    const t0 = performance.now();
    const ref = grab(tree, key);
    worstMs = Math.max(worstMs, performance.now() - t0);
    spin(data.holdSpins ?? 500);
    replace(tree, ref, n);
    unlock(tree, ref);
  }
  return { worstMs };
}

/** Block on one grab (the main thread holds the entry), report how long it took. */
function grabOnce(): unknown {
  const key = testKey(0);
  Atomics.add(control, C_READY, 1);
  const t0 = performance.now();
  const ref = grab(tree, key);
  const ms = performance.now() - t0;
  const state = ref.state;
  unlock(tree, ref);
  return { ms, state };
}

/** Hold key 0 until the stop flag is set, then store 42 and unlock. */
function hold(): unknown {
  const ref = grab(tree, testKey(0));
  Atomics.add(control, C_READY, 1);
  while (Atomics.load(control, C_STOP) === 0) Atomics.wait(control, C_STOP, 0, 50);
  replace(tree, ref, 42);
  unlock(tree, ref);
  return {};
}

/** Reverse-map style: wait (shared) until the entry is unlocked, without taking it. */
function waitUnlockedOnce(): unknown {
  Atomics.add(control, C_READY, 1);
  const t0 = performance.now();
  waitUnlocked(tree, testKey(0));
  return { ms: performance.now() - t0, state: 'unlocked' };
}

const MANY = 12;
const manyAt: number[] = new Array<number>(MANY).fill(0);
const manyValues = new Float64Array(MANY);

/** Values are key-derived (see writer), so any other value is a torn or reclaimed read. */
function reader(): unknown {
  let reads = 0;
  waitStart();
  while (Atomics.load(control, C_STOP) === 0) {
    const k = Math.floor(random() * data.keys);
    epoch.pin();
    try {
      const v = tree.lookupPinned(testKey(k));
      if (v !== undefined && v % 1_000_003 !== k) Atomics.add(control, C_BAD_READS, 1);
      if (reads % 8 === 0) {
        // The same check through the lockstep descents of a batch (radix-tree.ts lookupManyPinned).
        for (let j = 0; j < MANY; j++) manyAt[j] = Math.floor(random() * data.keys);
        tree.lookupManyPinned(manyAt.map(testKey), MANY, manyValues);
        for (let j = 0; j < MANY; j++)
          if (manyValues[j] !== -1 && manyValues[j] % 1_000_003 !== manyAt[j]) Atomics.add(control, C_BAD_READS, 1);
      }
      if (reads % 64 === 0) {
        let prev: Uint8Array | undefined;
        tree.scanPinned({}, (value, leaf) => {
          const key = tree.leafKey(leaf);
          if (prev !== undefined && Buffer.compare(prev, key) >= 0) Atomics.add(control, C_BAD_READS, 1);
          prev = key;
          if (value % 1_000_003 >= data.keys) Atomics.add(control, C_BAD_READS, 1);
        });
      }
    } finally {
      epoch.unpin();
    }
    reads++;
  }
  return { reads };
}

/** Insert/delete churn with values v = k + 1_000_003 * generation; collects often. */
function writer(): unknown {
  let writes = 0;
  waitStart();
  for (let n = 0; n < data.ops; n++) {
    const k = Math.floor(random() * data.keys);
    if (random() < 0.5) tree.insert(testKey(k), k + 1_000_003 * (n % 1000));
    else tree.delete(testKey(k));
    if (n % 16 === 0) epoch.collect();
    writes++;
  }
  return { writes };
}

/** After start: every key 0..keys-1 holds value k (the main thread grew the arena meanwhile). */
function checkAll(): unknown {
  waitStart();
  let wrong = 0;
  for (let k = 0; k < data.keys; k++) if (tree.lookup(testKey(k)) !== k) wrong++;
  let scanned = 0;
  epoch.guard(() => tree.scanPinned({}, () => void scanned++));
  return { wrong, scanned, arenaBytes: tree.arena.sab.byteLength };
}

/** Append test keys: [p, s] for p < keys, value p * 256 + s + 1 (radix-tree-append.test.ts). */
export function appendKey(p: number, s: number): Uint8Array {
  return Uint8Array.of(p, s);
}

/**
 * Adds [p, s] for s = 0..29 (random order per p, all p interleaved), so each p's node grows
 * N4 -> N16 -> N32 by appends in place and growth copies, under the readers.
 */
function appender(): unknown {
  const order: number[][] = [];
  for (let p = 0; p < data.keys; p++) {
    const ss = Array.from({ length: 30 }, (_, i) => i);
    for (let i = ss.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [ss[i], ss[j]] = [ss[j], ss[i]];
    }
    order.push(ss);
  }
  waitStart();
  for (let i = 0; i < 30; i++) {
    for (let p = 0; p < data.keys; p++) tree.insert(appendKey(p, order[p][i]), p * 256 + order[p][i] + 1);
    epoch.collect();
  }
  return {};
}

/** Until stop: the stable keys [p, 250] and [p, 251] are always there with their values; an appended key is absent or right. */
function appendReader(): unknown {
  waitStart();
  let reads = 0;
  while (Atomics.load(control, C_STOP) === 0) {
    const p = Math.floor(random() * data.keys);
    const s = random() < 0.5 ? 250 + (reads & 1) : Math.floor(random() * 30);
    const v = tree.lookup(appendKey(p, s));
    if (s >= 250 ? v !== p * 256 + s + 1 : v !== undefined && v !== p * 256 + s + 1)
      Atomics.add(control, C_BAD_READS, 1);
    reads++;
  }
  return { reads };
}

/**
 * Seqlock (entry-lock-seqlock.test.ts): replaces the values of keys 0..keys-1 with
 * i * (2^32 + 1), i = 1, 2, ... 65535 (both 32-bit halves of the value word pair equal i and
 * change at every replace), until `ops` replaces were made.
 */
function seqlockWriter(): unknown {
  waitStart();
  let writes = 0;
  for (let n = 0; n < data.ops; n++) {
    const k = n % data.keys;
    const ref = grab(tree, testKey(k));
    const i = 1 + ((n / data.keys) % 65535);
    replace(tree, ref, Math.floor(i) * (2 ** 32 + 1));
    unlock(tree, ref);
    writes++;
  }
  return { writes };
}

/**
 * Seqlock of a new key (entry-lock-seqlock.test.ts): inserts keys 0..keys-1 in turn (grab
 * creates the EMPTY placeholder, replace fills it) with such values, and deletes each again
 * before its next insert, `ops` times.
 */
function seqlockInserter(): unknown {
  waitStart();
  let writes = 0;
  for (let n = 0; n < data.ops; n++) {
    const key = testKey(n % data.keys);
    const old = grab(tree, key);
    if (old.state !== 'empty') deleteLocked(tree, old);
    else unlock(tree, old);
    const ref = grab(tree, key);
    replace(tree, ref, (1 + (n % 65535)) * (2 ** 32 + 1));
    unlock(tree, ref);
    if (n % 64 === 0) epoch.collect();
    writes++;
  }
  return { writes };
}

/** Lock-free lookups of those keys until stopped: a value whose halves differ (or 0, a placeholder's) is a torn read. */
function seqlockReader(): unknown {
  waitStart();
  let reads = 0;
  while (Atomics.load(control, C_STOP) === 0) {
    for (let k = 0; k < data.keys; k++) {
      const v = tree.lookup(testKey(k));
      if (v !== undefined && (v === 0 || v % 2 ** 32 !== Math.floor(v / 2 ** 32))) Atomics.add(control, C_BAD_READS, 1);
      reads++;
    }
  }
  return { reads };
}

const modes = {
  'seqlock-writer': seqlockWriter,
  'seqlock-inserter': seqlockInserter,
  'seqlock-reader': seqlockReader,
  mixed,
  mutex,
  contend,
  'grab-once': grabOnce,
  reader,
  writer,
  'check-all': checkAll,
  'wait-unlocked': waitUnlockedOnce,
  hold,
  appender,
  'append-reader': appendReader,
};
const result = modes[data.mode]();
epoch.collect();
parentPort!.postMessage(result);
epoch.close();
