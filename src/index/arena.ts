/**
 * Arena: the shared WebAssembly.Memory that holds one radix tree (header, inner nodes,
 * leaves), shared by every thread of the process without copying. Its `buffer` is a
 * SharedArrayBuffer (Atomics and typed arrays work on it); it is a wasm memory so
 * the entry-lock fast path can run as WebAssembly over the same bytes (wasm-grab.ts). The
 * Memory object is what is posted to workers (a SharedArrayBuffer of it cannot be re-wrapped).
 *
 * Offsets are 32-bit WORD indices into the buffer (byte offset = 4 * offset); 0 is the
 * null pointer (word 0 is the header's magic, never a node).
 *
 * Invariants
 *   - Every allocated block lies in [HEADER_WORDS, bump) and has the size of its size class.
 *   - A block is on a free list only after the epoch grace period: free() is called only by
 *     the RETIRE_ARENA_NODE reclaimer (never directly by a writer), so no pinned reader can
 *     still reach it.
 *   - A freed block's first word is FREED_HEADER (or POISON_WORD in poison mode), which no
 *     live node header can equal, so a reader that reaches it restarts instead of following
 *     stale slots.
 *   - liveWords = words allocated and not yet freed (retired blocks still count as live);
 *     tests compare it against the empty-tree baseline. Kept as two counters (H_LIVE_WORDS
 *     allocated, under treeLock; H_FREED_WORDS freed, by anyone): see H_LIVE_WORDS.
 *
 * Concurrency
 *   - allocLocked() and grow happen under the tree's treeLock (one allocator at a time).
 *   - free() may run on any thread at any time (inside EpochDomain.collect()), so free
 *     lists are Treiber stacks: pushes by CAS from anyone, pops only under treeLock. With a
 *     single popper no ABA is possible (nothing else removes the head).
 *   - Views are fixed-length views over this thread's `memory.buffer` (after memory.grow a
 *     thread's old buffer keeps its old length); a thread refreshes them when it meets an
 *     offset beyond its view (reads past the end yield undefined, which fails every header
 *     check; the wasm fast path is given the view's length and declines past it) or after it
 *     grew the memory itself.
 *
 * Huge pages: create() asks the kernel (madvise MADV_HUGEPAGE, for THP in "madvise" mode)
 * to back the whole reservation (the memory's maximum) with 2 MiB pages, so a descent over a large arena takes fewer
 * TLB misses; H_HUGE_PAGES records the answer for every thread's stats(). The first 2 MiB
 * page is faulted in while the memory is smaller (1 MiB at first), which gives it 4 KiB
 * pages; the growth past it collapses it (bumpLocked).
 * DAXSTORE_NO_HUGEPAGES=1 skips the advice (for A/B benches).
 *
 * Persistence ordering: none; the arena is volatile memory (the index is rebuilt at open).
 */
import { randomFillSync } from 'node:crypto';
import { assert } from '../assert.js';
import { HUGE_BYTES } from '../device/layout.js';
import { DaxError } from '../errors.js';
import { errnoName, native, prefaultInBackground } from '../native/addon.js';
import { WASM_PAGE_BYTES, Wasm, isWasmMemory, type WasmMemory } from './wasm-encoder.js';
import { loadWord, storeRelease } from './word-load.js';

/** Header words (word index -> meaning). All mutable ones are accessed with Atomics. */
export const H_MAGIC = 0; // ARENA_MAGIC
export const H_TREE_LOCK = 1; // 0 free, 1 held, 2 held with sleepers (Drepper's futex mutex)
export const H_BUMP = 2; // next never-allocated word
/** Header words the hot paths read, as literals (nodes.ts `Lay` says why). */
export const enum Hw {
  ROOT = 3,
}
export const H_COUNT = 4; // leaves in the tree (placeholders included)
export const H_TREE_ID = 5; // 16-bit id: wait-table keys and the reclaimer's payload tag
export const H_FLAGS = 6; // bit 0: poisonReclaimed
/**
 * Words ever allocated (allocLocked, allocRunLocked; wraps mod 2^32). Written only under
 * treeLock, by a plain read + release store: a shared Atomics.add per allocation was a builtin
 * call (not inlined by Node 20) and a locked instruction on every insert. The frees, which any
 * thread's reclaimer makes outside treeLock, count into H_FREED_WORDS instead (Atomics.add);
 * liveWords() is the difference.
 */
