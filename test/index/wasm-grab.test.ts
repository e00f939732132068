/**
 * The WebAssembly fast path of grab/unlock (src/index/wasm-grab.ts) against the JS descent it
 * shortcuts: on seeded trees with every node kind (N4/16/32/48/256), compressed prefixes, keys
 * that end inside other keys (endLeaf), the empty key, 8-byte index keys and keys of up to 24
 * bytes (a store's 16-byte keys are 17 with their prefix byte), grab24 finds exactly the leaf
 * findExactPinned finds, locks it with this thread as owner, and answers ABSENT exactly when
 * the key is absent; it declines (SLOW) what only the JS path may decide
 * (a held entry, a placeholder, a node past this thread's view, a dead node: counted as a
 * restart, and as a poison hit in poison mode), and its unlock takes only a plain held entry.
 * The epoch's two pin orderings (membarrier / seq-cst) both hold reclamation while pinned.
 * Not covered here: concurrency (entry-lock-workers, radix-tree-readers and the dax/kv worker
 * tests run the same code, as every grab of a key up to 24 bytes goes through it).
 */
import { afterEach, expect, test } from 'vitest';
import { EpochDomain, RETIRE_DEVICE_BLOCK } from '../../src/index/epoch.js';
import { RadixTree } from '../../src/index/radix-tree.js';
import { grab, unlock } from '../../src/index/entry-lock.js';
import { FREED_HEADER, H_STAT_POISON_HITS, H_STAT_RESTARTS } from '../../src/index/arena.js';
import { native } from '../../src/native/addon.js';
import { sleb, uleb } from '../../src/index/wasm-encoder.js';
import { wasmGrabModuleBytes } from '../../src/index/wasm-grab.js';
import { WASM_GRAB_BYTES } from '../../src/index/wasm-grab-bytes.js';
import { expectBaseline, hex } from './tree-helpers.js';
import { runChild } from '../workers/region-helpers.js';
import { rng, withSeed } from '../helpers/seed.js';

const FILE = 'test/index/wasm-grab.test.ts';
const W_ENTRY = 1;
const LOCKED = 1;
const WAITERS = 2;
const OWNER_SHIFT = 20;
const SLOW = -1;
const ABSENT = 0;

function words(k: Uint8Array): number[] {
  const w = [0, 0, 0, 0, 0, 0];
  for (let i = 0; i < k.length; i++) w[i >> 2] |= k[i] << ((i & 3) * 8);
  return w;
}

function grab24(tree: RadixTree, key: Uint8Array, limitWords = tree.arena.i32.length): number {
  const [a, b, c, d, e, f] = words(key);
  tree.epoch.pin();
  try {
    return tree.wasmGrab!.grab24(a, b, c, d, e, f, key.length, limitWords, tree.lockBits);
  } finally {
    tree.epoch.unpin();
  }
}

