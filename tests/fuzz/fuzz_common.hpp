// Shared by the fuzz targets: what counts as a finding. The loader may refuse any input, but only
// with one of its own errors (umload::error); any other exception escaping, a crash, a leak, a
// hang or a huge allocation is a bug. Invariants that a successful parse promises are checked
// with `require`, which traps so that libFuzzer records the input.
#pragma once

#include <cstdio>
#include <cstdlib>

#define UMLOAD_FUZZ_REQUIRE(cond)                                                   \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "fuzz invariant broken: %s (%s:%d)\n", #cond, __FILE__, \
                   __LINE__);                                                       \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)
