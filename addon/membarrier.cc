#include "membarrier.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

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

int Register() {
  const int commands = Membarrier(MEMBARRIER_CMD_QUERY);
  if (commands < 0) return commands;
  if ((commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return -ENOSYS;
  return Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
}

// The process's one registration. The kernel waits for an RCU grace period in it when the
// process has more than one thread (every node process does): milliseconds of waiting, no
// work, so it runs on a thread of its own from the first request. Never freed: a detached
// thread may still write it while the process exits.
struct Registration {
  std::mutex lock;
  std::condition_variable done;
  bool started = false;
  bool finished = false;
  int result = 0;
};

Registration& TheRegistration() {
  static Registration* r = new Registration;
  return *r;
}

void RunRegistration(Registration* r) {
  const int result = Register();
  {
    std::lock_guard<std::mutex> g(r->lock);
    r->result = result;
    r->finished = true;
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

}  // namespace

Napi::Value JsMembarrierRegisterAhead(const Napi::CallbackInfo& info) {
  Start(TheRegistration());
  return info.Env().Undefined();
}

Napi::Value JsMembarrierRegister(const Napi::CallbackInfo& info) {
  Registration& r = TheRegistration();
  Start(r);
  std::unique_lock<std::mutex> g(r.lock);
  r.done.wait(g, [&r] { return r.finished; });
  return Napi::Number::New(info.Env(), r.result);
}

Napi::Value JsMembarrier(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED));
}

}  // namespace daxstore
