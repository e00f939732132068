#include "kv-recovery.h"

#include "backing-store.h"
#include "bulk-load.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <new>
#include <system_error>
#include <thread>
#include <vector>
#include <ctime>

#include <sys/mman.h>
#include <unistd.h>

#include "persist.h"
#include "region.h"

#if defined(__x86_64__)
#include <immintrin.h>
// XXH3's AVX2 kernels compiled beside its default (SSE2) ones, each function that uses them
// marked for AVX2 alone, and chosen at run time (Xxh3): the rest of the addon runs on any x86-64.
#define XXH_DISPATCH_AVX2 1
#define XXH_TARGET_AVX2 __attribute__((__target__("avx2")))
#endif
#define XXH_INLINE_ALL
#include "vendor/xxhash/xxhash.h"

namespace daxstore {
namespace {

#if defined(__x86_64__)
// XXH3-64 of an input past XXH3_MIDSIZE_MAX with the AVX2 kernels (32-byte lanes where the
// default's are 16): the same bits as the default ones, XXH3 being defined by its scalar form.
XXH_NO_INLINE XXH_TARGET_AVX2 XXH64_hash_t Xxh3LongAvx2(const void* XXH_RESTRICT input, size_t len, XXH64_hash_t,
                                                       const xxh_u8* XXH_RESTRICT, size_t) {
  return XXH3_hashLong_64b_internal(input, len, XXH3_kSecret, sizeof(XXH3_kSecret), XXH3_accumulate_avx2,
                                    XXH3_scrambleAcc_avx2);
}
#endif

// XXH3_64bits(input, len), with the AVX2 kernels where the CPU has them (a checkpoint's checksum
// and its covered segments' hashes: hundreds of MB at open).
uint64_t Xxh3(const void* input, size_t len) {
#if defined(__x86_64__)
  static const bool avx2 = (__builtin_cpu_init(), __builtin_cpu_supports("avx2"));  // init: idempotent, order-proof
  if (avx2) return XXH3_64bits_internal(input, len, 0, XXH3_kSecret, sizeof(XXH3_kSecret), Xxh3LongAvx2);
#endif
  return XXH3_64bits(input, len);
}

// src/kv/layout.ts
constexpr uint64_t kRecordHeaderBytes = 32;
constexpr uint64_t kEntryHeaderBytes = 24;  // src/kv/layout.ts ENTRY_HEADER_BYTES
constexpr uint64_t kSealBytes = 48;
constexpr uint64_t kBlockBytes = 4096;
constexpr uint32_t kRecordMagic = 0x564b;
constexpr uint32_t kKindPut = 1, kKindBatch = 2, kKindPad = 3, kKindSeal = 4;
constexpr uint32_t kEntryPut = 1, kEntryDel = 2;
constexpr uint32_t kEntryFlagLost = 2;
constexpr uint64_t kRetiredHeadWord = 0x2144455249544552ull;  // RETIRED_HEAD_WORD at segment bytes [8, 16)

// io slots and codes: src/kv/recovery-native.ts
enum IoSlot {
  kBase,
  kEnd,
  kNonce,
  kFlags,
  kAt,
  kCount,
  kReason,
  kReasonValue,
  kRecords,
  kMaxSequence,
  kKeyBytes,
  kVouched,
  kWatermark,
  kSegmentSequence,
  kInRegion,
  kRegionCount,
  kLastAt,  // where the last whole record the scan committed begins (device offset), -1: none
  kIoSlots
};
enum Status { kStatusEnd = 0, kStatusInvalid = 1, kStatusPoison = 2, kStatusFull = 3, kStatusEio = 4, kStatusRegionsFull = 5, kStatusCut = 6, kStatusDamagedTail = 7 };
enum Reason { kBadMagic = 1, kUnknownKind = 2, kBadLength = 3, kOtherNonce = 4, kChecksum = 5, kEntriesOverrun = 6, kPoisoned = 7 };
// io[kFlags] bits: test switches (src/test-break.ts; recovery-native.ts passes them), never set in production
constexpr int kFlagSkipChecksum = 1;  // kv-skip-checksum
constexpr int kFlagPastPoison = 2;    // kv-scan-past-poison: poisoned blocks read as if intact
constexpr int kFlagNoResync = 4;      // kv-no-resync: the scan ends at the first bad record, as a torn tail
constexpr int kFlagNoWatermark = 8;   // kv-no-watermark: every bad region is taken for a torn tail
constexpr int kFlagsKnown = 15;

// Region words (src/kv/recovery-native.ts REGION_*): one bad region of a segment.
enum RegionWord { kRStart, kREnd, kRFlags, kRCount, kRRecords, kRMaxSequence, kRKeyBytes, kRSequenceBefore, kRSequenceAfter, kRReason, kRegionWords };
constexpr int kRegionPoison = 1;  // the scan skipped a poisoned block inside it
constexpr int kRegionCut = 4;     // at or past every watermark: a torn tail, dropped with all after it

constexpr int kRecordWords = 8;
constexpr uint32_t kDelBit = 1u << 16;
constexpr uint32_t kLostBit = 1u << 15;
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
  uint64_t base, end, nonce;
  bool skipChecksum, noResync, noWatermark;
  const uint32_t* poison;  // bit i: block i of the segment is poisoned (null: none)
  uint32_t* out;
  uint64_t outRecords;  // capacity in sort records
  double* regions;
  uint64_t regionCapacity;
  // Committed after each whole record (a SIGBUS abandons the record in progress, not these).
  uint64_t at, count, records, maxSequence, keyBytes;
  int64_t lastAt;  // the last committed record's device offset, -1: none (RunScan)
  uint64_t vouched, watermark, segmentSequence, inRegion, regionCount;
  int status, reason;
  uint64_t reasonValue;
};

bool EntriesFit(const uint8_t* m, uint64_t at, uint64_t end, uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    if (at + kEntryHeaderBytes > end) return false;
    const uint32_t word0 = Load32(m + at);
    const uint32_t op = (word0 >> 16) & 0xff;
    const uint32_t keyLength = word0 & 0xffff;
    if (op != kEntryPut && op != kEntryDel) return false;
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
  const bool lost = ((word0 >> 24) & kEntryFlagLost) != 0;
  const uint64_t at8 = e / 8;
  r[0] = keyLength | (del ? kDelBit : 0) | (lost ? kLostBit : 0) | static_cast<uint32_t>((at8 >> 32) << kOffsetHiShift);
  uint8_t key[kSortKeyBytes] = {};
  std::memcpy(key, m + e + kEntryHeaderBytes, std::min<uint64_t>(keyLength, kSortKeyBytes));
  for (int w = 0; w < 4; w++) r[1 + w] = __builtin_bswap32(Load32(key + 4 * w));
  r[5] = Load32(m + e + 8);
  r[6] = Load32(m + e + 12);
  r[7] = static_cast<uint32_t>(at8);
}

// First poisoned byte offset in [from, to) of the segment (absolute), or `to`.
uint64_t FirstPoisoned(const Scan& s, uint64_t from, uint64_t to) {
  if (s.poison == nullptr) return to;
  for (uint64_t b = (from - s.base) / kBlockBytes; s.base + b * kBlockBytes < to; b++)
    if ((s.poison[b >> 5] >> (b & 31)) & 1) return std::max(from, s.base + b * kBlockBytes);
  return to;
}

// Opens a bad region at `at` (the scan's sums as they were before it: a cut restores them).
bool OpenRegion(Scan& s, uint64_t at, int reason) {
  if (s.inRegion) return true;
  if (s.regionCount >= s.regionCapacity) return false;
  double* r = s.regions + s.regionCount * kRegionWords;
  r[kRStart] = static_cast<double>(at);
  r[kREnd] = static_cast<double>(s.end);
  r[kRFlags] = 0;
  r[kRCount] = static_cast<double>(s.count);
  r[kRRecords] = static_cast<double>(s.records);
  r[kRMaxSequence] = static_cast<double>(s.maxSequence);
  r[kRKeyBytes] = static_cast<double>(s.keyBytes);
  r[kRSequenceBefore] = static_cast<double>(s.segmentSequence);
  r[kRSequenceAfter] = 0;
  r[kRReason] = reason;
  s.regionCount++;
  s.inRegion = 1;
  return true;
}

double* CurrentRegion(Scan& s) { return s.regions + (s.regionCount - 1) * kRegionWords; }

// The reason the record at `at` is not valid (0: it is). Poison first: nothing past the
// header is read before the record's claimed bytes are known to lie outside poisoned blocks.
int CheckRecord(Scan& s, uint64_t at, uint64_t* total, uint32_t* count) {
  const uint8_t* m = s.media;
  const uint32_t word0 = Load32(m + at + 12);
  if ((word0 & 0xffff) != kRecordMagic) return kBadMagic;
  const uint32_t kind = (word0 >> 16) & 0xff;
  if (kind != kKindPut && kind != kKindBatch && kind != kKindPad && kind != kKindSeal) return s.reasonValue = kind, kUnknownKind;
  *total = Load32(m + at + 16);
  *count = Load32(m + at + 20);
  if (*total < kRecordHeaderBytes || *total % 8 != 0 || at + *total > s.end) return s.reasonValue = *total, kBadLength;
  if ((uint64_t{Load32(m + at + 28) & 0xff} << 32 | Load32(m + at + 24)) != s.nonce) return kOtherNonce;
  if (FirstPoisoned(s, at, at + *total) < at + *total) return kPoisoned;
  if (XXH64(m + at + 8, *total - 8, 0) != Load64(m + at) && !s.skipChecksum) return kChecksum;
  if (kind == kKindPut || kind == kKindBatch) {
    if (!EntriesFit(m, at + kRecordHeaderBytes, at + *total, *count)) return kEntriesOverrun;
  } else if (*count != 0 || (kind == kKindSeal && *total != kSealBytes)) {
    return kEntriesOverrun;
  }
  return 0;
}

// Record by record from s.at: records.ts checkRecordInto's checks in its order (poison first),
// then the entries; each record commits its sums (see Scan) whole. A record that fails opens
// a bad region and the scan resyncs: it tries every 8-byte offset after it (records are
// 8-aligned, sealed, carry the segment's nonce) until one holds a valid record, which closes
// the region, skipping poisoned blocks. End markers end the scan only outside a region (a
// damaged record's value may hold 16 zero bytes).
void RunScan(void* arg) {
  Scan& s = *static_cast<Scan*>(arg);
  const uint8_t* m = s.media;
  // A segment compaction retired (its owner record not changed yet when the store stopped) is empty.
  if (s.at == s.base && s.end - s.base >= kRecordHeaderBytes && FirstPoisoned(s, s.base, s.base + 16) == s.base + 16 &&
      Load64(m + s.base + 8) == kRetiredHeadWord)
    return void(s.status = kStatusEnd);
  for (;;) {
    const uint64_t at = s.at;
    if (at + kRecordHeaderBytes > s.end) return void(s.status = kStatusEnd);
    const uint64_t poisoned = FirstPoisoned(s, at, at + kRecordHeaderBytes);
    if (poisoned < at + kRecordHeaderBytes) {
      if (s.noResync) return void(s.status = kStatusPoison);
      if (!OpenRegion(s, at, kPoisoned)) return void(s.status = kStatusRegionsFull);
      CurrentRegion(s)[kRFlags] = static_cast<int>(CurrentRegion(s)[kRFlags]) | kRegionPoison;
      s.at = s.base + ((poisoned - s.base) / kBlockBytes + 1) * kBlockBytes;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      continue;
    }
    if (!s.inRegion && Load64(m + at) == 0 && Load64(m + at + 8) == 0) return void(s.status = kStatusEnd);
    uint64_t total = 0;
    uint32_t count = 0;
    const int reason = CheckRecord(s, at, &total, &count);
    if (reason != 0) {
      if (s.noResync) {
        s.reason = reason == kPoisoned ? kChecksum : reason;
        return void(s.status = reason == kPoisoned ? kStatusPoison : kStatusInvalid);
      }
      if (!OpenRegion(s, at, reason)) return void(s.status = kStatusRegionsFull);
      s.at = at + 8;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      continue;
    }
    const uint32_t kind = (Load32(m + at + 12) >> 16) & 0xff;
    const uint32_t entries = kind == kKindPut || kind == kKindBatch ? count : 0;
    if (s.count + entries > s.outRecords) return void(s.status = kStatusFull);
    uint64_t e = at + kRecordHeaderBytes;
    uint64_t maxSequence = s.maxSequence;
    uint64_t segmentSequence = s.segmentSequence;
    uint64_t keyBytes = s.keyBytes;
    for (uint32_t i = 0; i < entries; i++) {
      uint32_t* r = s.out + (s.count + i) * kRecordWords;
      WriteSortRecord(r, m, e);
      const uint32_t keyLength = r[0] & 0x7fff;
      const uint64_t sequence = uint64_t{r[6]} << 32 | r[5];
      maxSequence = std::max(maxSequence, sequence);
      segmentSequence = std::max(segmentSequence, sequence);
      keyBytes += keyLength + 1;
      e += Align8(kEntryHeaderBytes + keyLength + Load32(m + e + 4));
    }
    // Commit the record: these stores are emitted before the next record's first load.
    if (s.inRegion) {
      double* r = CurrentRegion(s);
      r[kREnd] = static_cast<double>(at);
      if (entries > 0) r[kRSequenceAfter] = static_cast<double>(uint64_t{s.out[s.count * kRecordWords + 6]} << 32 | s.out[s.count * kRecordWords + 5]);
      s.inRegion = 0;
    }
    s.count += entries;
    s.records++;
    s.maxSequence = maxSequence;
    s.segmentSequence = segmentSequence;
    s.keyBytes = keyBytes;
    s.watermark = std::max(s.watermark, s.base + uint64_t{Load32(m + at + 28) >> 8} * 8);
    s.lastAt = static_cast<int64_t>(at);
    s.at = at + total;
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
}

// After the whole segment: the first bad region at or past every watermark (and the vouched
// end another segment's SEAL named) that is not poison is where a crash tore the segment:
// it and everything after it are dropped (the sums restored to what they were before it).
// Regions before it lie below a watermark: their records had been made durable (damage).
void CutTornTail(Scan& s) {
  const uint64_t durable = s.noWatermark ? 0 : std::max(s.watermark, s.vouched);
  for (uint64_t i = 0; i < s.regionCount; i++) {
    double* r = s.regions + i * kRegionWords;
    const uint64_t start = static_cast<uint64_t>(r[kRStart]);
    if ((static_cast<int>(r[kRFlags]) & kRegionPoison) != 0 || start < durable) continue;
    r[kRFlags] = static_cast<int>(r[kRFlags]) | kRegionCut;
    s.count = static_cast<uint64_t>(r[kRCount]);
    s.records = static_cast<uint64_t>(r[kRRecords]);
    s.maxSequence = static_cast<uint64_t>(r[kRMaxSequence]);
    s.keyBytes = static_cast<uint64_t>(r[kRKeyBytes]);
    s.regionCount = i + 1;
    s.at = start;
    s.inRegion = 0;
    s.status = kStatusCut;
    return;
  }
  if (s.inRegion) s.status = kStatusDamagedTail;
}

using Rec = std::array<uint32_t, kRecordWords>;

uint64_t RecOffset(const Rec& r) { return ((uint64_t{r[0] >> kOffsetHiShift} << 32) | r[7]) * 8; }
uint32_t RecKeyLength(const Rec& r) { return r[0] & 0x7fff; }

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
  bool keepDeletes;  // a DEL winner is emitted too, its value -(offset + 1) (a checkpoint's tail)
  uint64_t* sequences;  // each winner's sequence, or null (the merge over a checkpoint reads them here, not in the log)
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
  // Equal sequences: copies of one entry (compaction), or a salvage LOST marker of an entry
  // whose record was damaged: an intact copy beats the marker, then the lowest offset wins.
  if ((a[0] & kLostBit) != (b[0] & kLostBit)) return (a[0] & kLostBit) == 0;
  return RecOffset(a) < RecOffset(b);
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
    const bool del = (winner[0] & kDelBit) != 0;
    if (del && !p.keepDeletes) continue;
    const uint32_t len = RecKeyLength(winner);
    if (static_cast<uint64_t>(p.k) >= std::min({p.valuesLength, p.startsLength, p.lengthsLength}) || p.o + 1 + len > p.keysLength) return false;
    p.values[p.k] = del ? -static_cast<double>(RecOffset(winner)) - 1 : static_cast<double>(RecOffset(winner));
    if (p.sequences != nullptr) p.sequences[p.k] = uint64_t{winner[6]} << 32 | winner[5];  // the entry's, as the scan read it
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
  if (info.Length() < 5) return bad;
  const napi_typedarray_type types[] = {napi_uint8_array, napi_float64_array, napi_uint32_array, napi_uint32_array, napi_float64_array};
  for (int i = 0; i < 5; i++)
    if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != types[i]) return bad;
  Napi::Uint8Array media = info[0].As<Napi::Uint8Array>();
  Napi::Float64Array io = info[1].As<Napi::Float64Array>();
  Napi::Uint32Array out = info[2].As<Napi::Uint32Array>();
  Napi::Uint32Array poison = info[3].As<Napi::Uint32Array>();
  Napi::Float64Array regions = info[4].As<Napi::Float64Array>();
  if (io.ElementLength() < kIoSlots) return bad;
  // media holds device bytes [bias, bias + length): the whole mapping (bias 0), or one
  // segment read into a buffer (src/kv/recovery.ts readSegment).
  const double biasArg = info.Length() > 5 && info[5].IsNumber() ? info[5].As<Napi::Number>().DoubleValue() : 0;
  if (!IsIndex(biasArg)) return bad;
  const uint64_t bias = static_cast<uint64_t>(biasArg);
  double* v = io.Data();
  for (int i : {kBase, kEnd, kNonce, kAt, kCount, kRecords, kMaxSequence, kKeyBytes, kVouched, kWatermark, kSegmentSequence, kInRegion, kRegionCount})
    if (!IsIndex(v[i])) return bad;
  Scan s{};
  // Offsets stay device offsets: media + at for at in [bias, bias + length).
  s.media = reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(media.Data()) - bias);
  s.base = static_cast<uint64_t>(v[kBase]);
  s.end = static_cast<uint64_t>(v[kEnd]);
  s.nonce = static_cast<uint64_t>(v[kNonce]);
  const int flags = IsIndex(v[kFlags]) && v[kFlags] <= kFlagsKnown ? static_cast<int>(v[kFlags]) : 0;
  s.skipChecksum = (flags & kFlagSkipChecksum) != 0;
  s.noResync = (flags & kFlagNoResync) != 0;
  s.noWatermark = (flags & kFlagNoWatermark) != 0;
  s.at = static_cast<uint64_t>(v[kAt]);
  s.count = static_cast<uint64_t>(v[kCount]);
  s.records = static_cast<uint64_t>(v[kRecords]);
  s.maxSequence = static_cast<uint64_t>(v[kMaxSequence]);
  s.keyBytes = static_cast<uint64_t>(v[kKeyBytes]);
  s.vouched = static_cast<uint64_t>(v[kVouched]);
  s.watermark = static_cast<uint64_t>(v[kWatermark]);
  s.segmentSequence = static_cast<uint64_t>(v[kSegmentSequence]);
  s.inRegion = static_cast<uint64_t>(v[kInRegion]);
  s.regionCount = static_cast<uint64_t>(v[kRegionCount]);
  s.lastAt = IsIndex(v[kLastAt]) ? static_cast<int64_t>(v[kLastAt]) : -1;
  s.out = out.Data();
  s.outRecords = out.ElementLength() / kRecordWords;
  s.regions = regions.Data();
  s.regionCapacity = regions.ElementLength() / kRegionWords;
  // Everything the scan may touch lies inside the arrays (a bad offset would be a wild read).
  const uint64_t blocks = (s.end - std::min(s.end, s.base) + kBlockBytes - 1) / kBlockBytes;
  if (s.base % 8 != 0 || s.at % 8 != 0 || !(bias <= s.base && s.base <= s.at && s.at <= s.end && s.end - bias <= media.ByteLength()) || s.count > s.outRecords ||
      s.regionCount > s.regionCapacity || (s.inRegion != 0 && s.regionCount == 0) || (poison.ElementLength() != 0 && poison.ElementLength() * 32 < blocks))
    return bad;
  s.poison = poison.ElementLength() == 0 || (flags & kFlagPastPoison) != 0 ? nullptr : poison.Data();
  if (GuardedRun(RunScan, &s) != 0) s.status = kStatusEio;
  else if (s.status == kStatusEnd || s.status == kStatusPoison || s.status == kStatusInvalid) {
    if (!s.noResync) CutTornTail(s);
  }
  v[kAt] = static_cast<double>(s.at);
  v[kCount] = static_cast<double>(s.count);
  v[kReason] = s.reason;
  v[kReasonValue] = static_cast<double>(s.reasonValue);
  v[kRecords] = static_cast<double>(s.records);
  v[kMaxSequence] = static_cast<double>(s.maxSequence);
  v[kKeyBytes] = static_cast<double>(s.keyBytes);
  v[kWatermark] = static_cast<double>(s.watermark);
  v[kSegmentSequence] = static_cast<double>(s.segmentSequence);
  v[kInRegion] = static_cast<double>(s.inRegion);
  v[kRegionCount] = static_cast<double>(s.regionCount);
  v[kLastAt] = static_cast<double>(s.lastAt);
  return Napi::Number::New(env, s.status);
}

