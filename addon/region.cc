#include "region.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <v8.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "errors.h"
#include "persist.h"
#include "test-break.h"

namespace daxstore {
namespace {

constexpr uint32_t kSlotBits = 12;
constexpr uint32_t kMaxRegions = 1u << kSlotBits;
constexpr size_t kPageBytes = 4096;

Region g_regions[kMaxRegions];
uint32_t g_generation[kMaxRegions];  // guarded by g_tableMutex
std::mutex g_tableMutex;

// Runs on whatever thread frees the last SharedArrayBuffer over the mapping.
void UnmapDeleter(void* data, size_t length, void* slotPtr) {
  Region* region = static_cast<Region*>(slotPtr);
  munmap(data, length);
  std::lock_guard<std::mutex> guard(g_tableMutex);
  if (region->fd >= 0) {
    flock(region->fd, LOCK_UN);
    close(region->fd);
    region->fd = -1;
  }
  region->base = nullptr;
  region->id.store(0, std::memory_order_release);
}

// Maps [0, len) of fd shared, aligned to `alignment`, and to 2 MiB at least when it spans one:
// a file's huge pages (fs-DAX's, tmpfs's huge folios: addon/prefault.h) are mapped whole only
// at an address aligned as their offset is. Tries MAP_SYNC first and reports whether it took.
// Returns 0 or -errno; on failure nothing stays mapped.
int MapShared(int fd, size_t len, size_t alignment, bool privateCopy, uint8_t** out, bool* mapSync) {
  constexpr size_t kHugeBytes = size_t{2} << 20;
  if (len >= kHugeBytes && alignment < kHugeBytes) alignment = kHugeBytes;
  uint8_t* reserve = nullptr;
  uint8_t* want = nullptr;
  int fixed = 0;
  if (alignment > kPageBytes) {
    // Reserve len + alignment of address space, then map the device at an aligned spot
    // inside it, so device-DAX can use its 2 MiB / 1 GiB pages (and a file its huge ones).
    void* r = mmap(nullptr, len + alignment, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return -errno;
    reserve = static_cast<uint8_t*>(r);
    want = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(reserve) + alignment - 1) & ~(alignment - 1));
    fixed = MAP_FIXED;
  }
  const int prot = PROT_READ | PROT_WRITE;
  // privateCopy: copy-on-write (read-only tools run recovery on it; nothing reaches the file,
  // and only the pages written cost memory). Device-DAX refuses MAP_PRIVATE (EINVAL).
  void* p = privateCopy ? mmap(want, len, prot, MAP_PRIVATE | fixed, fd, 0) : mmap(want, len, prot, MAP_SHARED_VALIDATE | MAP_SYNC | fixed, fd, 0);
  *mapSync = !privateCopy && p != MAP_FAILED;
  if (!privateCopy && p == MAP_FAILED && (errno == EOPNOTSUPP || errno == EINVAL)) p = mmap(want, len, prot, MAP_SHARED | fixed, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    if (reserve != nullptr) munmap(reserve, len + alignment);
    return -err;
  }
  if (reserve != nullptr) {
    if (want > reserve) munmap(reserve, want - reserve);
    uint8_t* tail = want + len;
    uint8_t* end = reserve + len + alignment;
    if (end > tail) munmap(tail, end - tail);
  }
  *out = static_cast<uint8_t*>(p);
  return 0;
}

struct OpenRequest {
  std::string path;
  bool create;
  size_t sizeBytes;  // 0: take the file's size
  size_t alignment;
  bool isDevDax;
  int32_t flushMethod;  // -1: choose by kind
  bool privateCopy;     // MAP_PRIVATE over a read-only descriptor (never with create)
  size_t reserveBytes;  // address space to map (>= the file's size): the store grows into it; 0: the size
  bool sparse;          // create with ftruncate, not posix_fallocate (the caller allocates what it uses)
};

struct Opened {
  int fd = -1;
  bool created = false;
  bool locked = false;  // the flock is ours: only then may a failure remove a file we created
  size_t sizeBytes = 0;
  Kind kind = Kind::kFile;
};

// Opens (or creates exclusively) the path. Returns the failing syscall name or nullptr.
const char* OpenFile(const OpenRequest& req, Opened* o, int* err) {
  o->fd = -1;
  if (req.create && !req.isDevDax) {
    o->fd = open(req.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    o->created = o->fd >= 0;
    if (o->fd < 0 && errno != EEXIST) return *err = errno, "open";
  }
  if (o->fd < 0) o->fd = open(req.path.c_str(), (req.privateCopy ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (o->fd < 0) return *err = errno, "open";
  return nullptr;
}

// Everything between open and mmap; the caller undoes on failure.
const char* LockAndSize(const OpenRequest& req, Opened* o, int* err, const char** daxCode, std::string* detail) {
  if (!FlockBroken() && flock(o->fd, LOCK_EX | LOCK_NB) != 0) {
    *err = errno;
    if (*err == EWOULDBLOCK) *daxCode = "EBUSY", *detail = "another daxstore holds it";
    return "flock";
  }
  o->locked = true;
  struct stat st;
  if (fstat(o->fd, &st) != 0) return *err = errno, "fstat";
  if (S_ISDIR(st.st_mode)) return *err = EISDIR, "open";
  if (req.isDevDax != S_ISCHR(st.st_mode) || (!req.isDevDax && !S_ISREG(st.st_mode))) {
    *detail = "not a regular file or device-DAX";
    return *err = ENOTSUP, "fstat";
  }
  if (req.isDevDax) {
    o->kind = Kind::kDevDax;
    o->sizeBytes = req.sizeBytes;
    return nullptr;
  }
  if (o->created) {
    if (req.sparse) {
      // A hole: the caller allocates each range before it uses it (allocateRegion).
      if (ftruncate(o->fd, static_cast<off_t>(req.sizeBytes)) != 0) return *err = errno, "ftruncate";
    } else {
      // Reserve every block now, so a nearly full tmpfs fails here and not with SIGBUS later.
      int rc = posix_fallocate(o->fd, 0, static_cast<off_t>(req.sizeBytes));
      if (rc != 0) return *err = rc, "posix_fallocate";
    }
    o->sizeBytes = req.sizeBytes;
  } else {
    o->sizeBytes = static_cast<size_t>(st.st_size);
    if ((req.sizeBytes != 0 && o->sizeBytes != req.sizeBytes) || o->sizeBytes == 0 || o->sizeBytes % kPageBytes != 0) {
      *detail = "file size " + std::to_string(o->sizeBytes) + " bytes does not match or is not a non-zero multiple of 4096";
      return *err = EINVAL, "fstat";
    }
  }
  struct statfs fs;
  if (fstatfs(o->fd, &fs) != 0) return *err = errno, "fstatfs";
  o->kind = fs.f_type == TMPFS_MAGIC ? Kind::kTmpfs : Kind::kFile;
  return nullptr;
}

// -1 when the slot table is full.
int ClaimSlotLocked() {
  for (uint32_t i = 0; i < kMaxRegions; i++) {
    if (g_regions[i].id.load(std::memory_order_relaxed) == 0) return static_cast<int>(i);
  }
  return -1;
}

FlushMethod ChooseFlush(const OpenRequest& req, Kind kind) {
  if (req.flushMethod >= 0) return static_cast<FlushMethod>(req.flushMethod);
  return kind == Kind::kFile ? FlushMethod::kMsync : BestCpuFlush();
}

Napi::Value Describe(Napi::Env env, const Region& r, bool mapSync, size_t alignment, bool created) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  // One backing store over the whole reservation (V8 11 allows a SharedArrayBuffer of up to
  // 2^53 - 1 bytes on 64-bit): the address is wrapped once, whatever the store grows to.
  std::unique_ptr<v8::BackingStore> store =
      v8::SharedArrayBuffer::NewBackingStore(r.base, r.mapBytes, UnmapDeleter, const_cast<Region*>(&r));
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, std::move(store));
  // Node's napi_value is a v8::Local<v8::Value> in disguise: same single-pointer layout.
  static_assert(sizeof(napi_value) == sizeof(v8::Local<v8::Value>));
  v8::Local<v8::Value> asValue = sab;
  napi_value buffer;
  std::memcpy(&buffer, &asValue, sizeof buffer);
  Napi::Object out = Napi::Object::New(env);
  (void)out.Set("regionId", Napi::Number::New(env, r.id.load(std::memory_order_relaxed)));
  (void)out.Set("buffer", Napi::Value(env, buffer));
  (void)out.Set("kind", Napi::Number::New(env, static_cast<int32_t>(r.kind)));
  (void)out.Set("flushMethod", Napi::Number::New(env, static_cast<int32_t>(r.flushMethod)));
  (void)out.Set("mapSync", Napi::Boolean::New(env, mapSync));
  (void)out.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(r.sizeBytes.load(std::memory_order_relaxed))));
  (void)out.Set("mapBytes", Napi::Number::New(env, static_cast<double>(r.mapBytes)));
  (void)out.Set("alignment", Napi::Number::New(env, static_cast<double>(alignment)));
  (void)out.Set("created", Napi::Boolean::New(env, created));
  return out;
}

