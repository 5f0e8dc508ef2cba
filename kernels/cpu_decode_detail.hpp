// Internal to the CPU kernels: the per-path entry points the dispatcher (cpu_decode.cpp) calls.
//
// Work is split so that every piece writes a contiguous run of the output:
//   native: a range of global rows (expert * rows + row); row i's output is [i * in, (i + 1) * in).
//   hf:     one column block (expert * groups + group, i.e. 32 consecutive output rows of the
//           transposed result) restricted to input rows [row_begin, row_end); a piece is decoded as
//           tiles of tile_rows rows x 32 inputs, each transposed in registers.
// Pieces write disjoint output, so threads split them freely.
#pragma once

#include <cstdint>

#include "kernels/cpu_decode.hpp"
#include "kernels/decode_job.hpp"
#include "kernels/mxfp4.hpp"

namespace umload::cpu::detail {

inline constexpr std::uint64_t tile_rows = 32;

// Outputs at least this large are written with non-temporal stores where the path has them and
// the destination is aligned: they would only evict the input from the caches.
inline constexpr std::uint64_t stream_threshold_bytes = std::uint64_t{8} << 20;

// Options every path honours; chosen by the dispatcher.
struct piece_options {
  bool stream = false;  // non-temporal stores allowed (the path still checks alignment)
};

// The decode table, built once from mxfp4::decode_bf16.
const mxfp4::decode_table& table();

// The same table split into the low and high bytes of each BF16 value, for byte shuffles
// (AVX2 vpshufb): low[s][c] | high[s][c] << 8 == table().bf16[s][c].
struct split_table {
  alignas(16) std::uint8_t low[256][16];
  alignas(16) std::uint8_t high[256][16];
};
const split_table& byte_tables();

struct path_kernels {
  void (*native_rows)(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end,
                      piece_options options);
  void (*hf_piece)(const decode_job& job, std::uint64_t column_block, std::uint64_t row_begin,
                   std::uint64_t row_end, piece_options options);
};

// Each returns the portable kernels when built for a CPU without the instructions.
path_kernels portable_kernels();
path_kernels avx2_kernels();
path_kernels avx512_kernels();

// Splits a job into pieces and runs them on `threads` threads (0: all available) with the given
// path (not scalar). decode() calls this; benchmarks call it to pin the options.
void run(const decode_job& job, isa path, int threads, piece_options options);

}  // namespace umload::cpu::detail