export const H_LIVE_WORDS = 7;
export const H_STAT_POISON_HITS = 8; // readers that reached a reclaimed node (poison mode)
export const H_STAT_RESTARTS = 9; // reader restarts (freed header or view refresh)
export const H_STAT_LOST_WAKEUPS = 10; // timed-out waits that found the entry free
export const H_STAT_WAITS = 11; // sleeps on an entry lock
export const H_STAT_RECLAIMED = 12; // blocks freed by the reclaimer
export const H_HUGE_PAGES = 13; // written once at create: HugePageAdvice below, or -errno of madvise
export const H_MAX_PAGES = 14; // written once at create: the memory's maximum in 64 KiB pages (attach reads it)
/**
 * The memory's byte length as of its last growth: stored (Atomics) by the grower right after
 * memory.grow and before H_BUMP moves past the old end, so anyone who can reach a block in
 * the grown part (through a pointer published after that bump) reads the new length here.
 * refresh() compares it with its view (a load) instead of reading memory.buffer and its
 * byteLength (two runtime calls, twice per insert).
 */
export const H_BYTES = 15;
/**
 * Structure version: every treeLock holder bumps it just before it unlocks (tree-lock.ts), so
 * it changes with every structural change (all of them happen under treeLock). A descent that
 * read it before starting and finds it unchanged under treeLock saw the tree as it still is
 * (radix-tree.ts getOrCreateLocked: the hint of an absent key's lock-free descent).
 */
export const H_VERSION = 16;
/** Words freed (free(), any thread, Atomics.add; wraps mod 2^32): liveWords() = H_LIVE_WORDS - H_FREED_WORDS. */
export const H_FREED_WORDS = 17;
/** Random nonzero id of this arena, written once at create: participant records name the tree by it (entry-lock.ts replace). */
export const H_TOKEN = 18;
export const H_FREE_BASE = 32; // NUM_CLASSES Treiber-stack heads
export const NUM_CLASSES = 133; // sizeClassOf of the largest block an arena can hold (2^30 words) is 132
export const HEADER_WORDS = H_FREE_BASE + NUM_CLASSES;

export const ARENA_MAGIC = 0x41525431; // 'ART1'
export const FLAG_POISON = 1;
/** First word of a freed block (no live header has magic byte 0). */
export const FREED_HEADER = 0x0f4ee000;
/** Fill of reclaimed memory in poison mode. */
export const POISON_WORD = 0xdeadbeef | 0;

const MAX_ARENA_BYTES = 4 * 1024 * 1024 * 1024 - WASM_PAGE_BYTES; // wasm32: at most 65536 pages

/**
 * Size class of a block of `words` words: one-word steps up to 32 words (every leaf of a key
 * up to 112 bytes, and N4 nodes, take exactly their size: a kv leaf, 17-byte key, is 9 words;
 * 2-word steps had rounded it to 10, 4 of its 40 bytes), 2-word steps up to 64, 4-word steps
 * up to 320 (N16/N32/N48/N256 with short prefixes), then powers of two. A free block needs
 * 2 words (freed header, next link).
 */
export function sizeClassOf(words: number): number {
  if (words <= 32) return words <= 2 ? 0 : words - 2;
  if (words <= 64) return 31 + ((words - 33) >> 1);
  if (words <= 320) return 47 + ((words - 65) >> 2);
  return 111 + (32 - Math.clz32(words - 1)) - 9;
}

