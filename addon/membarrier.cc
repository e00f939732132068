#include "membarrier.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace daxstore {
namespace {

int Membarrier(int cmd) {
  const long rc = syscall(__NR_membarrier, cmd, 0, 0);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

}  // namespace

Napi::Value JsMembarrierRegister(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int commands = Membarrier(MEMBARRIER_CMD_QUERY);
  if (commands < 0) return Napi::Number::New(env, commands);
  if ((commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return Napi::Number::New(env, -ENOSYS);
  return Napi::Number::New(env, Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED));
}

Napi::Value JsMembarrier(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED));
}

}  // namespace daxstore
