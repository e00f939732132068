#include "diff.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace daxstore {
namespace {

constexpr size_t kWordBytes = 8;
constexpr size_t kBlockWords = 8;  // one cache line: skip equal lines with one memcmp

uint64_t LoadWord(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

size_t Diff(const uint8_t* a, const uint8_t* b, size_t words, size_t start, uint32_t* out, size_t outLen) {
  size_t n = 0;
  size_t w = start;
  while (w < words && n < outLen) {
    if (w % kBlockWords == 0 && w + kBlockWords <= words &&
        std::memcmp(a + w * kWordBytes, b + w * kWordBytes, kBlockWords * kWordBytes) == 0) {
      w += kBlockWords;
      continue;
    }
    if (LoadWord(a + w * kWordBytes) != LoadWord(b + w * kWordBytes)) out[n++] = static_cast<uint32_t>(w);
    w++;
  }
  return n;
}

}  // namespace

Napi::Value JsDiffWords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
  Napi::Uint8Array b = info[1].As<Napi::Uint8Array>();
  Napi::Uint32Array out = info[2].As<Napi::Uint32Array>();
  int64_t start = info[3].As<Napi::Number>().Int64Value();
  size_t len = a.ByteLength();
  size_t words = len / kWordBytes;
  if (len != b.ByteLength() || len % kWordBytes != 0 || words > UINT32_MAX || start < 0)
    return Napi::Number::New(env, -EINVAL);
  size_t n = Diff(a.Data(), b.Data(), words, static_cast<size_t>(start), out.Data(), out.ElementLength());
  return Napi::Number::New(env, static_cast<double>(n));
}

}  // namespace daxstore
