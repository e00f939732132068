/**
 * loadWord: the load lock-free readers use for mutable shared words (child slots, root,
 * endLeaf, N48 index words, entry and value words of the seqlock).
 *
 * Why not always Atomics.load: V8 in Node 20 (V8 11.3) does not inline Atomics.load; every
 * call goes through a builtin, several times the cost of a typed-array load (bench/loads.ts
 * measures both; docs/PERFORMANCE.md). A lookup makes 5-8 such loads and a scan 4 per leaf.
 *
 * What the readers need from this load, and why a plain load gives it on x86 (TSO):
 *   - acquire: a reader loads a pointer (or an entry word) and then reads what it guards.
 *     x86 never reorders a load with a later load, and the writers publish with release
 *     stores (below) or Atomics.store / compareExchange, so a published pointer is never seen
 *     before the node contents written before it.
 *   - no compiler reordering or caching: TurboFan keeps typed-array element loads in effect
 *     order (they are effectful nodes; load elimination does not merge typed-array element
 *     loads), and every call the readers make (restart paths, visitors) is a barrier to it.
 *     Each loadWord is a fresh load of memory, so the seqlock's second entry-word load and
 *     the retry loops see new values.
 *   - no tearing: aligned Int32Array elements are tear-free in the JS memory model.
 * On weakly ordered CPUs (arm64 and the rest) load->load order is not guaranteed, so there
 * this is Atomics.load (sequentially consistent). The constant folds:
 * TurboFan sees one branch.
 *
 * Writers: the insert path's publishing stores under treeLock are storeRelease (below; the
 * radix-tree.ts note at finishCreate says why that suffices). Every store that needs a
 * store->load fence (the epoch pin in a symmetric domain, taking or handing on a lock, the
 * wake-up protocol) stays an Atomics.store or compareExchange: a locked instruction.
 */
export const PLAIN_LOADS_ARE_ACQUIRE = process.arch === 'x64' || process.arch === 'ia32';

/** Acquire load of i32[index] (see the file header for why a plain load suffices on x86). */
export function loadWord(i32: Int32Array, index: number): number {
  return PLAIN_LOADS_ARE_ACQUIRE ? i32[index] : Atomics.load(i32, index);
}

/**
 * Release store of i32[index]: every load and store before it is visible before it. On x86 a
 * plain store is one (TSO orders store after earlier loads and stores; TurboFan keeps
 * typed-array accesses in effect order). NOT a store->load fence: where one is needed (the
 * epoch pin, taking a lock) use Atomics.store / compareExchange.
 */
export function storeRelease(i32: Int32Array, index: number, value: number): void {
  if (PLAIN_LOADS_ARE_ACQUIRE) i32[index] = value;
  else Atomics.store(i32, index, value);
}