namespace {

// Record by record from s.at to s.end: every record whole and valid (CheckRecord, checksum
// included), ending exactly at s.end. No entry is read into anything: a checkpoint's covered
// records are checked, not scanned (src/kv/recovery.ts verifyCovered). s.at: where it stopped.
void RunVerify(void* arg) {
  Scan& s = *static_cast<Scan*>(arg);
  const uint64_t end = s.end;
  s.end = s.base + s.reasonValue;  // record lengths are checked against the segment's end
  s.reasonValue = 0;
  while (s.at < end) {
    if (end - s.at < kRecordHeaderBytes) return void(s.reason = kBadLength);
    if (FirstPoisoned(s, s.at, s.at + kRecordHeaderBytes) < s.at + kRecordHeaderBytes) return void(s.reason = kPoisoned);
    uint64_t total = 0;
    uint32_t count = 0;
    const int reason = CheckRecord(s, s.at, &total, &count);
    if (reason != 0) return void(s.reason = reason);
    if (s.at + total > end) return void(s.reason = kBadLength);
    const uint32_t kind = (Load32(s.media + s.at + 12) >> 16) & 0xff;
    if (kind == kKindPut || kind == kKindBatch) s.count += count;
    s.records++;
    s.at += total;
  }
}

}  // namespace

