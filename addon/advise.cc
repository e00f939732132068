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

}  // namespace daxstore
