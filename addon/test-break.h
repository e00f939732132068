// The addon's test-break switches. src/test-break.ts declares them (read: 'process') with every
// other switch; src/native/addon.ts hands the main thread's settings over once, when it loads
// the addon, so the environment is read in one place only. Process-global: one addon serves
// every thread of the process. Never set outside tests.
//
//   flock         JsOpenRegion takes no flock (a second opener gets in)
//   sigbus-guard  GuardedCopy and GuardedRun run without arming the SIGBUS guard
//   prefault-unbounded  JsPrefaultWrite starts a thread whatever number run already
#pragma once

#include <napi.h>

namespace daxstore {

bool FlockBroken();
bool SigbusGuardBroken();
bool PrefaultUnboundedBroken();

// JsSetTestBreaks(flock: boolean, sigbusGuard: boolean, prefaultUnbounded: boolean) -> undefined
Napi::Value JsSetTestBreaks(const Napi::CallbackInfo& info);

}  // namespace daxstore