namespace {

// The media argument: a Uint8Array, or a whole SharedArrayBuffer (a mapping past 4 GiB, which
// no typed array spans). false when it is neither.
bool MediaOf(const Napi::Value& arg, const uint8_t** data, size_t* bytes) {
  if (arg.IsTypedArray() && arg.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    *data = arg.As<Napi::Uint8Array>().Data();
    *bytes = arg.As<Napi::Uint8Array>().ByteLength();
    return true;
  }
  if (std::shared_ptr<v8::BackingStore> store = SharedBackingStore(arg); store != nullptr) {
    *data = static_cast<const uint8_t*>(store->Data());
    *bytes = store->ByteLength();
    return true;
  }
  return false;
}

}  // namespace

namespace {

// One covered segment of a batch (JsVerifyKvSegments): [base, base + used), its nonce; out:
// status (0 valid, 1 a bad record, -EIO a media error), where it stopped, the reason, entries,
// records, and the XXH3-64 of the bytes [base, base + used) as two u32 (low, high): of the very
// bytes the records were checked in (or, with kFlagHashOnly, of the bytes as they are, none
// checked: the caller compares it with a hash taken when they were).
constexpr int kSegIn = 3, kSegOut = 7;
// JsVerifyKvSegments' flags beside the scan's: hash each segment's bytes, check no record
// (an index checkpoint's covered segments at open: src/kv/recovery.ts verifyCovered).
constexpr int kFlagHashOnly = 16;
// With kFlagHashOnly: read with pread(2) into a small buffer rather than through the mapping.
constexpr int kFlagHashRead = 32;

struct VerifyBatch {
  const uint8_t* media;  // device offset 0
  int fd;                // read(2) source, -1: read through the mapping
  uint64_t segmentBytes;
  int flags;
  const double* segs;
  double* out;
  uint64_t count;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::atomic<uint64_t> cpuNs{0};  // the workers' CPU time (each thread's own clock), summed
};

// This thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID), 0 when the clock cannot be read.
uint64_t ThreadCpuNs() {
  timespec t{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return 0;
  return static_cast<uint64_t>(t.tv_sec) * 1000000000u + static_cast<uint64_t>(t.tv_nsec);
}

// Reads [base, base + used) of the file into buf with pread(2): false on any failure (the
// caller then reads the mapping, under the SIGBUS guard).
bool ReadFile(int fd, uint8_t* buf, uint64_t base, uint64_t used) {
  uint64_t done = 0;
  while (done < used) {
    const ssize_t n = pread(fd, buf + done, used - done, static_cast<off_t>(base + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<uint64_t>(n);
  }
  return true;
}

// Takes segments off the batch until none is left or one failed: each read with pread(2)
// into this thread's buffer (the first touch of a mapped page costs a page fault, far more
// than the copy; docs/PERFORMANCE.md), else through the mapping, and checked by RunVerify
// under this thread's SIGBUS guard.
// The worker's read buffer: one segment, 2 MiB-aligned and advised into a huge page where the
// kernel has them (one fault instead of 512, each a hypervisor exit on a virtual machine); null
// when it cannot be had (the worker then reads through the mapping).
struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
std::unique_ptr<uint8_t, FreeDeleter> SegmentBuffer(uint64_t bytes) {
  constexpr uint64_t kHuge = uint64_t{2} << 20;
  void* p = nullptr;
  const uint64_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  if (posix_memalign(&p, kHuge, rounded) != 0) return nullptr;
  (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice: without it, 4 KiB pages
  return std::unique_ptr<uint8_t, FreeDeleter>(static_cast<uint8_t*>(p));
}

// A segment's records checked (unless hashOnly) and its bytes hashed, under one SIGBUS guard:
// the hash is of the bytes the check read.
struct VerifyHash {
  Scan s;
  uint64_t base, used;
  bool hashOnly;
  int fd;          // hashOnly: pread(2) source in chunks into `buf` (-1: the mapping)
  uint8_t* buf;    // kHashChunkBytes
  bool readFailed; // a pread(2) failed: hashed nothing
  uint64_t sum;
};

constexpr uint64_t kHashChunkBytes = 256 * 1024;  // stays in L2 between its read and its hash

void RunVerifyHash(void* arg) {
  VerifyHash& v = *static_cast<VerifyHash*>(arg);
  if (v.hashOnly && v.fd >= 0) {
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    for (uint64_t at = 0; at < v.used; at += kHashChunkBytes) {
      const uint64_t n = std::min(kHashChunkBytes, v.used - at);
      if (!ReadFile(v.fd, v.buf, v.base + at, n)) return void(v.readFailed = true);
      XXH3_64bits_update(&state, v.buf, n);
    }
    v.sum = XXH3_64bits_digest(&state);
    return;
  }
  if (!v.hashOnly) RunVerify(&v.s);
  if (v.s.reason == 0) v.sum = Xxh3(v.s.media + v.base, v.used);
}

void VerifyWorkerRun(VerifyBatch* b);

// VerifyWorkerRun, its CPU time added to the batch's.
void VerifyWorker(VerifyBatch* b) {
  const uint64_t cpu0 = ThreadCpuNs();
  VerifyWorkerRun(b);
  b->cpuNs.fetch_add(ThreadCpuNs() - cpu0, std::memory_order_relaxed);
}

void VerifyWorkerRun(VerifyBatch* b) {
  const bool hashOnly = (b->flags & kFlagHashOnly) != 0;
  const bool hashRead = hashOnly && (b->flags & kFlagHashRead) != 0 && b->fd >= 0;
  std::unique_ptr<uint8_t, FreeDeleter> buf =
      hashOnly ? (hashRead ? std::unique_ptr<uint8_t, FreeDeleter>(static_cast<uint8_t*>(std::malloc(kHashChunkBytes))) : nullptr)
               : (b->fd >= 0 ? SegmentBuffer(b->segmentBytes) : nullptr);
  for (;;) {
    if (b->failed.load(std::memory_order_relaxed)) return;
    const uint64_t i = b->next.fetch_add(1, std::memory_order_relaxed);
    if (i >= b->count) return;
    const double* in = b->segs + i * kSegIn;
    double* o = b->out + i * kSegOut;
    const uint64_t base = static_cast<uint64_t>(in[0]);
    const uint64_t used = static_cast<uint64_t>(in[1]);
    VerifyHash v{};
    Scan& s = v.s;
    s.media = b->media;
    if (!hashOnly && buf != nullptr && ReadFile(b->fd, buf.get(), base, used)) s.media = buf.get() - base;
    s.base = base;
    s.at = base;
    s.end = base + used;
    s.reasonValue = b->segmentBytes;
    s.nonce = static_cast<uint64_t>(in[2]);
    s.skipChecksum = (b->flags & kFlagSkipChecksum) != 0;
    v.base = base;
    v.used = used;
    v.hashOnly = hashOnly;
    v.fd = hashRead && buf != nullptr ? b->fd : -1;
    v.buf = buf.get();
    bool eio = GuardedRun(RunVerifyHash, &v) != 0;
    if (v.readFailed) {  // pread(2) failed: through the mapping, under the guard
      v.fd = -1;
      eio = GuardedRun(RunVerifyHash, &v) != 0;
    }
    o[0] = eio ? -EIO : s.reason == 0 ? 0 : 1;
    o[1] = static_cast<double>(hashOnly ? base + used : s.at);
    o[2] = s.reason;
    o[3] = static_cast<double>(s.count);
    o[4] = static_cast<double>(s.records);
    o[5] = static_cast<double>(static_cast<uint32_t>(v.sum));
    o[6] = static_cast<double>(static_cast<uint32_t>(v.sum >> 32));
    if (o[0] != 0) b->failed.store(true, std::memory_order_relaxed);
  }
}

}  // namespace

namespace {

// JsVerifyKvSegments' and JsVerifyKvSegmentsStart's arguments (media, regionId, segs,
// segmentBytes, flags, [out,] threads at `threadsArg`) checked and laid into `b` (segs and out
// left to the caller); 0 or -EINVAL / -EBADF. Every byte a worker may read lies inside the
// mapping (a bad offset would be a wild read), whatever the segs hold.
int BatchOf(const Napi::CallbackInfo& info, size_t threadsArg, VerifyBatch* b, uint64_t* count, double* threads) {
  if (info.Length() <= threadsArg || !info[1].IsNumber() || !info[3].IsNumber() || !info[4].IsNumber() || !info[threadsArg].IsNumber())
    return -EINVAL;
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) return -EINVAL;
  const uint8_t* mediaData = nullptr;
  size_t mediaBytes = 0;
  if (!MediaOf(info[0], &mediaData, &mediaBytes)) return -EINVAL;
  const double regionId = info[1].As<Napi::Number>().DoubleValue();
  Napi::Float64Array segs = info[2].As<Napi::Float64Array>();
  const double segmentBytes = info[3].As<Napi::Number>().DoubleValue();
  const double flags = info[4].As<Napi::Number>().DoubleValue();
  *threads = info[threadsArg].As<Napi::Number>().DoubleValue();
  if (!IsIndex(segmentBytes) || segmentBytes == 0 || !IsIndex(flags) || flags > (kFlagsKnown | kFlagHashOnly | kFlagHashRead) || !IsIndex(*threads) ||
      segs.ElementLength() % kSegIn != 0)
    return -EINVAL;
  *count = segs.ElementLength() / kSegIn;
  for (uint64_t i = 0; i < *count; i++) {
    const double* in = segs.Data() + i * kSegIn;
    if (!IsIndex(in[0]) || !IsIndex(in[1]) || !IsIndex(in[2]) || static_cast<uint64_t>(in[0]) % 8 != 0 || in[1] > segmentBytes ||
        in[0] + segmentBytes > static_cast<double>(mediaBytes))
      return -EINVAL;
  }
  int fd = -1;
  if (regionId >= 0) {
    if (!IsIndex(regionId) || regionId > 0xffffffffu) return -EINVAL;
    const Region* r = FindRegion(static_cast<uint32_t>(regionId));
    if (r == nullptr) return -EBADF;
    if (r->kind != Kind::kDevDax) fd = r->fd;  // a device-DAX character device has no read()
  }
  b->media = mediaData;
  b->fd = fd;
  b->segmentBytes = static_cast<uint64_t>(segmentBytes);
  b->flags = static_cast<int>(flags);
  b->count = *count;
  return 0;
}

// Every verdict "not reached" (another failed first) until a worker writes it.
void ClearVerdicts(double* out, uint64_t count) {
  for (uint64_t i = 0; i < count * kSegOut; i++) out[i] = 0;
  for (uint64_t i = 0; i < count; i++) out[i * kSegOut] = 2;
}

// A check started by JsVerifyKvSegmentsStart: the batch (over copies of segs and out, which the
// job owns), its helper threads, and a reference that keeps the media's buffer alive until the
// job is finished (JsVerifyKvSegmentsFinish) or, never finished, collected (the finalizer
// stops and joins the helpers first).
struct VerifyJob {
  VerifyBatch batch;
  std::vector<double> segs, out;
  std::vector<std::thread> helpers;
  Napi::Reference<Napi::Value> media;
  Napi::Reference<Napi::Value> ahead;  // the bytes the first helper populates for reading, kept alive
  const uint8_t* aheadData = nullptr;
  size_t aheadBytes = 0;
  Napi::Reference<Napi::Value> fill;  // the bytes it populates for writing next, kept alive
  const uint8_t* fillData = nullptr;
  size_t fillBytes = 0;
  double smallAfterNs = -1;  // PopulateFill's threshold (negative: huge pages throughout)
  // Written by the first helper before it returns (read after Join): the fill's CPU ns and the
  // byte of it from which it went small (-1: not).
  double fillCpuNs = 0;
  double fillSmallFrom = -1;
  bool finished = false;
  // Helpers still running: each decrements it as its last act (release), so a caller that reads
  // 0 (acquire) sees every verdict they wrote and finish takes nothing and waits for nothing.
  std::atomic<uint64_t> running{0};

  // Page tables for [data, data + bytes) filled with `advice` (MADV_POPULATE_READ or _WRITE),
  // 2 MiB at a time from the start, so a thread streaming through it from its start finds them
  // filled. A failure (a media error is EFAULT, not a signal; no memory) stops the populating
  // only: whoever touches those bytes meets it (a read under its own guard).
  static void Populate(const uint8_t* data, size_t bytes, int advice) {
    constexpr uintptr_t kPage = 4096, kChunk = uintptr_t{2} << 20;
    const uintptr_t start = reinterpret_cast<uintptr_t>(data) & ~(kPage - 1);
    const uintptr_t end = reinterpret_cast<uintptr_t>(data) + bytes;
    for (uintptr_t p = start; p < end; p += kChunk)
      if (madvise(reinterpret_cast<void*>(p), std::min(kChunk, end - p), advice) != 0) return;
  }

  // [data, data + bytes) populated for writing a 2 MiB-aligned piece at a time. Once the whole
  // 2 MiB pages of it took more than `smallAfterNs` of this thread's CPU each on average, over
  // kSmallAfterPages of them at least (fresh huge pages whose blocks the host took back
  // meanwhile: free page reporting; several times a recently freed one; one such page among
  // cheap ones does not decide it), the rest's whole 2 MiB pages are advised small
  // (MADV_NOHUGEPAGE) before they are populated: 4 KiB pages cost the same either way. The
  // caller advises them huge again once written (and collapses them). A failure stops the
  // populating only (as Populate). Returns the byte of it from which it went small, or -1.
  static constexpr int kSmallAfterPages = 4;
  static double PopulateFill(const uint8_t* data, size_t bytes, double smallAfterNs) {
    constexpr uintptr_t kPage = 4096, kChunk = uintptr_t{2} << 20;
    const uintptr_t end = reinterpret_cast<uintptr_t>(data) + bytes;
    double smallFrom = -1;
    int pages = 0;
    double pagesNs = 0;
    for (uintptr_t p = reinterpret_cast<uintptr_t>(data) & ~(kPage - 1); p < end;) {
      const uintptr_t next = std::min((p & ~(kChunk - 1)) + kChunk, end);
      const uint64_t t0 = ThreadCpuNs();
      if (madvise(reinterpret_cast<void*>(p), next - p, MADV_POPULATE_WRITE) != 0) break;
      if (smallFrom < 0 && next - p == kChunk) {
        pages++;
        pagesNs += static_cast<double>(ThreadCpuNs() - t0);
      }
      if (smallFrom < 0 && smallAfterNs >= 0 && pages >= kSmallAfterPages && pagesNs > smallAfterNs * pages) {
        const uintptr_t hugeEnd = end & ~(kChunk - 1);
        if (next < hugeEnd && madvise(reinterpret_cast<void*>(next), hugeEnd - next, MADV_NOHUGEPAGE) == 0)
          smallFrom = static_cast<double>(next - reinterpret_cast<uintptr_t>(data));
      }
      p = next;
    }
    return smallFrom;
  }

  // The first helper's work: `ahead` populated for reading, `fill` for writing, then segments
  // off the batch.
  static void First(VerifyJob* j) {
    const uint64_t cpu0 = ThreadCpuNs();
#if defined(MADV_POPULATE_READ) && defined(MADV_POPULATE_WRITE)
    if (j->aheadBytes > 0) Populate(j->aheadData, j->aheadBytes, MADV_POPULATE_READ);
    if (j->fillBytes > 0) {
      const uint64_t fill0 = ThreadCpuNs();
      j->fillSmallFrom = PopulateFill(j->fillData, j->fillBytes, j->smallAfterNs);
      j->fillCpuNs = static_cast<double>(ThreadCpuNs() - fill0);
    }
#endif
    j->batch.cpuNs.fetch_add(ThreadCpuNs() - cpu0, std::memory_order_relaxed);
    VerifyWorker(&j->batch);
    j->running.fetch_sub(1, std::memory_order_release);
  }

  // Any other helper's work: segments off the batch.
  static void Next(VerifyJob* j) {
    VerifyWorker(&j->batch);
    j->running.fetch_sub(1, std::memory_order_release);
  }

  void Join() {
    for (std::thread& t : helpers) t.join();
    helpers.clear();
  }
  ~VerifyJob() {
    batch.failed.store(true, std::memory_order_relaxed);  // never finished: stop early
    Join();
  }
};

}  // namespace

Napi::Value JsVerifyKvSegments(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 7 || !info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) return bad;
  VerifyBatch b;
  uint64_t count = 0;
  double threads = 0;
  if (const int rc = BatchOf(info, 6, &b, &count, &threads); rc != 0) return Napi::Number::New(env, rc);
  Napi::Float64Array out = info[5].As<Napi::Float64Array>();
  if (out.ElementLength() < count * kSegOut) return bad;
  b.segs = info[2].As<Napi::Float64Array>().Data();
  b.out = out.Data();
  ClearVerdicts(b.out, count);
  // This thread and, when asked and there is more than one segment, one more: the workers share
  // nothing but the batch's counters, each checks whole segments under its own guard.
  std::unique_ptr<std::thread> helper;
  if (threads >= 2 && count >= 2) {
    try {
      helper = std::make_unique<std::thread>(VerifyWorker, &b);
    } catch (const std::system_error&) {
      helper.reset();  // no thread: this one does all
    }
  }
  VerifyWorker(&b);
  if (helper != nullptr) helper->join();
  return Napi::Number::New(env, 0);
}

Napi::Value JsVerifyKvSegmentsStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto job = std::make_unique<VerifyJob>();
  uint64_t count = 0;
  double threads = 0;
  if (const int rc = BatchOf(info, 5, &job->batch, &count, &threads); rc != 0) return Napi::Number::New(env, rc);
  Napi::Float64Array segs = info[2].As<Napi::Float64Array>();
  job->segs.assign(segs.Data(), segs.Data() + count * kSegIn);
  job->out.assign(count * kSegOut, 0);
  job->batch.segs = job->segs.data();
  job->batch.out = job->out.data();
  ClearVerdicts(job->batch.out, count);
  job->media = Napi::Persistent(info[0]);
  for (size_t arg : {size_t{6}, size_t{7}}) {
    if (info.Length() <= arg || info[arg].IsUndefined()) continue;
    if (!info[arg].IsTypedArray() || info[arg].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return Napi::Number::New(env, -EINVAL);
    Napi::Uint8Array range = info[arg].As<Napi::Uint8Array>();
    (arg == 6 ? job->aheadData : job->fillData) = range.Data();
    (arg == 6 ? job->aheadBytes : job->fillBytes) = range.ByteLength();
    (arg == 6 ? job->ahead : job->fill) = Napi::Persistent(info[arg]);
  }
  if (info.Length() > 8 && info[8].IsNumber()) job->smallAfterNs = info[8].As<Napi::Number>().DoubleValue();
  // Helpers start now; the caller's thread joins in at finish (taking what is left).
  const bool populates = job->aheadBytes > 0 || job->fillBytes > 0;
  const uint64_t helpers = std::min<uint64_t>(static_cast<uint64_t>(threads), std::max<uint64_t>(count, populates ? 1 : 0));
  job->running.store(helpers, std::memory_order_relaxed);
  for (uint64_t i = 0; i < helpers; i++) {
    try {
      if (i == 0) job->helpers.emplace_back(VerifyJob::First, job.get());
      else job->helpers.emplace_back(VerifyJob::Next, job.get());
    } catch (const std::system_error&) {
      job->running.fetch_sub(helpers - i, std::memory_order_relaxed);  // never started
      break;  // fewer threads: the finishing thread does the rest
    }
  }
  return Napi::External<VerifyJob>::New(env, job.release(), [](Napi::Env, VerifyJob* j) { delete j; });
}

Napi::Value JsVerifyKvSegmentsFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 2 || !info[0].IsExternal() || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    return bad;
  VerifyJob* job = info[0].As<Napi::External<VerifyJob>>().Data();
  Napi::Float64Array out = info[1].As<Napi::Float64Array>();
  if (job == nullptr || job->finished || out.ElementLength() < job->out.size()) return bad;
  const bool stop = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  if (stop) job->batch.failed.store(true, std::memory_order_relaxed);  // no segment taken after this
  VerifyWorker(&job->batch);  // whatever the helpers have not taken yet (nothing when stopped)
  job->Join();
  job->finished = true;
  job->media.Reset();
  job->ahead.Reset();
  job->fill.Reset();
  std::memcpy(out.Data(), job->out.data(), job->out.size() * sizeof(double));
  if (info.Length() > 3 && info[3].IsTypedArray() && info[3].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    Napi::Float64Array fill = info[3].As<Napi::Float64Array>();
    if (fill.ElementLength() >= 2) {
      fill[0] = job->fillCpuNs / 1e6;
      fill[1] = job->fillSmallFrom;
    }
  }
  return Napi::Number::New(env, static_cast<double>(job->batch.cpuNs.load(std::memory_order_relaxed)) / 1e6);
}

Napi::Value JsVerifyKvSegmentsDone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) return Napi::Boolean::New(env, true);
  VerifyJob* job = info[0].As<Napi::External<VerifyJob>>().Data();
  if (job == nullptr || job->finished) return Napi::Boolean::New(env, true);
  if (job->running.load(std::memory_order_acquire) != 0) return Napi::Boolean::New(env, false);
  // Every helper has returned: none took the batch's last segment only if none started (the
  // finishing thread then checks them all), or one failed (the rest are not checked).
  return Napi::Boolean::New(env, true);
}

