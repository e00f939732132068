#include "bulk-load.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "backing-store.h"

namespace daxstore {
namespace {

// src/index/nodes.ts Lay, src/index/entry-word.ts Ew
constexpr int32_t kMagic = 0xa5;
constexpr int32_t kLeaf = 1, kN4 = 2, kN16 = 3, kN32 = 4, kN48 = 5, kN256 = 6;
constexpr int kWPrefixLen = 1, kWDirty = 2, kWTowrite = 3, kWEndLeaf = 4, kInnerHeaderWords = 5;
constexpr int kWEntry = 1, kWValueLo = 2, kWValueHi = 3, kLeafHeaderWords = 4;
constexpr int32_t kEwDirty = 1 << 9, kEwTowrite = 1 << 10;
constexpr uint32_t kMaxKeyBytes = 4096;
constexpr double kMaxValue = 281474976710655.0;  // 2^48 - 1

int32_t Header(int32_t type, uint32_t n) { return static_cast<int32_t>(kMagic | (type << 8) | (n << 12)); }
uint32_t CountOf(int32_t hdr) { return (static_cast<uint32_t>(hdr) >> 12) & 0x1fff; }
int32_t TypeOf(int32_t hdr) { return (hdr >> 8) & 15; }
uint64_t LeafWords(uint32_t keyLen) { return kLeafHeaderWords + ((keyLen + 3) >> 2); }
uint32_t CapacityOf(int32_t type) { return type == kN4 ? 4 : type == kN16 ? 16 : type == kN32 ? 32 : type == kN48 ? 48 : 256; }
int32_t TypeForCount(uint32_t n) { return n <= 4 ? kN4 : n <= 16 ? kN16 : n <= 32 ? kN32 : n <= 48 ? kN48 : kN256; }
uint64_t InnerWords(int32_t type, uint32_t prefixLen) {
  const uint64_t base = kInnerHeaderWords + ((prefixLen + 3) >> 2);
  if (type == kN48) return base + 64 + 48;
  if (type == kN256) return base + 256;
  const uint32_t cap = CapacityOf(type);
  return base + (cap >> 2) + cap;
}
// src/index/arena.ts sizeClassOf and classWords: the block size a block of `words` takes.
uint64_t ClassWords(uint64_t words) {
  uint32_t cls;
  if (words <= 32) cls = words <= 2 ? 0 : static_cast<uint32_t>(words - 2);
  else if (words <= 64) cls = 31 + static_cast<uint32_t>((words - 33) >> 1);
  else if (words <= 320) cls = 47 + static_cast<uint32_t>((words - 65) >> 2);
  else cls = 111 + (32 - __builtin_clz(static_cast<uint32_t>(words - 1))) - 9;
  if (cls < 31) return cls + 2;
  if (cls < 47) return 34 + ((cls - 31) << 1);
  if (cls < 111) return 68 + ((cls - 47) << 2);
  return uint64_t{1} << (cls - 111 + 9);
}

// A leaf at `p`: its header, no entry word yet, the value, and the key with the bytes after it
// in its last word zeroed.
inline void WriteLeaf(int32_t* p, const uint8_t* key, uint32_t len, uint64_t value) {
  p[0] = Header(kLeaf, len);
  p[kWEntry] = 0;
  p[kWValueLo] = static_cast<int32_t>(static_cast<uint32_t>(value));
  p[kWValueHi] = static_cast<int32_t>(static_cast<uint32_t>(value >> 32));
  if (len > 0) p[kLeafHeaderWords + ((len - 1) >> 2)] = 0;
  std::memcpy(p + kLeafHeaderWords, key, len);
}

bool IsIndex(double x) { return x >= 0 && x <= 9007199254740991.0 && std::floor(x) == x; }

bool ArenaOf(const Napi::Value& arg, uint8_t** data, size_t* bytes) {
  std::shared_ptr<v8::BackingStore> store = SharedBackingStore(arg);
  if (store == nullptr || store->Data() == nullptr) return false;
  *data = static_cast<uint8_t*>(store->Data());
  *bytes = store->ByteLength();
  return true;  // the caller's argument keeps the memory alive for the call
}

template <typename T>
bool TypedOf(const Napi::Value& v, napi_typedarray_type type, const T** data, size_t* length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) return false;
  Napi::TypedArrayOf<T> a = v.As<Napi::TypedArrayOf<T>>();  // Data() from napi_get_typedarray_info: a SharedArrayBuffer's too
  *data = a.Data();
  *length = a.ElementLength();
  return true;
}

int CompareKeys(const uint8_t* a, uint32_t an, const uint8_t* b, uint32_t bn) {
  const int c = std::memcmp(a, b, std::min(an, bn));
  if (c != 0) return c;
  return an < bn ? -1 : an > bn ? 1 : 0;
}

struct Inner {
  int32_t* i32;
  uint8_t* u8;
  uint64_t words;  // of the arena
  const int32_t* leaves;
  bool write;
  uint64_t cursor, end;  // the run (write), or the plan's sum from 0
  bool bad = false;
  std::vector<std::array<uint8_t, 256>> bytes;
  std::vector<std::array<int32_t, 256>> kids;
  int64_t dirty = 0, towrite = 0;  // of the subtree the last Build returned

