// Making mapped bytes durable, and copying out of (or into) a mapping without dying of
// SIGBUS.
//
// Invariants
//   - The CPU flush instruction is chosen per region at open (clwb > clflushopt > clflush
//     by CPUID leaf 7 ebx bit 24 / bit 23, leaf 1 edx bit 19) or forced by the opener;
//     a method the CPU lacks is never chosen.
//   - The SIGBUS handler longjmps only when this thread armed its guard around a copy;
//     any other SIGBUS goes to the handler that was installed before ours.
//
// Concurrency
//   - All functions are callable from any thread; they read only immutable region fields.
//   - The guard is thread_local: a fault in one thread's copy never unwinds another's.
//
// Persistence ordering
//   - flush() writes lines back but orders nothing; drain() (sfence) orders every earlier
//     clwb/clflushopt of this thread before later stores. persist() = flush + drain.
//   - With msync, flush() is the msync itself (synchronous, durable on return) and
//     drain() adds nothing but the fence.
#pragma once

#include <napi.h>

#include "region.h"

namespace daxstore {

bool CpuSupports(FlushMethod method);
// Best CPU flush instruction available (clflush exists on every x86-64).
FlushMethod BestCpuFlush();
// Installs the SIGBUS handler once per process (idempotent, thread-safe).
void InstallSigbusHandler();

// Runs fn(arg) with this thread's SIGBUS guard armed: 0, or -EIO if a load or store of fn
// hit a poisoned or truncated page (fn is then abandoned mid-way, so it must own nothing a
// longjmp would leak: plain memory, no destructors, no locks).
int GuardedRun(void (*fn)(void*), void* arg);

// Hot paths: return 0 or -errno, never throw. Bounds are validated in TypeScript and
// re-checked here (-EINVAL / -ERANGE), because a bad pointer would kill the process.
Napi::Value JsFlush(const Napi::CallbackInfo& info);    // (regionId, offset, length)
Napi::Value JsDrain(const Napi::CallbackInfo& info);    // ()
Napi::Value JsPersist(const Napi::CallbackInfo& info);  // (regionId, offset, length)
Napi::Value JsMsync(const Napi::CallbackInfo& info);    // (regionId, offset, length)
Napi::Value JsCopyOut(const Napi::CallbackInfo& info);  // (regionId, offset, length, dest: Uint8Array)
Napi::Value JsCopyIn(const Napi::CallbackInfo& info);   // (regionId, offset, length, src: Uint8Array)
// (regionId, offset, length, dest: Uint8Array, destOffset): pread(2) of the file behind the
// mapping into dest, never touching the mapping (the kernel copies through its own map of the
// pages; a first touch of each 4 KiB page of a new mapping costs a fault, and on a hypervisor
// with shadow page tables an exit). 0, or -errno: -EOPNOTSUPP for device-DAX (no read()),
// -EIO for a poisoned page (hwpoison) or a short file. Reads what the file holds: a
// MAP_PRIVATE copy's own stores are not seen (callers read such a region through the mapping).
Napi::Value JsReadRegion(const Napi::CallbackInfo& info);
// ['clwb', 'clflushopt', 'clflush'] subset the CPU has, as FlushMethod numbers.
Napi::Value JsCpuFlushMethods(const Napi::CallbackInfo& info);

}  // namespace daxstore
