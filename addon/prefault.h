// Background prefaulting of a mapped range: MADV_POPULATE_WRITE on a thread of its own, so
// the writer that is about to fill the range (a key-value log segment) does not take a
// page fault per 4 KiB itself. On tmpfs and fs-DAX a first write fault allocates the page (or
// the block, with its metadata made durable under MAP_SYNC); here a virtual machine also
// backs the page on its host then. With `collapse` (tmpfs), the whole 2 MiB pages of the range
// are first collapsed into huge pages (MADV_COLLAPSE: the shmem file's small pages become one
// huge folio each, a copy), so this mapping and every later one of the file, in any process,
// maps them with one fault per 2 MiB and one TLB entry, as device-DAX does; tmpfs allocates no
// huge page itself unless the system is set to. None of it changes a byte: it is advice.
//
// Invariants
//   - The thread holds a reference to the buffer's backing store until it is done, so the
//     mapping outlives it (if that reference is the last, the region's deleter runs on the
//     thread: it is written to run on any thread).
//   - The range is rounded inward to whole pages inside the buffer; nothing outside is touched.
//   - At most 4 such threads run at once in the process: past that the prefault is skipped
//     (-EBUSY), so a process whose threads are starved does not start one per segment it opens.
//   - Never throws: 0 when the thread started, or -errno (-EINVAL: bad range, or a kernel
//     build without MADV_POPULATE_WRITE; -EBUSY: 4 running; -EAGAIN: no thread). The thread's own madvise
//     result is not reported: a range the writer reaches first is simply faulted by it.
//
// Concurrency: the writer may write the range while the thread populates it; both fault the
// same pages and the kernel serializes them. Persistence ordering: none (no data is written).
#pragma once

#include <napi.h>

namespace daxstore {

// (buffer: SharedArrayBuffer, offset: number, length: number, collapse?: boolean) -> 0 or -errno
// (-EBUSY: skipped, as many prefault threads running as allowed)
Napi::Value JsPrefaultWrite(const Napi::CallbackInfo& info);

// (buffer: SharedArrayBuffer, offset: number, length: number) -> 0 or -errno: the whole 2 MiB
// pages of the range made huge now, on this thread (MADV_COLLAPSE: a copy of the small pages
// there, or a fresh huge page where there are none), so that this and every later mapping of
// them (another process's included) maps each with one entry. Changes no byte. -EINVAL where
// the build lacks MADV_COLLAPSE; the kernel's refusal (no huge page to be had, a page busy) is
// its -errno, not an error for the caller: the pages stay small.
Napi::Value JsCollapseRange(const Napi::CallbackInfo& info);

}  // namespace daxstore
