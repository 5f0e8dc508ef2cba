// The shared MXFP4 core (kernels/mxfp4.hpp): the reference table of decoded BF16 bits from
// docs/reference, and all 256 scale bytes x 16 codes against an independent exact formula.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/mxfp4.hpp"

namespace {

using umload::mxfp4::decode_bf16;
using umload::mxfp4::decode_f32;

TEST(Mxfp4Reference, Scale127AllCodes) {
  const std::uint16_t expected[16] = {0x0000, 0x3F00, 0x3F80, 0x3FC0, 0x4000, 0x4040,
                                      0x4080, 0x40C0, 0x8000, 0xBF00, 0xBF80, 0xBFC0,
                                      0xC000, 0xC040, 0xC080, 0xC0C0};
  for (unsigned code = 0; code < 16; ++code)
    EXPECT_EQ(decode_bf16(code, 127), expected[code]) << "code " << code;
}

TEST(Mxfp4Reference, Scale0Subnormals) {
  const std::uint16_t expected[8] = {0x0000, 0x0020, 0x0040, 0x0060,
                                     0x0080, 0x00C0, 0x0100, 0x0140};
  for (unsigned code = 0; code < 8; ++code) {
    EXPECT_EQ(decode_bf16(code, 0), expected[code]) << "code " << code;
    EXPECT_EQ(decode_bf16(code + 8, 0), expected[code] | 0x8000) << "code " << code + 8;
  }
}

TEST(Mxfp4Reference, Scale254Overflow) {
  EXPECT_EQ(decode_bf16(1, 254), 0x7E80);
  EXPECT_EQ(decode_bf16(2, 254), 0x7F00);
  EXPECT_EQ(decode_bf16(3, 254), 0x7F40);
  for (unsigned code = 4; code < 8; ++code) {
    EXPECT_EQ(decode_bf16(code, 254), 0x7F80) << "code " << code;
    EXPECT_EQ(decode_bf16(code + 8, 254), 0xFF80) << "code " << code + 8;
  }
}

TEST(Mxfp4Reference, NegativeZeroKeepsSign) {
  for (unsigned scale = 0; scale < 255; ++scale) EXPECT_EQ(decode_bf16(8, scale), 0x8000);
}

TEST(Mxfp4Reference, NanScale) {
  for (unsigned code = 0; code < 16; ++code) {
    EXPECT_EQ(decode_bf16(code, 255), 0x7FC0) << "code " << code;
    EXPECT_EQ(decode_f32(code, 255), 0x7FC00000u) << "code " << code;
  }
}

TEST(Mxfp4Reference, CodeOrderLowNibbleFirst) {
  const std::uint8_t block[16] = {0x12};
  EXPECT_EQ(umload::mxfp4::code_at(block, 0), 2u);
  EXPECT_EQ(umload::mxfp4::code_at(block, 1), 1u);
  EXPECT_EQ(decode_bf16(umload::mxfp4::code_at(block, 0), 127), 0x3F80);  // 1.0
  EXPECT_EQ(decode_bf16(umload::mxfp4::code_at(block, 1), 127), 0x3F00);  // 0.5
}

// FP4[code] * 2^(scale - 127) computed in double (exact: 2 significant bits, exponent in range),
// narrowed to float (exact, or +-inf when the value is >= 2^128), and cut to BF16, checking that
// nothing non-zero is cut.
std::uint16_t exact_bf16(unsigned code, unsigned scale) {
  static const double fp4[16] = {0.0,  0.5,  1.0,  1.5,  2.0,  3.0,  4.0,  6.0,
                                 -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0};
  const double value = std::ldexp(fp4[code], static_cast<int>(scale) - 127);
  const float narrowed = std::fabs(value) >= std::ldexp(1.0, 128)
                             ? std::copysign(std::numeric_limits<float>::infinity(), value)
                             : static_cast<float>(value);
  EXPECT_TRUE(static_cast<double>(narrowed) == value || std::isinf(narrowed));
  const auto bits = std::bit_cast<std::uint32_t>(narrowed);
  EXPECT_EQ(bits & 0xFFFFu, 0u) << "not exact in BF16: code " << code << " scale " << scale;
  return static_cast<std::uint16_t>(bits >> 16);
}

TEST(Mxfp4Exact, AllScalesAllCodes) {
  int infinities = 0;
  for (unsigned scale = 0; scale < 255; ++scale)
    for (unsigned code = 0; code < 16; ++code) {
      const std::uint16_t expected = exact_bf16(code, scale);
      ASSERT_EQ(decode_bf16(code, scale), expected) << "code " << code << " scale " << scale;
      ASSERT_EQ(decode_f32(code, scale), std::uint32_t{expected} << 16);
      if ((expected & 0x7FFF) == 0x7F80) ++infinities;
    }
  // Scale 254: |value| >= 2 (codes 4..7, 12..15); scale 253: |value| >= 4 (codes 6, 7, 14, 15).
  EXPECT_EQ(infinities, 8 + 4);
}

TEST(Mxfp4Exact, TableMatchesCore) {
  static umload::mxfp4::decode_table table;
  umload::mxfp4::fill_decode_table(table);
  for (unsigned scale = 0; scale < 256; ++scale)
    for (unsigned code = 0; code < 16; ++code)
      ASSERT_EQ(table.bf16[scale][code], decode_bf16(code, scale));
}

}  // namespace
