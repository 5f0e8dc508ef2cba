// Byte sizes as people write them on a command line or in an environment variable ("256M",
// "80G", "1.5GiB", "4096") and as umload prints them. Shared by every option that takes a size
// (--device-memory, --host-memory, --memory-budget, UMLOAD_STAGING_SLOT_SIZE).
//
//   std::uint64_t b = umload::platform::parse_size("1.5GiB");   // 1610612736
//   std::string s = umload::platform::format_bytes(b);          // "1.50 GiB"
//
// Suffixes: none or B (bytes); K, M, G, T and KiB, MiB, GiB, TiB (powers of 1024); KB, MB, GB,
// TB (powers of 1000). Letters are case-insensitive. A decimal fraction is allowed as long as the
// result is a whole number of bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace umload::platform {

// Throws umload::usage_error naming the text when it is empty, malformed, has an unknown suffix,
// is not a whole number of bytes, or does not fit in 64 bits.
std::uint64_t parse_size(std::string_view text);

// "512 B", "64.00 MiB", "38.96 GiB": binary units, two decimals above 1 KiB.
std::string format_bytes(std::uint64_t bytes);

// "41,829,514,368": the exact count with thousands separators.
std::string format_count(std::uint64_t value);

}  // namespace umload::platform
