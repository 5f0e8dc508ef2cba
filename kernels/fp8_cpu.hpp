// CPU block-FP8 decode: a scalar oracle that applies fp8::decode_bf16 / decode_f32 value by value,
// and vectorised paths (AVX-512, AVX2, portable) chosen at run time from the CPU's features, the
// same paths and the same thread hooks as the MXFP4 decode (kernels/cpu_decode.hpp). All paths
// produce the same bytes; tests hold every supported path to the oracle.
//
//   umload::fp8::cpu::decode(job, umload::cpu::best_isa(), threads);
//   umload::fp8::cpu::decode_rows(job, path, row_begin, row_end);  // one thread, part of a job
//
// Rows are counted over all matrices of the job (matrix * rows + row). Every entry point runs its
// arithmetic under round-to-nearest with subnormals kept, whatever floating-point mode the
// calling thread has set (torch.set_flush_denormal, for one), and restores that mode after.
#pragma once

#include <cstdint>

#include "kernels/cpu_decode.hpp"
#include "kernels/fp8.hpp"

namespace umload::fp8::cpu {

using umload::cpu::isa;
using umload::cpu::team_hooks;

// The oracle: one decode call per value, single-threaded.
void decode_scalar(const decode_job& job);

// Rows [row_begin, row_end) of the job on the calling thread with the given path. Throws
// usage_error for a path this CPU lacks, a bad block size or a range outside the job.
void decode_rows(const decode_job& job, isa path, std::uint64_t row_begin, std::uint64_t row_end);

// The whole job over `threads` threads (0: all available), each thread calling `hooks` around
// its share. Throws usage_error as decode_rows does, and for threads < 0.
void decode(const decode_job& job, isa path, int threads = 0, const team_hooks& hooks = {});

}  // namespace umload::fp8::cpu