  const uint8_t* Key(int32_t leaf) const { return u8 + (static_cast<uint64_t>(leaf) + kLeafHeaderWords) * 4; }
  uint32_t Len(int32_t leaf) const { return CountOf(i32[leaf]); }

  // bulk-load.ts Builder.build: the subtree of leaves[lo, hi) whose keys share bytes [0, depth).
  int32_t Build(uint64_t lo, uint64_t hi, uint32_t depth, uint32_t level) {
    const int32_t first = leaves[lo];
    if (hi - lo == 1) {
      const int32_t entry = i32[first + kWEntry];
      dirty = (entry & kEwDirty) != 0 ? 1 : 0;
      towrite = (entry & kEwTowrite) != 0 ? 1 : 0;
      return first;
    }
    const uint32_t firstLen = Len(first);
    const int32_t last = leaves[hi - 1];
    const uint32_t n0 = std::min(firstLen, Len(last));
    const uint8_t* fk = Key(first);
    const uint8_t* lk = Key(last);
    uint32_t branch = depth;
    while (branch < n0 && fk[branch] == lk[branch]) branch++;
    int32_t endLeaf = 0;
    uint64_t next = lo;
    int64_t d = 0, t = 0;
    if (firstLen == branch) {
      endLeaf = Build(lo, lo + 1, branch, level + 1);
      d += dirty;
      t += towrite;
      next = lo + 1;
    }
    if (bytes.size() <= level) {
      bytes.resize(level + 1);
      kids.resize(level + 1);
    }
    uint32_t n = 0;
    while (next < hi) {
      if (Len(leaves[next]) <= branch || n >= 256) return bad = true, 0;
      const uint8_t b = Key(leaves[next])[branch];
      uint64_t stop = next + 1;
      while (stop < hi && Len(leaves[stop]) > branch && Key(leaves[stop])[branch] == b) stop++;
      const int32_t kid = Build(next, stop, branch + 1, level + 1);
      if (bad) return 0;
      bytes[level][n] = b;
      kids[level][n++] = kid;
      d += dirty;
      t += towrite;
      next = stop;
    }
    if (n + (endLeaf != 0 ? 1 : 0) < 2) return bad = true, 0;
    const int32_t type = TypeForCount(n);
    const uint32_t plen = branch - depth;
    const uint64_t w = InnerWords(type, plen);
    const uint64_t block = ClassWords(w);
    dirty = d;
    towrite = t;
    if (!write) return cursor += block, 0;
    if (cursor + block > end) return bad = true, 0;
    const uint64_t node = cursor;
    cursor += block;
    int32_t* p = i32 + node;
    std::fill(p, p + w, 0);
    p[0] = Header(type, n);
    p[kWPrefixLen] = static_cast<int32_t>(plen);
    p[kWDirty] = static_cast<int32_t>(d);
    p[kWTowrite] = static_cast<int32_t>(t);
    p[kWEndLeaf] = endLeaf;
    std::memcpy(u8 + (node + kInnerHeaderWords) * 4, fk + depth, plen);
    int32_t* body = p + kInnerHeaderWords + ((plen + 3) >> 2);
    const uint8_t* bs = bytes[level].data();
    const int32_t* ks = kids[level].data();
    if (type == kN256) {
      for (uint32_t i = 0; i < n; i++) body[bs[i]] = ks[i];
    } else if (type == kN48) {
      uint8_t* index = reinterpret_cast<uint8_t*>(body);
      for (uint32_t i = 0; i < n; i++) {
        index[bs[i]] = static_cast<uint8_t>(i + 1);
        body[64 + i] = ks[i];
      }
    } else {
      const uint32_t cap = CapacityOf(type);
      std::memcpy(body, bs, n);
      std::memcpy(body + (cap >> 2), ks, n * sizeof(int32_t));
    }
    return static_cast<int32_t>(node);
  }
};

}  // namespace

