// The shared block-FP8 core (kernels/fp8.hpp) against independent formulas: every E4M3 code
// against the OCP definition evaluated in double, every code times edge and random scales against
// the exactly rounded product (the product of a 4-bit and a 24-bit significand is exact in double,
// so one rounding to float is the IEEE result), BF16 rounding against a nearest-even choice made
// in double, and the scale-grid geometry of real DeepSeek-V3 shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/fp8.hpp"

namespace {

namespace fp8 = umload::fp8;

std::uint32_t bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
float from_bits(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

// OCP 8-bit floating point (E4M3, "FN"): bias 7, exponent 0 subnormal, S.1111.111 NaN.
double e4m3_value(unsigned code) {
  const double sign = (code & 0x80) ? -1.0 : 1.0;
  const int e = static_cast<int>((code >> 3) & 0xF);
  const int m = static_cast<int>(code & 7);
  if (e == 0) return sign * std::ldexp(m, -9);
  return sign * std::ldexp(8 + m, e - 10);
}

TEST(Fp8Core, EveryCodeWidensExactly) {
  for (unsigned code = 0; code < 256; ++code) {
    const std::uint32_t got = fp8::e4m3_to_f32_bits(code);
    if ((code & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(from_bits(got))) << "code " << code;
      continue;
    }
    EXPECT_EQ(got, bits(static_cast<float>(e4m3_value(code)))) << "code " << code;
  }
}

TEST(Fp8Core, KnownCodes) {
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0x00), 0x00000000u);  // +0
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0x80), 0x80000000u);  // -0
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0x38), 0x3F800000u);  // 1
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0x7E), 0x43E00000u);  // 448, the largest
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0xFE), 0xC3E00000u);  // -448
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0x01), 0x3B000000u);  // 2^-9, the smallest subnormal
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0x07), 0x3C600000u);  // 7 * 2^-9 = 1.75 * 2^-7
  EXPECT_EQ(fp8::e4m3_to_f32_bits(0x08), 0x3C800000u);  // 2^-6, the smallest normal
  EXPECT_TRUE(fp8::is_nan_code(0x7F));
  EXPECT_TRUE(fp8::is_nan_code(0xFF));
  EXPECT_FALSE(fp8::is_nan_code(0x7E));
}

// The scales the tests use at the edges: zeros, infinities, NaNs (quiet, signalling, negative),
// subnormals, the normal range's ends, powers of two and ordinary block scales.
std::vector<std::uint32_t> edge_scale_bits() {
  return {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u,
          0x7F800001u, 0x7FBFFFFFu, 0x00000001u, 0x00000100u, 0x007FFFFFu, 0x80000001u,
          0x00800000u, 0x7F7FFFFFu, 0xFF7FFFFFu, 0x3F800000u, 0xBF800000u, 0x40000000u,
          0x3F000000u, 0x3A800000u, 0x3B800000u, 0x71000000u, 0x7E800000u, 0x0B800000u,
          0x03800000u, 0x3A83126Fu, 0x39A3D70Au, 0x3C23D70Au, 0x3F7FFFFFu, 0x3FFFFFFFu};
}

std::uint32_t exact_product(unsigned code, float scale) {
  if (fp8::is_nan_code(code) || std::isnan(scale)) return fp8::f32_nan;
  const double product = e4m3_value(code) * static_cast<double>(scale);
  if (std::isnan(product)) return fp8::f32_nan;  // 0 * inf
  return bits(static_cast<float>(product));
}

// decode_f32 of every code under the scale with bits `s` against exact_product; adds the
// mismatches to `failures` and reports the first 10 of them.
void check_every_code(std::uint32_t s, int& failures) {
  for (unsigned code = 0; code < 256; ++code) {
    const std::uint32_t got = fp8::decode_f32(code, from_bits(s));
    const std::uint32_t want = exact_product(code, from_bits(s));
    if (got != want && ++failures <= 10)
      ADD_FAILURE() << std::hex << "code " << code << " scale " << s << ": " << got << " want "
                    << want;
  }
}

TEST(Fp8Core, ProductIsTheRoundedExactProductForEdgeScales) {
  int failures = 0;
  for (const std::uint32_t s : edge_scale_bits()) check_every_code(s, failures);
  EXPECT_EQ(failures, 0);
}

