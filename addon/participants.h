// The process's participant table: one block of shared memory for the whole process (every
// thread and every store of it), handed to each thread as a SharedArrayBuffer over ONE V8
// backing store (src/device/participants.ts owns the layout and the protocol). What C++ adds
// is the one thing JavaScript cannot do: notice that a thread has ended. A thread that claims
// a slot registers an environment cleanup hook (napi_add_env_cleanup_hook); Node runs it when
// the thread's environment is torn down — a worker that returns, throws, calls process.exit()
// or is terminated, and the main thread at exit — after the thread's JavaScript has stopped
// for good. The hook marks the slot DEAD and counts the death.
//
// Invariants
//   - The memory is static (never freed), so a hook may write it at any time, and every
//     buffer over it stays valid for the life of the process.
//   - The hook only turns ALIVE into DEAD (compare-exchange) and then adds one to the death
//     counter; every other transition is made by JavaScript (participants.ts).
//
// Concurrency: the hook's compare-exchange and add are sequentially consistent: a thread that
// reads DEAD also reads every store the dead thread made before it ended.
#pragma once

#include <napi.h>

namespace daxstore {

// () -> SharedArrayBuffer over the process's participant table (the same memory in every thread).
Napi::Value JsParticipantTable(const Napi::CallbackInfo& info);

// (slot: number, generation: number) -> 0, or -EINVAL for a slot outside the table. Registers
// this thread's cleanup hook: at teardown, if the slot is still ALIVE with that generation,
// it becomes DEAD and the death counter grows by one.
Napi::Value JsWatchThreadExit(const Napi::CallbackInfo& info);

}  // namespace daxstore