/** Keys of every shape the descent has a branch for (all <= 24 bytes). */
function shapedKeys(seed: number): Uint8Array[] {
  const r = rng(seed);
  const out = new Map<string, Uint8Array>();
  const add = (k: Uint8Array): void => void out.set(hex(k), k);
  const fanOut = (lead: number, n: number, len: number): void => {
    const bytes = Array.from({ length: 256 }, (_, i) => i)
      .sort(() => r() - 0.5)
      .slice(0, n);
    for (const b of bytes) {
      const k = new Uint8Array(len);
      k[0] = lead;
      k[1] = b;
      for (let i = 2; i < len; i++) k[i] = Math.floor(r() * 256);
      add(k);
    }
  };
  fanOut(0x10, 3, 2 + Math.floor(r() * 14)); // N4 below byte 0x10
  fanOut(0x11, 12, 16); // N16
  fanOut(0x12, 28, 7); // N32
  fanOut(0x13, 45, 12); // N48
  fanOut(0x14, 200, 16); // N256
  fanOut(0x15, 120, 17); // N256 of 17-byte keys (a store's prefix byte + 16)
  fanOut(0x16, 10, 24); // N16 of 24-byte keys
  // A long shared prefix (path compression), tails of every length up to 24 bytes.
  const stem = new TextEncoder().encode('stem/shared/');
  for (let n = 0; n < 60; n++) {
    const k = new Uint8Array(stem.length + Math.floor(r() * (25 - stem.length)));
    k.set(stem);
    for (let i = stem.length; i < k.length; i++) k[i] = 0x61 + Math.floor(r() * 4);
    add(k);
  }
  // Keys that end where others go on (endLeaf), and the empty key.
  for (const s of [
    'a',
    'ab',
    'abc',
    'abcd',
    'abcde',
    'abcdefghijklmnop',
    'abcdefghijklmno',
    'abcdefghijklmnopq',
    'abcdefghijklmnopqrstuvwx',
  ])
    add(new TextEncoder().encode(s));
  add(new Uint8Array(0));
  // 8-byte index keys, and random keys of random length.
  for (let n = 0; n < 200; n++) {
    const k = new Uint8Array(8);
    new DataView(k.buffer).setUint32(4, Math.floor(r() * 5000));
    add(k);
  }
  for (let n = 0; n < 300; n++) add(Uint8Array.from({ length: 1 + Math.floor(r() * 24) }, () => Math.floor(r() * 256)));
  return [...out.values()];
}

/** Absent keys next to present ones: last byte changed, one byte shorter, one longer, random. */
function nearMisses(keys: Uint8Array[], present: Set<string>, seed: number): Uint8Array[] {
  const r = rng(seed ^ 0x5a5a);
  const out: Uint8Array[] = [];
  for (const k of keys) {
    const cands = [k.slice(0, Math.max(0, k.length - 1)), Uint8Array.from([...k, Math.floor(r() * 256)]).slice(0, 24)];
    if (k.length > 0) {
      const c = k.slice();
      c[c.length - 1] ^= 1 + Math.floor(r() * 255);
      cands.push(c);
    }
    for (const c of cands) if (!present.has(hex(c))) out.push(c);
  }
  return out;
}

afterEach(() => {
  delete process.env.DAXSTORE_NO_MEMBARRIER;
});

test('grab24 finds exactly the leaf the JS descent finds, locks it as this thread, and says absent exactly when it is', async () => {
  await withSeed(FILE, (seed) => {
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch, { initialBytes: 64 * 1024 });
    const keys = shapedKeys(seed);
    keys.forEach((k, i) => tree.insert(k, i + 1));
    const present = new Set(keys.map(hex));
    const i32 = (): Int32Array => tree.arena.i32;
    for (const k of keys) {
      epoch.pin();
      const js = tree.findExactPinned(k);
      epoch.unpin();
      expect(js).toBeGreaterThan(0);
      const before = i32()[js + W_ENTRY];
      const leaf = grab24(tree, k);
      expect(leaf, `key ${hex(k)}`).toBe(js);
      expect(i32()[leaf + W_ENTRY]).toBe(before | LOCKED | (tree.threadId << OWNER_SHIFT));
      expect(tree.wasmGrab!.unlock(leaf + W_ENTRY, tree.lockBits, i32().length)).toBe(1);
      expect(i32()[leaf + W_ENTRY]).toBe(before);
    }
    const misses = nearMisses(keys, present, seed);
    expect(misses.length).toBeGreaterThan(keys.length);
    for (const k of misses) expect(grab24(tree, k), `absent key ${hex(k)}`).toBe(ABSENT);
    // Through the API: the value comes back with the lock, and unlock leaves nothing held.
    for (const [i, k] of keys.entries()) {
      const ref = grab(tree, k);
      expect(ref.value).toBe(i + 1);
      expect(ref.leaf).toBeGreaterThan(0);
      unlock(tree, ref);
    }
    for (const k of keys) tree.delete(k);
    expectBaseline(tree, epoch);
  });
});

