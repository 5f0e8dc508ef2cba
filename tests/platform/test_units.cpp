#include <gtest/gtest.h>

#include "kernels/error.hpp"
#include "platform/units.hpp"

namespace up = umload::platform;

TEST(ParseSize, PlainBytes) {
  EXPECT_EQ(up::parse_size("4096"), 4096u);
  EXPECT_EQ(up::parse_size("0"), 0u);
  EXPECT_EQ(up::parse_size("17B"), 17u);
  EXPECT_EQ(up::parse_size(" 12 "), 12u);
}

TEST(ParseSize, BinarySuffixes) {
  EXPECT_EQ(up::parse_size("256M"), 256ull << 20);
  EXPECT_EQ(up::parse_size("80G"), 80ull << 30);
  EXPECT_EQ(up::parse_size("80g"), 80ull << 30);
  EXPECT_EQ(up::parse_size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(up::parse_size("2 TiB"), 2ull << 40);
  EXPECT_EQ(up::parse_size("4k"), 4096u);
  EXPECT_EQ(up::parse_size("0.5K"), 512u);
}

TEST(ParseSize, DecimalSuffixes) {
  EXPECT_EQ(up::parse_size("96GB"), 96'000'000'000u);
  EXPECT_EQ(up::parse_size("1.5kB"), 1500u);
  EXPECT_EQ(up::parse_size("2TB"), 2'000'000'000'000u);
}

TEST(ParseSize, RejectsMalformed) {
  for (const char* bad : {"", " ", "G", "abc", "12X", "-5", "1.2.3", "5 G B", "0.3K", "1e9",
                          "99999999999999999999", "20000000T"}) {
    EXPECT_THROW(up::parse_size(bad), umload::usage_error) << "'" << bad << "'";
  }
}

TEST(ParseSize, MessageNamesTheText) {
  try {
    up::parse_size("12Q");
    FAIL();
  } catch (const umload::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("12Q"), std::string::npos);
  }
}

TEST(FormatBytes, Units) {
  EXPECT_EQ(up::format_bytes(0), "0 B");
  EXPECT_EQ(up::format_bytes(1023), "1023 B");
  EXPECT_EQ(up::format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(up::format_bytes(64ull << 20), "64.00 MiB");
  EXPECT_EQ(up::format_bytes(41'829'514'368ull), "38.96 GiB");
}

TEST(FormatCount, Separators) {
  EXPECT_EQ(up::format_count(0), "0");
  EXPECT_EQ(up::format_count(999), "999");
  EXPECT_EQ(up::format_count(1000), "1,000");
  EXPECT_EQ(up::format_count(12345), "12,345");
  EXPECT_EQ(up::format_count(41'829'514'368ull), "41,829,514,368");
}
