// What the CPU kernel suites (test_cpu_decode.cpp, test_fp8_cpu.cpp) share to compare a path's
// output with the oracle's: an output buffer with guard bytes on both sides, so that a write
// outside the job is caught, and the index of the first element that differs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace umload::test {

// An output buffer whose payload starts `offset` bytes past a 64-byte boundary, with guard
// bytes before and after it.
struct guarded_output {
  static constexpr std::size_t guard = 128;
  static constexpr std::uint8_t pattern = 0xA5;
  std::vector<std::uint8_t> storage;
  std::uint8_t* payload = nullptr;
  std::size_t bytes = 0;

  guarded_output(std::size_t n, std::size_t offset)
      : storage(n + 2 * guard + 64 + offset, pattern), bytes(n) {
    auto base = reinterpret_cast<std::uintptr_t>(storage.data()) + guard;
    base = (base + 63) / 64 * 64 + offset;
    payload = reinterpret_cast<std::uint8_t*>(base);
  }
  bool guards_intact() const {
    const std::uint8_t* begin = payload;
    const std::uint8_t* end = payload + bytes;
    return std::all_of(storage.data(), begin, [](std::uint8_t b) { return b == pattern; }) &&
           std::all_of(end, storage.data() + storage.size(),
                       [](std::uint8_t b) { return b == pattern; });
  }
};

// Index of the first differing element (of `element` bytes) of two buffers, or -1.
inline std::int64_t first_difference(const std::uint8_t* a, const std::uint8_t* b,
                                     std::size_t bytes, unsigned element) {
  for (std::size_t i = 0; i < bytes; ++i)
    if (a[i] != b[i]) return static_cast<std::int64_t>(i / element);
  return -1;
}

}  // namespace umload::test
