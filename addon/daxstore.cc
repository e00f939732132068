// Module init and export table only. Context-aware (NODE_API_MODULE), so worker threads
// load it too; the region table and SIGBUS handler behind it are process-global.
#include <napi.h>

#include "advise.h"
#include "diff.h"
#include "kv-recovery.h"
#include "membarrier.h"
#include "persist.h"
#include "prefault.h"
#include "region.h"
#include "test-break.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  daxstore::InstallSigbusHandler();
  struct Entry {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  const Entry table[] = {
      {"openRegion", daxstore::JsOpenRegion},   {"closeRegion", daxstore::JsCloseRegion},
      {"isRegionLive", daxstore::JsIsRegionLive}, {"flush", daxstore::JsFlush},
      {"drain", daxstore::JsDrain},             {"persist", daxstore::JsPersist},
      {"msync", daxstore::JsMsync},             {"copyOut", daxstore::JsCopyOut},
      {"copyIn", daxstore::JsCopyIn},           {"cpuFlushMethods", daxstore::JsCpuFlushMethods},
      {"diffWords", daxstore::JsDiffWords},     {"adviseHugePages", daxstore::JsAdviseHugePages},
      {"membarrierRegister", daxstore::JsMembarrierRegister}, {"membarrier", daxstore::JsMembarrier},
      {"scanKvSegment", daxstore::JsScanKvSegment}, {"pickKvWinners", daxstore::JsPickKvWinners},
      {"prefaultWrite", daxstore::JsPrefaultWrite}, {"setTestBreaks", daxstore::JsSetTestBreaks},
      {"hashRange", daxstore::JsHashRange},
  };
  for (const Entry& e : table) (void)exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(daxstore, Init)
