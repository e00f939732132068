// Asymmetric process-wide memory barrier (Linux membarrier(2), MEMBARRIER_CMD_PRIVATE_EXPEDITED)
// for the epoch scheme (src/index/epoch.ts): readers pin with a plain store and no fence; the
// rare epoch advance calls this first, which runs a full memory barrier on every CPU currently
// running a thread of this process, so each reader's pin store is either visible to the advance's
// scan or ordered after everything the advance saw (liburcu's membarrier flavour).
//
// Invariants
//   - The registration runs once per process, on a thread of its own from the first
//     JsMembarrierRegisterAhead, JsMembarrierOffered (when it answers true), JsMembarrierRegister
//     or JsMembarrier; the last two wait for it (every caller, in any thread, gets one result).
//   - JsMembarrier waits for the registration, then runs the private expedited barrier; if the
//     registration failed although the kernel offered it, the global barrier (no registration,
//     a grace period's wait). So a domain may pin asymmetrically as soon as JsMembarrierOffered
//     said true, without waiting for the registration: no barrier is issued before it ends.
//   - Never throws for a kernel answer: the result is 0 or -errno.
#pragma once

#include <napi.h>

namespace daxstore {

// () -> undefined: starts the registration (see JsMembarrierRegister) without waiting for it.
Napi::Value JsMembarrierRegisterAhead(const Napi::CallbackInfo& info);

// () -> whether the process's registration will fail (-EPERM) although the kernel offers it:
// set when the registration has not started yet (tests of the global fallback).
Napi::Value JsMembarrierRegisterFailing(const Napi::CallbackInfo& info);

// () -> whether the kernel offers the private expedited barrier, its registration and the
// global barrier (MEMBARRIER_CMD_QUERY, asked once); when it does, starts the registration.
Napi::Value JsMembarrierOffered(const Napi::CallbackInfo& info);

// () -> 0 when this process may use MEMBARRIER_CMD_PRIVATE_EXPEDITED, or -errno (-ENOSYS:
// no membarrier or no private expedited command in this kernel). Waits for the registration.
Napi::Value JsMembarrierRegister(const Napi::CallbackInfo& info);

// () -> 0 after a full barrier ran on every CPU running a thread of this process (the private
// expedited one once registered; the global one if the registration failed), or -errno.
Napi::Value JsMembarrier(const Napi::CallbackInfo& info);

}  // namespace daxstore