Napi::Value JsNonzeroWords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 5 || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsTypedArray()) return bad;
  if (info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) return bad;
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  if (!MediaOf(info[0], &data, &bytes)) return bad;
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double count = info[2].As<Napi::Number>().DoubleValue();
  const double stride = info[3].As<Napi::Number>().DoubleValue();
  Napi::Int32Array out = info[4].As<Napi::Int32Array>();
  if (!IsIndex(offset) || !IsIndex(count) || !IsIndex(stride) || stride < 8 || count > 0x7fffffff || static_cast<uint64_t>(offset) % 8 != 0 ||
      static_cast<uint64_t>(stride) % 8 != 0)
    return bad;
  const uint64_t o = static_cast<uint64_t>(offset), n = static_cast<uint64_t>(count), st = static_cast<uint64_t>(stride);
  if (n != 0 && (o + 8 > bytes || (bytes - o - 8) / st < n - 1)) return bad;
  int32_t* dst = out.Data();
  const uint64_t room = out.ElementLength();
  uint64_t found = 0;
  for (uint64_t i = 0; i < n; i++) {
    // A relaxed 8-byte load: the word is written whole (Atomics) by any thread.
    const uint64_t w = std::atomic_ref<const uint64_t>(*reinterpret_cast<const uint64_t*>(data + o + i * st)).load(std::memory_order_relaxed);
    if (w == 0) continue;
    if (found < room) dst[found] = static_cast<int32_t>(i);
    found++;
  }
  return Napi::Number::New(env, static_cast<double>(found));
}

