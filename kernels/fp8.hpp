// The one definition of the block-FP8 decode, shared by every CPU and GPU kernel.
//
// A block-FP8 weight (DeepSeek-V3/R1, Kimi K2, Qwen3-*-FP8, GLM-4.5-FP8) stores F8_E4M3 codes
// [rows, cols] and an F32 `weight_scale_inv` [ceil(rows / B0), ceil(cols / B1)], where (B0, B1) is
// the config's `quantization_config.weight_block_size`: the edge blocks of a weight whose sides
// are not multiples of the block are partial, and the grid is the ceiling (as DeepSeek-V3's
// inference/kernel.py `weight_dequant` and torch's distributed/checkpoint/quantized_hf_storage.py
// have it). A single-scale weight has one scale for the whole tensor (block_geometry::per_tensor).
// Several matrices may be stacked in front ([matrices, rows, cols]), each with its own grid.
//
// A value is f32(code) * scale: the code widened to F32 exactly (OCP FP8 E4M3 "FN": bias 7,
// subnormals, no infinity, S.1111.111 is NaN), then ONE IEEE binary32 multiply rounded to nearest
// even, with subnormal inputs and results kept (no flush-to-zero, no fused multiply-add), as
// transformers' integrations/finegrained_fp8.py, NeMo Automodel's `dequantize_from_fp8` and torch's
// reader compute it in float32. BF16 output rounds that F32 to nearest even. Every NaN, whether
// from a NaN code, a NaN scale or 0 * inf, is written as one quiet NaN: 0x7FC0 in BF16 (what
// c10::BFloat16's round_to_nearest_even writes for NaN; torch's vectorised CPU conversion writes
// 0xFFFF, and its F32 products keep the NaN operand's payload, so only NaN's bits differ from the
// references) and 0x7FC00000 in F32. The CPU paths
// and the CUDA kernel call these functions (or, in SIMD, prove themselves equal to them in the
// tests), so every path writes the same bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/mxfp4.hpp"  // UMLOAD_HOST_DEVICE
#include "kernels/vocabulary.hpp"

