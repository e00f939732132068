// Regions: one whole-file (or whole-device) mapping each, handed to JavaScript as one
// SharedArrayBuffer, registered in a process-global table so every worker thread can
// flush, persist and copy by region id.
//
// Invariants
//   - Exactly one V8 backing store per mapping: the address is wrapped once, at open.
//     Workers get that same SharedArrayBuffer by structured clone, never a new wrapping.
//   - A slot's base/mapBytes/kind/flushMethod never change while its id is non-zero; sizeBytes
//     only grows (growRegion, under g_tableMutex) and stays within mapBytes.
//   - While a region is open its descriptor holds flock(LOCK_EX); close drops the lock
//     explicitly (the mapping holds the open file description, so close(fd) alone would not).
//
// Concurrency
//   - Lookups by id are lock-free (acquire load of the slot id). They are safe because
//     every caller holds the region's SharedArrayBuffer, so the deleter, which runs only
//     once no isolate holds it, cannot run concurrently with a legitimate lookup.
//   - g_tableMutex orders open/close/deleter on the slot array and guards each slot's fd.
//
// Persistence ordering: none here (see persist.h); this file only maps and locks.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace daxstore {

// Numbering shared with src/native/addon.ts.
enum class Kind : int32_t { kDevDax = 0, kFsDax = 1, kFile = 2, kTmpfs = 3 };
enum class FlushMethod : int32_t { kClwb = 0, kClflushopt = 1, kClflush = 2, kMsync = 3 };

struct Region {
  // Layout of id: bits 0..11 slot index, bits 12..31 generation (never 0 for a live slot).
  std::atomic<uint32_t> id{0};
  uint8_t* base = nullptr;
  // The file's size: grows (growRegion), never shrinks, never past mapBytes.
  std::atomic<size_t> sizeBytes{0};
  // Bytes mapped at base (the reservation; one backing store over all of it).
  size_t mapBytes = 0;
  Kind kind = Kind::kFile;
  FlushMethod flushMethod = FlushMethod::kMsync;
  int fd = -1;  // guarded by g_tableMutex; -1 once closed
};

// The live region with this id, or nullptr. Caller must hold the region's buffer.
const Region* FindRegion(uint32_t id);

// JsOpenRegion(path, create, sizeBytes, alignment, isDevDax, flushMethod /* -1 auto */,
//              privateCopy /* optional: MAP_PRIVATE over an O_RDONLY fd, stores never reach the file */,
//              reserveBytes /* optional: address space mapped, >= the size (the store grows into it) */,
//              sparse /* optional: create with ftruncate instead of posix_fallocate */)
//   -> { regionId, buffer (over all mapBytes), kind, flushMethod, mapSync, sizeBytes, mapBytes, alignment, created }
Napi::Value JsOpenRegion(const Napi::CallbackInfo& info);
// JsCloseRegion(regionId) -> boolean (false if already closed): unlock + close fd.
Napi::Value JsCloseRegion(const Napi::CallbackInfo& info);
// JsGrowRegion(regionId, bytes) -> 0 | -errno: the file allocated (posix_fallocate) and
//   extended to at least `bytes` (within the reservation), its size made durable (fsync).
Napi::Value JsGrowRegion(const Napi::CallbackInfo& info);
// JsAllocateRegion(regionId, offset, length) -> 0 | -errno: posix_fallocate of a range inside
//   the file (a sparse create allocates what it uses; ENOSPC for a full file system).
Napi::Value JsAllocateRegion(const Napi::CallbackInfo& info);
// JsIsRegionLive(regionId) -> boolean: the mapping still exists (attached workers check it).
Napi::Value JsIsRegionLive(const Napi::CallbackInfo& info);

}  // namespace daxstore