namespace {

// The bulk load's entries in order: one column set (a) taken whole, or the takes of a merge
// tape over two (a, b). Every entry handed out lies inside its column set's arrays.
struct Entries {
  const uint8_t* keys[2] = {nullptr, nullptr};
  const uint32_t* starts[2] = {nullptr, nullptr};
  const uint16_t* lengths[2] = {nullptr, nullptr};
  const double* values[2] = {nullptr, nullptr};
  uint64_t keysLength[2] = {0, 0}, length[2] = {0, 0};  // length: entries the shortest of its three columns holds
  const uint32_t* tape = nullptr;     // null: a's first `count` entries
  uint64_t tapeWords = 0, count = 0;
  uint64_t word = 0, left = 0, at[2] = {0, 0};
  uint32_t op = kTapeTakeA;

  void Rewind() {
    word = 0;
    at[0] = at[1] = 0;
    op = kTapeTakeA;
    left = tape == nullptr ? count : 0;
  }
  // The next entry's set and index: true, or false at the tape's end or where it leaves its columns (bad).
  __attribute__((always_inline)) bool Next(int* set, uint64_t* index, bool* bad) {
    *bad = false;
    if (left != 0 && op == kTapeTakeA && at[0] < length[0]) {  // within a run of a's takes (all of them without a tape)
      *set = 0;
      *index = at[0]++;
      left--;
      return true;
    }
    for (;;) {
      while (left == 0) {
        if (tape == nullptr || word >= tapeWords) return false;
        op = tape[word] >> kTapeOpShift;
        left = tape[word] & kTapeRunMask;
        word++;
      }
      const int s = op == kTapeTakeA || op == kTapeSkipA ? 0 : 1;
      if (op == kTapeSkipA || op == kTapeSkipB) {
        at[s] += left;
        left = 0;
        if (at[s] > length[s]) return *bad = true, false;
        continue;
      }
      if (at[s] >= length[s]) return *bad = true, false;
      *set = s;
      *index = at[s]++;
      left--;
      return true;
    }
  }
};

bool ColumnsOf(const Napi::CallbackInfo& info, int first, Entries* e, int set) {
  size_t keysLength, startsLength, lengthsLength, valuesLength;
  if (!TypedOf(info[first], napi_uint8_array, &e->keys[set], &keysLength) || !TypedOf(info[first + 1], napi_uint32_array, &e->starts[set], &startsLength) ||
      !TypedOf(info[first + 2], napi_uint16_array, &e->lengths[set], &lengthsLength) || !TypedOf(info[first + 3], napi_float64_array, &e->values[set], &valuesLength))
    return false;
  e->keysLength[set] = keysLength;
  e->length[set] = std::min({startsLength, lengthsLength, valuesLength});
  return true;
}

}  // namespace

Napi::Value JsBulkLeaves(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 8 || !info[1].IsNumber() || !info[6].IsNumber()) return bad;
  uint8_t* arena = nullptr;
  size_t arenaBytes = 0;
  if (!ArenaOf(info[0], &arena, &arenaBytes)) return bad;
  Entries e;
  if (!ColumnsOf(info, 2, &e, 0)) return bad;
  const bool merged = info.Length() >= 13 && !info[12].IsUndefined() && !info[12].IsNull();
  if (merged) {
    size_t tapeWords;
    if (!ColumnsOf(info, 8, &e, 1) || !TypedOf(info[12], napi_uint32_array, &e.tape, &tapeWords)) return bad;
    e.tapeWords = tapeWords;
  }
  const double runArg = info[1].As<Napi::Number>().DoubleValue();
  const double countArg = info[6].As<Napi::Number>().DoubleValue();
  if (!IsIndex(runArg) || !IsIndex(countArg)) return bad;
  const uint64_t count = static_cast<uint64_t>(countArg);
  if (!merged && count > e.length[0]) return bad;
  e.count = count;
  int set;
  uint64_t k;
  bool broken;
  if (info[7].IsNull() || info[7].IsUndefined()) {
    double total = 0;
    uint64_t i = 0;
    e.Rewind();
    for (; i < count; i++) {
      if (!e.Next(&set, &k, &broken)) return Napi::Number::New(env, -static_cast<double>(i) - 1);
      const uint32_t len = e.lengths[set][k];
      const double v = e.values[set][k];
      if (len > kMaxKeyBytes || uint64_t{e.starts[set][k]} + len > e.keysLength[set] || !(v >= 0 && v <= kMaxValue && std::floor(v) == v))
        return Napi::Number::New(env, -static_cast<double>(i) - 1);
      total += static_cast<double>(ClassWords(LeafWords(len)));
    }
    if (e.Next(&set, &k, &broken) || broken) return Napi::Number::New(env, -static_cast<double>(count) - 1);  // takes more than count
    return Napi::Number::New(env, total);
  }
  if (!info[7].IsTypedArray() || info[7].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) return bad;
  Napi::Int32Array outArray = info[7].As<Napi::Int32Array>();
  int32_t* out = outArray.Data();
  if (outArray.ElementLength() < count) return bad;
  // Offsets first (the caller retires every leaf of the run when one is out of order), each
  // checked against the arena, then the leaves.
  uint64_t at = static_cast<uint64_t>(runArg);
  e.Rewind();
  for (uint64_t i = 0; i < count; i++) {
    if (!e.Next(&set, &k, &broken)) return bad;
    const uint32_t len = e.lengths[set][k];
    if (len > kMaxKeyBytes || uint64_t{e.starts[set][k]} + len > e.keysLength[set]) return bad;
    const uint64_t block = ClassWords(LeafWords(len));
    if ((at + block) * 4 > arenaBytes || at + block > 0x7fffffff) return bad;
    out[i] = static_cast<int32_t>(at);
    at += block;
  }
  int32_t* i32 = reinterpret_cast<int32_t*>(arena);
  const uint8_t* previous = nullptr;
  uint32_t previousLength = 0;
  e.Rewind();
  for (uint64_t i = 0; i < count; i++) {
    if (!e.Next(&set, &k, &broken)) return bad;
    const uint32_t len = e.lengths[set][k];
    const uint8_t* key = e.keys[set] + e.starts[set][k];
    if (i > 0 && CompareKeys(previous, previousLength, key, len) >= 0) return Napi::Number::New(env, -static_cast<double>(i) - 1);
    previous = key;
    previousLength = len;
    int32_t* p = i32 + out[i];
    WriteLeaf(p, key, len, static_cast<uint64_t>(e.values[set][k]));
  }
  return Napi::Number::New(env, 0);
}

