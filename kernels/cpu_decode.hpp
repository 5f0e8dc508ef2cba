// CPU MXFP4 decode: a scalar oracle that applies mxfp4::decode_bf16 element by element, and
// vectorised paths (AVX-512, AVX2, portable) chosen at run time from the CPU's features. All
// paths produce the same bytes; tests hold every supported path to the oracle.
//
//   umload::cpu::decode(job, umload::cpu::best_isa(), threads);
//
// Scale byte 255 decodes to NaN here; refusing it is the caller's decision (find_nan_scale).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "kernels/decode_job.hpp"

namespace umload::cpu {

enum class isa : std::uint8_t { scalar, portable, avx2, avx512 };

std::string_view to_string(isa i);
// Parses "scalar", "portable", "avx2", "avx512"; returns false on anything else.
bool parse_isa(std::string_view text, isa& out);

// Paths this CPU can run, slowest first (scalar and portable always).
std::vector<isa> supported_isas();
isa best_isa();

// The oracle: one decode_bf16 call per value, single-threaded.
void decode_scalar(const decode_job& job);

// Decodes with the given path over `threads` threads (0: all available). Throws usage_error when
// the path is not supported by this CPU.
void decode(const decode_job& job, isa path, int threads = 0);

// Index of the first scale byte equal to 255 in [scales, scales + count), or -1.
std::int64_t find_nan_scale(const std::uint8_t* scales, std::size_t count);

}  // namespace umload::cpu