Napi::Value JsColumnStarts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber()) return bad;
  if (info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) return bad;
  Napi::Uint16Array lengths = info[0].As<Napi::Uint16Array>();
  Napi::Uint32Array starts = info[1].As<Napi::Uint32Array>();
  const double count = info[2].As<Napi::Number>().DoubleValue();
  if (!IsIndex(count) || count > static_cast<double>(lengths.ElementLength()) || count > static_cast<double>(starts.ElementLength())) return bad;
  const uint16_t* l = lengths.Data();
  uint32_t* out = starts.Data();
  uint64_t at = 0;
  for (uint64_t i = 0; i < static_cast<uint64_t>(count); i++) {
    if (at > 0xffffffffu) return bad;
    out[i] = static_cast<uint32_t>(at);
    at += l[i];
  }
  return Napi::Number::New(env, static_cast<double>(at));
}

Napi::Value JsCountByExtent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 5 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsTypedArray()) return bad;
  if (info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) return bad;
  Napi::Float64Array values = info[0].As<Napi::Float64Array>();
  Napi::Int32Array out = info[4].As<Napi::Int32Array>();
  const double count = info[1].As<Napi::Number>().DoubleValue();
  const double origin = info[2].As<Napi::Number>().DoubleValue();
  const double extentBytes = info[3].As<Napi::Number>().DoubleValue();
  if (!IsIndex(count) || !IsIndex(origin) || !IsIndex(extentBytes) || extentBytes == 0) return bad;
  const double* v = values.Data();
  int32_t* o = out.Data();
  const uint64_t extents = out.ElementLength();
  uint64_t skipped = 0;
  // A power of two's reciprocal is exact: a multiply, not a divide, per value; and a quotient
  // known not negative is floored by truncation (std::floor is a libm call on baseline x86-64).
  const bool powerOfTwo = std::exp2(std::round(std::log2(extentBytes))) == extentBytes;
  const double reciprocal = 1 / extentBytes;
  const auto add = [&](double x) {
    if (x >= origin) {
      const double e = powerOfTwo ? (x - origin) * reciprocal : (x - origin) / extentBytes;
      if (e < static_cast<double>(extents)) return void(o[static_cast<uint64_t>(e)]++);
    }
    skipped++;
  };
  // add undone: for a value counted by addAll that the tape skips.
  const auto remove = [&](double x) {
    if (x >= origin) {
      const double e = powerOfTwo ? (x - origin) * reciprocal : (x - origin) / extentBytes;
      if (e < static_cast<double>(extents)) return void(o[static_cast<uint64_t>(e)]--);
    }
    skipped--;
  };
  // values[0, n) counted: four counts per extent, value i adding to copy i % 4 (summed at the
  // end), so that values next to each other in one extent do not wait on each other's
  // increment. Their scratch is asked for without throwing (no C++ exception may leave an addon
  // call): without it, the one count.
  const auto addAll = [&](uint64_t n) {
    std::unique_ptr<int32_t[]> h(powerOfTwo && extents <= (uint64_t{1} << 20) ? new (std::nothrow) int32_t[extents * 4]() : nullptr);
    if (!h) {
      for (uint64_t i = 0; i < n; i++) add(v[i]);
      return;
    }
    const double limit = static_cast<double>(extents);
    for (uint64_t i = 0; i < n; i++) {
      const double x = v[i];
      const double e = (x - origin) * reciprocal;
      if (x >= origin && e < limit)
        h[(i & 3) * extents + static_cast<uint64_t>(e)]++;
      else
        skipped++;
    }
    for (uint64_t e = 0; e < extents; e++) o[e] += h[e] + h[extents + e] + h[2 * extents + e] + h[3 * extents + e];
  };
  if (info.Length() < 7 || info[6].IsUndefined()) {
    if (count > static_cast<double>(values.ElementLength())) return bad;
    addAll(static_cast<uint64_t>(count));
    return Napi::Number::New(env, static_cast<double>(skipped));
  }
  // The takes of a merge tape over values (a) and bValues (b).
  if (!info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || !info[6].IsTypedArray() ||
      info[6].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    return bad;
  Napi::Float64Array bValues = info[5].As<Napi::Float64Array>();
  Napi::Uint32Array tape = info[6].As<Napi::Uint32Array>();
  const double* sets[2] = {v, bValues.Data()};
  const uint64_t lengths[2] = {values.ElementLength(), bValues.ElementLength()};
  uint64_t at[2] = {0, 0}, taken = 0;
  for (uint64_t w = 0; w < tape.ElementLength(); w++) {  // the tape's shape first: nothing counted yet
    const uint32_t op = tape[w] >> kTapeOpShift, run = tape[w] & kTapeRunMask;
    const int set = op == kTapeTakeA || op == kTapeSkipA ? 0 : 1;
    if (at[set] + run > lengths[set]) return bad;
    if (op == kTapeTakeA || op == kTapeTakeB) taken += run;
    at[set] += run;
  }
  if (taken != static_cast<uint64_t>(count)) return bad;
  // Every value of a the tape walks, counted in one pass (a's takes are most of them: the tail is
  // the smaller side), then the ones it skips taken out again and b's takes added.
  addAll(at[0]);
  at[0] = at[1] = 0;
  for (uint64_t w = 0; w < tape.ElementLength(); w++) {
    const uint32_t op = tape[w] >> kTapeOpShift, run = tape[w] & kTapeRunMask;
    if (op == kTapeSkipA) {
      for (uint64_t k = 0; k < run; k++) remove(v[at[0] + k]);
    } else if (op == kTapeTakeB) {
      for (uint64_t k = 0; k < run; k++) add(sets[1][at[1] + k]);
    }
    at[op == kTapeTakeA || op == kTapeSkipA ? 0 : 1] += run;
  }
  return Napi::Number::New(env, static_cast<double>(skipped));
}