Napi::Value JsBulkInner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 4 || !info[2].IsNumber() || !info[3].IsNumber()) return bad;
  uint8_t* arena = nullptr;
  size_t arenaBytes = 0;
  if (!ArenaOf(info[0], &arena, &arenaBytes)) return bad;
  const int32_t* leaves;
  size_t leavesLength;
  if (!TypedOf(info[1], napi_int32_array, &leaves, &leavesLength)) return bad;
  const double countArg = info[2].As<Napi::Number>().DoubleValue();
  const double run = info[3].As<Napi::Number>().DoubleValue();
  if (!IsIndex(countArg) || countArg < 2 || countArg > static_cast<double>(leavesLength) || !(run < 0 || IsIndex(run))) return bad;
  const uint64_t count = static_cast<uint64_t>(countArg);
  Inner b;
  b.i32 = reinterpret_cast<int32_t*>(arena);
  b.u8 = arena;
  b.words = arenaBytes / 4;
  b.leaves = leaves;
  // Every leaf a live LEAF block inside the arena, its key too (nothing is read outside).
  for (uint64_t i = 0; i < count; i++) {
    const int64_t l = leaves[i];
    if (l <= 0 || static_cast<uint64_t>(l) + kLeafHeaderWords > b.words) return bad;
    const int32_t hdr = b.i32[l];
    if ((hdr & 0xff) != kMagic || TypeOf(hdr) != kLeaf || static_cast<uint64_t>(l) + LeafWords(CountOf(hdr)) > b.words) return bad;
  }
  b.write = run >= 0;
  b.cursor = b.write ? static_cast<uint64_t>(run) : 0;
  b.end = b.write ? b.words : 0;
  // Build keeps one level's scratch per depth (a vector that grows): a failed allocation is
  // -ENOMEM, never an exception out of the addon call.
  int32_t root;
  try {
    root = b.Build(0, count, 0, 0);
  } catch (const std::bad_alloc&) {
    return Napi::Number::New(env, -ENOMEM);
  }
  if (b.bad) return Napi::Number::New(env, -ERANGE);
  return Napi::Number::New(env, b.write ? static_cast<double>(root) : static_cast<double>(b.cursor));
}

