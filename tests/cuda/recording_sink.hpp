// The sink the host tests of the CUDA kernels' per-thread work (tile_math_test.cpp: MXFP4,
// cuda_tile.hpp; fp8_tile_test.cpp: block FP8, fp8_tile.hpp) hand to that work in place of device
// memory: it records every store, so that a test sees each output element written exactly once,
// with the oracle's value, and 16-byte stores only where they are aligned and in bounds.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace umload::test {

template <typename Out>
struct recording_sink {
  std::vector<Out> out;
  std::vector<std::uint32_t> writes;
  int errors = 0;

  explicit recording_sink(std::size_t n) : out(n, static_cast<Out>(0x5A5A5A5Au)), writes(n, 0) {}

  void fail(const std::string& what) {
    if (++errors <= 5) ADD_FAILURE() << what;
  }
  void store(std::uint64_t index, Out value) {
    if (index >= out.size()) return fail("store out of bounds at " + std::to_string(index));
    out[index] = value;
    ++writes[index];
  }
  void store_vec(std::uint64_t index, const std::uint32_t w[4]) {
    constexpr std::uint64_t n = 16 / sizeof(Out);
    if (index % n != 0)
      return fail("16-byte store not 16-byte aligned at " + std::to_string(index));
    if (index + n > out.size())
      return fail("16-byte store out of bounds at " + std::to_string(index));
    std::memcpy(&out[index], w, 16);
    for (std::uint64_t i = 0; i < n; ++i) ++writes[index + i];
  }
};

}  // namespace umload::test
