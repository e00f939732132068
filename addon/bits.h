// Counts over bitmaps that open runs once over the whole device: the allocator's used and
// poisoned bitmaps (src/device/allocator.ts rebuild), a word per 32 blocks. Run once, a loop
// in JavaScript runs as cold code; here it is a popcount per word.
//
// Concurrency: the words are read once each, plainly; the caller owns them (the allocator's
// lock, or an open nobody else can see yet).
#pragma once

#include <napi.h>

namespace daxstore {

// JsCountClearBits(words: Uint32Array, count: number, perGroup?: Uint16Array, groupWords?: number)
//   -> the clear bits of words[0, count), and with perGroup: perGroup[w / groupWords] += the
//   clear bits of word w for each w (the caller zeroes it first). -EINVAL for arguments that
//   would read or write outside the arrays, or a sum that does not fit perGroup's entries.
Napi::Value JsCountClearBits(const Napi::CallbackInfo& info);

}  // namespace daxstore
