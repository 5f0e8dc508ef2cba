#include "src/schemes/scheme.hpp"

#include <array>

#include "kernels/error.hpp"

namespace umload::schemes {

// A new scheme is one more entry here (deepseek-style block FP8: "fp8").
std::span<const scheme* const> known_schemes() {
  static const std::array<const scheme*, 1> all{&mxfp4_scheme()};
  return all;
}

std::string unknown_scheme_message(std::string_view quant_method, std::string_view config_file) {
  std::string known;
  for (const scheme* s : known_schemes())
    known += (known.empty() ? "'" : ", '") + std::string(s->quant_method()) + "'";
  return std::string(config_file) + ": quantization_config.quant_method '" +
         std::string(quant_method) + "' is not a scheme umload knows (known: " + known + ")";
}

const scheme& scheme_named(std::string_view quant_method, std::string_view config_file) {
  for (const scheme* s : known_schemes())
    if (s->quant_method() == quant_method) return *s;
  throw format_error(unknown_scheme_message(quant_method, config_file));
}

}  // namespace umload::schemes