namespace umload::fp8 {

inline constexpr std::uint16_t bf16_nan = 0x7FC0;
inline constexpr std::uint32_t f32_nan = 0x7FC00000u;
inline constexpr unsigned code_bytes = 1;   // one F8_E4M3 code per value
inline constexpr unsigned scale_bytes = 4;  // one F32 per block

UMLOAD_HOST_DEVICE bool is_nan_code(unsigned code) { return (code & 0x7Fu) == 0x7Fu; }

// F32 bits of E4M3 `code`, exactly. NaN codes give a quiet NaN of the code's sign.
UMLOAD_HOST_DEVICE std::uint32_t e4m3_to_f32_bits(unsigned code) {
  const std::uint32_t sign = (code & 0x80u) << 24;
  if (is_nan_code(code)) return sign | f32_nan;
  const unsigned exponent = (code >> 3) & 0xFu;
  const unsigned mantissa = code & 7u;
  if (exponent != 0) return sign | ((exponent + 120u) << 23) | (mantissa << 20);
  if (mantissa == 0) return sign;  // +0 or -0
  // Subnormal: mantissa * 2^-9. Its leading bit `top` (0..2) becomes the implicit one.
  const unsigned top = mantissa >= 4 ? 2u : mantissa >= 2 ? 1u : 0u;
  return sign | ((118u + top) << 23) | ((mantissa - (1u << top)) << (23 - top));
}

UMLOAD_HOST_DEVICE float float_of_bits(std::uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

UMLOAD_HOST_DEVICE std::uint32_t bits_of_float(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
#endif
}

UMLOAD_HOST_DEVICE bool is_nan_f32(std::uint32_t bits) {
  return (bits & 0x7FFFFFFFu) > 0x7F800000u;
}

// One binary32 multiply, rounded to nearest even. On the GPU __fmul_rn, which the compiler never
// contracts into an FMA; on the CPU a plain multiply in a file built with -ffp-contract=off, run
// under a floating-point mode that the CPU paths set themselves (no FTZ/DAZ).
UMLOAD_HOST_DEVICE float multiply(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// F32 bits to BF16 bits, rounded to nearest even; NaN to bf16_nan.
UMLOAD_HOST_DEVICE std::uint16_t bf16_of_f32_bits(std::uint32_t bits) {
  if (is_nan_f32(bits)) return bf16_nan;
  return static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// F32 bits of f32(code) * scale; every NaN as f32_nan.
UMLOAD_HOST_DEVICE std::uint32_t decode_f32(unsigned code, float scale) {
  const std::uint32_t bits = bits_of_float(multiply(float_of_bits(e4m3_to_f32_bits(code)), scale));
  return is_nan_f32(bits) ? f32_nan : bits;
}

// BF16 bits of the same value.
UMLOAD_HOST_DEVICE std::uint16_t decode_bf16(unsigned code, float scale) {
  return bf16_of_f32_bits(decode_f32(code, scale));
}

// The shape of a block-FP8 weight and its scale grid. Every FP8 size in the project comes from
// here.
struct block_geometry {
  std::uint64_t matrices = 1;  // stacked matrices, each with its own grid
  std::uint64_t rows = 0;
  std::uint64_t cols = 0;
  std::uint64_t block_rows = 128;  // B0: rows sharing one scale
  std::uint64_t block_cols = 128;  // B1: columns sharing one scale

  // One scale for each whole matrix (single-scale FP8, `weight_scale` per tensor).
  static constexpr block_geometry per_tensor(std::uint64_t rows, std::uint64_t cols,
                                             std::uint64_t matrices = 1) {
    return {matrices, rows, cols, rows > 0 ? rows : 1, cols > 0 ? cols : 1};
  }

  UMLOAD_HOST_DEVICE constexpr bool valid() const { return block_rows > 0 && block_cols > 0; }
  // Ceiling grids (spelled out: arith.hpp's ceil_div is host-only).
  UMLOAD_HOST_DEVICE constexpr std::uint64_t scale_rows() const {
    return (rows + block_rows - 1) / block_rows;
  }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t scale_cols() const {
    return (cols + block_cols - 1) / block_cols;
  }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t total_rows() const { return matrices * rows; }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t values() const { return matrices * rows * cols; }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t scales() const {
    return matrices * scale_rows() * scale_cols();
  }
  // Index of the scale of value (row, col) of matrix m.
  UMLOAD_HOST_DEVICE constexpr std::uint64_t scale_index(std::uint64_t m, std::uint64_t row,
                                                         std::uint64_t col) const {
    return (m * scale_rows() + row / block_rows) * scale_cols() + col / block_cols;
  }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t code_bytes() const {
    return values() * fp8::code_bytes;
  }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t scale_bytes() const {
    return scales() * fp8::scale_bytes;
  }
  // Decoded bytes at `element` bytes per value (2 for BF16, 4 for F32).
  UMLOAD_HOST_DEVICE constexpr std::uint64_t output(unsigned element) const {
    return values() * element;
  }
};

// One decode call: all matrices of a weight, or (through the row-range entry points) a run of
// its rows. CPU and CUDA kernels take the same job.
struct decode_job {
  const std::uint8_t* codes = nullptr;  // [matrices][rows][cols] F8_E4M3
  const void* scales = nullptr;         // [matrices][scale_rows][scale_cols] F32, any alignment
  void* out = nullptr;                  // [matrices][rows][cols] BF16 or F32, any alignment
  block_geometry geometry;
  output_dtype dtype = output_dtype::bf16;

  std::uint64_t values() const { return geometry.values(); }
  std::uint64_t out_bytes() const { return geometry.output(element_bytes(dtype)); }
};

// Scale `index` of an F32 array at any byte alignment.
UMLOAD_HOST_DEVICE float scale_at(const void* scales, std::uint64_t index) {
  const auto* p = static_cast<const std::uint8_t*>(scales) + index * scale_bytes;
  const std::uint32_t bits =
      static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
      (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
  return float_of_bits(bits);
}

}  // namespace umload::fp8