function touch4(tree: RadixTree, keys: Uint8Array[], limitWords = tree.arena.i32.length): number {
  const w: number[] = [];
  const lens: number[] = [];
  for (let j = 0; j < 4; j++) {
    w.push(...words(keys[j] ?? new Uint8Array(0)));
    lens.push(keys[j]?.length ?? 0);
  }
  tree.epoch.pin();
  try {
    return tree.wasmGrab!.touch4(...w, ...lens, limitWords);
  } finally {
    tree.epoch.unpin();
  }
}

test('touch4 walks up to four keys to their leaves together and writes nothing', async () => {
  await withSeed(FILE, (seed) => {
    const epoch = EpochDomain.create();
    const tree = RadixTree.create(epoch, { initialBytes: 64 * 1024 });
    const keys = shapedKeys(seed).filter((k) => k.length > 0); // length 0 means "no key" to touch4
    keys.forEach((k, i) => tree.insert(k, i + 1));
    const leafOf = (k: Uint8Array): number => {
      epoch.pin();
      const leaf = tree.findExactPinned(k);
      epoch.unpin();
      expect(leaf).toBeGreaterThan(0);
      return leaf;
    };
    const before = tree.arena.i32.slice();
    // Each key in each of the four places (a rotation per pass), so a slot's words or length
    // mixed up with another's would end some walk at another leaf: another sum.
    for (let pass = 0; pass < 4; pass++)
      for (let i = 0; i < keys.length; i += 4) {
        const group: Uint8Array[] = [];
        for (let j = 0; j < 4; j++) group.push(keys[(i + j + pass) % keys.length]);
        const sum = group.reduce((s, k) => (s + leafOf(k)) | 0, 0);
        expect(touch4(tree, group), `keys ${group.map(hex).join(' ')}`).toBe(sum);
      }
    // Fewer than four: the unused places walk nothing.
    expect(touch4(tree, [keys[0]])).toBe(leafOf(keys[0]));
    expect(touch4(tree, [])).toBe(0);
    // A node at or past the limit is not read: with the root's offset as the limit, no walk starts.
    expect(touch4(tree, keys.slice(0, 4), tree.arena.i32[3])).toBe(0);
    expect(tree.arena.i32).toEqual(before);
    for (const k of keys) tree.delete(k);
    expectBaseline(tree, epoch);
  });
});

test('grab24 declines what only the JS path may decide: held, placeholder, past the view', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  const k = new TextEncoder().encode('held/key');
  tree.insert(k, 7);
  const ref = grab(tree, k);
  expect(grab24(tree, k)).toBe(SLOW); // held (by this thread: the JS path throws EDEADLK)
  expect(() => grab(tree, k)).toThrow(expect.objectContaining({ code: 'EDEADLK' }));
  unlock(tree, ref);
  const absent = new TextEncoder().encode('fresh/key');
  const placeholder = grab(tree, absent); // a locked EMPTY placeholder
  expect(placeholder.state).toBe('empty');
  expect(grab24(tree, absent)).toBe(SLOW);
  // unlock declines the placeholder (its removal is the JS path's); the API removes it
  expect(tree.wasmGrab!.unlock(placeholder.leaf + W_ENTRY, tree.lockBits, tree.arena.i32.length)).toBe(0);
  unlock(tree, placeholder);
  expect(tree.lookup(absent)).toBeUndefined();
  // A view that ends at the leaf: the JS path refreshes; grab24 must not read past it.
  expect(grab24(tree, k, ref.leaf)).toBe(SLOW);
  expect(grab24(tree, k, ref.leaf + 1)).toBe(ref.leaf);
  unlock(tree, { ...ref, value: 7 });
  tree.delete(k);
  expectBaseline(tree, epoch);
});

