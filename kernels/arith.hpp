// Integer rounding, defined once for every layer.
#pragma once

#include <cstdint>

namespace umload {

// a / b rounded up (b > 0).
constexpr std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }
// v rounded up / down to a multiple of a (a > 0).
constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return ceil_div(v, a) * a; }
constexpr std::uint64_t round_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }

}  // namespace umload
