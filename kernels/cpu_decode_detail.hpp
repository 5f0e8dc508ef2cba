// Internal to the CPU kernels: the per-path entry points the dispatcher (cpu_decode.cpp) calls.
//
// Work is split into pieces that threads take freely (pieces write disjoint output):
//   native: a range of global rows (expert * rows + row); row i's output is [i * in, (i + 1) * in),
//           so a piece writes one contiguous run.
//   hf:     one expert's rows [row_begin, row_end) x groups [group_begin, group_end), decoded as
//           tiles of tile_rows rows x 32 inputs, each transposed in registers, groups outer and
//           rows inner: a piece reads a contiguous run of the input and writes runs of
//           (row_end - row_begin) values into 32 output rows per group.
#pragma once

#include <cstdint>

#include "kernels/cpu_decode.hpp"
#include "kernels/decode_job.hpp"
#include "kernels/mxfp4.hpp"

namespace umload::cpu::detail {

inline constexpr std::uint64_t tile_rows = 32;

// Rows per hf piece: 256 rows of a 90-group tensor are 368 KiB of input (L2-sized) and give
// 512-byte runs of output per output row; measured best among 64..1024 on Zen 4.
inline constexpr std::uint64_t hf_piece_rows = 256;

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

// For scale bytes in [first, last], table row s is table row 127 with s - 127 added to the BF16
// exponent of every nonzero magnitude: no result leaves the normal range, so the add neither
// carries into the sign nor reaches the subnormals or inf. Scales outside (0, 1: subnormal
// results; 253, 254: inf; 255: NaN) must use their own table row. Kernels that look up 32 rows
// with different scales at once (hf, AVX-512 VBMI) use this; the tests prove it equal to
// decode_bf16 for every scale in the range and every code, and the range maximal.
struct rescalable_scales {
  static constexpr unsigned first = 2;
  static constexpr unsigned last = 252;
};
inline constexpr std::uint16_t exponent_step(unsigned scale) {
  return static_cast<std::uint16_t>((scale - mxfp4::scale_bias) << 7);
}
inline constexpr std::uint16_t rescale_bf16(std::uint16_t value_at_127, unsigned code,
                                            unsigned scale) {
  return (code & 7u) == 0 ? value_at_127
                          : static_cast<std::uint16_t>(value_at_127 + exponent_step(scale));
}

struct path_kernels {
  void (*native_rows)(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end,
                      piece_options options);
  void (*hf_piece)(const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
                   std::uint64_t group_end, std::uint64_t row_begin, std::uint64_t row_end,
                   piece_options options);
};

// The glue every SIMD path shares: streamed (non-temporal) stores only where the output's
// alignment allows them, and the element type from the job's dtype. `Path` is a type local to
// the path's file with `store_alignment` and two templates `native<Out, Stream>(job, begin,
// end)` and `hf<Out, Stream>(job, expert, group_begin, group_end, begin, end)`.
template <typename Path>
path_kernels make_path_kernels() {
  constexpr std::uint64_t a = Path::store_alignment;
  return {[](const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
            const auto run = [&](auto element) {
              using Out = decltype(element);
              // Every block's output starts at a multiple of the alignment from the base.
              if (o.stream && (reinterpret_cast<std::uintptr_t>(job.out) % a) == 0)
                Path::template native<Out, true>(job, begin, end);
              else
                Path::template native<Out, false>(job, begin, end);
            };
            if (job.dtype == output_dtype::bf16)
              run(std::uint16_t{});
            else
              run(std::uint32_t{});
          },
          [](const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
             std::uint64_t group_end, std::uint64_t begin, std::uint64_t end, piece_options o) {
            const auto run = [&](auto element) {
              using Out = decltype(element);
              // Full tiles start aligned when each output row is a multiple of the alignment.
              if (o.stream && (reinterpret_cast<std::uintptr_t>(job.out) % a) == 0 &&
                  (job.rows * sizeof(Out)) % a == 0 && (begin * sizeof(Out)) % a == 0)
                Path::template hf<Out, true>(job, expert, group_begin, group_end, begin, end);
              else
                Path::template hf<Out, false>(job, expert, group_begin, group_end, begin, end);
            };
            if (job.dtype == output_dtype::bf16)
              run(std::uint16_t{});
            else
              run(std::uint32_t{});
          }};
}

// Each returns the portable kernels when built for a CPU without the instructions.
path_kernels portable_kernels();
path_kernels avx2_kernels();
path_kernels avx512_kernels();

// Splits a job into pieces and runs them on `threads` threads (0: all available) with the given
// path (not scalar), each thread calling `hooks` around its share. decode() calls this; benchmarks
// call it to pin the options.
void run(const decode_job& job, isa path, int threads, piece_options options,
         const team_hooks& hooks = {});

}  // namespace umload::cpu::detail