OpenRequest ParseOpen(const Napi::CallbackInfo& info) {
  OpenRequest req;
  req.path = info[0].As<Napi::String>().Utf8Value();
  req.create = info[1].As<Napi::Boolean>().Value();
  req.sizeBytes = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value());
  req.alignment = static_cast<size_t>(info[3].As<Napi::Number>().Int64Value());
  req.isDevDax = info[4].As<Napi::Boolean>().Value();
  req.flushMethod = info[5].As<Napi::Number>().Int32Value();
  req.privateCopy = info.Length() > 6 && info[6].IsBoolean() && info[6].As<Napi::Boolean>().Value();
  req.reserveBytes = info.Length() > 7 && info[7].IsNumber() ? static_cast<size_t>(info[7].As<Napi::Number>().Int64Value()) : 0;
  req.sparse = info.Length() > 8 && info[8].IsBoolean() && info[8].As<Napi::Boolean>().Value();
  return req;
}

}  // namespace

const Region* FindRegion(uint32_t id) {
  if (id == 0) return nullptr;
  const Region& r = g_regions[id & (kMaxRegions - 1)];
  return r.id.load(std::memory_order_acquire) == id ? &r : nullptr;
}

Napi::Value JsOpenRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsString()) return ThrowSysError(env, "open", EINVAL, "(bad arguments)");
  OpenRequest req = ParseOpen(info);
  if (req.alignment < kPageBytes || (req.alignment & (req.alignment - 1)) != 0 || req.flushMethod > 3 ||
      (req.flushMethod >= 0 && req.flushMethod < 3 && !CpuSupports(static_cast<FlushMethod>(req.flushMethod))))
    return ThrowSysError(env, "open", EINVAL, req.path, nullptr, "bad alignment or flush method");
  Opened o;
  int err = 0;
  const char* daxCode = nullptr;
  std::string detail;
  const char* failed = OpenFile(req, &o, &err);
  if (failed == nullptr) failed = LockAndSize(req, &o, &err, &daxCode, &detail);
  uint8_t* base = nullptr;
  bool mapSync = false;
  // The mapping covers the reservation: pages past the file's end fault (SIGBUS) until the
  // file grows under them (growRegion), and every thread's view of the buffer sees them then.
  size_t mapBytes = o.sizeBytes;
  if (failed == nullptr && req.reserveBytes > o.sizeBytes) {
    if (o.kind == Kind::kDevDax || req.reserveBytes % kPageBytes != 0 || req.reserveBytes > (size_t{1} << 53) - 1)
      err = EINVAL, failed = "mmap", detail = "reservation of " + std::to_string(req.reserveBytes) + " bytes is not a multiple of 4096 past the size, or the device cannot grow";
    else
      mapBytes = req.reserveBytes;
  }
  if (failed == nullptr) {
    int rc = MapShared(o.fd, mapBytes, req.alignment, req.privateCopy, &base, &mapSync);
    if (rc != 0) err = -rc, failed = "mmap";
  }
  std::unique_lock<std::mutex> guard(g_tableMutex);
  int slot = failed == nullptr ? ClaimSlotLocked() : -1;
  if (failed == nullptr && slot < 0) {
    // Slots free only when closed regions' buffers are collected: collect this isolate's
    // garbage once (unlocked: the deleters take the mutex) and look again.
    guard.unlock();
    v8::Isolate::GetCurrent()->LowMemoryNotification();
    guard.lock();
    slot = ClaimSlotLocked();
  }
  if (failed == nullptr && slot < 0) err = EMFILE, failed = "open", detail = "region table full";
  if (failed != nullptr) {
    guard.unlock();
    if (base != nullptr) munmap(base, mapBytes);
    // Leave the file system as it was. Without the lock, a racing creator that opened our
    // new file and locked it first owns it now: never unlink under it.
    if (o.created && o.locked) unlink(req.path.c_str());
    if (o.fd >= 0) close(o.fd);
    return ThrowSysError(env, failed, err, req.path, daxCode, detail);
  }
  Region& r = g_regions[slot];
  uint32_t generation = (++g_generation[slot]) & ((1u << (32 - kSlotBits)) - 1);
  if (generation == 0) generation = g_generation[slot] = 1;
  r.base = base;
  r.sizeBytes.store(o.sizeBytes, std::memory_order_relaxed);
  r.mapBytes = mapBytes;
  r.kind = mapSync && o.kind != Kind::kDevDax ? Kind::kFsDax : o.kind;
  r.flushMethod = ChooseFlush(req, r.kind);
  r.fd = o.fd;
  r.id.store((generation << kSlotBits) | static_cast<uint32_t>(slot), std::memory_order_release);
  guard.unlock();
  return Describe(env, r, mapSync, req.alignment, o.created);
}

