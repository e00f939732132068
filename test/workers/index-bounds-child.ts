/**
 * Child process for test/index/wasm-grab.test.ts, run with V8 flags of the test's choosing
 * (--no-wasm-trap-handler: explicit bounds checks, the mode in which a wasm instance can lag a
 * growth another thread made). The main thread creates a small tree; a worker thread attaches
 * and inserts keys, growing the arena many times; meanwhile the main thread grabs and unlocks
 * keys the worker has published, so its wasm fast path keeps meeting nodes in memory that was
 * grown by the other thread. Prints JSON: grabs made, wrong values seen, errors, the growths
 * this thread's wasm limit followed, probe misses, and whether the limit reached the arena.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { EpochDomain, type EpochHandle } from '../../src/index/epoch.js';
import { RadixTree, type RadixTreeHandle } from '../../src/index/radix-tree.js';
import { grab, unlock } from '../../src/index/entry-lock.js';

const KEYS = 60_000;

function keyOf(i: number): Uint8Array {
  const k = new Uint8Array(16);
  const v = new DataView(k.buffer);
  v.setUint32(0, Math.imul(i, 0x9e3779b1) >>> 0);
  v.setUint32(4, i);
  v.setUint32(8, Math.imul(i ^ 0x5bd1e995, 0x85ebca6b) >>> 0);
  v.setUint32(12, ~i >>> 0);
  return k;
}

interface Shared {
  epoch: EpochHandle;
  tree: RadixTreeHandle;
  progress: SharedArrayBuffer; // [published keys, done]
}

if (isMainThread) {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { initialBytes: 128 * 1024 });
  const progress = new Int32Array(new SharedArrayBuffer(8));
  const worker = new Worker(fileURLToPath(import.meta.url), {
    workerData: { epoch: epoch.handle(), tree: tree.handle(), progress: progress.buffer } satisfies Shared,
  });
  const failed = new Promise<Error>((resolve) => worker.on('error', resolve));
  const out = {
    flags: process.execArgv,
    grabs: 0,
    wrong: 0,
    errors: [] as string[],
    limits: new Set<number>(),
    probeMisses: 0,
    limitReachesArena: false,
    startWords: tree.arena.i32.length,
    endWords: 0,
  };
  let seed = 12345;
  const check = (i: number): void => {
    const ref = grab(tree, keyOf(i));
    if (ref.state !== 'value' || ref.value !== i) out.wrong++;
    unlock(tree, ref);
    out.grabs++;
    out.limits.add(tree.wasmLimitWords);
  };
  try {
    while (Atomics.load(progress, 1) === 0) {
      const n = Atomics.load(progress, 0);
      if (n === 0) continue;
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      check(n - 1 - (seed % Math.min(n, 64))); // mostly the newest keys: nodes in the newest memory
    }
    for (let i = 0; i < KEYS; i++) check(i);
  } catch (err) {
    out.errors.push(String(err));
  }
  await Promise.race([
    new Promise((resolve) => worker.once('exit', resolve)),
    failed.then((e) => out.errors.push(`worker: ${String(e)}`)),
  ]);
  out.probeMisses = tree.wasmProbeMisses;
  out.endWords = tree.arena.i32.length;
  out.limitReachesArena = tree.wasmLimitWords === tree.arena.i32.length;
  process.stdout.write(JSON.stringify({ ...out, limits: out.limits.size }));
} else {
  const data = workerData as Shared;
  const epoch = EpochDomain.attach(data.epoch);
  const tree = RadixTree.attach(data.tree, epoch);
  const progress = new Int32Array(data.progress);
  for (let i = 0; i < KEYS; i++) {
    tree.insert(keyOf(i), i);
    Atomics.store(progress, 0, i + 1);
  }
  Atomics.store(progress, 1, 1);
  parentPort!.close();
}
