/**
 * Radix tree micro benchmarks, each beside its peer in the same run, printed as ratios.
 * Run after tsc: `node dist/bench/index.bench.js` (KEYS=n to change the 1,000,000 default).
 *
 *   lookup      tree.lookupPinned(16-byte Uint8Array key), one pin per batch
 *               vs Map.get keyed by the SAME keys as 16-char latin1 strings (built beforehand)
 *   lookup+pin  tree.lookup(key) (pins and unpins per call), same peer
 *   scan        tree.scanPinned over every entry (sum of values) vs a for-loop over a sorted
 *               array of { key, value } objects summing values
 *   grab+unlock uncontended grab() + unlock() of an existing key vs two bare
 *               Atomics.compareExchange (lock, unlock) on one shared word
 *   floor rows  (interleaved only) the pieces no grab+unlock can skip, against the same peer:
 *               pin+unpin, the hot key's JS descent, pin + JS descent + two CAS on its entry word,
 *               and what grab+unlock runs for a key of <= 16 bytes with the API left out: pin +
 *               wasm grab24 (descent + CAS) + unpin + wasm unlock (src/index/wasm-grab.ts)
 *   insert      (interleaved only) grab() + replace() + unlock() of FRESH random keys into the
 *               1M-key tree (grab creates the entry: treeLock, node growth, leaf allocation), as
 *               kv's put of a new key does, vs Map.set of the same keys as latin1 strings into
 *               the 1M-key Map; each round takes the next BATCH unused keys (the tree and the
 *               Map grow by 41 x BATCH keys)
 *   overwrite   (interleaved only) the same grab + replace + unlock on existing keys (round
 *               robin) vs Map.set of existing keys: the insert row's baseline
 *   bytes/key   arena bytes in use (nodes + leaves, size-class rounding included) / keys
 * Targets: lookup <= 2x Map.get; scan <= 2x array; grab+unlock <= 3x two CAS; < 48 B/key.
 *
 * On a shared, loaded machine the load changes between tinybench's tasks (each runs for
 * 500 ms in turn), so each pair is also measured interleaved: 41 rounds, each timing BATCH
 * operations of the task and then BATCH of its peer (order alternating), and the median of
 * the per-round ratios is printed. Same operations, same peer; only the timing is adjacent.
 * The tinybench rows print each task's median sample (p50) rather than its mean: one sample is
 * BATCH operations, and the few samples that meet a GC or the other core's load move the mean
 * of a short task far more than its median.
 */
import os from 'node:os';
import { Bench } from 'tinybench';
import { EpochDomain } from '../src/index/epoch.js';
import { RadixTree } from '../src/index/radix-tree.js';
import { grab, replace, unlock } from '../src/index/entry-lock.js';

const KEYS = Number(process.env['KEYS'] ?? 1_000_000);
const BATCH = 10_000;

function randomKeys(n: number, seed: number): Uint8Array[] {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const keys: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const k = new Uint8Array(16);
    const v = new DataView(k.buffer);
    for (let j = 0; j < 16; j += 4) v.setUint32(j, next());
    keys.push(k);
  }
  return keys;
}

/** Median over rounds of (ns of a) / (ns of b), each round timing a and b back to back (order alternating). */
function interleaved(a: () => void, b: () => void, rounds = 41): { ratio: number; aNs: number; bNs: number } {
  const ratios: number[] = [];
  const as: number[] = [];
  const bs: number[] = [];
  const time = (f: () => void): number => {
    const t0 = performance.now();
    f();
    return ((performance.now() - t0) * 1e6) / BATCH;
  };
  for (let r = 0; r < rounds; r++) {
    let ta: number;
    let tb: number;
    if (r % 2 === 0) ((ta = time(a)), (tb = time(b)));
    else ((tb = time(b)), (ta = time(a)));
    ratios.push(ta / tb);
    as.push(ta);
    bs.push(tb);
  }
  const median = (x: number[]): number => x.sort((p, q) => p - q)[x.length >> 1];
  return { ratio: median(ratios), aNs: median(as), bNs: median(bs) };
}

function nsPer(bench: Bench, name: string, perSample: number): number {
  const r = bench.getTask(name)?.result;
  if (r === undefined || !('latency' in r)) throw new Error(`bench task ${name} did not complete`);
  return (r.latency.p50 * 1e6) / perSample;
}