Napi::Value JsLeafKeyStarts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 3 || !info[2].IsNumber()) return bad;
  const uint16_t* lengths;
  size_t lengthsLength;
  if (!TypedOf(info[0], napi_uint16_array, &lengths, &lengthsLength)) return bad;
  uint32_t* starts = nullptr;
  size_t startsLength = 0;
  if (!info[1].IsNull()) {
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) return bad;
    Napi::Uint32Array startsArray = info[1].As<Napi::Uint32Array>();
    starts = startsArray.Data();
    startsLength = startsArray.ElementLength();
  }
  const double countArg = info[2].As<Napi::Number>().DoubleValue();
  if (!IsIndex(countArg) || countArg > static_cast<double>(lengthsLength) || (starts != nullptr && countArg > static_cast<double>(startsLength))) return bad;
  const uint64_t count = static_cast<uint64_t>(countArg);
  // A leaf's block words by its key's length, looked up: a pass over a million keys at open.
  static const std::array<uint16_t, kMaxKeyBytes + 1> kLeafClassWords = [] {
    std::array<uint16_t, kMaxKeyBytes + 1> t{};
    for (uint32_t len = 0; len <= kMaxKeyBytes; len++) t[len] = static_cast<uint16_t>(ClassWords(LeafWords(len)));
    return t;
  }();
  uint64_t words = 0;
  if (starts == nullptr) {
    // Only counted: each key's offset is checked once, the last one's (they grow with i).
    uint64_t last = 0;
    for (uint64_t i = 0; i < count; i++) {
      const uint16_t len = lengths[i];
      if (len > kMaxKeyBytes) return bad;
      last = words;
      words += kLeafClassWords[len];
    }
    if (count > 0 && last * 4 + kLeafHeaderWords * 4 > 0xffffffffu) return bad;
    return Napi::Number::New(env, static_cast<double>(words));
  }
  for (uint64_t i = 0; i < count; i++) {
    if (lengths[i] > kMaxKeyBytes || words * 4 + kLeafHeaderWords * 4 > 0xffffffffu) return bad;
    starts[i] = static_cast<uint32_t>(words * 4 + kLeafHeaderWords * 4);
    words += kLeafClassWords[lengths[i]];
  }
  return Napi::Number::New(env, static_cast<double>(words));
}

Napi::Value JsLoadTreeImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  const Napi::Value range = Napi::Number::New(env, -ERANGE);
  if (info.Length() < 6 || !info[1].IsNumber() || !info[3].IsNumber() || !info[4].IsNumber() || !info[5].IsNumber()) return bad;
  uint8_t* arena = nullptr;
  size_t arenaBytes = 0;
  if (!ArenaOf(info[0], &arena, &arenaBytes)) return bad;
  const uint8_t* image;
  size_t imageBytes;
  if (!TypedOf(info[2], napi_uint8_array, &image, &imageBytes)) return bad;
  const double runArg = info[1].As<Napi::Number>().DoubleValue();
  const double wordsArg = info[3].As<Napi::Number>().DoubleValue();
  const double originArg = info[4].As<Napi::Number>().DoubleValue();
  const double innerArg = info[5].As<Napi::Number>().DoubleValue();
  if (!IsIndex(runArg) || !IsIndex(wordsArg) || !IsIndex(originArg) || !IsIndex(innerArg) || runArg < 1 || originArg < 1) return bad;
  const uint64_t run = static_cast<uint64_t>(runArg);
  const uint64_t words = static_cast<uint64_t>(wordsArg);
  const uint64_t origin = static_cast<uint64_t>(originArg);
  const uint64_t inner = static_cast<uint64_t>(innerArg);
  if (words * 4 > imageBytes || inner > words || run + words > arenaBytes / 4 || origin + words > INT32_MAX) return bad;
  if (reinterpret_cast<uintptr_t>(image) % 4 != 0) return bad;
  int32_t* dst = reinterpret_cast<int32_t*>(arena) + run;
  const int32_t* src = reinterpret_cast<const int32_t*>(image);
  const int64_t delta = static_cast<int64_t>(run) - static_cast<int64_t>(origin);
  const int64_t lo = static_cast<int64_t>(origin);
  const int64_t hi = lo + static_cast<int64_t>(words);
  // The leaves (and whatever lies before the inner nodes): no pointers, one copy.
  std::memcpy(dst, src, inner * 4);
  constexpr uint64_t kChunkWords = 65536;  // 256 KiB: copied, then walked while in cache
  uint64_t copied = inner;
  // Copies up to at least word `to` of the image (a whole chunk at a time, capped at `words`).
  auto copyTo = [&](uint64_t to) {
    if (to <= copied) return;
    const uint64_t end = std::min(words, std::max(to, copied + kChunkWords));
    std::memcpy(dst + copied, src + copied, (end - copied) * 4);
    copied = end;
  };
  // A pointer word: 0 stays 0; else it must lie in the image, and moves with it.
  auto move = [&](int32_t* w) {
    const int64_t c = *w;
    if (c == 0) return true;
    if (c < lo || c >= hi) return false;
    *w = static_cast<int32_t>(c + delta);
    return true;
  };
  uint64_t nodes = 0;
  for (uint64_t at = inner; at < words;) {
    if (at + kInnerHeaderWords > words) return range;
    copyTo(at + kInnerHeaderWords);
    int32_t* b = dst + at;
    const int32_t hdr = b[0];
    const int32_t type = TypeOf(hdr);
    if ((hdr & 0xff) != kMagic || type < kN4 || type > kN256) return range;
    const uint32_t prefixLen = static_cast<uint32_t>(b[kWPrefixLen]);
    if (prefixLen > kMaxKeyBytes) return range;
    const uint64_t size = ClassWords(InnerWords(type, prefixLen));
    if (at + size > words) return range;
    copyTo(at + size);
    if (!move(b + kWEndLeaf)) return range;
    const uint64_t body = kInnerHeaderWords + ((prefixLen + 3) >> 2);
    uint64_t first = body, n = 256;
    if (type == kN48) first = body + 64, n = 48;
    else if (type != kN256) first = body + (CapacityOf(type) >> 2), n = CapacityOf(type);
    for (uint64_t i = 0; i < n; i++)
      if (!move(b + first + i)) return range;
    nodes++;
    at += size;
  }
  copyTo(words);
  return Napi::Number::New(env, static_cast<double>(nodes));
}

