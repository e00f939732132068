#include "membarrier.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

namespace daxstore {
namespace {

int Membarrier(int cmd) {
  const long rc = syscall(__NR_membarrier, cmd, 0, 0);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

// The commands this kernel offers (MEMBARRIER_CMD_QUERY: a bit mask, or -errno), asked once.
int Commands() {
  static const int commands = Membarrier(MEMBARRIER_CMD_QUERY);
  return commands;
}

int Register() {
  const int commands = Commands();
  if (commands < 0) return commands;

  if ((commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return -ENOSYS;
  return Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
}

// Asymmetric pins are possible without waiting for the registration when the kernel offers both
// the private expedited barrier and the global one (which needs no registration: the fallback
// should the registration fail after all; nohz_full kernels leave it out of the query).
bool Offered() {
  const int commands = Commands();
  constexpr int kNeeded =
      MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
  return commands >= 0 && (commands & kNeeded) == kNeeded;
}

// The process's one registration. The kernel waits for an RCU grace period in it when the
// process has more than one thread (every node process does): milliseconds of waiting, no
// work, so it runs on a thread of its own from the first request. Never freed: a detached
// thread may still write it while the process exits.
struct Registration {
  std::mutex lock;
  std::condition_variable done;
  bool started = false;
  bool failing = false;  // tests: the registration fails (-EPERM) although the kernel offers it
  std::atomic<bool> finished{false};  // set under `lock`; read without it by the barrier's fast check
  int result = 0;                      // written before `finished` (release), read after it (acquire)
};

Registration& TheRegistration() {
  static Registration* r = new Registration;
  return *r;
}

void RunRegistration(Registration* r) {
  const int result = r->failing ? -EPERM : Register();
  {
    std::lock_guard<std::mutex> g(r->lock);
    r->result = result;
    r->finished.store(true, std::memory_order_release);
  }
  r->done.notify_all();
}

// Starts the registration once: on its own thread, or on this one when no thread can be had.
void Start(Registration& r) {
  {
    std::lock_guard<std::mutex> g(r.lock);
    if (r.started) return;
    r.started = true;
  }
  try {
    std::thread(RunRegistration, &r).detach();
  } catch (const std::system_error&) {
    RunRegistration(&r);
  }
}

// The registration's result, waited for (started here when nothing started it).
int Registered() {
  Registration& r = TheRegistration();
  if (r.finished.load(std::memory_order_acquire)) return r.result;
  Start(r);
  std::unique_lock<std::mutex> g(r.lock);
  r.done.wait(g, [&r] { return r.finished.load(std::memory_order_relaxed); });
  return r.result;
}

}  // namespace

Napi::Value JsMembarrierRegisterAhead(const Napi::CallbackInfo& info) {
  Start(TheRegistration());
  return info.Env().Undefined();
}

Napi::Value JsMembarrierRegisterFailing(const Napi::CallbackInfo& info) {
  Registration& r = TheRegistration();
  std::lock_guard<std::mutex> g(r.lock);
  if (!r.started) r.failing = true;
  return Napi::Boolean::New(info.Env(), r.failing);
}

Napi::Value JsMembarrierOffered(const Napi::CallbackInfo& info) {
  const bool offered = Offered();
  if (offered) Start(TheRegistration());
  return Napi::Boolean::New(info.Env(), offered);
}

Napi::Value JsMembarrierRegister(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Registered());
}

Napi::Value JsMembarrier(const Napi::CallbackInfo& info) {
  // Registered: the private expedited barrier. A registration that failed although the kernel
  // offered it: the global barrier, which needs none (slower: it waits for a grace period).
  const int registered = Registered();
  if (registered == 0) return Napi::Number::New(info.Env(), Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED));
  if (!Offered()) return Napi::Number::New(info.Env(), registered);
  return Napi::Number::New(info.Env(), Membarrier(MEMBARRIER_CMD_GLOBAL));
}

}  // namespace daxstore
