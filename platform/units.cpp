#include "platform/units.hpp"

#include <array>
#include <cctype>
#include <cstdio>
#include <limits>

#include "kernels/error.hpp"

namespace umload::platform {
namespace {

[[noreturn]] void bad_size(std::string_view text, std::string_view why) {
  throw usage_error("invalid size '" + std::string(text) + "': " + std::string(why) +
                    " (examples: 4096, 256M, 80G, 1.5GiB, 96GB)");
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Multiplier for a suffix; 0 when the suffix is unknown.
std::uint64_t suffix_multiplier(std::string_view suffix) {
  struct unit {
    std::string_view name;
    std::uint64_t factor;
  };
  static constexpr std::uint64_t ki = 1024, ko = 1000;
  static constexpr std::array<unit, 14> units{{
      {"", 1},
      {"b", 1},
      {"k", ki},
      {"kib", ki},
      {"kb", ko},
      {"m", ki * ki},
      {"mib", ki * ki},
      {"mb", ko * ko},
      {"g", ki * ki * ki},
      {"gib", ki * ki * ki},
      {"gb", ko * ko * ko},
      {"t", ki * ki * ki * ki},
      {"tib", ki * ki * ki * ki},
      {"tb", ko * ko * ko * ko},
  }};
  const std::string key = lower(suffix);
  for (const auto& u : units) {
    if (u.name == key) return u.factor;
  }
  return 0;
}

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

}  // namespace

std::uint64_t parse_size(std::string_view text) {
  std::size_t pos = 0;
  auto skip_space = [&] {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
  };
  skip_space();
  const std::size_t int_begin = pos;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) ++pos;
  const std::string_view int_digits = text.substr(int_begin, pos - int_begin);
  std::string_view frac_digits;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const std::size_t frac_begin = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) ++pos;
    frac_digits = text.substr(frac_begin, pos - frac_begin);
  }
  if (int_digits.empty() && frac_digits.empty()) bad_size(text, "no number");
  skip_space();
  std::size_t suffix_end = text.size();
  while (suffix_end > pos && std::isspace(static_cast<unsigned char>(text[suffix_end - 1]))) {
    --suffix_end;
  }
  const std::string_view suffix = text.substr(pos, suffix_end - pos);
  const std::uint64_t factor = suffix_multiplier(suffix);
  if (factor == 0) bad_size(text, "unknown unit '" + std::string(suffix) + "'");
  if (frac_digits.size() > 18) bad_size(text, "too many decimals");

  // value = (int_digits . frac_digits) * factor, exactly: scale everything by 10^frac_len.
  std::uint64_t scale = 1;
  for (std::size_t i = 0; i < frac_digits.size(); ++i) scale *= 10;
  std::uint64_t whole = 0;
  for (char c : int_digits) {
    if (mul_overflows(whole, 10, whole) || __builtin_add_overflow(whole, c - '0', &whole)) {
      bad_size(text, "too large for 64 bits");
    }
  }
  std::uint64_t frac = 0;
  for (char c : frac_digits) frac = frac * 10 + static_cast<std::uint64_t>(c - '0');

  std::uint64_t whole_bytes = 0;
  if (mul_overflows(whole, factor, whole_bytes)) bad_size(text, "too large for 64 bits");
  // frac * factor may exceed 64 bits for long fractions of TiB; use 128-bit arithmetic.
  const unsigned __int128 frac_scaled = static_cast<unsigned __int128>(frac) * factor;
  if (frac_scaled % scale != 0) bad_size(text, "not a whole number of bytes");
  const unsigned __int128 frac_bytes = frac_scaled / scale;
  const unsigned __int128 total = static_cast<unsigned __int128>(whole_bytes) + frac_bytes;
  if (total > std::numeric_limits<std::uint64_t>::max()) bad_size(text, "too large for 64 bits");
  return static_cast<std::uint64_t>(total);
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char*, 6> names{"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < names.size()) {
    value /= 1024.0;
    ++unit;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f %s", value, names[unit]);
  return buf;
}

std::string format_count(std::uint64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  const std::size_t lead = digits.size() % 3;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && i >= lead && (i - lead) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

}  // namespace umload::platform