Napi::Value JsPatchImageLeaves(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  const Napi::Value range = Napi::Number::New(env, -ERANGE);
  if (info.Length() < 9 || !info[1].IsNumber() || !info[2].IsNumber() || !info[8].IsBoolean()) return bad;
  uint8_t* arena = nullptr;
  size_t arenaBytes = 0;
  if (!ArenaOf(info[0], &arena, &arenaBytes)) return bad;
  const uint32_t* starts;
  const double* values;
  const uint32_t* tape;
  size_t startsLength, valuesLength, tapeWords;
  if (!TypedOf(info[3], napi_uint32_array, &starts, &startsLength) || !TypedOf(info[4], napi_float64_array, &values, &valuesLength) ||
      !TypedOf(info[5], napi_uint32_array, &tape, &tapeWords))
    return bad;
  for (int i : {6, 7})
    if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) return bad;
  Napi::Int32Array addedArray = info[6].As<Napi::Int32Array>();
  Napi::Int32Array removedArray = info[7].As<Napi::Int32Array>();
  int32_t* added = addedArray.Data();
  int32_t* removed = removedArray.Data();
  const uint64_t addedLength = addedArray.ElementLength(), removedLength = removedArray.ElementLength();
  const double runArg = info[1].As<Napi::Number>().DoubleValue();
  const double leafWordsArg = info[2].As<Napi::Number>().DoubleValue();
  const bool write = info[8].As<Napi::Boolean>().Value();
  if (!IsIndex(runArg) || !IsIndex(leafWordsArg) || runArg < 1) return bad;
  const uint64_t run = static_cast<uint64_t>(runArg), leafWords = static_cast<uint64_t>(leafWordsArg);
  if (run + leafWords > arenaBytes / 4) return bad;
  int32_t* i32 = reinterpret_cast<int32_t*>(arena);
  // Where the checkpoint's key i lies (its leaf's key, kLeafHeaderWords words into the leaf):
  // the leaf's word in the run, or 0 when that is not a leaf of the run's leaves.
  // Key i's leaf word in the run (its key lies kLeafHeaderWords words into it), or 0 when that
  // is not inside the run's leaves. Read nothing yet: the leaf is prefetched, then checked and
  // written kAhead replaced keys later (the leaves lie in key order, hundreds of bytes apart, a
  // cache miss each that the prefetches overlap).
  auto leafAt = [&](uint64_t i) -> uint64_t {
    const uint64_t at = starts[i];
    if (at < kLeafHeaderWords * 4 || at % 4 != 0) return 0;
    const uint64_t w = at / 4 - kLeafHeaderWords;
    if (w + kLeafHeaderWords > leafWords) return 0;
    return run + w;
  };
  // Checks that `leaf` is a leaf of the run and writes `v` as its value.
  auto patch = [&](uint64_t leaf, double v) -> bool {
    const int32_t hdr = i32[leaf];
    if ((hdr & 0xff) != kMagic || TypeOf(hdr) != kLeaf || leaf - run + LeafWords(CountOf(hdr)) > leafWords) return false;
    if (!write) return true;
    const uint64_t value = static_cast<uint64_t>(v);
    i32[leaf + kWValueLo] = static_cast<int32_t>(static_cast<uint32_t>(value));
    i32[leaf + kWValueHi] = static_cast<int32_t>(static_cast<uint32_t>(value >> 32));
    return true;
  };
  constexpr uint64_t kAhead = 16;
  uint64_t ringLeaf[kAhead];
  double ringValue[kAhead];
  uint64_t a = 0, b = 0, nAdded = 0, nRemoved = 0, replaced = 0;
  int64_t pending = -1;  // a's entry a SkipA stepped over: the next b step is its key's
  for (uint64_t w = 0; w < tapeWords; w++) {
    const uint32_t op = tape[w] >> kTapeOpShift;
    const uint64_t n = tape[w] & kTapeRunMask;
    if (op == kTapeTakeA || op == kTapeSkipA) {
      if (pending >= 0 || a + n > startsLength) return range;
      if (op == kTapeSkipA) {
        if (n != 1) return range;  // the merge follows each SkipA with b's step of the same key
        pending = static_cast<int64_t>(a);
      }
      a += n;
      continue;
    }
    if (b + n > valuesLength) return range;
    for (uint64_t k = 0; k < n; k++, b++) {
      if (pending < 0) {
        if (op == kTapeTakeB) {  // a key the checkpoint lacks
          if (nAdded >= addedLength) return range;
          added[nAdded++] = static_cast<int32_t>(b);
        }
        continue;  // SkipB alone: a tail entry dropped
      }
      const uint64_t i = static_cast<uint64_t>(pending);
      pending = -1;
      if (op == kTapeSkipB) {  // a winning DEL: the key goes
        if (nRemoved >= removedLength) return range;
        removed[nRemoved++] = static_cast<int32_t>(i);
        continue;
      }
      const double v = values[b];
      const uint64_t leaf = leafAt(i);
      if (leaf == 0 || !(v >= 0 && v <= kMaxValue && std::floor(v) == v)) return range;
      __builtin_prefetch(i32 + leaf, 1);
      __builtin_prefetch(i32 + leaf + kWValueHi, 1);  // the leaf may straddle two lines
      const uint64_t slot = replaced % kAhead;
      if (replaced >= kAhead && !patch(ringLeaf[slot], ringValue[slot])) return range;
      ringLeaf[slot] = leaf;
      ringValue[slot] = v;
      replaced++;
    }
  }
  for (uint64_t r = replaced > kAhead ? replaced - kAhead : 0; r < replaced; r++)
    if (!patch(ringLeaf[r % kAhead], ringValue[r % kAhead])) return range;
  if (pending >= 0 || a != startsLength || b != valuesLength || nAdded != addedLength || nRemoved != removedLength) return range;
  return Napi::Number::New(env, static_cast<double>(replaced));
}

