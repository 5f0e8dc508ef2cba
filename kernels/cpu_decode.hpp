// CPU MXFP4 decode: a scalar oracle that applies mxfp4::decode_bf16 element by element, and
// vectorised paths (AVX-512, AVX2, portable) chosen at run time from the CPU's features. All
// paths produce the same bytes; tests hold every supported path to the oracle.
//
//   umload::cpu::decode(job, umload::cpu::best_isa(), threads);
//
// Scale byte 255 decodes to NaN here; refusing it is the caller's decision (find_nan_scale).
// Where the decode's threads run is the caller's decision too (team_hooks).
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

// Called by each thread that takes a share of one decode() call, the caller's thread included
// (also when it does the work alone), as it starts (`enter`) and as it finishes (`leave`): where a
// caller puts the decode's threads on chosen CPUs and back. Plain function pointers: the kernels
// know nothing of the machine.
struct team_hooks {
  void (*enter)(void* context) = nullptr;
  void (*leave)(void* context) = nullptr;
  void* context = nullptr;
};

// The oracle: one decode_bf16 call per value, single-threaded.
void decode_scalar(const decode_job& job);

// Decodes with the given path over `threads` threads (0: all available), each thread calling
// `hooks` around its share. Throws usage_error when the path is not supported by this CPU.
void decode(const decode_job& job, isa path, int threads = 0, const team_hooks& hooks = {});

// Index of the first scale byte equal to 255 in [scales, scales + count), or -1.
std::int64_t find_nan_scale(const std::uint8_t* scales, std::size_t count);

}  // namespace umload::cpu
