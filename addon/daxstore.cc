// Module init and export table only (filled in by the region/persist work).
#include <napi.h>

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return exports; }

NODE_API_MODULE(daxstore, Init)