namespace {

// A tree image built on a thread of its own (JsBuildTreeImageStart): the columns' leaves, in
// key order from word `first` of `out`, then the inner nodes over them, as JsBulkLeaves and
// JsBulkInner write them into an arena run (every block its size class's full size, every
// entry word 0). The job keeps the columns and `out` alive (references) until it is finished
// or, never finished, collected: the destructor stops the thread and joins it.
struct ImageBuild {
  const uint8_t* keys = nullptr;
  const uint16_t* lengths = nullptr;
  const double* values = nullptr;
  uint64_t keysLength = 0, count = 0;
  int32_t* i32 = nullptr;  // out as words
  uint64_t words = 0, first = 0;
  Napi::Reference<Napi::Value> refs[4];
  std::thread thread;
  std::atomic<bool> done{false}, stop{false};
  bool finished = false;
  // the outcome (JsBuildTreeImageFinish's out): status, then its numbers
  double result[4] = {0, 0, 0, 0};

  void Fail(double status, double what) {
    result[0] = status;
    result[1] = what;
  }

  void Run() {
    try {
      Build();
    } catch (const std::bad_alloc&) {
      Fail(kNoMemory, 0);
    }
    done.store(true, std::memory_order_release);
  }

  void Build() {
    std::vector<int32_t> leaves(count);
    uint64_t at = first, start = 0;
    const uint8_t* previous = nullptr;
    uint32_t previousLength = 0;
    uint8_t* u8 = reinterpret_cast<uint8_t*>(i32);
    for (uint64_t i = 0; i < count; i++) {
      if (i % 65536 == 0 && stop.load(std::memory_order_relaxed)) return Fail(kStopped, 0);
      const uint32_t len = lengths[i];
      const double v = values[i];
      if (len > kMaxKeyBytes || start + len > keysLength || !(v >= 0 && v <= kMaxValue && std::floor(v) == v)) return Fail(kBadEntry, static_cast<double>(i));
      const uint8_t* key = keys + start;
      start += len;
      if (i > 0 && CompareKeys(previous, previousLength, key, len) >= 0) return Fail(kOutOfOrder, static_cast<double>(i));
      previous = key;
      previousLength = len;
      const uint64_t block = ClassWords(LeafWords(len));
      if (at + block > words) return Fail(kRoom, 0);
      int32_t* p = i32 + at;
      WriteLeaf(p, key, len, static_cast<uint64_t>(v));
      leaves[i] = static_cast<int32_t>(at);
      at += block;
    }
    const uint64_t inner = at;
    double root = count == 0 ? 0 : leaves[0];
    if (count >= 2) {
      Inner b;
      b.i32 = i32;
      b.u8 = u8;
      b.words = words;
      b.leaves = leaves.data();
      b.write = false;  // the plan: the words the inner nodes take
      b.cursor = 0;
      b.Build(0, count, 0, 0);
      if (b.bad) return Fail(kOutOfOrder, static_cast<double>(count));
      if (inner + b.cursor > words) return Fail(kRoom, static_cast<double>(inner + b.cursor));
      if (stop.load(std::memory_order_relaxed)) return Fail(kStopped, 0);
      b.write = true;
      b.cursor = inner;
      b.end = words;
      root = b.Build(0, count, 0, 0);
      if (b.bad) return Fail(kOutOfOrder, static_cast<double>(count));
      at = b.cursor;
    }
    result[0] = kBuilt;
    result[1] = static_cast<double>(at - first);
    result[2] = root;
    result[3] = static_cast<double>(inner - first);
  }

