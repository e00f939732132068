// Storage of the addon's test-break switches (test-break.h). Relaxed atomics: each is written
// once, when TypeScript loads the addon, before any region is opened or copied from.
#include "test-break.h"

#include <atomic>

namespace daxstore {
namespace {

std::atomic<bool> g_flockBroken{false};
std::atomic<bool> g_sigbusGuardBroken{false};
std::atomic<bool> g_prefaultUnboundedBroken{false};

bool IsTrue(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsBoolean() && info[i].As<Napi::Boolean>().Value();
}

}  // namespace

bool FlockBroken() { return g_flockBroken.load(std::memory_order_relaxed); }

bool SigbusGuardBroken() { return g_sigbusGuardBroken.load(std::memory_order_relaxed); }

bool PrefaultUnboundedBroken() { return g_prefaultUnboundedBroken.load(std::memory_order_relaxed); }

Napi::Value JsSetTestBreaks(const Napi::CallbackInfo& info) {
  g_flockBroken.store(IsTrue(info, 0), std::memory_order_relaxed);
  g_sigbusGuardBroken.store(IsTrue(info, 1), std::memory_order_relaxed);
  g_prefaultUnboundedBroken.store(IsTrue(info, 2), std::memory_order_relaxed);
  return info.Env().Undefined();
}

}  // namespace daxstore
