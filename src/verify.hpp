// Independent check of a conversion: every output tensor of DST is compared with SRC, dense ones
// byte for byte and expert weights against the scalar oracle (one expert at a time, so memory
// stays small). Used by `umload demo` and the tests.
#pragma once

#include <cstddef>
#include <filesystem>

#include "kernels/decode_job.hpp"

namespace umload {

struct verify_report {
  std::size_t dense_tensors = 0;
  std::size_t decoded_tensors = 0;
  std::uint64_t values_checked = 0;
};

// Throws mismatch_error naming the first tensor and element that differ.
verify_report verify_conversion(const std::filesystem::path& source,
                                const std::filesystem::path& destination, layout order,
                                output_dtype dtype);

}  // namespace umload
