#include "src/cli/matrix_markup.hpp"

#include <cstdio>

#include "src/cli/report.hpp"

namespace umload::cli::matrix {

std::string escape_markup(std::string_view text) {
  std::string out;
  for (const char c : one_line(text)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string short_digest(const std::string& digest) {
  if (digest.empty()) return "-";
  constexpr std::size_t prefix = 7 + 12;  // "sha256:" and 12 hex digits
  return digest.size() > prefix ? digest.substr(0, prefix) : digest;
}

std::string seconds_text(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", seconds);
  return buf;
}

}  // namespace umload::cli::matrix
