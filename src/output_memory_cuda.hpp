// Where the CUDA backend's outputs go, one resource per memory kind (src/memory_cuda.hpp):
// device memory, tracked for live and peak bytes (the backend's scratch slots and the summaries'
// scratch come from it too); host memory bound to its NUMA node before first touch; and
// host_managed memory the GPU reads in place, advised as the plan orders and, where the system
// does not report its use, held with device memory to what the card had free. Calls run on the
// caller's current device: the backend makes its GPU current first.
//
//   cuda_output_memory outputs(0);
//   placed_output placed = outputs.place(bytes, {memory_kind::host_managed, 1});
//   placed.actions;  // {"numa-bind bound: NUMA node 1", "advise preferred-location host-numa:1",
//                    //  "advise accessed-by cuda:0"}
//   outputs.release(placed.data, bytes, memory_kind::host_managed);
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "src/backend.hpp"
#include "src/memory.hpp"
#include "src/memory_cuda.hpp"

namespace umload {

class cuda_output_memory {
 public:
  // Asks device `ordinal` what it can do (pageable and concurrent managed memory access) and,
  // where managed memory needs the guard, how much it has free. The device must be current.
  explicit cuda_output_memory(int ordinal);
  cuda_output_memory(const cuda_output_memory&) = delete;
  cuda_output_memory& operator=(const cuda_output_memory&) = delete;

  // Memory for one output, placed as `request` orders, and what was done. Throws budget_error
  // when the memory cannot be had, usage_error when this device cannot have host_managed memory.
  placed_output place(std::size_t bytes, const output_request& request);
  // The caller makes sure no work in flight still writes [p, p + bytes).
  void release(void* p, std::size_t bytes, memory_kind where) noexcept;

  // Faults an output in where it was placed: host memory populated for writing, host_managed
  // memory prefetched to its host node on `stream`, device memory left as it is (resident from
  // cudaMalloc). Returns what was done.
  std::string fault_in(void* p, std::size_t bytes, const output_request& request,
                       cudaStream_t stream);

  // A decode writes from the GPU: throws usage_error when [p, p + bytes) is pageable host memory
  // and the device has no pageable memory access (ATS, HMM) to write it.
  void require_reachable(const void* p, std::uint64_t bytes) const;

  bool pageable_access() const { return pageable_access_; }
  // Every cudaMalloc of the backend: outputs, scratch slots and summaries' scratch.
  tracking_adaptor& device() { return device_; }
  std::uint64_t peak_device_bytes() const { return device_.peak_bytes(); }
  std::uint64_t live_device_bytes() const { return device_.live_bytes(); }

 private:
  std::byte* place_managed(std::size_t bytes, const output_request& request,
                           std::vector<std::string>& actions);

  int ordinal_;
  bool pageable_access_;
  device_memory_resource device_raw_;
  tracking_adaptor device_;
  host_memory_resource host_;
  managed_memory_resource managed_;
  // Managed memory without pageable access: cudaMallocManaged does not lower cudaMemGetInfo's
  // free count, so managed and device bytes together are held to what the card had free.
  std::unique_ptr<limiting_adaptor> managed_guard_;
  std::string managed_refusal_;  // why host_managed cannot be had on this device, if it cannot
};

}  // namespace umload
