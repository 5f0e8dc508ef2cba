#include "src/output_memory_cuda.hpp"

#include <string>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "kernels/error.hpp"

namespace umload {

cuda_output_memory::cuda_output_memory(int ordinal)
    : ordinal_(ordinal),
      pageable_access_(device_attribute(ordinal, cudaDevAttrPageableMemoryAccess) != 0),
      device_raw_(ordinal),
      device_(device_raw_),
      managed_(ordinal, pageable_access_) {
  if (pageable_access_) return;
  if (device_attribute(ordinal, cudaDevAttrConcurrentManagedAccess) != 0) {
    std::size_t free_bytes = 0, total_bytes = 0;
    UMLOAD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    managed_guard_ = std::make_unique<limiting_adaptor>(
        managed_, free_bytes, "managed memory on device " + std::to_string(ordinal), &device_);
  } else {
    managed_refusal_ = "device " + std::to_string(ordinal) +
                       " has neither pageable nor concurrent managed memory access, so it cannot "
                       "be advised to read host memory in place; use a discrete plan "
                       "(--platform discrete)";
  }
}

placed_output cuda_output_memory::place(std::size_t bytes, const output_request& request) {
  placed_output placed;
  if (bytes == 0) return placed;
  switch (request.where) {
    case memory_kind::device: placed.data = static_cast<std::byte*>(device_.allocate(bytes)); break;
    case memory_kind::host:
      placed.data =
          static_cast<std::byte*>(host_.allocate_on(bytes, request.numa_node, &placed.actions));
      break;
    case memory_kind::host_managed:
      placed.data = place_managed(bytes, request, placed.actions);
      break;
  }
  return placed;
}

// Host memory the GPU reads in place, bound and advised as the plan says.
std::byte* cuda_output_memory::place_managed(std::size_t bytes, const output_request& request,
                                             std::vector<std::string>& actions) {
  if (!managed_refusal_.empty()) throw usage_error("host_managed output: " + managed_refusal_);
  const managed_memory_resource::advice advise{request.prefer_host, request.accessed_by_device};
  // Cumulative: managed and device bytes together stay within what the card had free.
  if (managed_guard_) managed_guard_->charge(bytes);
  try {
    return static_cast<std::byte*>(
        managed_.allocate_on(bytes, request.numa_node, advise, &actions));
  } catch (...) {
    if (managed_guard_) managed_guard_->discharge(bytes);
    throw;
  }
}

void cuda_output_memory::release(void* p, std::size_t bytes, memory_kind where) noexcept {
  if (p == nullptr) return;
  switch (where) {
    case memory_kind::device: device_.deallocate(p, bytes); return;
    case memory_kind::host: host_.deallocate(p, bytes); return;
    case memory_kind::host_managed:
      managed_.deallocate(p, bytes);
      if (managed_guard_) managed_guard_->discharge(bytes);
      return;
  }
}

std::string cuda_output_memory::fault_in(void* p, std::size_t bytes, const output_request& request,
                                         cudaStream_t stream) {
  if (p == nullptr || bytes == 0) return "nothing to fault in";
  switch (request.where) {
    case memory_kind::device: return "device memory: resident from cudaMalloc";
    case memory_kind::host: return populate_for_write(p, bytes);
    case memory_kind::host_managed: break;
  }
  // Toward its host node; where the driver refuses that node, toward the host (the same
  // fallback as its advice).
  return hint_with_fallback("prefetch", host_locations(request.numa_node),
                            [p, bytes, stream](const cudaMemLocation& where) {
                              const cudaError_t status =
                                  cudaMemPrefetchAsync(p, bytes, where, 0, stream);
                              if (status != cudaSuccess) (void)cudaGetLastError();
                              return status;
                            })
      .done;
}

void cuda_output_memory::require_reachable(const void* p, std::uint64_t bytes) const {
  if (pageable_access_ || p == nullptr) return;
  cudaPointerAttributes attributes{};
  UMLOAD_CUDA_CHECK(cudaPointerGetAttributes(&attributes, p));
  if (attributes.type == cudaMemoryTypeUnregistered)
    throw usage_error("cuda backend: a decode output of " + std::to_string(bytes) +
                      " bytes is in pageable host memory, which device " +
                      std::to_string(ordinal_) +
                      " cannot write (no pageable memory access); place it in device or "
                      "host_managed memory, or decode on the CPU");
}

}  // namespace umload
