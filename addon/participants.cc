#include "participants.h"

#include <v8.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

namespace daxstore {
namespace {

// Layout numbers shared with src/device/participants.ts (its header has the whole layout).
constexpr uint32_t kSlots = 4096;        // slot 0 is the header; ids are 1..4095 (12-bit owner fields)
constexpr uint32_t kSlotWords = 32;      // two cache lines per slot
constexpr uint32_t kHeaderDeaths = 2;    // header word: deaths noticed so far (wraps)
constexpr uint32_t kStateWord = 0;       // per slot: FREE 0, ALIVE 1, DEAD 2, REAPING 3
constexpr uint32_t kGenerationWord = 1;  // per slot: bumped at every claim
constexpr int32_t kAlive = 1;
constexpr int32_t kDead = 2;

alignas(128) int32_t g_table[kSlots * kSlotWords];
std::once_flag g_storeOnce;
std::shared_ptr<v8::BackingStore> g_store;  // ONE backing store; every thread's buffer shares it

void NoDelete(void*, size_t, void*) {}

struct Watch {
  uint32_t slot;
  int32_t generation;
};

std::atomic_ref<int32_t> Word(uint32_t index) { return std::atomic_ref<int32_t>(g_table[index]); }

void OnThreadExit(void* arg) {
  std::unique_ptr<Watch> watch(static_cast<Watch*>(arg));
  const uint32_t base = watch->slot * kSlotWords;
  if (Word(base + kGenerationWord).load() != watch->generation) return;  // released and claimed again
  int32_t alive = kAlive;
  if (Word(base + kStateWord).compare_exchange_strong(alive, kDead)) Word(kHeaderDeaths).fetch_add(1);
}

}  // namespace

Napi::Value JsParticipantTable(const Napi::CallbackInfo& info) {
  std::call_once(g_storeOnce, [] {
    g_store = v8::SharedArrayBuffer::NewBackingStore(g_table, sizeof g_table, NoDelete, nullptr);
  });
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, g_store);
  static_assert(sizeof(napi_value) == sizeof(v8::Local<v8::Value>));
  v8::Local<v8::Value> asValue = sab;
  napi_value buffer;
  std::memcpy(&buffer, &asValue, sizeof buffer);
  return Napi::Value(info.Env(), buffer);
}

Napi::Value JsWatchThreadExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return Napi::Number::New(env, -EINVAL);
  const int64_t slot = info[0].As<Napi::Number>().Int64Value();
  if (slot < 1 || slot >= kSlots) return Napi::Number::New(env, -EINVAL);
  auto* watch = new Watch{static_cast<uint32_t>(slot), info[1].As<Napi::Number>().Int32Value()};
  if (napi_add_env_cleanup_hook(env, OnThreadExit, watch) != napi_ok) {
    delete watch;
    return Napi::Number::New(env, -ENOMEM);
  }
  return Napi::Number::New(env, 0);
}

}  // namespace daxstore
