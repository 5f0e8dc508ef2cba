// Text pieces the matrix reports share: escaping for XML and HTML, and short forms of digests,
// times and byte counts for tables.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace umload::cli::matrix {

// Safe inside XML/HTML text and double-quoted attributes: & < > " ' escaped, control
// characters (which XML 1.0 forbids even escaped) written as \xNN.
std::string escape_markup(std::string_view text);

// "sha256:0123456789ab" (the first 12 hex digits); "-" when empty.
std::string short_digest(const std::string& digest);

// "1.234" seconds with three decimals.
std::string seconds_text(double seconds);

}  // namespace umload::cli::matrix