namespace {

struct HashRange {
  const uint8_t* p;
  size_t length;
  uint64_t sum;
  bool xxh3;
};

void RunHash(void* arg) {
  HashRange& h = *static_cast<HashRange*>(arg);
  h.sum = h.xxh3 ? Xxh3(h.p, h.length) : XXH64(h.p, h.length, 0);
}

}  // namespace

namespace {

struct EndMarkers {
  const uint8_t* media;
  const double* segs;
  uint64_t count, segmentBytes;
  uint8_t* out;
};

void RunEndMarkers(void* arg) {
  EndMarkers& e = *static_cast<EndMarkers*>(arg);
  for (uint64_t i = 0; i < e.count; i++) {
    const uint64_t base = static_cast<uint64_t>(e.segs[2 * i]), used = static_cast<uint64_t>(e.segs[2 * i + 1]);
    const uint64_t at = base + used;
    e.out[i] = used + kRecordHeaderBytes > e.segmentBytes || (Load64(e.media + at) == 0 && Load64(e.media + at + 8) == 0) ? 1 : 0;
  }
}

}  // namespace

Napi::Value JsEndMarkersAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 4 || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsTypedArray()) return bad;
  if (info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    return bad;
  EndMarkers e{};
  size_t mediaBytes = 0;
  if (!MediaOf(info[0], &e.media, &mediaBytes)) return bad;
  Napi::Float64Array segs = info[1].As<Napi::Float64Array>();
  Napi::Uint8Array out = info[3].As<Napi::Uint8Array>();
  const double segmentBytes = info[2].As<Napi::Number>().DoubleValue();
  if (!IsIndex(segmentBytes) || segmentBytes < kRecordHeaderBytes || segs.ElementLength() % 2 != 0 || out.ElementLength() < segs.ElementLength() / 2)
    return bad;
  e.segs = segs.Data();
  e.count = segs.ElementLength() / 2;
  e.segmentBytes = static_cast<uint64_t>(segmentBytes);
  e.out = out.Data();
  // Every byte read lies inside the media, whatever segs hold.
  for (uint64_t i = 0; i < e.count; i++) {
    const double base = e.segs[2 * i], used = e.segs[2 * i + 1];
    if (!IsIndex(base) || !IsIndex(used) || static_cast<uint64_t>(base) % 8 != 0 || static_cast<uint64_t>(used) % 8 != 0 || used > segmentBytes ||
        base + segmentBytes > static_cast<double>(mediaBytes))
      return bad;
  }
  return Napi::Number::New(env, GuardedRun(RunEndMarkers, &e) != 0 ? -EIO : 0);
}

namespace {

// JsCoverRecords' walk (checkpoint.ts coverRunning), run under the SIGBUS guard.
struct CoverWalk {
  const uint8_t* m;  // the segment's first byte
  uint64_t segmentBytes, at, lastAt, records = 0;
  uint32_t nonceLo, nonceHi;
  double snapshot, maxSequence;
};

// The highest sequence of the entries of the whole record at `r` of `total` bytes (0 for a SEAL or PAD).
double RecordMaxSequence(const uint8_t* r, uint64_t total) {
  const uint32_t count = Load32(r + 20);
  double top = 0;
  uint64_t e = kRecordHeaderBytes;
  for (uint32_t i = 0; i < count && e + kEntryHeaderBytes <= total; i++) {
    const uint32_t hi = Load32(r + e + 12);
    const double sequence = hi == 0 ? Load32(r + e + 8) : static_cast<double>(hi) * 4294967296.0 + Load32(r + e + 8);
    if (sequence > top) top = sequence;
    const uint64_t keyLength = Load32(r + e) & 0xffff;
    e += Align8(kEntryHeaderBytes + keyLength + Load32(r + e + 4));
  }
  return top;
}

void RunCover(void* arg) {
  CoverWalk& c = *static_cast<CoverWalk*>(arg);
  while (c.at + kRecordHeaderBytes <= c.segmentBytes) {
    const uint8_t* r = c.m + c.at;
    if ((Load64(r) | Load64(r + 8)) == 0) break;  // the end marker
    const uint64_t total = Load32(r + 16);
    if ((Load32(r + 12) & 0xffff) != kRecordMagic || total < kRecordHeaderBytes || total % 8 != 0) break;
    if (c.at + total > c.segmentBytes || Load32(r + 24) != c.nonceLo || (Load32(r + 28) & 0xff) != c.nonceHi) break;
    if (XXH64(r + 8, total - 8, 0) != Load64(r)) break;  // being copied in: not published, so above the snapshot
    const double top = RecordMaxSequence(r, total);
    if (top > c.snapshot) break;
    if (top > c.maxSequence) c.maxSequence = top;
    c.lastAt = c.at;
    c.at += total;
    c.records++;
  }
}

}  // namespace

Napi::Value JsCoverRecords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 9 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return bad;
  if (!info[8].IsTypedArray() || info[8].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) return bad;
  for (int i = 1; i <= 7; i++)
    if (!info[i].IsNumber()) return bad;
  Napi::Uint8Array media = info[0].As<Napi::Uint8Array>();
  Napi::Float64Array out = info[8].As<Napi::Float64Array>();
  double a[7];
  for (int i = 0; i < 7; i++) a[i] = info[i + 1].As<Napi::Number>().DoubleValue();
  // base, at, lastAt (-1: none), segmentBytes, nonce, snapshot, maxSequence
  if (!IsIndex(a[0]) || !IsIndex(a[1]) || !(a[2] == -1 || IsIndex(a[2])) || !IsIndex(a[3]) || !IsIndex(a[4]) || !IsIndex(a[5]) || !IsIndex(a[6]) ||
      out.ElementLength() < 4 || a[0] + a[3] > static_cast<double>(media.ByteLength()) || a[1] > a[3] || static_cast<uint64_t>(a[0]) % 8 != 0 ||
      static_cast<uint64_t>(a[1]) % 8 != 0)
    return bad;
  const uint64_t nonce = static_cast<uint64_t>(a[4]);
  CoverWalk c{media.Data() + static_cast<uint64_t>(a[0]), static_cast<uint64_t>(a[3]), static_cast<uint64_t>(a[1]), 0, 0,
              static_cast<uint32_t>(nonce), static_cast<uint32_t>(nonce >> 32), a[5], a[6]};
  const double lastAt = a[2];
  if (GuardedRun(RunCover, &c) != 0) return Napi::Number::New(env, -EIO);
  out[0] = static_cast<double>(c.at);
  out[1] = c.records == 0 ? lastAt : static_cast<double>(c.lastAt);
  out[2] = static_cast<double>(c.records);
  out[3] = c.maxSequence;
  return Napi::Number::New(env, 0);
}

