#include "errors.h"

#include <string.h>

namespace daxstore {

const char* ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "EUNKNOWN";
}

Napi::Value ThrowSysError(Napi::Env env, const char* syscall, int err, const std::string& path,
                          const char* daxCode, const std::string& detail) {
  std::string message = std::string(syscall) + " " + path + ": " + ErrnoName(err) + " (" + strerror(err) + ")";
  if (!detail.empty()) message += ": " + detail;
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  (void)obj.Set("errno", Napi::String::New(env, ErrnoName(err)));
  (void)obj.Set("syscall", Napi::String::New(env, syscall));
  (void)obj.Set("path", Napi::String::New(env, path));
  if (daxCode != nullptr) (void)obj.Set("daxCode", Napi::String::New(env, daxCode));
  error.ThrowAsJavaScriptException();
  return Napi::Value();
}

}  // namespace daxstore