export function classWords(cls: number): number {
  if (cls < 31) return cls + 2;
  if (cls < 47) return 34 + ((cls - 31) << 1);
  if (cls < 111) return 68 + ((cls - 47) << 2);
  return 1 << (cls - 111 + 9);
}

/** H_HUGE_PAGES values (a negative value is the madvise -errno). */
export const enum HugePageAdvice {
  DISABLED = 0, // DAXSTORE_NO_HUGEPAGES=1
  ADVISED = 1,
  UNSUPPORTED = 2, // kernel without transparent huge pages (EINVAL)
  TOO_SMALL = 3, // no whole 2 MiB page inside the reservation
}

export type HugePagesState = 'advised' | 'unsupported' | 'disabled' | 'too-small' | `failed: ${string}`;

function adviseHugePages(sab: SharedArrayBuffer): number {
  if (process.env.DAXSTORE_NO_HUGEPAGES === '1') return HugePageAdvice.DISABLED;
  const rc = native().adviseHugePages(sab);
  if (rc > 0) return HugePageAdvice.ADVISED;
  if (rc === 0) return HugePageAdvice.TOO_SMALL;
  return errnoName(rc) === 'EINVAL' ? HugePageAdvice.UNSUPPORTED : rc;
}

export interface ArenaOptions {
  initialBytes?: number;
  maxBytes?: number;
  poisonReclaimed?: boolean;
}

export class Arena {
  /** The shared memory (posted to workers); its maximum is maxBytes. */
  readonly memory: WasmMemory;
  readonly maxBytes: number;
  /** This thread's current buffer of `memory` (replaced by refresh after growth). */
  sab: SharedArrayBuffer;
  i32: Int32Array;
  u8: Uint8Array;

  private constructor(memory: WasmMemory, maxBytes: number) {
    this.memory = memory;
    this.maxBytes = maxBytes;
    const sab = memory.buffer;
    this.sab = sab;
    this.i32 = new Int32Array(sab, 0, sab.byteLength >> 2);
    this.u8 = new Uint8Array(sab, 0, sab.byteLength);
  }

  static create(treeId: number, opts: ArenaOptions = {}): Arena {
    const maxBytes = opts.maxBytes ?? 1024 * 1024 * 1024;
    const initialBytes = Math.max(opts.initialBytes ?? 1024 * 1024, HEADER_WORDS * 4 + 4096);
    if (!Number.isInteger(maxBytes) || maxBytes < initialBytes || maxBytes > MAX_ARENA_BYTES) {
      throw new DaxError(
        'EINVAL',
        `radix tree arena: maxBytes ${maxBytes} must be in [${initialBytes}, ${MAX_ARENA_BYTES}]`,
      );
    }
    const maxPages = roundUp(maxBytes, WASM_PAGE_BYTES) / WASM_PAGE_BYTES;
    const memory = new Wasm.Memory({
      initial: roundUp(initialBytes, WASM_PAGE_BYTES) / WASM_PAGE_BYTES,
      maximum: maxPages,
      shared: true,
    });
    const arena = new Arena(memory, maxPages * WASM_PAGE_BYTES);
    // Advised before the first store: a 2 MiB range that already holds a 4 KiB page when the
    // advice comes gets 4 KiB pages for every later fault too (a huge page needs the whole
    // range at its first fault), so the header's store would leave the arena's first 2 MiB,
    // the tree's oldest nodes and leaves, in small pages.
    const hugePages = adviseHugePages(arena.sab);
    const i32 = arena.i32;
    i32[H_MAGIC] = ARENA_MAGIC;
    i32[H_BUMP] = HEADER_WORDS;
    i32[H_TREE_ID] = treeId;
    i32[H_FLAGS] = opts.poisonReclaimed === true ? FLAG_POISON : 0;
    i32[H_MAX_PAGES] = maxPages;
    i32[H_BYTES] = arena.sab.byteLength | 0;
    i32[H_HUGE_PAGES] = hugePages;
    i32[H_TOKEN] = randomFillSync(new Int32Array(1))[0] | 1;
    return arena;
  }