Napi::Value JsCloseRegion(const Napi::CallbackInfo& info) {
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  std::lock_guard<std::mutex> guard(g_tableMutex);
  Region* r = const_cast<Region*>(FindRegion(id));
  bool wasOpen = r != nullptr && r->fd >= 0;
  if (wasOpen) {
    // The mapping still references the open file description, so only an explicit
    // unlock releases the flock now rather than when the buffer is collected.
    flock(r->fd, LOCK_UN);
    close(r->fd);
    r->fd = -1;
  }
  return Napi::Boolean::New(info.Env(), wasOpen);
}

Napi::Value JsGrowRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return Napi::Number::New(env, -EINVAL);
  const uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  const double want = info[1].As<Napi::Number>().DoubleValue();
  std::lock_guard<std::mutex> guard(g_tableMutex);
  Region* r = const_cast<Region*>(FindRegion(id));
  if (r == nullptr || r->fd < 0) return Napi::Number::New(env, -EBADF);
  if (!(want >= 0) || want > static_cast<double>(r->mapBytes) || std::fmod(want, kPageBytes) != 0 || r->kind == Kind::kDevDax)
    return Napi::Number::New(env, -EINVAL);
  const size_t bytes = static_cast<size_t>(want);
  struct stat st;
  if (fstat(r->fd, &st) != 0) return Napi::Number::New(env, -errno);
  if (static_cast<size_t>(st.st_size) < bytes) {
    // Allocate first (a full file system is ENOSPC here, not a SIGBUS later), then make the
    // new size durable before the caller publishes it (the superblock names it next).
    int rc = posix_fallocate(r->fd, st.st_size, static_cast<off_t>(bytes - st.st_size));
    if (rc != 0) {
      // Give back the size a partial allocation may have extended; a failure here leaves a
      // longer file, which open accepts as a grown one.
      int ignored = ftruncate(r->fd, st.st_size);
      (void)ignored;
      return Napi::Number::New(env, -rc);
    }
    if (fsync(r->fd) != 0) return Napi::Number::New(env, -errno);
  }
  if (bytes > r->sizeBytes.load(std::memory_order_relaxed)) r->sizeBytes.store(bytes, std::memory_order_release);
  return Napi::Number::New(env, 0);
}

Napi::Value JsAllocateRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) return Napi::Number::New(env, -EINVAL);
  const uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double length = info[2].As<Napi::Number>().DoubleValue();
  std::lock_guard<std::mutex> guard(g_tableMutex);
  Region* r = const_cast<Region*>(FindRegion(id));
  if (r == nullptr || r->fd < 0) return Napi::Number::New(env, -EBADF);
  if (!(offset >= 0 && length > 0) || offset + length > static_cast<double>(r->sizeBytes.load(std::memory_order_relaxed)))
    return Napi::Number::New(env, -EINVAL);
  if (r->kind == Kind::kDevDax) return Napi::Number::New(env, 0);
  int rc = posix_fallocate(r->fd, static_cast<off_t>(offset), static_cast<off_t>(length));
  return Napi::Number::New(env, -rc);
}

Napi::Value JsIsRegionLive(const Napi::CallbackInfo& info) {
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  return Napi::Boolean::New(info.Env(), FindRegion(id) != nullptr);
}

}  // namespace daxstore
