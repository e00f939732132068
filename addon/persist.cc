#include "persist.h"

#include <cpuid.h>
#include <immintrin.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "test-break.h"

namespace daxstore {
namespace {

constexpr size_t kLineBytes = 64;
constexpr size_t kPageBytes = 4096;

struct CpuFlushSupport {
  bool clwb = false;
  bool clflushopt = false;
  bool clflush = false;
};

CpuFlushSupport DetectCpu() {
  CpuFlushSupport s;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d)) s.clflush = (d >> 19) & 1;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    s.clwb = (b >> 24) & 1;
    s.clflushopt = (b >> 23) & 1;
  }
  return s;
}

const CpuFlushSupport g_cpu = DetectCpu();

// Armed only while this thread copies to or from a mapping. initial-exec: reading it in
// the signal handler must not allocate (a pointer fits in glibc's static TLS surplus).
__attribute__((tls_model("initial-exec"))) thread_local sigjmp_buf* t_guard = nullptr;
struct sigaction g_previous;
std::once_flag g_installOnce;

void ChainToPrevious(int sig, siginfo_t* si, void* uc) {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, si, uc);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
  } else {
    // Default (or ignored, which cannot stop a fault from recurring): die of SIGBUS as
    // the process would have without us.
    signal(sig, SIG_DFL);
    raise(sig);
  }
}

void OnSigbus(int sig, siginfo_t* si, void* uc) {
  sigjmp_buf* guard = t_guard;
  if (guard == nullptr) return ChainToPrevious(sig, si, uc);
  t_guard = nullptr;
  siglongjmp(*guard, 1);
}

// memmove with a SIGBUS on either side turned into -EIO. SA_NODEFER on the handler keeps
// SIGBUS unblocked after the longjmp, so the cheap sigsetjmp(…, 0) is enough.
int GuardedCopy(void* dst, const void* src, size_t n) {
  if (SigbusGuardBroken()) return memmove(dst, src, n), 0;
  sigjmp_buf env;
  if (sigsetjmp(env, 0) != 0) return -EIO;
  t_guard = &env;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // arm before the first load
  memmove(dst, src, n);  // memmove: src may be a view of the same region
  std::atomic_signal_fence(std::memory_order_seq_cst);  // disarm after the last store
  t_guard = nullptr;
  return 0;
}

}  // namespace

int GuardedRun(void (*fn)(void*), void* arg) {
  if (SigbusGuardBroken()) return fn(arg), 0;
  sigjmp_buf env;
  if (sigsetjmp(env, 0) != 0) return -EIO;
  t_guard = &env;
  std::atomic_signal_fence(std::memory_order_seq_cst);  // arm before fn's first load
  fn(arg);
  std::atomic_signal_fence(std::memory_order_seq_cst);  // disarm after its last access
  t_guard = nullptr;
  return 0;
}

namespace {

void FlushLines(FlushMethod method, uint8_t* start, size_t len) {
  uintptr_t p = reinterpret_cast<uintptr_t>(start) & ~(kLineBytes - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(start) + len;
  switch (method) {
    case FlushMethod::kClwb:
      for (; p < end; p += kLineBytes) _mm_clwb(reinterpret_cast<void*>(p));
      break;
    case FlushMethod::kClflushopt:
      for (; p < end; p += kLineBytes) _mm_clflushopt(reinterpret_cast<void*>(p));
      break;
    default:
      for (; p < end; p += kLineBytes) _mm_clflush(reinterpret_cast<void*>(p));
      break;
  }
}

int MsyncRange(const Region* r, size_t offset, size_t len) {
  size_t start = offset & ~(kPageBytes - 1);
  size_t end = (offset + len + kPageBytes - 1) & ~(kPageBytes - 1);
  if (end > r->sizeBytes) end = r->sizeBytes;
  if (end <= start) return 0;
  return msync(r->base + start, end - start, MS_SYNC) == 0 ? 0 : -errno;
}

// Region and range from (regionId, offset, length, …); -errno in *err when unusable.
const Region* RangeArgs(const Napi::CallbackInfo& info, size_t* offset, size_t* len, int* err) {
  const Region* r = FindRegion(info[0].As<Napi::Number>().Uint32Value());
  int64_t off = info[1].As<Napi::Number>().Int64Value();
  int64_t n = info[2].As<Napi::Number>().Int64Value();
  *err = r == nullptr ? -EBADF : (off < 0 || n < 0 || static_cast<uint64_t>(off + n) > r->sizeBytes) ? -ERANGE : 0;
  *offset = static_cast<size_t>(off);
  *len = static_cast<size_t>(n);
  return *err == 0 ? r : nullptr;
}

int Flush(const Region* r, size_t offset, size_t len) {
  if (r->flushMethod == FlushMethod::kMsync) return MsyncRange(r, offset, len);
  if (len != 0) FlushLines(r->flushMethod, r->base + offset, len);
  return 0;
}

Napi::Value Result(const Napi::CallbackInfo& info, int rc) { return Napi::Number::New(info.Env(), rc); }

Napi::Value CopyBetween(const Napi::CallbackInfo& info, bool out) {
  size_t offset = 0, len = 0;
  int err = 0;
  const Region* r = RangeArgs(info, &offset, &len, &err);
  if (r == nullptr) return Result(info, err);
  Napi::Uint8Array bytes = info[3].As<Napi::Uint8Array>();
  if (bytes.ByteLength() < len) return Result(info, -EINVAL);
  uint8_t* mapped = r->base + offset;
  return Result(info, out ? GuardedCopy(bytes.Data(), mapped, len) : GuardedCopy(mapped, bytes.Data(), len));
}

}  // namespace

bool CpuSupports(FlushMethod method) {
  switch (method) {
    case FlushMethod::kClwb: return g_cpu.clwb;
    case FlushMethod::kClflushopt: return g_cpu.clflushopt;
    case FlushMethod::kClflush: return g_cpu.clflush;
    case FlushMethod::kMsync: return true;
  }
  return false;
}

FlushMethod BestCpuFlush() {
  return g_cpu.clwb ? FlushMethod::kClwb : g_cpu.clflushopt ? FlushMethod::kClflushopt : FlushMethod::kClflush;
}

void InstallSigbusHandler() {
  std::call_once(g_installOnce, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous);
  });
}

