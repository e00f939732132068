// Module init and export table only. Context-aware (NODE_API_MODULE), so worker threads
// load it too; the region table and SIGBUS handler behind it are process-global.
#include <dlfcn.h>
#include <napi.h>

#include <mutex>

#include "advise.h"
#include "bits.h"
#include "bulk-load.h"
#include "diff.h"
#include "kv-recovery.h"
#include "membarrier.h"
#include "participants.h"
#include "persist.h"
#include "prefault.h"
#include "region.h"
#include "test-break.h"

namespace {

// Keeps this library mapped until the process exits. Node unloads an addon (dlclose) when the
// last environment that loaded it is torn down, and a worker's environment goes before its
// isolate's heap: V8 then runs the deleters of the SharedArrayBuffers this library made (a
// region's unmap, the participant table's) from code that is no longer mapped, over memory
// that may be gone (the participant table is static data here). Seen as a SIGSEGV in
// ArrayBufferSweeper::ReleaseAll at worker exit whenever no other thread had loaded the addon.
void PinInMemory() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info self;
    if (dladdr(reinterpret_cast<void*>(&PinInMemory), &self) != 0 && self.dli_fname != nullptr)
      (void)dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinInMemory();
  daxstore::InstallSigbusHandler();
  struct Entry {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  const Entry table[] = {
      {"openRegion", daxstore::JsOpenRegion},   {"closeRegion", daxstore::JsCloseRegion},
      {"isRegionLive", daxstore::JsIsRegionLive}, {"growRegion", daxstore::JsGrowRegion},
      {"allocateRegion", daxstore::JsAllocateRegion}, {"flush", daxstore::JsFlush},
      {"drain", daxstore::JsDrain},             {"persist", daxstore::JsPersist},
      {"msync", daxstore::JsMsync},             {"copyOut", daxstore::JsCopyOut},
      {"copyIn", daxstore::JsCopyIn},           {"cpuFlushMethods", daxstore::JsCpuFlushMethods},
      {"diffWords", daxstore::JsDiffWords},     {"adviseHugePages", daxstore::JsAdviseHugePages}, {"adviseRange", daxstore::JsAdviseRange},
      {"membarrierOffered", daxstore::JsMembarrierOffered}, {"membarrierRegisterFailing", daxstore::JsMembarrierRegisterFailing}, {"membarrierRegister", daxstore::JsMembarrierRegister}, {"membarrierRegisterAhead", daxstore::JsMembarrierRegisterAhead},
      {"membarrier", daxstore::JsMembarrier},
      {"scanKvSegment", daxstore::JsScanKvSegment}, {"pickKvWinners", daxstore::JsPickKvWinners},
      {"prefaultWrite", daxstore::JsPrefaultWrite}, {"collapseRange", daxstore::JsCollapseRange}, {"setTestBreaks", daxstore::JsSetTestBreaks},
      {"hashRange", daxstore::JsHashRange}, {"coverRecords", daxstore::JsCoverRecords}, {"endMarkersAt", daxstore::JsEndMarkersAt},     {"readRegion", daxstore::JsReadRegion},
      {"participantTable", daxstore::JsParticipantTable}, {"watchThreadExit", daxstore::JsWatchThreadExit},
      {"mergeKvColumns", daxstore::JsMergeKvColumns}, {"verifyKvSegments", daxstore::JsVerifyKvSegments}, {"verifyKvSegmentsStart", daxstore::JsVerifyKvSegmentsStart}, {"verifyKvSegmentsFinish", daxstore::JsVerifyKvSegmentsFinish}, {"verifyKvSegmentsDone", daxstore::JsVerifyKvSegmentsDone}, {"hashRangeStart", daxstore::JsHashRangeStart}, {"hashRangeDone", daxstore::JsHashRangeDone}, {"hashRangeFinish", daxstore::JsHashRangeFinish}, {"threadCpuMs", daxstore::JsThreadCpuMs}, {"bulkLeaves", daxstore::JsBulkLeaves}, {"columnStarts", daxstore::JsColumnStarts}, {"nonzeroWords", daxstore::JsNonzeroWords}, {"countByExtent", daxstore::JsCountByExtent}, {"countClearBits", daxstore::JsCountClearBits}, {"bulkInner", daxstore::JsBulkInner},
      {"loadTreeImage", daxstore::JsLoadTreeImage}, {"leafKeyStarts", daxstore::JsLeafKeyStarts},
      {"patchImageLeaves", daxstore::JsPatchImageLeaves}, {"buildTreeImageStart", daxstore::JsBuildTreeImageStart},
      {"buildTreeImageDone", daxstore::JsBuildTreeImageDone}, {"buildTreeImageFinish", daxstore::JsBuildTreeImageFinish},
  };
  for (const Entry& e : table) (void)exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  return exports;
}

}  // namespace

NODE_API_MODULE(daxstore, Init)
