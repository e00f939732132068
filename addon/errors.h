// Errors crossing from C++ to JavaScript.
//
// Set-up paths (open, map, lock, close) throw a JS Error through ThrowSysError, which
// names the system call, the errno name and the path; src/native turns it into a
// DaxError. Hot paths never throw: they return -errno and TypeScript names the offset.
#pragma once

#include <napi.h>

#include <string>

namespace daxstore {

// "ENOENT", "EBUSY" …; never null.
const char* ErrnoName(int err);

// Throws Error{ message, errno, syscall, path, daxCode } and returns an empty value to
// hand straight back to N-API. daxCode overrides the TS errno mapping when the errno
// alone would mislead (flock's EWOULDBLOCK means EBUSY to a user).
Napi::Value ThrowSysError(Napi::Env env, const char* syscall, int err, const std::string& path,
                          const char* daxCode = nullptr, const std::string& detail = std::string());

}  // namespace daxstore