test('wasm unlock takes only an entry held by this thread with nothing to wake', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch);
  const k = new TextEncoder().encode('unlock/key');
  tree.insert(k, 9);
  const w = tree.wasmGrab!;
  const i32 = tree.arena.i32;
  const ref = grab(tree, k);
  const at = ref.leaf + W_ENTRY;
  const other = LOCKED | (((tree.threadId % 4000) + 1) << OWNER_SHIFT);
  expect(w.unlock(at, other, i32.length)).toBe(0); // another owner
  expect(w.unlock(at, tree.lockBits, at)).toBe(0); // past the view
  Atomics.or(i32, at, WAITERS);
  expect(w.unlock(at, tree.lockBits, i32.length)).toBe(0); // WAITERS: the JS path wakes
  Atomics.and(i32, at, ~WAITERS);
  expect(w.unlock(at, tree.lockBits, i32.length)).toBe(1);
  expect(w.unlock(at, tree.lockBits, i32.length)).toBe(0); // not held any more
  expect(() => unlock(tree, ref)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  tree.delete(k);
  expectBaseline(tree, epoch);
});

test('a dead node met by grab24 is counted as a restart (and a poison hit in poison mode), never followed', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { poisonReclaimed: true });
  const keys = Array.from({ length: 50 }, (_, i) => new TextEncoder().encode(`dead/${i}`));
  keys.forEach((k, i) => tree.insert(k, i));
  epoch.pin();
  const leaf = tree.findExactPinned(keys[7]);
  epoch.unpin();
  const i32 = tree.arena.i32;
  const header = i32[leaf];
  const restarts = i32[H_STAT_RESTARTS];
  const hits = i32[H_STAT_POISON_HITS];
  i32[leaf] = FREED_HEADER; // what a reader would meet in a block reclaimed under it (single thread: staged)
  try {
    expect(grab24(tree, keys[7])).toBe(SLOW);
    expect(i32[leaf + W_ENTRY] & LOCKED).toBe(0);
    expect(i32[H_STAT_RESTARTS]).toBe(restarts + 1);
    expect(i32[H_STAT_POISON_HITS]).toBe(hits + 1);
  } finally {
    i32[leaf] = header;
  }
  expect(grab24(tree, keys[7])).toBe(leaf);
  expect(tree.wasmGrab!.unlock(leaf + W_ENTRY, tree.lockBits, i32.length)).toBe(1);
});

test.each([
  ['membarrier', undefined],
  ['seq-cst', '1'],
] as const)('epoch pins ordered by %s hold reclamation until unpin', (ordering, noMembarrier) => {
  if (noMembarrier !== undefined) process.env.DAXSTORE_NO_MEMBARRIER = noMembarrier;
  if (ordering === 'membarrier' && !native().membarrierOffered()) return; // kernel without it: seq-cst only
  const epoch = EpochDomain.create();
  expect(epoch.pinOrdering()).toBe(ordering);
  const released: number[] = [];
  epoch.registerReclaimer(RETIRE_DEVICE_BLOCK, (payload) => void released.push(payload));
  epoch.pin();
  epoch.retire(RETIRE_DEVICE_BLOCK, 42);
  for (let i = 0; i < 8; i++) epoch.collect();
  expect(released).toEqual([]);
  epoch.unpin();
  for (let i = 0; i < 8; i++) epoch.collect();
  expect(released).toEqual([42]);
});

test("the stored module bytes are the builders' output", () => {
  const built = Buffer.from(wasmGrabModuleBytes()).toString('base64');
  if (built !== WASM_GRAB_BYTES)
    throw new Error(
      `src/index/wasm-grab-bytes.ts is stale (a builder or a layout constant changed): set WASM_GRAB_BYTES to\n'${built}'`,
    );
});