TEST(Fp8Core, ProductIsTheRoundedExactProductForRandomScales) {
  std::mt19937 rng(22);
  int failures = 0;
  for (int i = 0; i < 20000; ++i) check_every_code(rng(), failures);
  EXPECT_EQ(failures, 0);
}

TEST(Fp8Core, ProductsThatRoundAndUnderflow) {
  // 1.875 * (1 + 2^-23) = 1.875 + 1.875 ulp (the ulp of [1, 2) is 2^-23): rounds to 2 ulp.
  EXPECT_EQ(fp8::decode_f32(0x3F, from_bits(0x3F800001u)), 0x3FF00002u);
  // 2^-9 * 2^-140 = 2^-149, the smallest subnormal, kept (no flush to zero).
  EXPECT_EQ(fp8::decode_f32(0x01, std::ldexp(1.0f, -140)), 0x00000001u);
  // 2^-9 * 2^-141 = 2^-150: a tie between 0 and 2^-149, to even (0).
  EXPECT_EQ(fp8::decode_f32(0x01, std::ldexp(1.0f, -141)), 0x00000000u);
  EXPECT_EQ(fp8::decode_f32(0x81, std::ldexp(1.0f, -141)), 0x80000000u);
  // 3 * 2^-9 * 2^-141 = 1.5 * 2^-149: rounds to 2^-148 (even).
  EXPECT_EQ(fp8::decode_f32(0x03, std::ldexp(1.0f, -141)), 0x00000002u);
  // 448 * the largest float overflows to infinity; 0 * infinity is NaN.
  EXPECT_EQ(fp8::decode_f32(0x7E, from_bits(0x7F7FFFFFu)), 0x7F800000u);
  EXPECT_EQ(fp8::decode_f32(0xFE, from_bits(0x7F7FFFFFu)), 0xFF800000u);
  EXPECT_EQ(fp8::decode_f32(0x00, from_bits(0x7F800000u)), fp8::f32_nan);
  // -0 * 1 = -0; 0 * -1 = -0; -0 * -0 = +0.
  EXPECT_EQ(fp8::decode_f32(0x80, 1.0f), 0x80000000u);
  EXPECT_EQ(fp8::decode_f32(0x00, -1.0f), 0x80000000u);
  EXPECT_EQ(fp8::decode_f32(0x80, -0.0f), 0x00000000u);
}

TEST(Fp8Core, EveryNanIsTheOneQuietNan) {
  for (const unsigned code : {0x7Fu, 0xFFu}) {
    EXPECT_EQ(fp8::decode_f32(code, 1.0f), fp8::f32_nan);
    EXPECT_EQ(fp8::decode_bf16(code, 1.0f), fp8::bf16_nan);
    EXPECT_EQ(fp8::decode_bf16(code, 0.0f), fp8::bf16_nan);
  }
  for (const std::uint32_t s : {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFFFFFFFFu}) {
    EXPECT_EQ(fp8::decode_f32(0x38, from_bits(s)), fp8::f32_nan) << std::hex << s;
    EXPECT_EQ(fp8::decode_bf16(0xB8, from_bits(s)), fp8::bf16_nan) << std::hex << s;
  }
  EXPECT_EQ(fp8::decode_bf16(0x80, -std::numeric_limits<float>::infinity()), fp8::bf16_nan);
}

// The BF16 value nearest to F32 `b`, ties to even, chosen by comparing distances in double; the
// value past the largest finite BF16 is 2^128 (it rounds to infinity).
std::uint16_t nearest_bf16(std::uint32_t b) {
  const auto value = [](std::uint32_t h) {
    if ((h & 0x7F80u) == 0x7F80u)
      return std::copysign(std::ldexp(1.0, 128), h & 0x8000u ? -1.0 : 1.0);
    std::uint32_t w = h << 16;
    return static_cast<double>(from_bits(w));
  };
  const std::uint32_t low = b >> 16;
  const std::uint32_t high = low + 1;
  const double x = from_bits(b);
  const double d_low = std::fabs(x - value(low));
  const double d_high = std::fabs(value(high) - x);
  if (d_low < d_high) return static_cast<std::uint16_t>(low);
  if (d_high < d_low) return static_cast<std::uint16_t>(high);
  return static_cast<std::uint16_t>((low & 1u) ? high : low);
}

