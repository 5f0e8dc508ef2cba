// The CUDA kinds of memory, one small resource each (rmm's pinned_host_memory_resource and
// cuda_memory_resource are the model): staging (pinned, or pageable where a plan does not pin),
// device memory, and host memory the GPU reads in place (host_managed). Peak bytes and ceilings
// are the adaptors of src/memory.hpp; src/output_memory_cuda.hpp places outputs with them.
// Every call runs on the caller's current device; the backend makes its GPU current first.
//
//   pinned_memory_resource staging(numa_node, can_register);   // mapped, NUMA-bound
//   device_memory_resource device(ordinal);                     // cudaMalloc
//   void* p = staging.allocate(64 << 20);
//   const void* seen_by_gpu = staging.device_view(p, bytes);
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "src/memory.hpp"

namespace umload::detail {

// cudaErrorMemoryAllocation as a budget_error naming `bytes` and `what`; any other failure as
// cuda_error (UMLOAD_CUDA_CHECK).
void cuda_try_alloc(cudaError_t status, const char* call, std::size_t bytes,
                    const std::string& what, const char* file, int line);

}  // namespace umload::detail

// An allocation call: out of memory is a budget error, anything else a CUDA error.
#define UMLOAD_CUDA_TRY_ALLOC(call, bytes, what) \
  ::umload::detail::cuda_try_alloc((call), #call, (bytes), (what), __FILE__, __LINE__)

// A release path, which cannot report: the call's error is cleared so the next check does not
// see it.
#define UMLOAD_CUDA_BEST_EFFORT(call)                    \
  do {                                                   \
    if ((call) != cudaSuccess) (void)cudaGetLastError(); \
  } while (0)

namespace umload {

// Memory for staging slots, as the CUDA backend sees it: slots, the device's view of them, and
// how they were placed for the report. The largest slot sizes the device scratch slots.
class staging_resource : public memory_resource {
 public:
  // The device's address of [p, p + bytes) inside one slot; nullptr when the device has no
  // mapping of it (pageable slots: only a device with pageable memory access reads them).
  virtual const void* device_view(const void* p, std::size_t bytes) const = 0;
  std::size_t largest_slot() const;
  // "pinned", "pinned, NUMA bound: NUMA node 1", "pageable", "pageable, NUMA not-here: ..."
  std::string describe() const;

 protected:
  // Throws usage_error when `numa_node` is not a node of this machine.
  staging_resource(const char* kind, int numa_node);
  // Books a slot of `length` bytes and, when not empty, the binding it got.
  void booked(std::size_t length, const std::string& binding);
  int numa_node() const { return numa_node_; }

 private:
  const char* kind_;
  int numa_node_;
  mutable std::mutex mutex_;
  std::size_t largest_ = 0;
  std::string binding_;
};

// Pinned, device-mapped host memory for staging slots. With a NUMA node (the GPU-local one) and
// a device that can register host memory, slots are anonymous mappings bound to that node before
// first touch and then registered (pinned pages do not move); otherwise cudaHostAlloc.
class pinned_memory_resource final : public staging_resource {
 public:
  pinned_memory_resource(int numa_node, bool can_register);
  ~pinned_memory_resource() override;
  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) noexcept override;
  const void* device_view(const void* p, std::size_t bytes) const override;

 private:
  struct slot {
    std::size_t bytes = 0;
    void* device = nullptr;
    bool registered = false;
  };
  void* map_and_register(std::size_t length, std::string& binding);
  host_memory_resource host_;  // the slots' mappings, when they are bound and registered
  void release(void* p, const slot& s) noexcept;
  bool can_register_;
  mutable std::mutex mutex_;
  std::map<const void*, slot> slots_;
};

// Pageable staging slots (a plan that does not pin): anonymous mappings, bound to the NUMA node
// before first touch when one is given. Copies from them go through the driver's own pinned
// buffers; kernels read them in place only on a device with pageable memory access.
class pageable_staging_resource final : public staging_resource {
 public:
  explicit pageable_staging_resource(int numa_node) : staging_resource("pageable", numa_node) {}
  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) noexcept override { host_.deallocate(p, bytes); }
  const void* device_view(const void*, std::size_t) const override { return nullptr; }

 private:
  host_memory_resource host_;
};

