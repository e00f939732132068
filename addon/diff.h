// diffWords: which aligned 8-byte words differ between two equal-length byte ranges.
// For the simulated device (crash images are the durable image plus any subset of the
// pending words, so it needs the pending words fast).
//
// Concurrency: either range may be a SharedArrayBuffer other threads are writing; a word
// that changes during the scan may or may not be reported (each word is read once).
#pragma once

#include <napi.h>

namespace daxstore {

// JsDiffWords(a: Uint8Array, b: Uint8Array, out: Uint32Array, startWord: number) -> number
// Writes the indices (from startWord on) of differing words into out, ascending, and
// returns how many it wrote; out full means: call again from out[last] + 1.
// -EINVAL for unequal lengths, lengths not a multiple of 8, or more than 2^32 words.
Napi::Value JsDiffWords(const Napi::CallbackInfo& info);

}  // namespace daxstore
