#include "advise.h"

#include <sys/mman.h>
#include <v8.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "backing-store.h"

namespace daxstore {
namespace {

constexpr uintptr_t kHugePageBytes = uintptr_t{2} << 20;
constexpr uintptr_t kPageBytes = 4096;

}  // namespace

Napi::Value JsAdviseHugePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) return Napi::Number::New(env, -EBADF);
  // Its maximum length is not something N-API can read.
  std::shared_ptr<v8::BackingStore> store = SharedBackingStore(info[0]);
  if (!store) return Napi::Number::New(env, -EBADF);
  const uintptr_t base = reinterpret_cast<uintptr_t>(store->Data());
  // A growable buffer's reservation is its maximum length rounded up to the commit page
  // (V8 BackingStore::TryAllocateAndPartiallyCommitMemory); rounding down is the safe side.
  // A shared WebAssembly.Memory's buffer (the radix tree arena) is not resizable from JS but
  // grows the same way (memory.grow commits more of the reservation): its MaxByteLength is
  // the memory's maximum. For any other buffer MaxByteLength equals ByteLength.
  const size_t length = std::max(store->ByteLength(), store->MaxByteLength());
  if (base == 0 || length == 0) return Napi::Number::New(env, 0);
  const uintptr_t start = (base + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t end = (base + (length & ~(kPageBytes - 1))) & ~(kHugePageBytes - 1);
  if (end <= start) return Napi::Number::New(env, 0);
  if (madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE) != 0) {
    return Napi::Number::New(env, -errno);
  }
  return Napi::Number::New(env, static_cast<double>(end - start));
}

Napi::Value JsAdviseRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsBoolean()) return Napi::Number::New(env, -EINVAL);
  std::shared_ptr<v8::BackingStore> store = SharedBackingStore(info[0]);
  if (!store) return Napi::Number::New(env, -EBADF);
  const uintptr_t base = reinterpret_cast<uintptr_t>(store->Data());
  const double offset = info[1].As<Napi::Number>().DoubleValue();
  const double length = info[2].As<Napi::Number>().DoubleValue();
  const size_t reserved = std::max(store->ByteLength(), store->MaxByteLength());
  if (base == 0 || !(offset >= 0 && length >= 0 && offset + length <= static_cast<double>(reserved))) return Napi::Number::New(env, -EINVAL);
  const uintptr_t start = (base + static_cast<uintptr_t>(offset) + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t end = (base + static_cast<uintptr_t>(offset + length)) & ~(kHugePageBytes - 1);
  if (end <= start) return Napi::Number::New(env, 0);
  const int advice = info[3].As<Napi::Boolean>().Value() ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
  if (madvise(reinterpret_cast<void*>(start), end - start, advice) != 0) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, static_cast<double>(end - start));
}

}  // namespace daxstore
