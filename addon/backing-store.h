// The V8 backing store behind a SharedArrayBuffer argument. N-API cannot hand one out (nor a
// buffer's maximum length); node-addon-api's napi_value is a v8::Local<v8::Value> in Node's
// implementation, which region.cc relies on as well to create the mapping's buffer.
#pragma once

#include <napi.h>
#include <v8.h>

#include <cstring>
#include <memory>

namespace daxstore {

// The backing store of `raw`, or null when it is not a SharedArrayBuffer.
inline std::shared_ptr<v8::BackingStore> SharedBackingStore(napi_value raw) {
  static_assert(sizeof(napi_value) == sizeof(v8::Local<v8::Value>));
  v8::Local<v8::Value> value;
  std::memcpy(static_cast<void*>(&value), &raw, sizeof(raw));
  if (value.IsEmpty() || !value->IsSharedArrayBuffer()) return nullptr;
  return value.As<v8::SharedArrayBuffer>()->GetBackingStore();
}

}  // namespace daxstore
