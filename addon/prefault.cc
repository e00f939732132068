#include "prefault.h"

#include <asm-generic/mman-common.h>  // MADV_COLLAPSE, which glibc's <sys/mman.h> may lack
#include <sys/mman.h>
#include <unistd.h>
#include <v8.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>

#include "backing-store.h"
#include "test-break.h"

namespace daxstore {
namespace {

// Populated a chunk at a time: a writer that catches up waits for one chunk at most.
constexpr size_t kChunkBytes = size_t{256} << 10;

constexpr uintptr_t kHugeBytes = uintptr_t{2} << 20;

// Prefault threads running now (a slot is taken before a thread starts and given back by the
// thread as its last act, or at once when it could not start). At most kMaxInFlight: a process
// whose prefaults are starved (other FIFO processes on every core) skips the next ones instead
// of starting a thread per segment it opens, thousands of them, each holding its mapping.
constexpr int kMaxInFlight = 4;
std::atomic<int> g_inFlight{0};

// A slot for one more prefault thread: false when kMaxInFlight run already (unless the switch
// prefault-unbounded is on: then always, counted all the same).
bool TakeSlot() {
  int n = g_inFlight.load(std::memory_order_relaxed);
  do {
    if (n >= kMaxInFlight && !PrefaultUnboundedBroken()) return false;
  } while (!g_inFlight.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

void GiveSlot() { g_inFlight.fetch_sub(1, std::memory_order_relaxed); }

void Populate(std::shared_ptr<v8::BackingStore> store, uintptr_t start, uintptr_t end, bool collapse) {
#ifdef MADV_COLLAPSE
  // The whole 2 MiB pages of the range become huge ones first (a copy of the small ones each):
  // the populate below then maps each with one fault.
  const uintptr_t hugeStart = (start + kHugeBytes - 1) & ~(kHugeBytes - 1);
  const uintptr_t hugeEnd = end & ~(kHugeBytes - 1);
  if (collapse && hugeStart < hugeEnd) (void)madvise(reinterpret_cast<void*>(hugeStart), hugeEnd - hugeStart, MADV_COLLAPSE);
#else
  (void)collapse;
#endif
#ifdef MADV_POPULATE_WRITE
  for (uintptr_t p = start; p < end; p += kChunkBytes) {
    const size_t n = end - p < kChunkBytes ? end - p : kChunkBytes;
    if (madvise(reinterpret_cast<void*>(p), n, MADV_POPULATE_WRITE) != 0) break;
  }
#endif
  store.reset();  // released here: the mapping stays until this thread is done with it
  GiveSlot();
}

}  // namespace

Napi::Value JsPrefaultWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifndef MADV_POPULATE_WRITE
  return Napi::Number::New(env, -EINVAL);
#else
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) return Napi::Number::New(env, -EINVAL);
  std::shared_ptr<v8::BackingStore> store = SharedBackingStore(info[0]);  // the thread must hold it
  if (!store) return Napi::Number::New(env, -EINVAL);
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double length = info[2].As<Napi::Number>().DoubleValue();
  const double size = static_cast<double>(store->ByteLength());
  if (!(offset >= 0 && length >= 0 && offset + length <= size) || store->Data() == nullptr) return Napi::Number::New(env, -EINVAL);
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t base = reinterpret_cast<uintptr_t>(store->Data());
  const uintptr_t start = (base + static_cast<uintptr_t>(offset) + page - 1) & ~(page - 1);
  const uintptr_t end = (base + static_cast<uintptr_t>(offset + length)) & ~(page - 1);
  if (end <= start) return Napi::Number::New(env, 0);
  const bool collapse = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  if (!TakeSlot()) return Napi::Number::New(env, -EBUSY);
  try {
    std::thread(Populate, std::move(store), start, end, collapse).detach();
  } catch (const std::system_error&) {
    GiveSlot();
    return Napi::Number::New(env, -EAGAIN);
  }
  return Napi::Number::New(env, 0);
#endif
}

Napi::Value JsCollapseRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) return Napi::Number::New(env, -EINVAL);
  std::shared_ptr<v8::BackingStore> store = SharedBackingStore(info[0]);
  if (!store || store->Data() == nullptr) return Napi::Number::New(env, -EINVAL);
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double length = info[2].As<Napi::Number>().DoubleValue();
  if (!(offset >= 0 && length >= 0 && offset + length <= static_cast<double>(store->ByteLength()))) return Napi::Number::New(env, -EINVAL);
#ifdef MADV_COLLAPSE
  const uintptr_t base = reinterpret_cast<uintptr_t>(store->Data());
  const uintptr_t hugeStart = (base + static_cast<uintptr_t>(offset) + kHugeBytes - 1) & ~(kHugeBytes - 1);
  const uintptr_t hugeEnd = (base + static_cast<uintptr_t>(offset + length)) & ~(kHugeBytes - 1);
  if (hugeStart >= hugeEnd) return Napi::Number::New(env, 0);
  if (madvise(reinterpret_cast<void*>(hugeStart), hugeEnd - hugeStart, MADV_COLLAPSE) != 0) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, 0);
#else
  return Napi::Number::New(env, -EINVAL);
#endif
}

}  // namespace daxstore