namespace {

// A hash started by JsHashRangeStart: the range (kept alive by a reference to its bytes), the
// thread that hashes it and its outcome. Collected unfinished, it joins the thread first.
struct HashJob {
  HashRange h{};
  int rc = 0;  // 0, or -EIO: a media error under the range
  std::thread thread;
  std::atomic<bool> done{false};
  Napi::Reference<Napi::Value> bytes;
  ~HashJob() {
    if (thread.joinable()) thread.join();
  }
  static void Run(HashJob* j) {
    j->rc = GuardedRun(RunHash, &j->h) != 0 ? -EIO : 0;
    j->done.store(true, std::memory_order_release);
  }
};

}  // namespace

Napi::Value JsHashRangeStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber()) return bad;
  if (info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return bad;
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double length = info[2].As<Napi::Number>().DoubleValue();
  if (!IsIndex(offset) || !IsIndex(length) || offset + length > static_cast<double>(bytes.ByteLength())) return bad;
  const bool xxh3 = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  auto job = std::make_unique<HashJob>();
  job->h = HashRange{bytes.Data() + static_cast<size_t>(offset), static_cast<size_t>(length), 0, xxh3};
  job->bytes = Napi::Persistent(info[0]);
  try {
    job->thread = std::thread(HashJob::Run, job.get());
  } catch (const std::system_error&) {
    HashJob::Run(job.get());  // no thread: hashed here, done at once
  }
  return Napi::External<HashJob>::New(env, job.release(), [](Napi::Env, HashJob* j) { delete j; });
}

Napi::Value JsHashRangeDone(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) return Napi::Boolean::New(info.Env(), true);
  HashJob* job = info[0].As<Napi::External<HashJob>>().Data();
  return Napi::Boolean::New(info.Env(), job == nullptr || job->done.load(std::memory_order_acquire));
}

Napi::Value JsHashRangeFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 2 || !info[0].IsExternal() || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    return bad;
  HashJob* job = info[0].As<Napi::External<HashJob>>().Data();
  Napi::Uint32Array out = info[1].As<Napi::Uint32Array>();
  if (job == nullptr || out.ElementLength() < 2) return bad;
  if (job->thread.joinable()) job->thread.join();
  job->bytes.Reset();
  if (job->rc != 0) return Napi::Number::New(env, job->rc);
  out[0] = static_cast<uint32_t>(job->h.sum);
  out[1] = static_cast<uint32_t>(job->h.sum >> 32);
  return Napi::Number::New(env, 0);
}

Napi::Value JsThreadCpuMs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ThreadCpuNs()) / 1e6);
}

Napi::Value JsHashRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsTypedArray()) return bad;
  if (info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) return bad;
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  Napi::Uint32Array out = info[3].As<Napi::Uint32Array>();
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double length = info[2].As<Napi::Number>().DoubleValue();
  if (!IsIndex(offset) || !IsIndex(length) || offset + length > static_cast<double>(bytes.ByteLength()) || out.ElementLength() < 2) return bad;
  const bool xxh3 = info.Length() > 4 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
  HashRange h{bytes.Data() + static_cast<size_t>(offset), static_cast<size_t>(length), 0, xxh3};
  if (GuardedRun(RunHash, &h) != 0) return Napi::Number::New(env, -EIO);
  out[0] = static_cast<uint32_t>(h.sum);
  out[1] = static_cast<uint32_t>(h.sum >> 32);
  return Napi::Number::New(env, 0);
}

namespace {

// A scratch array of n T's in anonymous memory advised MADV_HUGEPAGE: tens of megabytes
// written once, where a first touch per 4 KiB page (a fault, on a virtual machine an exit
// to the hypervisor too) would cost more than the sort itself. Empty when mmap fails.
template <typename T>
class HugeScratch {
 public:
  explicit HugeScratch(uint64_t n) {
    constexpr uint64_t kHuge = 2u << 20;
    bytes_ = (std::max<uint64_t>(n, 1) * sizeof(T) + kHuge - 1) / kHuge * kHuge + kHuge;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    base_ = p;
    const uintptr_t aligned = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~uintptr_t{kHuge - 1};
    (void)madvise(reinterpret_cast<void*>(aligned), bytes_ - kHuge, MADV_HUGEPAGE);  // advice: may be refused
    data_ = reinterpret_cast<T*>(aligned);
  }
  ~HugeScratch() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }
  HugeScratch(const HugeScratch&) = delete;
  HugeScratch& operator=(const HugeScratch&) = delete;
  T* get() const { return data_; }

 private:
  void* base_ = nullptr;
  T* data_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace


Napi::Value JsPickKvWinners(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 8) return bad;
  const napi_typedarray_type types[] = {napi_uint8_array, napi_uint32_array, napi_uint8_array, napi_float64_array, napi_uint32_array, napi_uint16_array, napi_uint8_array};
  const int args[] = {0, 1, 1, 3, 4, 5, 6};  // [2] is the count, checked below
  const uint8_t* mediaData = nullptr;
  size_t mediaBytes = 0;
  if (!MediaOf(info[0], &mediaData, &mediaBytes)) return bad;
  for (int i = 1; i < 7; i++) {
    if (i == 2) continue;
    if (!info[args[i]].IsTypedArray() || info[args[i]].As<Napi::TypedArray>().TypedArrayType() != types[i]) return bad;
  }
  if (!info[2].IsNumber() || !info[7].IsNumber()) return bad;
  Napi::Uint32Array recs = info[1].As<Napi::Uint32Array>();
  const double count = info[2].As<Napi::Number>().DoubleValue();
  const double prefix = info[7].As<Napi::Number>().DoubleValue();
  if (!IsIndex(count) || count * kRecordWords > recs.ElementLength() || !IsIndex(prefix) || prefix > 255) return bad;
  Pick p{};
  p.media = mediaData;
  p.recs = recs.Data();
  p.count = static_cast<uint64_t>(count);
  // Every entry offset a record holds must lie inside the media with its key (long keys are read there).
  const Rec* sortRecs = reinterpret_cast<const Rec*>(p.recs);
  for (uint64_t i = 0; i < p.count; i++)
    if (RecOffset(sortRecs[i]) + kEntryHeaderBytes + RecKeyLength(sortRecs[i]) > mediaBytes) return bad;
  // A second array for further scatters only when the first leaves a bucket too big for the cache.
  p.shared = p.count == 0 ? static_cast<int>(kSortKeyBytes) : SharedBytes(sortRecs, p.count);
  uint64_t sizes[256] = {};
  if (p.shared < static_cast<int>(kSortKeyBytes))
    for (uint64_t i = 0; i < p.count; i++) sizes[ByteAt(sortRecs[i], p.shared)]++;
  else
    sizes[0] = p.count;
  const bool needRoom = *std::max_element(sizes, sizes + 256) > kCacheRecords;
  HugeScratch<Rec> scattered(p.count);
  HugeScratch<Rec> room(needRoom ? p.count : 0);
  HugeScratch<SortKey> sortKeys(2 * p.count + 1);
  if (!scattered.get() || !sortKeys.get() || (needRoom && !room.get())) return Napi::Number::New(env, -ENOMEM);
  p.scattered = scattered.get();
  p.room = needRoom ? room.get() : nullptr;
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
  p.keepDeletes = info.Length() > 8 && info[8].IsBoolean() && info[8].As<Napi::Boolean>().Value();
  if (info.Length() > 9 && !info[9].IsUndefined()) {
    if (!info[9].IsTypedArray() || info[9].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) return bad;
    Napi::TypedArrayOf<uint64_t> sequences = info[9].As<Napi::TypedArrayOf<uint64_t>>();
    if (sequences.ElementLength() < p.valuesLength) return bad;  // one per winner: at most values' length
    p.sequences = sequences.Data();
  }
  if (GuardedRun(RunPick, &p) != 0) return Napi::Number::New(env, -EIO);
  return Napi::Number::New(env, static_cast<double>(p.winners));
}

