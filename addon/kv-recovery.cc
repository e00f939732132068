#include "kv-recovery.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>

#include "persist.h"

#define XXH_INLINE_ALL
#include "vendor/xxhash/xxhash.h"

namespace daxstore {
namespace {

// src/kv/layout.ts
constexpr uint64_t kRecordHeaderBytes = 32;
constexpr uint64_t kEntryHeaderBytes = 16;
constexpr uint32_t kRecordMagic = 0x564b;
constexpr uint32_t kKindPut = 1, kKindBatch = 2, kKindPad = 3;
constexpr uint32_t kEntryPut = 1, kEntryDel = 2;

// io slots and codes: src/kv/recovery-native.ts
enum IoSlot { kBase, kEnd, kLimit, kNonce, kFlags, kAt, kCount, kReason, kReasonValue, kRecords, kMaxSequence, kKeyBytes, kIoSlots };
enum Status { kStatusEnd = 0, kStatusInvalid = 1, kStatusPoison = 2, kStatusFull = 3, kStatusEio = 4 };
enum Reason { kBadMagic = 1, kUnknownKind = 2, kBadLength = 3, kOtherNonce = 4, kChecksum = 5, kEntriesOverrun = 6 };
// io[kFlags] bits: test switches (src/test-break.ts; recovery-native.ts passes them), never set in production
constexpr int kFlagSkipChecksum = 1;  // kv-skip-checksum
constexpr int kFlagPastPoison = 2;    // kv-scan-past-poison: limit ignored

constexpr int kRecordWords = 8;
constexpr uint32_t kDelBit = 1u << 16;
constexpr int kOffsetHiShift = 17;
constexpr uint64_t kSortKeyBytes = 16;

uint32_t Load32(const uint8_t* p) {
  uint32_t x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

uint64_t Load64(const uint8_t* p) {
  uint64_t x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

uint64_t Align8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

bool IsIndex(double x) { return x >= 0 && x <= 9007199254740991.0 && std::floor(x) == x; }

struct Scan {
  const uint8_t* media;
  uint64_t base, end, limit, nonce;
  bool skipChecksum;
  uint32_t* out;
  uint64_t outRecords;  // capacity in sort records
  // Committed after each whole record (a SIGBUS abandons the record in progress, not these).
  uint64_t at, count, records, maxSequence, keyBytes;
  int status, reason;
  uint64_t reasonValue;
};

bool EntriesFit(const uint8_t* m, uint64_t at, uint64_t end, uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    if (at + kEntryHeaderBytes > end) return false;
    const uint32_t word0 = Load32(m + at);
    const uint32_t op = (word0 >> 16) & 0xff;
    const uint32_t keyLength = word0 & 0xffff;
    if ((op != kEntryPut && op != kEntryDel) || keyLength == 0) return false;
    at += Align8(kEntryHeaderBytes + keyLength + Load32(m + at + 4));
    if (at > end) return false;
  }
  return at == end;
}

// The sort record of the entry at e (layout: kv-recovery.h).
void WriteSortRecord(uint32_t* r, const uint8_t* m, uint64_t e) {
  const uint32_t word0 = Load32(m + e);
  const uint32_t keyLength = word0 & 0xffff;
  const bool del = ((word0 >> 16) & 0xff) == kEntryDel;
  const uint64_t at8 = e / 8;
  r[0] = keyLength | (del ? kDelBit : 0) | static_cast<uint32_t>((at8 >> 32) << kOffsetHiShift);
  uint8_t key[kSortKeyBytes] = {};
  std::memcpy(key, m + e + kEntryHeaderBytes, std::min<uint64_t>(keyLength, kSortKeyBytes));
  for (int w = 0; w < 4; w++) r[1 + w] = __builtin_bswap32(Load32(key + 4 * w));
  r[5] = Load32(m + e + 8);
  r[6] = Load32(m + e + 12);
  r[7] = static_cast<uint32_t>(at8);
}

// Record by record from s.at: poison first (nothing past the header is read before the
// record's claimed bytes are known to lie before the limit), then records.ts checkRecordInto's
// checks in its order, then the entries; each record commits its sums (see Scan) whole.
void RunScan(void* arg) {
  Scan& s = *static_cast<Scan*>(arg);
  const uint8_t* m = s.media;
  const bool anyPoison = s.limit < s.end;
  for (;;) {
    const uint64_t at = s.at;
    if (anyPoison) {
      if (std::min(s.end, at + kRecordHeaderBytes) > s.limit) return void(s.status = kStatusPoison);
      // The header lies before the poison (checked above), so its length word is readable.
      if (std::min(s.end, at + Load32(m + at + 12)) > s.limit) return void(s.status = kStatusPoison);
    }
    if (at + kRecordHeaderBytes > s.end) return void(s.status = kStatusEnd);
    const uint32_t word0 = Load32(m + at + 8);
    if (Load64(m + at) == 0 && word0 == 0 && Load32(m + at + 12) == 0) return void(s.status = kStatusEnd);
    s.status = kStatusInvalid;
    const auto invalid = [&s](int reason, uint64_t value = 0) {
      s.reason = reason;
      s.reasonValue = value;
    };
    if ((word0 & 0xffff) != kRecordMagic) return invalid(kBadMagic);
    const uint32_t kind = (word0 >> 16) & 0xff;
    if (kind != kKindPut && kind != kKindBatch && kind != kKindPad) return invalid(kUnknownKind, kind);
    const uint64_t total = Load32(m + at + 12);
    const uint32_t count = Load32(m + at + 16);
    if (total < kRecordHeaderBytes || total % 8 != 0 || at + total > s.end) return invalid(kBadLength, total);
    if ((uint64_t{Load32(m + at + 24)} << 32 | Load32(m + at + 20)) != s.nonce) return invalid(kOtherNonce);
    if (XXH64(m + at + 8, total - 8, 0) != Load64(m + at) && !s.skipChecksum) return invalid(kChecksum);
    if (kind != kKindPad && !EntriesFit(m, at + kRecordHeaderBytes, at + total, count)) return invalid(kEntriesOverrun);
    const uint32_t entries = kind == kKindPad ? 0 : count;
    if (s.count + entries > s.outRecords) return void(s.status = kStatusFull);
    uint64_t e = at + kRecordHeaderBytes;
    uint64_t maxSequence = s.maxSequence;
    uint64_t keyBytes = s.keyBytes;
    for (uint32_t i = 0; i < entries; i++) {
      uint32_t* r = s.out + (s.count + i) * kRecordWords;
      WriteSortRecord(r, m, e);
      const uint32_t keyLength = r[0] & 0xffff;
      maxSequence = std::max(maxSequence, uint64_t{r[6]} << 32 | r[5]);
      keyBytes += keyLength + 1;
      e += Align8(kEntryHeaderBytes + keyLength + Load32(m + e + 4));
    }
    // Commit the record: these stores are emitted before the next record's first load.
    s.count += entries;
    s.records++;
    s.maxSequence = maxSequence;
    s.keyBytes = keyBytes;
    s.at = at + total;
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
}

using Rec = std::array<uint32_t, kRecordWords>;

uint64_t RecOffset(const Rec& r) { return ((uint64_t{r[0] >> kOffsetHiShift} << 32) | r[7]) * 8; }
uint32_t RecKeyLength(const Rec& r) { return r[0] & 0xffff; }

// memcmp order of the two keys, shorter first: <0, 0, >0. Keys of more than 16 bytes compare
// their tails in the log (checksummed, outside poison).
int CompareKeys(const uint8_t* m, const Rec& a, const Rec& b) {
  for (int w = 1; w <= 4; w++)
    if (a[w] != b[w]) return a[w] < b[w] ? -1 : 1;
  const uint32_t la = RecKeyLength(a);
  const uint32_t lb = RecKeyLength(b);
  if (la > kSortKeyBytes && lb > kSortKeyBytes) {
    const uint64_t skip = kEntryHeaderBytes + kSortKeyBytes;
    const int d = std::memcmp(m + RecOffset(a) + skip, m + RecOffset(b) + skip, std::min(la, lb) - kSortKeyBytes);
    if (d != 0) return d;
  }
  return la == lb ? 0 : la < lb ? -1 : 1;
}

// A bucket's records are sorted through these: the 8 key bytes after the prefix every key of
// the bucket shares decide almost every comparison without touching the 32-byte records.
struct SortKey {
  uint64_t head;
  uint32_t index;  // into the bucket
};

// Bytes [shared, shared + 8) of the record's first 16 key bytes (zero past them), big-endian.
uint64_t HeadOf(const Rec& r, int shared) {
  if (shared >= static_cast<int>(kSortKeyBytes)) return 0;
  const unsigned __int128 key = (static_cast<unsigned __int128>((uint64_t{r[1]} << 32) | r[2]) << 64) | ((uint64_t{r[3]} << 32) | r[4]);
  return static_cast<uint64_t>((key << (8 * shared)) >> 64);
}

// How many of their first 16 key bytes all n records share (16: all; then heads tie and the
// full compare decides).
int SharedBytes(const Rec* recs, uint64_t n) {
  uint32_t diff[4] = {};
  for (uint64_t i = 1; i < n; i++)
    for (int w = 0; w < 4; w++) diff[w] |= recs[i][1 + w] ^ recs[0][1 + w];
  for (int w = 0; w < 4; w++)
    if (diff[w] != 0) return 4 * w + __builtin_clz(diff[w]) / 8;
  return static_cast<int>(kSortKeyBytes);
}

// Byte j (< 16) of the record's key (zero past its end).
int ByteAt(const Rec& r, int j) { return (r[1 + j / 4] >> (24 - 8 * (j % 4))) & 0xff; }

constexpr uint32_t kInsertionMax = 48;

// Sorts a[0, n) by head, then by `less` where heads are equal: an MSD radix sort on the head's
// bytes from bit `shift` down (a byte every key shares is skipped without moving anything;
// tmp: room for n), ranges of at most kInsertionMax by insertion. Linear per byte: keys with a
// long common prefix (counters, "user:000123") cost a pass per varying byte, never n^2.
template <class Less>
void SortByHead(SortKey* a, SortKey* tmp, uint32_t n, int shift, const Less& less) {
  for (;;) {
    if (n <= kInsertionMax) {
      for (uint32_t x = 1; x < n; x++) {
        const SortKey v = a[x];
        uint32_t y = x;
        for (; y > 0 && less(v, a[y - 1]); y--) a[y] = a[y - 1];
        a[y] = v;
      }
      return;
    }
    if (shift < 0) return std::sort(a, a + n, less);  // equal heads: the records decide
    uint32_t bins[257] = {};
    for (uint32_t i = 0; i < n; i++) bins[((a[i].head >> shift) & 0xff) + 1]++;
    if (bins[((a[0].head >> shift) & 0xff) + 1] == n) {
      shift -= 8;
      continue;
    }
    for (int d = 1; d <= 256; d++) bins[d] += bins[d - 1];
    uint32_t fill[256];
    std::copy(bins, bins + 256, fill);
    for (uint32_t i = 0; i < n; i++) tmp[fill[(a[i].head >> shift) & 0xff]++] = a[i];
    std::copy(tmp, tmp + n, a);
    for (int d = 0; d < 256; d++) SortByHead(a + bins[d], tmp + bins[d], bins[d + 1] - bins[d], shift - 8, less);
    return;
  }
}

struct Pick {
  const uint8_t* media;
  const uint32_t* recs;
  uint64_t count;
  Rec* scattered;
  double* values;
  uint32_t* starts;
  uint16_t* lengths;
  uint8_t* keys;
  uint64_t valuesLength, startsLength, lengthsLength, keysLength;
  uint8_t prefix;
  SortKey* sortKeys;  // room for 2 * count
  Rec* room;          // count records, or null when no bucket needs a second scatter
  int shared;         // key bytes every record shares
  int64_t k;          // winners written
  uint64_t o;         // key bytes written
  int64_t winners;    // or -ERANGE
};

constexpr uint64_t kCacheRecords = 16384;  // 512 KB of sort records: a bucket this size is sorted in cache

bool NewestFirst(const uint8_t* m, const Rec& a, const Rec& b) {
  const int d = CompareKeys(m, a, b);
  if (d != 0) return d < 0;
  if (a[6] != b[6]) return a[6] > b[6];
  if (a[5] != b[5]) return a[5] > b[5];
  return RecOffset(a) < RecOffset(b);  // equal sequences: the first scanned wins
}

// Sorts recs[0, n) (one bucket: every key shares its first `shared` bytes) and appends the
// winner of each key to the columns. False when a column is full (-ERANGE).
bool SortAndEmit(Pick& p, const Rec* recs, uint64_t n) {
  const uint8_t* m = p.media;
  const int shared = SharedBytes(recs, n);
  SortKey* keys = p.sortKeys;
  for (uint64_t i = 0; i < n; i++) keys[i] = SortKey{HeadOf(recs[i], shared), static_cast<uint32_t>(i)};
  const auto less = [&](const SortKey& a, const SortKey& b) { return a.head != b.head ? a.head < b.head : NewestFirst(m, recs[a.index], recs[b.index]); };
  SortByHead(keys, p.sortKeys + n, static_cast<uint32_t>(n), 56, less);
  for (uint64_t i = 0; i < n;) {
    const Rec& winner = recs[keys[i].index];
    const uint64_t winnerHead = keys[i].head;
    for (i++; i < n && keys[i].head == winnerHead && CompareKeys(m, winner, recs[keys[i].index]) == 0; i++) {
    }
    if ((winner[0] & kDelBit) != 0) continue;
    const uint32_t len = RecKeyLength(winner);
    if (static_cast<uint64_t>(p.k) >= std::min({p.valuesLength, p.startsLength, p.lengthsLength}) || p.o + 1 + len > p.keysLength) return false;
    p.values[p.k] = static_cast<double>(RecOffset(winner));
    p.starts[p.k] = static_cast<uint32_t>(p.o);
    p.lengths[p.k] = static_cast<uint16_t>(len + 1);
    p.k++;
    p.keys[p.o++] = p.prefix;
    uint8_t head[kSortKeyBytes];
    for (int w = 0; w < 4; w++) {
      const uint32_t be = __builtin_bswap32(winner[1 + w]);
      std::memcpy(head + 4 * w, &be, 4);
    }
    std::memcpy(p.keys + p.o, head, std::min<uint64_t>(len, kSortKeyBytes));
    if (len > kSortKeyBytes) std::memcpy(p.keys + p.o + kSortKeyBytes, m + RecOffset(winner) + kEntryHeaderBytes + kSortKeyBytes, len - kSortKeyBytes);
    p.o += len;
  }
  return true;
}

// Scatters from[0, n) into to[0, n) by key byte `byte` (every key shares the bytes before it)
// and writes the bucket bounds into pos[0..256].
void Scatter(const Rec* from, Rec* to, uint64_t n, int byte, uint64_t* pos) {
  std::fill(pos, pos + 257, 0);
  for (uint64_t i = 0; i < n; i++) pos[ByteAt(from[i], byte) + 1]++;
  for (int b = 1; b <= 256; b++) pos[b] += pos[b - 1];
  uint64_t next[256];
  std::copy(pos, pos + 256, next);
  for (uint64_t i = 0; i < n; i++) std::memcpy(to[next[ByteAt(from[i], byte)]++].data(), from[i].data(), sizeof(Rec));
}

// Picks the winners of recs[0, n) in key order. A range larger than the cache is first split by
// the first key byte its keys do not all share (one more scatter, into room[0, n), which then
// holds the records: the two arrays trade roles at each level); every level splits a range into
// at least two, so the depth is at most 16.
bool PickRange(Pick& p, Rec* recs, Rec* room, uint64_t n) {
  const int shared = n <= kCacheRecords || room == nullptr ? static_cast<int>(kSortKeyBytes) : SharedBytes(recs, n);
  if (shared >= static_cast<int>(kSortKeyBytes)) return SortAndEmit(p, recs, n);
  uint64_t pos[257];
  Scatter(recs, room, n, shared, pos);
  for (int b = 0; b < 256; b++)
    if (!PickRange(p, room + pos[b], recs + pos[b], pos[b + 1] - pos[b])) return false;
  return true;
}

void RunPick(void* arg) {
  Pick& p = *static_cast<Pick*>(arg);
  // The first scatter, out of the caller's sort records: by the first key byte not every key
  // shares (byte 0 for random keys: ~6000 records, 190 KB, a bucket for 1M keys; "user:..."
  // keys split on what follows their common prefix).
  const Rec* recs = reinterpret_cast<const Rec*>(p.recs);
  uint64_t pos[257];
  if (p.shared >= static_cast<int>(kSortKeyBytes)) {
    std::memcpy(static_cast<void*>(p.scattered), recs, p.count * sizeof(Rec));
    pos[0] = 0;
    std::fill(pos + 1, pos + 257, p.count);
  } else {
    Scatter(recs, p.scattered, p.count, p.shared, pos);
  }
  // Every sort record is read: from here on the outputs may overwrite p.recs.
  for (int b = 0; b < 256; b++) {
    if (!PickRange(p, p.scattered + pos[b], p.room == nullptr ? nullptr : p.room + pos[b], pos[b + 1] - pos[b])) return void(p.winners = -ERANGE);
  }
  p.winners = p.k;
}

}  // namespace

Napi::Value JsScanKvSegment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray()) return bad;
  if (info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    return bad;
  Napi::Uint8Array media = info[0].As<Napi::Uint8Array>();
  Napi::Float64Array io = info[1].As<Napi::Float64Array>();
  Napi::Uint32Array out = info[2].As<Napi::Uint32Array>();
  if (io.ElementLength() < kIoSlots) return bad;
  double* v = io.Data();
  for (int i : {kBase, kEnd, kLimit, kNonce, kAt, kCount, kRecords, kMaxSequence, kKeyBytes})
    if (!IsIndex(v[i])) return bad;
  Scan s{};
  s.media = media.Data();
  s.base = static_cast<uint64_t>(v[kBase]);
  s.end = static_cast<uint64_t>(v[kEnd]);
  s.limit = static_cast<uint64_t>(v[kLimit]);
  s.nonce = static_cast<uint64_t>(v[kNonce]);
  const int flags = IsIndex(v[kFlags]) && v[kFlags] < 4 ? static_cast<int>(v[kFlags]) : 0;
  s.skipChecksum = (flags & kFlagSkipChecksum) != 0;
  s.at = static_cast<uint64_t>(v[kAt]);
  s.count = static_cast<uint64_t>(v[kCount]);
  s.records = static_cast<uint64_t>(v[kRecords]);
  s.maxSequence = static_cast<uint64_t>(v[kMaxSequence]);
  s.keyBytes = static_cast<uint64_t>(v[kKeyBytes]);
  s.out = out.Data();
  s.outRecords = out.ElementLength() / kRecordWords;
  // Everything the scan may touch lies inside the arrays (a bad offset would be a wild read).
  if (s.base % 8 != 0 || s.at % 8 != 0 || !(s.base <= s.at && s.at <= s.end && s.base <= s.limit && s.limit <= s.end && s.end <= media.ByteLength()) ||
      s.count > s.outRecords)
    return bad;
  if ((flags & kFlagPastPoison) != 0) s.limit = s.end;
  if (GuardedRun(RunScan, &s) != 0) s.status = kStatusEio;
  v[kAt] = static_cast<double>(s.at);
  v[kCount] = static_cast<double>(s.count);
  v[kReason] = s.reason;
  v[kReasonValue] = static_cast<double>(s.reasonValue);
  v[kRecords] = static_cast<double>(s.records);
  v[kMaxSequence] = static_cast<double>(s.maxSequence);
  v[kKeyBytes] = static_cast<double>(s.keyBytes);
  return Napi::Number::New(env, s.status);
}

Napi::Value JsPickKvWinners(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 8) return bad;
  const napi_typedarray_type types[] = {napi_uint8_array, napi_uint32_array, napi_uint8_array, napi_float64_array, napi_uint32_array, napi_uint16_array, napi_uint8_array};
  const int args[] = {0, 1, 1, 3, 4, 5, 6};  // [2] is the count, checked below
  for (int i = 0; i < 7; i++) {
    if (i == 2) continue;
    if (!info[args[i]].IsTypedArray() || info[args[i]].As<Napi::TypedArray>().TypedArrayType() != types[i]) return bad;
  }
  if (!info[2].IsNumber() || !info[7].IsNumber()) return bad;
  Napi::Uint8Array media = info[0].As<Napi::Uint8Array>();
  Napi::Uint32Array recs = info[1].As<Napi::Uint32Array>();
  const double count = info[2].As<Napi::Number>().DoubleValue();
  const double prefix = info[7].As<Napi::Number>().DoubleValue();
  if (!IsIndex(count) || count * kRecordWords > recs.ElementLength() || !IsIndex(prefix) || prefix > 255) return bad;
  Pick p{};
  p.media = media.Data();
  p.recs = recs.Data();
  p.count = static_cast<uint64_t>(count);
  // Every entry offset a record holds must lie inside the media with its key (long keys are read there).
  const Rec* sortRecs = reinterpret_cast<const Rec*>(p.recs);
  for (uint64_t i = 0; i < p.count; i++)
    if (RecOffset(sortRecs[i]) + kEntryHeaderBytes + RecKeyLength(sortRecs[i]) > media.ByteLength()) return bad;
  // A second array for further scatters only when the first leaves a bucket too big for the cache.
  p.shared = p.count == 0 ? static_cast<int>(kSortKeyBytes) : SharedBytes(sortRecs, p.count);
  uint64_t sizes[256] = {};
  if (p.shared < static_cast<int>(kSortKeyBytes))
    for (uint64_t i = 0; i < p.count; i++) sizes[ByteAt(sortRecs[i], p.shared)]++;
  else
    sizes[0] = p.count;
  const bool needRoom = *std::max_element(sizes, sizes + 256) > kCacheRecords;
  std::unique_ptr<Rec[]> scattered(new (std::nothrow) Rec[p.count == 0 ? 1 : p.count]);
  std::unique_ptr<Rec[]> room(needRoom ? new (std::nothrow) Rec[p.count] : nullptr);
  std::unique_ptr<SortKey[]> sortKeys(new (std::nothrow) SortKey[2 * p.count + 1]);
  if (!scattered || !sortKeys || (needRoom && !room)) return Napi::Number::New(env, -ENOMEM);
  p.scattered = scattered.get();
  p.room = room.get();
  p.sortKeys = sortKeys.get();
  Napi::Float64Array values = info[3].As<Napi::Float64Array>();
  Napi::Uint32Array starts = info[4].As<Napi::Uint32Array>();
  Napi::Uint16Array lengths = info[5].As<Napi::Uint16Array>();
  Napi::Uint8Array keys = info[6].As<Napi::Uint8Array>();
  p.values = values.Data();
  p.starts = starts.Data();
  p.lengths = lengths.Data();
  p.keys = keys.Data();
  p.valuesLength = values.ElementLength();
  p.startsLength = starts.ElementLength();
  p.lengthsLength = lengths.ElementLength();
  p.keysLength = keys.ElementLength();
  p.prefix = static_cast<uint8_t>(prefix);
  if (GuardedRun(RunPick, &p) != 0) return Napi::Number::New(env, -EIO);
  return Napi::Number::New(env, static_cast<double>(p.winners));
}

}  // namespace daxstore
