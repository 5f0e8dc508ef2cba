// The one definition of the MXFP4 decode, shared by every CPU and GPU kernel.
//
// An MXFP4 tensor stores 4-bit E2M1 codes, two per byte (low nibble first), and one E8M0 scale
// byte per block of 32 codes. A value is FP4[code] * 2^(scale - 127). For scale bytes 0..254 the
// result is exactly representable in BF16 (at most 2 significant bits, smallest 2^-128), so the
// decode below is pure integer bit assembly: no floating-point operation, no rounding, no
// dependence on flush-to-zero modes. Scale byte 255 is NaN in E8M0 (OCP MX v1.0): the whole block
// decodes to NaN; callers refuse it unless asked otherwise.
//
// The SIMD and CUDA kernels do not re-derive this math: they index the tables built from
// decode_bf16() (decode_table), so CPU and GPU are bit-identical by construction.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define UMLOAD_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define UMLOAD_HOST_DEVICE inline
#endif

namespace umload::mxfp4 {

inline constexpr int block_values = 32;  // values that share one scale byte
inline constexpr int block_bytes = 16;   // packed bytes holding one block's codes
inline constexpr int scale_bias = 127;   // E8M0 exponent bias
inline constexpr std::uint8_t nan_scale = 255;
inline constexpr std::uint16_t bf16_nan = 0x7FC0;

// One expert of an MXFP4 expert tensor: blocks [rows, groups, 16] and scales [rows, groups],
// decoding to rows x groups*32 values. Every per-expert size in the project comes from here.
struct expert_geometry {
  std::uint64_t rows = 0;    // output features
  std::uint64_t groups = 0;  // input features / 32

  UMLOAD_HOST_DEVICE constexpr std::uint64_t in_features() const { return groups * block_values; }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t values() const { return rows * in_features(); }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t blocks() const {
    return rows * groups * static_cast<std::uint64_t>(block_bytes);
  }
  UMLOAD_HOST_DEVICE constexpr std::uint64_t scales() const { return rows * groups; }
  // Blocks and scales together: what a staging slot must hold for one expert.
  UMLOAD_HOST_DEVICE constexpr std::uint64_t stored() const { return blocks() + scales(); }
  // Decoded bytes at `element` bytes per value (2 for BF16, 4 for F32).
  UMLOAD_HOST_DEVICE constexpr std::uint64_t output(unsigned element) const {
    return values() * element;
  }
};

// BF16 bits of FP4[code] * 2^(scale - 127), for code 0..15 and scale 0..255.
UMLOAD_HOST_DEVICE std::uint16_t decode_bf16(unsigned code, unsigned scale) {
  const std::uint16_t sign = static_cast<std::uint16_t>((code & 8u) << 12);
  if (scale == nan_scale) return static_cast<std::uint16_t>(bf16_nan);
  const unsigned magnitude = code & 7u;
  if (magnitude == 0) return sign;  // +0 or -0: the sign is kept
  // E2M1 magnitudes 0.5, 1, 1.5, 2, 3, 4, 6 = (1 + m/2) * 2^e with e = magnitude/2 - 1 and
  // m = magnitude & 1, except 0.5 (magnitude 1) = 2^-1 with m = 0.
  const int e = static_cast<int>(magnitude >> 1) - 1;
  const unsigned m = (magnitude == 1) ? 0u : (magnitude & 1u);
  // Biased BF16 exponent of the product: e + (scale - 127) + 127.
  const int biased = e + static_cast<int>(scale);
  if (biased >= 255) return static_cast<std::uint16_t>(sign | 0x7F80u);  // overflow: +-inf
  if (biased >= 1) return static_cast<std::uint16_t>(sign | (biased << 7) | (m << 6));
  // Subnormal: (2 + m) * 2^(biased - 128) in units of the smallest subnormal 2^-133.
  return static_cast<std::uint16_t>(sign | ((2u + m) << (biased + 5)));
}

// F32 bits of the same value. Every decoded value is exact in BF16, so F32 is BF16 widened.
UMLOAD_HOST_DEVICE std::uint32_t decode_f32(unsigned code, unsigned scale) {
  return static_cast<std::uint32_t>(decode_bf16(code, scale)) << 16;
}

// The code of input column k within a block's 16 packed bytes: low nibble for even k.
UMLOAD_HOST_DEVICE unsigned code_at(const std::uint8_t* block, unsigned k) {
  const unsigned byte = block[k >> 1];
  return (k & 1u) ? (byte >> 4) : (byte & 0xFu);
}

// All 16 decoded values for each of the 256 scale bytes: 8 KiB, L1-resident on CPUs, shared
// memory on GPUs. Row s holds decode_bf16(0..15, s).
struct decode_table {
  std::uint16_t bf16[256][16];
};

UMLOAD_HOST_DEVICE void fill_decode_table(decode_table& table) {
  for (unsigned s = 0; s < 256; ++s)
    for (unsigned c = 0; c < 16; ++c) table.bf16[s][c] = decode_bf16(c, s);
}

}  // namespace umload::mxfp4
