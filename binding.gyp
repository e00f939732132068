{
  "targets": [
    {
      "target_name": "daxstore",
      "sources": ["addon/daxstore.cc", "addon/region.cc", "addon/persist.cc", "addon/errors.cc", "addon/diff.cc", "addon/advise.cc", "addon/membarrier.cc", "addon/kv-recovery.cc", "addon/prefault.cc", "addon/test-break.cc", "addon/participants.cc", "addon/bulk-load.cc", "addon/bits.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_ENABLE_MAYBE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden", "-O2", "-mclwb", "-mclflushopt"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"]
    }
  ]
}