  static attach(memory: WasmMemory): Arena {
    if (!isWasmMemory(memory) || memory.buffer.byteLength < HEADER_WORDS * 4)
      throw new DaxError('EINVAL', 'radix tree attach: not a radix tree arena (a shared WebAssembly.Memory)');
    const head = new Int32Array(memory.buffer, 0, HEADER_WORDS);
    if (head[H_MAGIC] !== ARENA_MAGIC)
      throw new DaxError('EINVAL', 'radix tree attach: buffer is not a radix tree arena');
    return new Arena(memory, head[H_MAX_PAGES] * WASM_PAGE_BYTES);
  }

  get poison(): boolean {
    return (this.i32[H_FLAGS] & FLAG_POISON) !== 0;
  }

  /** Re-create the views if the buffer grew (another thread allocated). Returns true if they changed. */
  refresh(): boolean {
    // An acquire load (word-load.ts: plain on x86): the growth this may reveal was stored
    // before H_BYTES, and nothing here needs a store->load fence. Called twice per insert
    // (lockTree, bumpLocked), where an Atomics.load was a builtin call each time.
    if (loadWord(this.i32, H_BYTES) === (this.u8.length | 0)) return false; // | 0: an arena of 2 GiB or more wraps, as the stored word does
    const sab = this.memory.buffer;
    const bytes = sab.byteLength;
    if (bytes === this.u8.length) return false;
    this.sab = sab;
    this.i32 = new Int32Array(sab, 0, bytes >> 2);
    this.u8 = new Uint8Array(sab, 0, bytes);
    return true;
  }

  /** Allocate `words` words (rounded to the size class). Caller holds treeLock. Contents are garbage. */
  allocLocked(words: number): number {
    const cls = sizeClassOf(words);
    const size = classWords(cls);
    const head = H_FREE_BASE + cls;
    const i32 = this.i32;
    // Acquire loads (loadWord): a pusher stores the link before its CAS publishes the block,
    // and the CAS below re-validates the head, so no fence is needed before it.
    let off = loadWord(i32, head);
    while (off !== 0) {
      // Single popper (treeLock): the head can only change by concurrent pushes.
      const next = loadWord(i32, off + 1);
      const seen = Atomics.compareExchange(i32, head, off, next);
      if (seen === off) break;
      off = seen;
    }
    if (off === 0) off = this.bumpLocked(size);
    this.countAllocLocked(size);
    return off;
  }

  /**
   * `totalWords` words for many blocks at once, carved by the caller back to back, each of
   * its size class's full size (classWords(sizeClassOf(words))), so each can later be freed
   * on its own like any allocLocked block. One bump and one live-words update instead of one
   * per block: bulk-load.ts fills a new tree with a million leaves this way. Caller holds treeLock.
   */
  allocRunLocked(totalWords: number): number {
    const off = this.bumpLocked(totalWords);
    this.countAllocLocked(totalWords);
    return off;
  }

  /**
   * Gives back run `off` of `totalWords` words (allocRunLocked) that nothing ever reached, when
   * it is the last thing allocated (the bump moves back to it; the memory stays, for the next
   * allocation to reuse); false, nothing changed, when anything was allocated after it.
   */
  releaseRunLocked(off: number, totalWords: number): boolean {
    const i32 = this.i32;
    if (off < HEADER_WORDS || i32[H_BUMP] !== off + totalWords) return false;
    storeRelease(i32, H_BUMP, off);
    storeRelease(i32, H_LIVE_WORDS, (i32[H_LIVE_WORDS] - totalWords) | 0);
    return true;
  }

  /** H_LIVE_WORDS += words: only treeLock holders write it, so a plain read and a release store (for liveWords() readers). */
  private countAllocLocked(words: number): void {
    const i32 = this.i32;
    storeRelease(i32, H_LIVE_WORDS, (i32[H_LIVE_WORDS] + words) | 0);
  }

