// The backend suite (tests/core/backend_suite.hpp) for the CUDA backend under both strategies:
// discrete (device scratch slots) and zero-copy (kernels read the pinned slot). Label gpu; every
// case skips without a usable device.
#include "tests/core/backend_suite.hpp"

namespace umload::test {
namespace {

std::unique_ptr<backend> cuda_with(bool zero_copy) {
  cuda_backend_options options;
  options.zero_copy_staging = zero_copy;
  return make_cuda_backend(options);
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, BackendSuite,
    ::testing::Values(backend_case{"cuda_discrete", cuda_available, [] { return cuda_with(false); },
                                   memory_kind::device},
                      backend_case{"cuda_zero_copy", cuda_available, [] { return cuda_with(true); },
                                   memory_kind::device}),
    case_name);

}  // namespace
}  // namespace umload::test
