// Shared by the fuzz targets: what counts as a finding. The loader may refuse any input, but only
// with one of its own errors (umload::error); any other exception escaping, a crash, a leak, a
// hang or a huge allocation is a bug. Invariants that a successful parse promises are checked
// with `require`, which traps so that libFuzzer records the input.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "src/synth.hpp"

#define UMLOAD_FUZZ_REQUIRE(cond)                                                             \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "fuzz invariant broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

namespace umload::fuzz {

// A fresh tiny GPT-OSS checkpoint (1 layer, 2 experts) at `root`/`sub`, in a temporary folder
// named for the target and this process; returns `root`.
inline std::filesystem::path synth_tiny_checkpoint(const std::string& target,
                                                   const std::string& sub = "") {
  namespace fs = std::filesystem;
  const fs::path root =
      fs::temp_directory_path() / ("umload-fuzz-" + target + "-" + std::to_string(::getpid()));
  fs::remove_all(root);
  synth_options o;
  o.preset = "tiny";
  o.layers = 1;
  o.experts = 2;
  o.out = sub.empty() ? root : root / sub;
  synthesize(o);
  return root;
}

}  // namespace umload::fuzz