async function main(): Promise<void> {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { initialBytes: 64 * 1024 * 1024 });
  const keys = randomKeys(KEYS, 42);
  const t0 = performance.now();
  for (let i = 0; i < KEYS; i++) tree.insert(keys[i], i);
  const insertNs = ((performance.now() - t0) * 1e6) / KEYS;
  for (let i = 0; i < 8; i++) epoch.collect();
  const bytesPerKey = tree.bytesPerKey();

  const strings = keys.map((k) => Buffer.from(k).toString('latin1'));
  const map = new Map<string, number>();
  strings.forEach((s, i) => map.set(s, i));
  const sorted = keys.map((key, value) => ({ key, value })).sort((x, y) => Buffer.compare(x.key, y.key));
  const lockWords = new Int32Array(new SharedArrayBuffer(64));
  const hot = keys[12345];

  let cursor = 0;
  let sink = 0;
  const lookupBatch = (): void => {
    epoch.pin();
    let c = cursor;
    for (let i = 0; i < BATCH; i++) {
      sink += tree.lookupPinned(keys[c])!;
      if (++c === KEYS) c = 0;
    }
    cursor = c;
    epoch.unpin();
  };
  const mapBatch = (): void => {
    let c = cursor;
    for (let i = 0; i < BATCH; i++) {
      sink += map.get(strings[c])!;
      if (++c === KEYS) c = 0;
    }
    cursor = c;
  };
  const grabBatch = (): void => {
    for (let i = 0; i < BATCH; i++) unlock(tree, grab(tree, hot));
  };
  const casBatch = (): void => {
    for (let i = 0; i < BATCH; i++) {
      Atomics.compareExchange(lockWords, 0, 0, 1);
      Atomics.compareExchange(lockWords, 0, 1, 0);
    }
  };
  // The floor of grab+unlock, piece by piece each interleaved with the same
  // two-CAS peer. pin+unpin: the epoch pin's seq-cst store (the StoreLoad fence a reader needs
  // before its loads) and its release. descent: findExactPinned(hot), pinned once per batch.
  // minimum: what any grab+unlock of `hot` must do, written out with nothing else: pin, one
  // descent, load the entry word, CAS LOCKED in, unpin, CAS it out (the word is restored).
  const i32 = tree.arena.i32;
  const wasm = tree.wasmGrab!;
  const hw = [0, 4, 8, 12].map((i) => hot[i] | (hot[i + 1] << 8) | (hot[i + 2] << 16) | (hot[i + 3] << 24));
  hw.push(0, 0);
  const wasmFloorBatch = (): void => {
    for (let i = 0; i < BATCH; i++) {
      epoch.pin();
      const leaf = wasm.grab24(hw[0], hw[1], hw[2], hw[3], hw[4], hw[5], 16, tree.wasmLimitWords, tree.lockBits);
      epoch.unpin();
      wasm.unlock(leaf + 1, tree.lockBits, tree.wasmLimitWords); // + W_ENTRY
    }
  };
  const pinBatch = (): void => {
    for (let i = 0; i < BATCH; i++) {
      epoch.pin();
      epoch.unpin();
    }
  };
  const descentBatch = (): void => {
    epoch.pin();
    for (let i = 0; i < BATCH; i++) sink += tree.findExactPinned(hot);
    epoch.unpin();
  };
  const minimumBatch = (): void => {
    for (let i = 0; i < BATCH; i++) {
      epoch.pin();
      const at = tree.findExactPinned(hot) + 1; // + W_ENTRY
      const e = i32[at];
      Atomics.compareExchange(i32, at, e, e | 1); // | LOCKED
      epoch.unpin();
      Atomics.compareExchange(i32, at, e | 1, e);
    }
  };
  // Insert vs overwrite: fresh keys (another seed) for the interleaved rounds, and their strings.
  const ROUNDS = 41;
  const fresh = randomKeys(ROUNDS * BATCH, 4242);
  const freshStrings = fresh.map((k) => Buffer.from(k).toString('latin1'));
  let freshTree = 0;
  let freshMap = 0;
  const insertBatch = (): void => {
    for (let i = 0; i < BATCH; i++) {
      const ref = grab(tree, fresh[freshTree++]);
      replace(tree, ref, i + 1);
      unlock(tree, ref);
    }
  };
  const mapInsertBatch = (): void => {
    for (let i = 0; i < BATCH; i++) map.set(freshStrings[freshMap++], i + 1);
  };
  let over = 0;
  const overwriteBatch = (): void => {
    let c = over;
    for (let i = 0; i < BATCH; i++) {
      const ref = grab(tree, keys[c]);
      replace(tree, ref, i + 1);
      unlock(tree, ref);
      if (++c === KEYS) c = 0;
    }
    over = c;
  };
  const mapOverwriteBatch = (): void => {
    let c = over;
    for (let i = 0; i < BATCH; i++) {
      map.set(strings[c], i + 1);
      if (++c === KEYS) c = 0;
    }
  };
  const bench = new Bench({ time: 500, warmup: true });
  bench
    .add('lookup: tree.lookupPinned', lookupBatch)
    .add('lookup: Map.get (latin1 string keys)', mapBatch)
    .add('lookup+pin: tree.lookup', () => {
      let c = cursor;
      for (let i = 0; i < BATCH; i++) {
        sink += tree.lookup(keys[c])!;
        if (++c === KEYS) c = 0;
      }
      cursor = c;
    })
    .add('scan: tree.scanPinned', () => {
      epoch.pin();
      tree.scanPinned({}, (v) => {
        sink += v;
      });
      epoch.unpin();
    })
    .add('scan: sorted array', () => {
      for (let i = 0; i < sorted.length; i++) sink += sorted[i].value;
    })
    .add('grab+unlock (uncontended)', grabBatch)
    .add('two Atomics.compareExchange', casBatch);
  await bench.run();
  const lookupIl = interleaved(lookupBatch, mapBatch);
  const grabIl = interleaved(grabBatch, casBatch);
  const pinIl = interleaved(pinBatch, casBatch);
  const descentIl = interleaved(descentBatch, casBatch);
  const minimumIl = interleaved(minimumBatch, casBatch);
  const wasmFloorIl = interleaved(wasmFloorBatch, casBatch);
  const overwriteIl = interleaved(overwriteBatch, mapOverwriteBatch, ROUNDS);
  const insertIl = interleaved(insertBatch, mapInsertBatch, ROUNDS);

  const lookup = nsPer(bench, 'lookup: tree.lookupPinned', BATCH);
  const mapGet = nsPer(bench, 'lookup: Map.get (latin1 string keys)', BATCH);
  const lookupPin = nsPer(bench, 'lookup+pin: tree.lookup', BATCH);
  const scan = nsPer(bench, 'scan: tree.scanPinned', KEYS);
  const arr = nsPer(bench, 'scan: sorted array', KEYS);
  const gu = nsPer(bench, 'grab+unlock (uncontended)', BATCH);
  const cas = nsPer(bench, 'two Atomics.compareExchange', BATCH);
  const row = (name: string, ns: number, peer: string, peerNs: number, target: string): string =>
    `${name.padEnd(26)} ${ns.toFixed(1).padStart(8)} ns   ${peer.padEnd(30)} ${peerNs.toFixed(1).padStart(8)} ns   ratio ${(ns / peerNs).toFixed(2)}x (target ${target})`;
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  console.log(
    `radix tree, ${KEYS} random 16-byte keys (node ${process.version}); insert ${insertNs.toFixed(0)} ns/key; loadavg ${load}; epoch pins ordered by ${epoch.pinOrdering()}`,
  );
  console.log(row('lookupPinned', lookup, 'Map.get (latin1 string)', mapGet, '<= 2x'));
  console.log(row('lookup (pins per call)', lookupPin, 'Map.get (latin1 string)', mapGet, '-'));
  console.log(row('scanPinned per entry', scan, 'sorted array per entry', arr, '<= 2x'));
  console.log(row('grab+unlock', gu, 'two compareExchange', cas, '<= 3x'));
  const il = (name: string, r: { ratio: number; aNs: number; bNs: number }, peer: string, target: string): string =>
    `${name.padEnd(26)} ${r.aNs.toFixed(1).padStart(8)} ns   ${peer.padEnd(30)} ${r.bNs.toFixed(1).padStart(8)} ns   ratio ${r.ratio.toFixed(2)}x (target ${target}; interleaved, median of 41 rounds)`;
  console.log(il('lookupPinned', lookupIl, 'Map.get (latin1 string)', '<= 2x'));
  console.log(il('grab+unlock', grabIl, 'two compareExchange', '<= 3x'));
  console.log(il('  floor: pin+unpin', pinIl, 'two compareExchange', '-'));
  console.log(il('  floor: descent (hot)', descentIl, 'two compareExchange', '-'));
  console.log(il('  floor: pin+descent+2 CAS', minimumIl, 'two compareExchange', '-'));
  console.log(il('  floor: pin+wasm grab+unlock', wasmFloorIl, 'two compareExchange', '-'));
  console.log(il('overwrite (grab+replace+unlock)', overwriteIl, 'Map.set (existing key)', '-'));
  console.log(il('insert (grab+replace+unlock)', insertIl, 'Map.set (new key)', '-'));
  console.log(`  insert / overwrite: ${(insertIl.aNs / overwriteIl.aNs).toFixed(2)}x (medians of the two rows above)`);
  console.log(
    `index bytes per key: ${bytesPerKey.toFixed(1)} B (target < 48), arena ${tree.stats().arenaBytes} B, huge pages ${tree.stats().hugePages}`,
  );
  if (sink === -1) console.log(sink);
}

await main();