namespace {

// Columns for the bulk load: value, start and length of each index key, the keys back to back.
struct Columns {
  const double* values;
  const uint32_t* starts;
  const uint16_t* lengths;
  const uint8_t* keys;
  uint64_t count, keysLength;
};

struct Merge {
  const uint8_t* media;
  uint64_t mediaLength;
  Columns a, b;  // a: the checkpoint's winners; b: the tail's (DEL winners negative)
  const uint64_t* bSequences;  // b's entries' sequences (the pick's), or null: read from the media
  double covered;  // the checkpoint's highest sequence
  bool dropStale;  // b's entries of sequences <= covered are skipped (the caller's stale-entry rule)
  uint32_t* tape;  // runs (kv-recovery.h kTape*): which entry of a or b each step takes or skips
  uint64_t tapeCapacity, tapeWords;
  int64_t count;  // winners taken, or -errno
  uint64_t replaced, added, removed;
};

uint64_t SequenceAt(const uint8_t* m, uint64_t e) { return Load64(m + e + 8); }

// Whether the tail's entry `tb` beats the checkpoint's `ta` for one key: the pick's order
// (highest sequence, then intact before LOST, then the lowest offset).
bool TailWins(const Merge& g, uint64_t ta, uint64_t tb) {
  const uint64_t sa = SequenceAt(g.media, ta), sb = SequenceAt(g.media, tb);
  if (sa != sb) return sb > sa;
  const bool lostA = ((Load32(g.media + ta) >> 24) & kEntryFlagLost) != 0;
  const bool lostB = ((Load32(g.media + tb) >> 24) & kEntryFlagLost) != 0;
  if (lostA != lostB) return lostA;
  return tb < ta;
}

// Appends `n` steps of one op to the tape: extends the last run when it is the same op, else
// new runs (a run holds at most kTapeRunMask steps).
bool StepN(Merge& g, uint32_t op, uint64_t n) {
  while (n > 0) {
    uint64_t room = 0;
    if (g.tapeWords > 0 && (g.tape[g.tapeWords - 1] >> kTapeOpShift) == op) room = kTapeRunMask - (g.tape[g.tapeWords - 1] & kTapeRunMask);
    if (room == 0) {
      if (g.tapeWords >= g.tapeCapacity) return false;
      g.tape[g.tapeWords++] = op << kTapeOpShift;
      room = kTapeRunMask;
    }
    const uint64_t k = std::min(room, n);
    g.tape[g.tapeWords - 1] += static_cast<uint32_t>(k);
    if (op == kTapeTakeA || op == kTapeTakeB) g.count += static_cast<int64_t>(k);
    n -= k;
  }
  return true;
}

bool Step(Merge& g, uint32_t op) { return StepN(g, op, 1); }

int CompareIndexKeys(const uint8_t* a, uint16_t la, const uint8_t* b, uint16_t lb) {
  const int d = std::memcmp(a, b, std::min(la, lb));
  return d != 0 ? d : la == lb ? 0 : la < lb ? -1 : 1;
}

// a's key i against b's key j. a's columns are checked where they are read (the merge skips
// most of a); b's were checked whole by the caller. false: a's key lies outside its column.
bool CompareAB(const Merge& g, uint64_t i, uint64_t j, int* d) {
  if (uint64_t{g.a.starts[i]} + g.a.lengths[i] > g.a.keysLength) return false;
  *d = CompareIndexKeys(g.a.keys + g.a.starts[i], g.a.lengths[i], g.b.keys + g.b.starts[j], g.b.lengths[j]);
  return true;
}

// The first k >= i with a's key k not below b's key j (a.count when none): doubling steps from
// i, then a bisection of the last one, so a run of r keys of a between two of b's costs
// O(log r) comparisons. -1: a key of a outside its column.
int64_t FirstNotBelow(const Merge& g, uint64_t i, uint64_t j) {
  int d = 0;
  if (i == g.a.count) return static_cast<int64_t>(i);
  if (!CompareAB(g, i, j, &d)) return -1;
  if (d >= 0) return static_cast<int64_t>(i);
  uint64_t below = i, step = 1;  // a[below] < b[j]
  uint64_t above = g.a.count;    // a[above] >= b[j], or the end
  for (;;) {
    const uint64_t k = below + step;
    if (k >= g.a.count) break;
    if (!CompareAB(g, k, j, &d)) return -1;
    if (d >= 0) {
      above = k;
      break;
    }
    below = k;
    step *= 2;
  }
  while (above - below > 1) {
    const uint64_t mid = below + (above - below) / 2;
    if (!CompareAB(g, mid, j, &d)) return -1;
    if (d < 0) below = mid;
    else above = mid;
  }
  return static_cast<int64_t>(above);
}

// For each of b's entries in key order: a's keys below it taken as one run (FirstNotBelow),
// then the entry merged with a's entry of its key, if any. Work follows b's count (times the
// log of the runs of a between), not a's, but for the runs written to the tape.
void RunMerge(void* arg) {
  Merge& g = *static_cast<Merge*>(arg);
  uint64_t i = 0;
  for (uint64_t j = 0; j < g.b.count; j++) {
    const int64_t k = FirstNotBelow(g, i, j);
    if (k < 0) return void(g.count = -EINVAL);
    if (!StepN(g, kTapeTakeA, static_cast<uint64_t>(k) - i)) return void(g.count = -ERANGE);
    i = static_cast<uint64_t>(k);
    int d = 1;
    if (i < g.a.count && !CompareAB(g, i, j, &d)) return void(g.count = -EINVAL);
    const double vb = g.b.values[j];
    const bool del = vb < 0;
    const uint64_t tb = static_cast<uint64_t>(del ? -vb - 1 : vb);
    const uint64_t sb = g.bSequences != nullptr ? g.bSequences[j] : SequenceAt(g.media, tb);
    bool ok = true;
    bool tail = true;
    if (g.dropStale && sb <= static_cast<uint64_t>(g.covered)) {
      tail = false;  // stale: a covered sequence whose key the checkpoint has or lacks alike
      if (d == 0) ok = Step(g, kTapeTakeA), i++;
    } else if (d == 0) {
      const double va = g.a.values[i];
      if (!IsIndex(va) || va + kEntryHeaderBytes > static_cast<double>(g.mediaLength)) return void(g.count = -EINVAL);
      const uint64_t ta = static_cast<uint64_t>(va);
      // Newer than everything the checkpoint covers: wins without a read of a's entry.
      tail = sb > static_cast<uint64_t>(g.covered) || TailWins(g, ta, tb);
      if (!tail)
        ok = Step(g, kTapeTakeA);
      else if (del)
        g.removed++, ok = Step(g, kTapeSkipA);
      else
        g.replaced++, ok = Step(g, kTapeSkipA);
      i++;
    } else if (!del) {
      g.added++;
    }
    ok = ok && Step(g, tail && !del ? kTapeTakeB : kTapeSkipB);
    if (!ok) return void(g.count = -ERANGE);
  }
  if (!StepN(g, kTapeTakeA, g.a.count - i)) return void(g.count = -ERANGE);
}

bool ColumnsOf(const Napi::CallbackInfo& info, int first, uint64_t count, Columns* c) {
  if (!info[first].IsTypedArray() || !info[first + 1].IsTypedArray() || !info[first + 2].IsTypedArray() || !info[first + 3].IsTypedArray()) return false;
  auto values = info[first].As<Napi::TypedArray>();
  auto starts = info[first + 1].As<Napi::TypedArray>();
  auto lengths = info[first + 2].As<Napi::TypedArray>();
  auto keys = info[first + 3].As<Napi::TypedArray>();
  if (values.TypedArrayType() != napi_float64_array || starts.TypedArrayType() != napi_uint32_array || lengths.TypedArrayType() != napi_uint16_array ||
      keys.TypedArrayType() != napi_uint8_array)
    return false;
  if (values.ElementLength() < count || starts.ElementLength() < count || lengths.ElementLength() < count) return false;
  c->values = values.As<Napi::Float64Array>().Data();
  c->starts = starts.As<Napi::Uint32Array>().Data();
  c->lengths = lengths.As<Napi::Uint16Array>().Data();
  c->keys = keys.As<Napi::Uint8Array>().Data();
  c->count = count;
  c->keysLength = keys.ElementLength();
  return true;
}

}  // namespace

Napi::Value JsMergeKvColumns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 15 || !info[14].IsBoolean()) return bad;
  for (int i : {1, 6, 11}) if (!info[i].IsNumber()) return bad;
  const double ca = info[1].As<Napi::Number>().DoubleValue(), cb = info[6].As<Napi::Number>().DoubleValue(), covered = info[11].As<Napi::Number>().DoubleValue();
  if (!IsIndex(ca) || !IsIndex(cb) || !IsIndex(covered)) return bad;
  Merge g{};
  size_t mediaBytes = 0;
  if (!MediaOf(info[0], &g.media, &mediaBytes)) return bad;
  g.mediaLength = mediaBytes;
  g.covered = covered;
  g.dropStale = info[14].As<Napi::Boolean>().Value();
  if (!ColumnsOf(info, 2, static_cast<uint64_t>(ca), &g.a) || !ColumnsOf(info, 7, static_cast<uint64_t>(cb), &g.b)) return bad;
  if (!info[12].IsTypedArray() || info[12].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) return bad;
  // Every key of b lies inside its column, every value is an entry inside the media; a's are
  // checked where the merge reads them (it skips most of a: CompareAB, RunMerge).
  for (uint64_t i = 0; i < g.b.count; i++) {
    const double v = g.b.values[i];
    const double at = v < 0 ? -v - 1 : v;
    if (uint64_t{g.b.starts[i]} + g.b.lengths[i] > g.b.keysLength || !IsIndex(at) || at + kEntryHeaderBytes > static_cast<double>(g.mediaLength)) return bad;
  }
  if (info.Length() > 15 && !info[15].IsUndefined()) {
    if (!info[15].IsTypedArray() || info[15].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) return bad;
    Napi::TypedArrayOf<uint64_t> sequences = info[15].As<Napi::TypedArrayOf<uint64_t>>();
    if (sequences.ElementLength() < g.b.count) return bad;
    g.bSequences = sequences.Data();
  }
  Napi::Uint32Array tape = info[12].As<Napi::Uint32Array>();
  g.tape = tape.Data();
  g.tapeCapacity = tape.ElementLength();
  if (GuardedRun(RunMerge, &g) != 0) return Napi::Number::New(env, -EIO);
  if (g.count == -EINVAL) return bad;
  if (g.count < 0) return Napi::Number::New(env, static_cast<double>(g.count));
  Napi::Float64Array counts = info[13].IsTypedArray() && info[13].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array
                                  ? info[13].As<Napi::Float64Array>()
                                  : Napi::Float64Array();
  if (!counts.IsEmpty() && counts.ElementLength() >= 4) {
    counts[0] = static_cast<double>(g.replaced);
    counts[1] = static_cast<double>(g.added);
    counts[2] = static_cast<double>(g.removed);
    counts[3] = static_cast<double>(g.tapeWords);
  }
  return Napi::Number::New(env, static_cast<double>(g.count));
}

}  // namespace daxstore
