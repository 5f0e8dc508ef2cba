// The CUDA block-FP8 kernel's per-thread work and index math, written once as host-device
// functions.
//
// kernels/fp8_cuda.cu launches these; tests/cuda/fp8_tile_test.cpp runs the very same functions on
// the host over every unit of whole grids, with a sink that records each store, so the index math
// is checked without a GPU. Nothing here includes a CUDA header.
//
// The output has the weight's own layout ([matrices, rows, cols]), so the work is a flat map: one
// unit = 8 consecutive values of one row (the row's last unit may be shorter), 8 code bytes in
// and 16 (BF16) or 32 (F32) bytes out, so a warp's stores are one contiguous run where the rows
// allow it. Each value is fp8::decode_bf16 / decode_f32 of its code and its block's scale; the
// scale is looked up once per unit and again only where the unit crosses into the next block.
// Misaligned codes, scales or output and rows of odd widths fall back to byte loads and element
// stores.
#pragma once

#include <cstdint>

#include "kernels/fp8.hpp"

namespace umload::fp8_tile {

inline constexpr unsigned threads = 256;
inline constexpr unsigned unit_values = 8;

struct grid {
  fp8::block_geometry geometry;
  std::uint64_t units_per_row = 0;  // ceil(cols / 8)
  std::uint64_t units = 0;          // total_rows * units_per_row
  bool aligned_codes = false;       // every full unit's 8 codes are one 8-byte aligned load
  bool aligned_scales = false;      // the scales are 4-byte aligned floats
  bool vector_out = false;          // every full unit's output is whole aligned 16-byte stores
};

inline grid plan(const fp8::decode_job& job) {
  grid g;
  g.geometry = job.geometry;
  g.units_per_row = (job.geometry.cols + unit_values - 1) / unit_values;
  g.units = job.geometry.total_rows() * g.units_per_row;
  g.aligned_codes =
      reinterpret_cast<std::uintptr_t>(job.codes) % 8 == 0 && job.geometry.cols % 8 == 0;
  g.aligned_scales = reinterpret_cast<std::uintptr_t>(job.scales) % 4 == 0;
  g.vector_out = reinterpret_cast<std::uintptr_t>(job.out) % 16 == 0 &&
                 (job.geometry.cols * element_bytes(job.dtype)) % 16 == 0;
  return g;
}

UMLOAD_HOST_DEVICE float load_scale(const void* scales, std::uint64_t index, bool aligned) {
#if defined(__CUDA_ARCH__)
  if (aligned) return static_cast<const float*>(scales)[index];
#else
  (void)aligned;
#endif
  return fp8::scale_at(scales, index);
}

// `n` (1..8) codes from `p` into code[0..n), one 8-byte load where `aligned` and n == 8.
UMLOAD_HOST_DEVICE void load_codes(const std::uint8_t* p, unsigned n, bool aligned,
                                   unsigned code[unit_values]) {
#if defined(__CUDA_ARCH__)
  if (aligned && n == unit_values) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    for (unsigned i = 0; i < 4; ++i) {
      code[i] = (v.x >> (8 * i)) & 0xFFu;
      code[i + 4] = (v.y >> (8 * i)) & 0xFFu;
    }
    return;
  }
#else
  (void)aligned;
#endif
  for (unsigned i = 0; i < unit_values; ++i) code[i] = i < n ? p[i] : 0u;
}

// A sink receives the stores: store_vec(index, w) writes 16 bytes (4 words) at element `index` of
// the output, store(index, value) one element. The kernel's sink writes device memory; the
// tile-math test's sink records every write.
template <typename Out, typename Sink>
UMLOAD_HOST_DEVICE void decode_unit(const grid& g, std::uint64_t unit, const std::uint8_t* codes,
                                    const void* scales, Sink& sink) {
  const fp8::block_geometry& geo = g.geometry;
  const std::uint64_t row = unit / g.units_per_row;  // over all matrices
  const std::uint64_t c0 = unit % g.units_per_row * unit_values;
  const std::uint64_t left = geo.cols - c0;
  const unsigned n = left < unit_values ? static_cast<unsigned>(left) : unit_values;
  const std::uint64_t index = row * geo.cols + c0;

  unsigned code[unit_values];
  load_codes(codes + index, n, g.aligned_codes, code);

  const std::uint64_t m = row / geo.rows;
  const std::uint64_t first_scale = geo.scale_index(m, row % geo.rows, c0);
  std::uint64_t block_end = (c0 / geo.block_cols + 1) * geo.block_cols;  // next block's column
  std::uint64_t scale_index = first_scale;
  float scale = load_scale(scales, scale_index, g.aligned_scales);
  Out v[unit_values];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (unsigned i = 0; i < unit_values; ++i) {
    if (i >= n) {
      v[i] = 0;
      continue;
    }
    if (c0 + i == block_end) {
      block_end += geo.block_cols;
      scale = load_scale(scales, ++scale_index, g.aligned_scales);
    }
    if constexpr (sizeof(Out) == 2)
      v[i] = fp8::decode_bf16(code[i], scale);
    else
      v[i] = fp8::decode_f32(code[i], scale);
  }

  if (g.vector_out && n == unit_values) {
    std::uint32_t w[unit_values];
    if constexpr (sizeof(Out) == 2) {
      for (unsigned q = 0; q < 4; ++q)
        w[q] =
            static_cast<std::uint32_t>(v[2 * q]) | (static_cast<std::uint32_t>(v[2 * q + 1]) << 16);
      sink.store_vec(index, w);
    } else {
      for (unsigned q = 0; q < unit_values; ++q) w[q] = v[q];
      sink.store_vec(index, w);
      sink.store_vec(index + 4, w + 4);
    }
    return;
  }
  for (unsigned i = 0; i < n; ++i) sink.store(index + i, v[i]);
}

}  // namespace umload::fp8_tile
