// The CUDA backend's entry points in a build without CUDA: every call says so.
#include "kernels/error.hpp"
#include "src/backend.hpp"

namespace umload {

std::unique_ptr<backend> make_cuda_backend(const cuda_backend_options&) {
  throw cuda_error("this umload was built without CUDA (configure with -DUMLOAD_ENABLE_CUDA=ON)");
}

bool cuda_available() { return false; }
int cuda_device_count() { return 0; }

namespace detail {
void inject_decode_failures(int) {}
bool take_injected_decode_failure() { return false; }
int busy_scratch_slots(const backend&) { return -1; }
}  // namespace detail

}  // namespace umload