// cudaMalloc on the current device.
class device_memory_resource final : public memory_resource {
 public:
  explicit device_memory_resource(int ordinal) : ordinal_(ordinal) {}
  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) noexcept override;

 private:
  int ordinal_;
};

// Host memory device `ordinal` reads in place, advised preferred location host (the host NUMA
// node when known, cudaMemLocationTypeHostNuma; CUDA ignores the id of cudaMemLocationTypeHost)
// and accessed by the device. With pageable memory access (ATS, HMM) it is an anonymous mapping
// bound to that node before first touch; otherwise cudaMallocManaged. Advice the driver refuses
// falls back as hint_with_fallback says, and the actions say so.
class managed_memory_resource final : public memory_resource {
 public:
  managed_memory_resource(int ordinal, bool pageable_access)
      : ordinal_(ordinal), pageable_(pageable_access) {}
  struct advice {
    bool prefer_host = true;         // cudaMemAdviseSetPreferredLocation(host-numa:node | host)
    bool accessed_by_device = true;  // cudaMemAdviseSetAccessedBy(device)
  };
  void* allocate(std::size_t bytes) override { return allocate_on(bytes, -1, {}, nullptr); }
  void deallocate(void* p, std::size_t bytes) noexcept override;
  // `actions` receives what was done: the bind, and each cudaMemAdvise.
  void* allocate_on(std::size_t bytes, int numa_node, advice advise,
                    std::vector<std::string>* actions);
  bool pageable() const { return pageable_; }

 private:
  int ordinal_;
  bool pageable_;
  host_memory_resource host_;
};

// A hint given to the driver (cudaMemAdvise, cudaMemPrefetchAsync) at the locations a placement
// allows, in order, until the driver takes one. Advice changes no result, so a refusal is never a
// failed load: cudaMemLocationTypeHostNuma is refused by drivers and ranges that do not take it
// (system-allocated memory under HMM, a NUMA node this machine lacks), and the next location
// (the host) is tried; when every location is refused the hint is skipped. Either is said in
// `done` with the word "fallback", for the load report's actions. A refusal is
// cudaErrorInvalidValue, cudaErrorInvalidDevice or cudaErrorNotSupported; any other error (a
// sticky one from earlier work) is thrown as cuda_error. `give` makes the call, clearing the
// error it returns; it is the only place the runtime is called, so a test can refuse at will.
//
//   hint_with_fallback("advise preferred-location", host_locations(1), give).done
//   // "advise preferred-location host-numa:1", or where the driver refuses the node:
//   // "advise preferred-location host (fallback: host-numa:1 refused: cudaErrorInvalidValue)"
struct hinted {
  std::string done;
  bool fell_back = false;  // taken at a location after the first, or skipped
  bool taken = false;      // some location was taken
};
bool refused_hint(cudaError_t status);
hinted hint_with_fallback(std::string_view what, const std::vector<cudaMemLocation>& locations,
                          const std::function<cudaError_t(const cudaMemLocation&)>& give);
// The host locations a host_managed placement on `numa_node` may be advised or prefetched to:
// that node, then the host; the host alone without a node.
std::vector<cudaMemLocation> host_locations(int numa_node);

// cudaDeviceGetAttribute of device `ordinal` (UMLOAD_CUDA_CHECK on failure).
int device_attribute(int ordinal, cudaDeviceAttr what);

// Where a prefetch sends memory: host NUMA node `numa_node` (-1: the host), or device `ordinal`.
cudaMemLocation host_location(int numa_node);
cudaMemLocation device_location(int ordinal);
std::string to_string(const cudaMemLocation& where);  // "host-numa:1", "host", "cuda:0"

}  // namespace umload