Napi::Value JsFlush(const Napi::CallbackInfo& info) {
  size_t offset = 0, len = 0;
  int err = 0;
  const Region* r = RangeArgs(info, &offset, &len, &err);
  return Result(info, r == nullptr ? err : Flush(r, offset, len));
}

Napi::Value JsDrain(const Napi::CallbackInfo& info) {
  _mm_sfence();
  return info.Env().Undefined();
}

Napi::Value JsPersist(const Napi::CallbackInfo& info) {
  size_t offset = 0, len = 0;
  int err = 0;
  const Region* r = RangeArgs(info, &offset, &len, &err);
  if (r == nullptr) return Result(info, err);
  int rc = Flush(r, offset, len);
  _mm_sfence();
  return Result(info, rc);
}

Napi::Value JsMsync(const Napi::CallbackInfo& info) {
  size_t offset = 0, len = 0;
  int err = 0;
  const Region* r = RangeArgs(info, &offset, &len, &err);
  return Result(info, r == nullptr ? err : MsyncRange(r, offset, len));
}

Napi::Value JsCopyOut(const Napi::CallbackInfo& info) { return CopyBetween(info, true); }

Napi::Value JsReadRegion(const Napi::CallbackInfo& info) {
  size_t offset = 0, len = 0;
  int err = 0;
  const Region* r = RangeArgs(info, &offset, &len, &err);
  if (r == nullptr) return Result(info, err);
  if (info.Length() < 5 || !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[4].IsNumber())
    return Result(info, -EINVAL);
  Napi::Uint8Array bytes = info[3].As<Napi::Uint8Array>();
  const int64_t at = info[4].As<Napi::Number>().Int64Value();
  if (at < 0 || static_cast<uint64_t>(at) + len > bytes.ByteLength()) return Result(info, -EINVAL);
  // A device-DAX character device has no read(); the caller reads through the mapping.
  if (r->kind == Kind::kDevDax) return Result(info, -EOPNOTSUPP);
  const int fd = r->fd;
  if (fd < 0) return Result(info, -EBADF);
  uint8_t* out = bytes.Data() + at;
  while (len > 0) {
    const ssize_t n = pread(fd, out, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Result(info, -errno);
    if (n == 0) return Result(info, -EIO);  // the file is shorter than the region: never for an open store
    out += n;
    offset += static_cast<size_t>(n);
    len -= static_cast<size_t>(n);
  }
  return Result(info, 0);
}
Napi::Value JsCopyIn(const Napi::CallbackInfo& info) { return CopyBetween(info, false); }

Napi::Value JsCpuFlushMethods(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (FlushMethod m : {FlushMethod::kClwb, FlushMethod::kClflushopt, FlushMethod::kClflush}) {
    if (CpuSupports(m)) (void)out.Set(n++, Napi::Number::New(env, static_cast<int32_t>(m)));
  }
  return out;
}

}  // namespace daxstore