TEST(Fp8Core, Bf16RoundsToNearestEven) {
  std::mt19937 rng(5);
  int failures = 0;
  for (int i = 0; i < 1000000; ++i) {
    std::uint32_t b = rng();
    if (i % 4 == 0) b = (b & 0xFFFF0000u) | 0x8000u;  // exact ties
    if ((b & 0x7F800000u) == 0x7F800000u) continue;   // inf and NaN: below
    const std::uint16_t got = fp8::bf16_of_f32_bits(b);
    const std::uint16_t want = nearest_bf16(b);
    if (got != want && ++failures <= 10)
      ADD_FAILURE() << std::hex << b << ": " << got << " want " << want;
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(fp8::bf16_of_f32_bits(0x3F808000u), 0x3F80);  // tie, to even
  EXPECT_EQ(fp8::bf16_of_f32_bits(0x3F818000u), 0x3F82);  // tie, to even
  EXPECT_EQ(fp8::bf16_of_f32_bits(0x7F7FFFFFu), 0x7F80);  // overflows to infinity
  EXPECT_EQ(fp8::bf16_of_f32_bits(0x00008000u), 0x0000);  // subnormal tie, to even
  EXPECT_EQ(fp8::bf16_of_f32_bits(0x00018000u), 0x0002);
  EXPECT_EQ(fp8::bf16_of_f32_bits(0x7F800000u), 0x7F80);
  EXPECT_EQ(fp8::bf16_of_f32_bits(0xFF800000u), 0xFF80);
  EXPECT_EQ(fp8::bf16_of_f32_bits(0x7F800001u), 0x7FC0);
  EXPECT_EQ(fp8::bf16_of_f32_bits(0xFFC00000u), 0x7FC0);
}

TEST(Fp8Core, Bf16IsTheF32ProductRounded) {
  for (const std::uint32_t s : edge_scale_bits())
    for (unsigned code = 0; code < 256; ++code)
      ASSERT_EQ(fp8::decode_bf16(code, from_bits(s)),
                fp8::bf16_of_f32_bits(fp8::decode_f32(code, from_bits(s))));
}

TEST(Fp8Geometry, CeilGridOfRealShapes) {
  const fp8::block_geometry expert{1, 7168, 2048, 128, 128};
  EXPECT_EQ(expert.scale_rows(), 56u);
  EXPECT_EQ(expert.scale_cols(), 16u);
  EXPECT_EQ(expert.scales(), 896u);
  EXPECT_EQ(expert.scale_bytes(), 3584u);
  EXPECT_EQ(expert.code_bytes(), 7168u * 2048u);
  EXPECT_EQ(expert.output(2), 7168u * 2048u * 2u);
  const fp8::block_geometry kv_a{1, 576, 7168, 128, 128};  // kv_a_proj_with_mqa: 512 + 64 rows
  EXPECT_EQ(kv_a.scale_rows(), 5u);
  EXPECT_EQ(kv_a.scale_index(0, 575, 7167), 5u * 56u - 1u);
  const fp8::block_geometry partial{1, 160, 256, 128, 128};
  EXPECT_EQ(partial.scale_rows(), 2u);
  EXPECT_EQ(partial.scale_index(0, 127, 0), 0u);
  EXPECT_EQ(partial.scale_index(0, 128, 0), 2u);  // the 32-row edge block
  const fp8::block_geometry stacked{3, 10, 20, 4, 8};
  EXPECT_EQ(stacked.scale_rows(), 3u);
  EXPECT_EQ(stacked.scale_cols(), 3u);
  EXPECT_EQ(stacked.scale_index(2, 9, 19), 2u * 9u + 8u);
  EXPECT_EQ(stacked.total_rows(), 30u);
  const auto single = fp8::block_geometry::per_tensor(160, 7);
  EXPECT_EQ(single.scales(), 1u);
  EXPECT_EQ(single.scale_index(0, 159, 6), 0u);
  EXPECT_TRUE(single.valid());
  EXPECT_FALSE((fp8::block_geometry{1, 4, 4, 0, 128}.valid()));
}

TEST(Fp8Core, ScalesAreReadAtAnyAlignment) {
  std::vector<std::uint8_t> bytes(16, 0);
  const std::uint32_t b = 0x3A83126Fu;
  std::memcpy(bytes.data() + 3, &b, 4);
  EXPECT_EQ(bits(fp8::scale_at(bytes.data() + 3, 0)), b);
}

}  // namespace
