#include "bits.h"

#include <bit>
#include <cerrno>
#include <cstdint>

namespace daxstore {

Napi::Value JsCountClearBits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value bad = Napi::Number::New(env, -EINVAL);
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) return bad;
  if (info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) return bad;
  Napi::Uint32Array words = info[0].As<Napi::Uint32Array>();
  const double countArg = info[1].As<Napi::Number>().DoubleValue();
  if (!(countArg >= 0 && countArg <= static_cast<double>(words.ElementLength())) || countArg != static_cast<double>(static_cast<uint64_t>(countArg)))
    return bad;
  const uint64_t count = static_cast<uint64_t>(countArg);
  const uint32_t* w = words.Data();
  if (info.Length() < 3 || info[2].IsUndefined()) {
    uint64_t clear = 0;
    for (uint64_t i = 0; i < count; i++) clear += 32 - static_cast<uint64_t>(std::popcount(w[i]));
    return Napi::Number::New(env, static_cast<double>(clear));
  }
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array || info.Length() < 4 || !info[3].IsNumber())
    return bad;
  Napi::Uint16Array groups = info[2].As<Napi::Uint16Array>();
  const double groupArg = info[3].As<Napi::Number>().DoubleValue();
  if (!(groupArg >= 1 && groupArg <= 2047) || groupArg != static_cast<double>(static_cast<uint64_t>(groupArg))) return bad;  // 32 * 2047 fits 16 bits
  const uint64_t groupWords = static_cast<uint64_t>(groupArg);
  if (count > 0 && (count - 1) / groupWords >= groups.ElementLength()) return bad;
  uint16_t* g = groups.Data();
  uint64_t clear = 0;
  for (uint64_t start = 0; start < count; start += groupWords) {
    uint32_t inGroup = 0;
    const uint64_t end = start + groupWords < count ? start + groupWords : count;
    for (uint64_t i = start; i < end; i++) inGroup += 32 - static_cast<uint32_t>(std::popcount(w[i]));
    if (static_cast<uint32_t>(g[start / groupWords]) + inGroup > 0xffff) return bad;
    g[start / groupWords] = static_cast<uint16_t>(g[start / groupWords] + inGroup);
    clear += inGroup;
  }
  return Napi::Number::New(env, static_cast<double>(clear));
}

}  // namespace daxstore
