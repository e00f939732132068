// Asymmetric process-wide memory barrier (Linux membarrier(2), MEMBARRIER_CMD_PRIVATE_EXPEDITED)
// for the epoch scheme (src/index/epoch.ts): readers pin with a plain store and no fence; the
// rare epoch advance calls this first, which runs a full memory barrier on every CPU currently
// running a thread of this process, so each reader's pin store is either visible to the advance's
// scan or ordered after everything the advance saw (liburcu's membarrier flavour).
//
// Invariants
//   - JsMembarrier is only meaningful after JsMembarrierRegister returned 0 (registration is
//     per process and idempotent; threads that register later change nothing).
//   - Never throws for a kernel answer: the result is 0 or -errno.
//   - The registration runs once per process, on a thread of its own from the first
//     JsMembarrierRegisterAhead or JsMembarrierRegister; JsMembarrierRegister waits for it and
//     returns its result (every caller, in any thread, the same one).
#pragma once

#include <napi.h>

namespace daxstore {

// () -> undefined: starts the registration (see JsMembarrierRegister) without waiting for it.
Napi::Value JsMembarrierRegisterAhead(const Napi::CallbackInfo& info);

// () -> 0 when this process may use MEMBARRIER_CMD_PRIVATE_EXPEDITED, or -errno (-ENOSYS:
// no membarrier or no private expedited command in this kernel).
Napi::Value JsMembarrierRegister(const Napi::CallbackInfo& info);

// () -> 0 after a full barrier ran on every CPU running a thread of this process, or -errno.
Napi::Value JsMembarrier(const Napi::CallbackInfo& info);

}  // namespace daxstore
