// The one checking macro for CUDA runtime calls, and the launch check that follows every kernel.
//
//   UMLOAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream));
//   UMLOAD_CUDA_CLEAR_ERROR();
//   my_kernel<<<grid, block, 0, stream>>>(...);
//   UMLOAD_CUDA_CHECK_LAUNCH();
//
// A failure throws umload::cuda_error naming the call as written, file:line, and the error's name
// and description. It lives in kernels/ (the lowest layer) because the kernels' launch code needs
// it as much as the backend in src/ does. Only .cu files and host code that links CUDA::cudart
// include it: it pulls in cuda_runtime_api.h.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "kernels/error.hpp"

namespace umload::detail {

inline std::string cuda_error_text(cudaError_t status, const char* call, const char* file,
                                   int line) {
  return std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
         cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
}

// On failure the runtime's last-error state is reset first (cudaGetLastError), so that a caller
// who catches the error and goes on does not see it again at the next launch check.
inline void cuda_check(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();
  throw cuda_error(cuda_error_text(status, call, file, line));
}

}  // namespace umload::detail

#define UMLOAD_CUDA_CHECK(call) ::umload::detail::cuda_check((call), #call, __FILE__, __LINE__)

// Before every kernel launch: clears an earlier error that calls whose status cannot be reported
// (release paths, destructors) may have left, so the launch check sees only its own launch.
#define UMLOAD_CUDA_CLEAR_ERROR() ((void)cudaGetLastError())

// After every kernel launch: a bad configuration or a missing kernel image shows up here.
#define UMLOAD_CUDA_CHECK_LAUNCH() \
  ::umload::detail::cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