  ~ImageBuild() {
    stop.store(true, std::memory_order_relaxed);
    if (thread.joinable()) thread.join();
  }

  static constexpr double kBuilt = 0, kBadEntry = 1, kOutOfOrder = 2, kRoom = 3, kNoMemory = 4, kStopped = 5;
};

}  // namespace

Napi::Value JsBuildTreeImageStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 6 || !info[3].IsNumber() || !info[5].IsNumber()) return bad;
  auto job = std::make_unique<ImageBuild>();
  size_t keysLength, lengthsLength, valuesLength, outLength;
  const uint8_t* out;
  if (!TypedOf(info[0], napi_uint8_array, &job->keys, &keysLength) || !TypedOf(info[1], napi_uint16_array, &job->lengths, &lengthsLength) ||
      !TypedOf(info[2], napi_float64_array, &job->values, &valuesLength) || !TypedOf(info[4], napi_uint8_array, &out, &outLength))
    return bad;
  const double countArg = info[3].As<Napi::Number>().DoubleValue();
  const double firstArg = info[5].As<Napi::Number>().DoubleValue();
  if (!IsIndex(countArg) || countArg > static_cast<double>(std::min(lengthsLength, valuesLength)) || !IsIndex(firstArg) || firstArg < 1) return bad;
  if (reinterpret_cast<uintptr_t>(out) % 4 != 0) return bad;
  job->count = static_cast<uint64_t>(countArg);
  job->keysLength = keysLength;
  job->i32 = reinterpret_cast<int32_t*>(const_cast<uint8_t*>(out));
  job->words = std::min<uint64_t>(outLength / 4, INT32_MAX);  // a block's word must fit an i32 pointer
  job->first = static_cast<uint64_t>(firstArg);
  if (job->first > job->words) return bad;
  for (int i = 0; i < 4; i++) job->refs[i] = Napi::Persistent(info[i == 3 ? 4 : i]);
  try {
    job->thread = std::thread([j = job.get()] { j->Run(); });
  } catch (const std::system_error&) {
    job->Run();  // no thread: built here, done before this returns
  }
  return Napi::External<ImageBuild>::New(env, job.release(), [](Napi::Env, ImageBuild* j) { delete j; });
}

Napi::Value JsBuildTreeImageDone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) return Napi::Number::New(env, -EINVAL);
  const ImageBuild* job = info[0].As<Napi::External<ImageBuild>>().Data();
  return Napi::Boolean::New(env, job != nullptr && job->done.load(std::memory_order_acquire));
}

Napi::Value JsBuildTreeImageFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 3 || !info[0].IsExternal() || !info[2].IsBoolean()) return bad;
  ImageBuild* job = info[0].As<Napi::External<ImageBuild>>().Data();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) return bad;
  Napi::Float64Array out = info[1].As<Napi::Float64Array>();
  if (job == nullptr || job->finished || out.ElementLength() < 4) return bad;
  if (info[2].As<Napi::Boolean>().Value()) job->stop.store(true, std::memory_order_relaxed);
  if (job->thread.joinable()) job->thread.join();
  job->finished = true;
  for (Napi::Reference<Napi::Value>& r : job->refs) r.Reset();
  std::memcpy(out.Data(), job->result, sizeof job->result);
  return Napi::Number::New(env, 0);
}

}  // namespace daxstore
