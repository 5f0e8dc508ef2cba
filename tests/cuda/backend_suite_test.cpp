// The backend suite (tests/core/backend_suite.hpp) for the CUDA backend under both strategies,
// discrete (device scratch slots) and zero-copy (kernels read the staging slot), with staging in
// pinned memory and, as a plan that does not pin orders, in pageable memory. Label gpu; every
// case skips without a usable device (and zero-copy from pageable staging without pageable
// memory access, which the backend refuses).
#include "tests/core/backend_suite.hpp"

#include <cuda_runtime.h>

namespace umload::test {
namespace {

std::unique_ptr<backend> cuda_with(bool zero_copy, bool pinned) {
  cuda_backend_options options;
  options.zero_copy_staging = zero_copy;
  options.pinned_staging = pinned;
  return make_cuda_backend(options);
}

bool pageable_access() {
  int pageable = 0;
  return cuda_available() &&
         cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, 0) == cudaSuccess &&
         pageable != 0;
}

INSTANTIATE_TEST_SUITE_P(
    Cuda, BackendSuite,
    ::testing::Values(backend_case{"cuda_discrete", cuda_available,
                                   [] { return cuda_with(false, true); }, memory_kind::device},
                      backend_case{"cuda_zero_copy", cuda_available,
                                   [] { return cuda_with(true, true); }, memory_kind::device},
                      backend_case{"cuda_discrete_pageable", cuda_available,
                                   [] { return cuda_with(false, false); }, memory_kind::device},
                      backend_case{"cuda_zero_copy_pageable", pageable_access,
                                   [] { return cuda_with(true, false); }, memory_kind::device}),
    case_name);

}  // namespace
}  // namespace umload::test
