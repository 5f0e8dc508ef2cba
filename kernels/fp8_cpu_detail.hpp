// Internal to the CPU block-FP8 kernels: the per-path entry points the dispatcher (fp8_cpu.cpp)
// calls, and what they share.
//
// A path decodes a run of rows. For each run of rows sharing one scale row it first expands that
// scale row to one F32 per column (row_scales), so that the inner loop reads a code and a scale
// per value whatever the block width (128 in every public checkpoint, any value in the config):
// no division, no per-block tail inside a row; only the row's end is a tail. (The AVX-512 VBMI
// BF16 path keeps a lookup table per block of the scale row instead; fp8_cpu_avx512.cpp.)
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/fp8.hpp"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

namespace umload::fp8::cpu::detail {

// Outputs at least this large are written with non-temporal stores where the path has them and
// every output row starts 64-byte aligned: they would only evict the input from the caches.
inline constexpr std::uint64_t stream_threshold_bytes = std::uint64_t{8} << 20;

// The floating-point mode the decode needs, for the scope of one object: on x86-64 MXCSR
// 0x1F80 (round to nearest even, exceptions masked, no flush-to-zero, no denormals-are-zero);
// the caller's mode comes back at the end.
class exact_float_mode {
 public:
#if defined(__x86_64__)
  exact_float_mode() : saved_(_mm_getcsr()) { _mm_setcsr(0x1F80u); }
  ~exact_float_mode() { _mm_setcsr(saved_); }
#else
  exact_float_mode() = default;
#endif
  exact_float_mode(const exact_float_mode&) = delete;
  exact_float_mode& operator=(const exact_float_mode&) = delete;

 private:
#if defined(__x86_64__)
  unsigned saved_;
#endif
};

// One scale row expanded to one F32 per column: scales[c] is the scale of column c.
class row_scales {
 public:
  // The scales of global row `row` (matrix * rows + r), expanded when it starts a new scale row.
  const float* for_row(const decode_job& job, std::uint64_t row) {
    const block_geometry& g = job.geometry;
    const std::uint64_t scale_row = row / g.rows * g.scale_rows() + row % g.rows / g.block_rows;
    if (scale_row != current_) {
      expanded_.resize(g.cols);
      const std::uint64_t first = scale_row * g.scale_cols();
      for (std::uint64_t c0 = 0, b = 0; c0 < g.cols; c0 += g.block_cols, ++b) {
        const float s = scale_at(job.scales, first + b);
        const std::uint64_t c1 = c0 + g.block_cols < g.cols ? c0 + g.block_cols : g.cols;
        for (std::uint64_t c = c0; c < c1; ++c) expanded_[c] = s;
      }
      current_ = scale_row;
    }
    return expanded_.data();
  }

 private:
  std::vector<float> expanded_;
  std::uint64_t current_ = ~std::uint64_t{0};
};

// Options every path honours; chosen by the dispatcher.
struct piece_options {
  bool stream = false;  // non-temporal stores allowed (the path still checks alignment)
};

// Rows [row_begin, row_end) of `job`, under exact_float_mode (the dispatcher sets it).
using rows_kernel = void (*)(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end,
                             piece_options options);

// The kernel that picks `Bf16` or `F32` (a path's two instantiations) by the job's dtype.
template <rows_kernel Bf16, rows_kernel F32>
rows_kernel by_dtype() {
  return [](const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
    if (job.dtype == output_dtype::bf16)
      Bf16(job, begin, end, o);
    else
      F32(job, begin, end, o);
  };
}

// Each returns the portable kernel when built for a CPU without the instructions.
rows_kernel portable_rows();
rows_kernel avx2_rows();
rows_kernel avx512_rows();

// True when every output row of `job` starts at a multiple of `alignment` bytes.
inline bool rows_aligned(const decode_job& job, std::uint64_t alignment) {
  return reinterpret_cast<std::uintptr_t>(job.out) % alignment == 0 &&
         (job.geometry.cols * element_bytes(job.dtype)) % alignment == 0;
}

}  // namespace umload::fp8::cpu::detail