test('the encoder writes LEB128 as the spec does', () => {
  const enc = (f: (n: number, out: number[]) => void, n: number): number[] => {
    const out: number[] = [];
    f(n, out);
    return out;
  };
  expect(enc(uleb, 0)).toEqual([0]);
  expect(enc(uleb, 127)).toEqual([0x7f]);
  expect(enc(uleb, 128)).toEqual([0x80, 0x01]);
  expect(enc(uleb, 65536)).toEqual([0x80, 0x80, 0x04]);
  expect(enc(sleb, -1)).toEqual([0x7f]);
  expect(enc(sleb, 63)).toEqual([0x3f]);
  expect(enc(sleb, 64)).toEqual([0xc0, 0x00]);
  expect(enc(sleb, -64)).toEqual([0x40]);
  expect(enc(sleb, -65)).toEqual([0xbf, 0x7f]);
  expect(enc(sleb, 0xdeadbeef | 0)).toEqual([0xef, 0xfd, 0xb6, 0xf5, 0x7d]);
});

test('wasm reads only below the limit its probe reached: past it grab24 declines, and the next grab raises it', () => {
  const epoch = EpochDomain.create();
  const tree = RadixTree.create(epoch, { initialBytes: 64 * 1024 });
  const keys = Array.from({ length: 3000 }, (_, i) => new TextEncoder().encode(`limit/${i}`));
  keys.forEach((k, i) => tree.insert(k, i));
  const words = tree.arena.i32.length;
  expect(words).toBeGreaterThan((64 * 1024) / 4); // it grew
  // The probe reads a word the memory has and traps past it (the one site that may trap).
  expect(tree.wasmGrab!.probe(words - 1)).toBeTypeOf('number');
  expect(() => tree.wasmGrab!.probe(tree.arena.memory.buffer.byteLength / 4)).toThrow(/memory access out of bounds/);
  // A limit below the tree's nodes: grab24 declines, grab still locks the right entry (JS
  // path), and its decline raises the limit to this thread's view.
  tree.wasmLimitWords = 16;
  const last = keys[keys.length - 1];
  expect(grab24(tree, last, tree.wasmLimitWords)).toBe(SLOW);
  const ref = grab(tree, last);
  expect(ref.value).toBe(keys.length - 1);
  expect(tree.wasmLimitWords).toBe(tree.arena.i32.length);
  unlock(tree, ref); // through wasm again
  expect(tree.lookup(last)).toBe(keys.length - 1);
  expect(tree.wasmProbeMisses).toBe(0);
});

test('with explicit bounds checks (no trap handler), grabs keep working while another thread grows the arena', () => {
  // A child process: V8 flags are per process. Its worker inserts 60k keys into a 128 KiB
  // tree (many growths) while the main thread grabs the newest keys it published. Node's
  // --disable-wasm-trap-handler, V8's --wasm-enforce-bounds-checks, and the default.
  for (const flags of [['--disable-wasm-trap-handler'], ['--wasm-enforce-bounds-checks'], []]) {
    const r = runChild('index-bounds-child', [], {}, flags);
    expect(r.status, `${flags.join(' ')}: ${r.stderr}`).toBe(0);
    const out = r.result as {
      flags: string[];
      grabs: number;
      wrong: number;
      errors: string[];
      limits: number;
      limitReachesArena: boolean;
      startWords: number;
      endWords: number;
      probeMisses: number;
    };
    expect(out.flags).toEqual(flags);
    expect(out.errors).toEqual([]);
    expect(out.wrong).toBe(0);
    expect(out.grabs).toBeGreaterThan(60_000);
    expect(out.endWords).toBeGreaterThan(out.startWords * 8);
    expect(out.limits).toBeGreaterThan(1); // the wasm limit followed growths made by the other thread
    expect(out.limitReachesArena).toBe(true);
    console.log(
      `${FILE}: ${flags.join(' ') || 'trap handler'}: ${out.grabs} grabs, ${out.limits} wasm limits, ${out.probeMisses} probe misses, arena ${out.startWords * 4} -> ${out.endWords * 4} B`,
    );
  }
});
