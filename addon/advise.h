// Memory advice for V8-owned buffers (the radix tree arena), not for mapped regions.
//
// Invariants
//   - Only whole 2 MiB-aligned huge pages that lie inside the buffer's own reservation are
//     advised: [Data, Data + MaxByteLength) of a growable SharedArrayBuffer (V8 reserves
//     that much up front and commits the growing prefix in place) or of a shared
//     WebAssembly.Memory's buffer (its maximum; memory.grow commits in place the same way),
//     [Data, Data + ByteLength) of a fixed one; the range is rounded inward, so no neighbouring mapping is touched.
//   - Never throws for a kernel answer: the result is bytes advised (>= 0) or -errno.
#pragma once

#include <napi.h>

namespace daxstore {

// (buffer: SharedArrayBuffer) -> bytes advised with MADV_HUGEPAGE (0: no whole huge page
// inside), or -errno (-EINVAL: kernel without transparent huge pages; -EBADF: not a SAB).
Napi::Value JsAdviseHugePages(const Napi::CallbackInfo& info);

// (buffer: SharedArrayBuffer, offset, length, huge: boolean) -> bytes advised with
// MADV_HUGEPAGE (huge) or MADV_NOHUGEPAGE over the whole 2 MiB pages of [offset, offset +
// length) (0: none), or -errno (-EINVAL: a range outside the reservation, or no transparent
// huge pages; -EBADF: not a SAB). The arena's huge-page advice taken back over a run whose
// pages are to be populated small, and given again after.
Napi::Value JsAdviseRange(const Napi::CallbackInfo& info);

}  // namespace daxstore