  /**
   * Bump-allocate `size` words, growing the buffer when needed. A block never straddles a
   * growth boundary: one that would is placed at the old end instead (the old tail stays
   * unused). Every view any thread holds ends at some past length, so it sees each block
   * whole or not at all; a block beyond the view reads as undefined, fails the header check
   * and makes the reader refresh and restart. A straddling block would show its header and
   * hide the rest (prefix length, children, key bytes as undefined), and a lock-free lookup
   * could answer "absent" for a key that is there.
   */
  private bumpLocked(size: number): number {
    this.refresh(); // another thread may have grown the memory: bump from its true end
    let off = this.i32[H_BUMP];
    const bytes = this.u8.length; // the view's length after refresh (a growable buffer's byteLength is a runtime call)
    if ((off + size) * 4 > bytes) {
      off = bytes >> 2;
      const end = off + size;
      const want = Math.min(roundUp(Math.max(end * 4, bytes * 2), WASM_PAGE_BYTES), this.maxBytes);
      if (end * 4 > want) throw new DaxError('ENOSPC', `radix tree arena full: ${this.maxBytes} bytes (maxBytes)`);
      this.memory.grow((want - bytes) / WASM_PAGE_BYTES);
      Atomics.store(this.i32, H_BYTES, want | 0); // before H_BUMP below moves into the new part
      this.refresh();
      // The first 2 MiB page was faulted in while only part of it was accessible (a memory
      // smaller than 2 MiB), so it got 4 KiB pages, and keeps them: now that all of it is,
      // make it one huge page (MADV_COLLAPSE on the prefault thread; the arena's oldest
      // nodes and leaves are there).
      if (bytes < HUGE_BYTES && want >= HUGE_BYTES && this.i32[H_HUGE_PAGES] === HugePageAdvice.ADVISED)
        prefaultInBackground(this.sab, 0, HUGE_BYTES, true);
    }
    storeRelease(this.i32, H_BUMP, off + size); // read only by treeLock holders (and asserts)
    return off;
  }

  /**
   * Return a block to its free list. Only the epoch reclaimer calls this (grace period over).
   * In poison mode the whole block is overwritten first, so a late reader sees garbage it
   * detects, never plausible stale data.
   */
  free(off: number, words: number): void {
    this.refresh();
    const cls = sizeClassOf(words);
    const size = classWords(cls);
    const i32 = this.i32;
    assert(
      off >= HEADER_WORDS && off + size <= i32[H_BUMP],
      () => `arena free: block ${off}+${size} outside the arena`,
    );
    if (this.poison) i32.fill(POISON_WORD, off, off + size);
    Atomics.store(i32, off, this.poison ? POISON_WORD : FREED_HEADER);
    const head = H_FREE_BASE + cls;
    let seen = Atomics.load(i32, head);
    for (;;) {
      Atomics.store(i32, off + 1, seen);
      const prev = Atomics.compareExchange(i32, head, seen, off);
      if (prev === seen) break;
      seen = prev;
    }
    Atomics.add(i32, H_FREED_WORDS, size);
    Atomics.add(i32, H_STAT_RECLAIMED, 1);
  }

  hugePages(): HugePagesState {
    const v = this.i32[H_HUGE_PAGES];
    if (v < 0) return `failed: ${errnoName(v)}`;
    return (['disabled', 'advised', 'unsupported', 'too-small'] as const)[v] ?? `failed: state ${v}`;
  }

  liveWords(): number {
    // Freed first: a block is freed only after it was allocated, so reading the allocations
    // last never yields fewer live words than were live at some moment of the call.
    const freed = Atomics.load(this.i32, H_FREED_WORDS);
    return (Atomics.load(this.i32, H_LIVE_WORDS) - freed) | 0;
  }

  usedBytes(): number {
    return this.liveWords() * 4;
  }
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
