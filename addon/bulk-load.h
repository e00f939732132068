// The radix tree's bulk load (src/index/bulk-load.ts) in C++: the two loops that touch every
// key of a recovery's index rebuild. bulk-load.ts owns the algorithm, its invariants and the
// arena; src/index/nodes.ts owns the node layout written here (header word, leaf and inner
// node words, the N4/N16/N32/N48/N256 bodies), src/index/arena.ts the size classes. Every
// block written lies in a run the caller allocated (Arena.allocRunLocked) and sized with the
// plan of the same call's arguments: nothing outside [run, run + words) is written.
//
// Concurrency: the caller holds treeLock on a tree never shared (no other thread can reach
// any block); the root is published by the caller. Persistence ordering: none (volatile).
#pragma once

#include <napi.h>

#include <cstdint>

namespace daxstore {

// A merge tape (kv-recovery.h JsMergeKvColumns writes one): runs, one u32 word each, of an op
// in the top two bits and a run length >= 1 below. The ops walk two column sets a and b in
// step: take a's next entry, skip it, take b's next, skip it. The entries taken, in tape
// order, are the bulk load's entries.
constexpr uint32_t kTapeOpShift = 30;
constexpr uint32_t kTapeRunMask = (uint32_t{1} << kTapeOpShift) - 1;
constexpr uint32_t kTapeTakeA = 0, kTapeSkipA = 1, kTapeTakeB = 2, kTapeSkipB = 3;

// JsBulkLeaves(arena: SharedArrayBuffer, run, keys: Uint8Array, starts: Uint32Array,
//   lengths: Uint16Array, values: Float64Array, count, leaves: Int32Array | null) -> number
// leaves null (the plan): checks every entry's shape (key length <= 4096, key inside `keys`,
// value an integer in [0, 2^48)) and returns the words the leaves take, each rounded to its
// size class, or -(i + 1) for the first bad entry i. Else writes leaf i at the next block of the
// run from word `run` (header, entry word 0, value, key bytes; the key's last word zero-padded),
// leaves[i] = its word offset, and returns 0, or -(i + 1) when key i is not greater than key
// i - 1 (leaves before i are written; none is reachable). -EINVAL for bad arguments.
// With five more arguments (bKeys, bStarts, bLengths, bValues, tape: Uint32Array), the entries
// are those the tape takes from the columns above (a) and these (b), in tape order: entry i is
// the tape's i-th take, and a tape that does not take exactly `count` entries inside both
// column sets is a bad entry (-(i + 1), i the first entry it fails at, or count).
Napi::Value JsBulkLeaves(const Napi::CallbackInfo& info);

// JsBulkInner(arena: SharedArrayBuffer, leaves: Int32Array, count, run) -> number
// The inner nodes over leaves[0, count) (sorted, unique keys, count >= 2): run < 0 (the plan)
// returns the words they take, each rounded to its size class; else writes them post-order
// into the run from word `run` and returns the root's word offset. Tag counts are summed from
// the leaves' entry words (DIRTY, TOWRITE). -EINVAL for bad arguments, -ERANGE when a node
// would have fewer than two items or the run is too short (keys not sorted and unique).
Napi::Value JsBulkInner(const Napi::CallbackInfo& info);

// JsLeafKeyStarts(lengths: Uint16Array, starts: Uint32Array | null, count) -> number
// Where the keys of the leaves JsBulkLeaves writes for keys of these lengths lie in their run:
// starts[i] = the byte offset of leaf i's key from the run's first word (leaf i at the sum of
// the size-class words of the leaves before it, its key after the leaf header; starts null:
// none written, the words counted). Returns the words of the leaves, or -EINVAL (bad arguments, a length over 4096, offsets past 2^32).
Napi::Value JsLeafKeyStarts(const Napi::CallbackInfo& info);

// JsLoadTreeImage(arena: SharedArrayBuffer, run, image: Uint8Array, words, origin, inner) -> number
// A tree image (an index checkpoint's, src/kv/checkpoint.ts; src/index/tree-image.ts): `words`
// words of blocks, the leaves first and from word `inner` on the inner nodes back to back (each
// its size class's full size), whose pointers (children, endLeaf) are word offsets in
// [origin, origin + words), the image's first word being `origin`. Copies it to the run from word
// `run`: the words before `inner` in one copy (leaves hold no pointer), then the inner nodes 256
// KiB at a time, each piece's nodes walked while it is in cache and every pointer moved by
// run - origin. Returns the inner nodes, or -EINVAL (bad arguments: the run or image too short,
// image not 4-byte aligned), or -ERANGE: a block from `inner` on that is not a live inner node,
// runs past the image, or holds a pointer outside it (the run is then partly written and
// nothing in it is reachable). The leaves are copied as they are: the image's checksum vouches
// for them (and for everything else in it).
Napi::Value JsLoadTreeImage(const Napi::CallbackInfo& info);

// JsPatchImageLeaves(arena: SharedArrayBuffer, run, leafWords, starts: Uint32Array,
//   values: Float64Array, tape: Uint32Array, added: Int32Array, removed: Int32Array,
//   write: boolean) -> number
// Applies a merge tape (JsMergeKvColumns: a = a checkpoint's columns, b = the tail's winners)
// to the leaves of the checkpoint's tree image just copied to the run at word `run`
// (JsLoadTreeImage; `leafWords` words of leaves there, key i's leaf at (starts[i] - 16) / 4:
// JsLeafKeyStarts). Where the tape skips a's entry i and takes b's entry j of the same key (the
// tail's entry wins), leaf i's value becomes values[j] (nothing else in the leaf changes: its
// entry word stays 0). The other changes are listed for the caller, who makes them through the
// tree afterwards: added[] the b entries the tape takes for keys a lacks, removed[] the a
// entries a winning DEL removes. Both arrays must be exactly their size (the merge's counts).
// write false: nothing is written, the values only checked (the switch
// kv-checkpoint-tail-unpatched). Returns the values written, -EINVAL (bad arguments), or
// -ERANGE: a tape that does not walk a (starts.length entries) and b (values.length) whole, a
// key whose leaf is not a leaf of the run's leaves, a value not an integer in [0, 2^48), or
// counts other than the arrays' lengths (leaves before it may be written: the run is then
// left unreachable by the caller).
Napi::Value JsPatchImageLeaves(const Napi::CallbackInfo& info);

// JsBuildTreeImageStart(keys: Uint8Array, lengths: Uint16Array, values: Float64Array, count,
//   out: Uint8Array, first) -> job | number
// Starts a thread that builds the tree image (src/index/tree-image.ts) of `count` entries whose
// keys lie back to back in `keys` (key i: lengths[i] bytes after key i - 1's), in key order,
// into `out` from word `first` on (out 4-byte aligned; the words before `first` untouched): the
// leaves as JsBulkLeaves writes them, then the inner nodes over them as JsBulkInner does, every
// pointer a word offset of `out` (the image's origin is `first`). Returns the job at once, or
// -EINVAL for bad arguments. The job reads the columns and writes `out` until it is finished:
// nothing else may touch them meanwhile (the job keeps them alive).
Napi::Value JsBuildTreeImageStart(const Napi::CallbackInfo& info);

// JsBuildTreeImageDone(job) -> boolean: the build has ended (JsBuildTreeImageFinish will not wait).
Napi::Value JsBuildTreeImageDone(const Napi::CallbackInfo& info);

// JsBuildTreeImageFinish(job, out: Float64Array(4), stop: boolean) -> number
// Waits for the build (stop: asks it to end early first) and writes its outcome to out:
// [0, words, root, inner] built (the image's words from `first`, the root's word, the word from
// `first` where the inner nodes begin); [1, i] entry i has a bad shape (a key over 4096 bytes
// or past `keys`, a value not an integer in [0, 2^48)); [2, i] key i is not above key i - 1;
// [3, words] `out` is too short (words: what it needs from word 0, 0 when not known yet);
// [4] no memory; [5] stopped. Returns 0, or -EINVAL (bad arguments, finished already).
Napi::Value JsBuildTreeImageFinish(const Napi::CallbackInfo& info);

}  // namespace daxstore
