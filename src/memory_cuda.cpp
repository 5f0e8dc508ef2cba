#include "src/memory_cuda.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/arith.hpp"
#include "kernels/error.hpp"
#include "platform/binding.hpp"

namespace umload {

namespace detail {

void cuda_try_alloc(cudaError_t status, const char* call, std::size_t bytes,
                    const std::string& what, const char* file, int line) {
  if (status == cudaSuccess) return;
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    int device = -1;
    std::size_t free_bytes = 0, total_bytes = 0;
    const bool known = cudaGetDevice(&device) == cudaSuccess &&
                       cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
    (void)cudaGetLastError();
    throw budget_error(std::string(call) + " of " + std::to_string(bytes) + " bytes for " + what +
                       " failed: out of memory" +
                       (known ? " (device " + std::to_string(device) + ": " +
                                    std::to_string(free_bytes) + " of " +
                                    std::to_string(total_bytes) + " bytes free)"
                              : std::string()));
  }
  cuda_check(status, call, file, line);
}

}  // namespace detail

namespace {

constexpr std::size_t page_bytes = 4096;

}  // namespace

cudaMemLocation host_location(int numa_node) {
  cudaMemLocation where{};
  where.type = numa_node >= 0 ? cudaMemLocationTypeHostNuma : cudaMemLocationTypeHost;
  where.id = std::max(numa_node, 0);
  return where;
}

cudaMemLocation device_location(int ordinal) {
  cudaMemLocation where{};
  where.type = cudaMemLocationTypeDevice;
  where.id = ordinal;
  return where;
}

std::string to_string(const cudaMemLocation& where) {
  switch (where.type) {
    case cudaMemLocationTypeDevice: return "cuda:" + std::to_string(where.id);
    case cudaMemLocationTypeHostNuma: return "host-numa:" + std::to_string(where.id);
    default: return "host";
  }
}

bool refused_hint(cudaError_t status) {
  return status == cudaErrorInvalidValue || status == cudaErrorInvalidDevice ||
         status == cudaErrorNotSupported;
}

hinted hint_with_fallback(std::string_view what, const std::vector<cudaMemLocation>& locations,
                          const std::function<cudaError_t(const cudaMemLocation&)>& give) {
  std::string refusals;  // "host-numa:1 refused: cudaErrorInvalidValue; ..."
  hinted out;
  for (const cudaMemLocation& where : locations) {
    const cudaError_t status = give(where);
    if (status == cudaSuccess) {
      out.taken = true;
      out.fell_back = !refusals.empty();
      out.done = std::string(what) + " " + to_string(where) +
                 (refusals.empty() ? std::string() : " (fallback: " + refusals + ")");
      return out;
    }
    if (!refused_hint(status))
      detail::cuda_check(status, std::string(what).c_str(), __FILE__, __LINE__);
    if (!refusals.empty()) refusals += "; ";
    refusals += to_string(where) + " refused: " + cudaGetErrorName(status);
  }
  out.fell_back = true;
  out.done = "fallback: " + std::string(what) + " skipped (" + refusals + ")";
  return out;
}

std::vector<cudaMemLocation> host_locations(int numa_node) {
  if (numa_node < 0) return {host_location(-1)};
  return {host_location(numa_node), host_location(-1)};
}

int device_attribute(int ordinal, cudaDeviceAttr what) {
  int value = 0;
  UMLOAD_CUDA_CHECK(cudaDeviceGetAttribute(&value, what, ordinal));
  return value;
}

staging_resource::staging_resource(const char* kind, int numa_node)
    : kind_(kind), numa_node_(numa_node) {
  if (numa_node_ >= 0 && !platform::has_numa_node(numa_node_))
    throw usage_error("staging NUMA node " + std::to_string(numa_node_) +
                      " does not exist on this machine");
}

void staging_resource::booked(std::size_t length, const std::string& binding) {
  std::lock_guard lock(mutex_);
  largest_ = std::max(largest_, length);
  if (!binding.empty()) binding_ = binding;
}

std::size_t staging_resource::largest_slot() const {
  std::lock_guard lock(mutex_);
  return largest_;
}

std::string staging_resource::describe() const {
  std::lock_guard lock(mutex_);
  return kind_ + (binding_.empty() ? std::string() : ", NUMA " + binding_);
}

pinned_memory_resource::pinned_memory_resource(int numa_node, bool can_register)
    : staging_resource("pinned", numa_node), can_register_(can_register) {}

pinned_memory_resource::~pinned_memory_resource() {
  for (const auto& [p, s] : slots_) release(const_cast<void*>(p), s);
}

// Bound before pinning: pages land on the GPU-local node when first touched, and pinned pages do
// not move afterwards.
void* pinned_memory_resource::map_and_register(std::size_t length, std::string& binding) {
  void* p = host_.allocate(length);
  try {
    binding = bind_host_memory(p, length, numa_node());
    std::memset(p, 0, length);
    UMLOAD_CUDA_TRY_ALLOC(
        cudaHostRegister(p, length, cudaHostRegisterPortable | cudaHostRegisterMapped), length,
        "a staging slot");
  } catch (...) {
    host_.deallocate(p, length);
    throw;
  }
  return p;
}

void* pinned_memory_resource::allocate(std::size_t bytes) {
  const std::size_t length = round_up(std::max<std::size_t>(bytes, 1), page_bytes);
  slot s;
  s.bytes = length;
  void* p = nullptr;
  std::string binding;
  if (numa_node() >= 0 && can_register_) {
    p = map_and_register(length, binding);
    s.registered = true;
  } else {
    UMLOAD_CUDA_TRY_ALLOC(
        cudaHostAlloc(&p, length, cudaHostAllocPortable | cudaHostAllocMapped), length,
        "a pinned staging slot (lower UMLOAD_STAGING_SLOT_SIZE or UMLOAD_STAGING_SLOTS)");
  }
  const cudaError_t mapped = cudaHostGetDevicePointer(&s.device, p, 0);
  if (mapped != cudaSuccess) {
    release(p, s);
    detail::cuda_check(mapped, "cudaHostGetDevicePointer(staging slot)", __FILE__, __LINE__);
  }
  {
    std::lock_guard lock(mutex_);
    slots_.emplace(p, s);
  }
  booked(length, binding);
  return p;
}

void pinned_memory_resource::deallocate(void* p, std::size_t) noexcept {
  std::lock_guard lock(mutex_);
  const auto it = slots_.find(p);
  if (it == slots_.end()) return;
  release(p, it->second);
  slots_.erase(it);
}

void pinned_memory_resource::release(void* p, const slot& s) noexcept {
  if (s.registered) {
    UMLOAD_CUDA_BEST_EFFORT(cudaHostUnregister(p));
    host_.deallocate(p, s.bytes);
  } else {
    UMLOAD_CUDA_BEST_EFFORT(cudaFreeHost(p));
  }
}

const void* pinned_memory_resource::device_view(const void* p, std::size_t bytes) const {
  std::lock_guard lock(mutex_);
  auto it = slots_.upper_bound(p);
  if (it == slots_.begin()) return nullptr;
  --it;
  const auto* base = static_cast<const std::byte*>(it->first);
  const auto* at = static_cast<const std::byte*>(p);
  if (at < base || at + bytes > base + it->second.bytes) return nullptr;
  return static_cast<const std::byte*>(it->second.device) + (at - base);
}

void* pageable_staging_resource::allocate(std::size_t bytes) {
  void* p = host_.allocate(bytes);
  const std::size_t length = round_up(bytes, page_bytes);
  // Mapped, not yet touched: the pages land on the node when the reader first writes them.
  booked(length, p && numa_node() >= 0 ? bind_host_memory(p, length, numa_node()) : std::string());
  return p;
}

void* device_memory_resource::allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  UMLOAD_CUDA_TRY_ALLOC(cudaMalloc(&p, bytes), bytes,
                        "device memory on device " + std::to_string(ordinal_));
  return p;
}

void device_memory_resource::deallocate(void* p, std::size_t) noexcept {
  if (p) UMLOAD_CUDA_BEST_EFFORT(cudaFree(p));
}

void* managed_memory_resource::allocate_on(std::size_t bytes, int numa_node, advice advise,
                                           std::vector<std::string>* actions) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  if (pageable_) {
    p = host_.allocate_on(bytes, numa_node, actions);
  } else {
    UMLOAD_CUDA_TRY_ALLOC(cudaMallocManaged(&p, bytes, cudaMemAttachGlobal), bytes,
                          "a host_managed tensor");
  }
  const auto advising = [&](cudaMemoryAdvise advice) {
    return [p, bytes, advice](const cudaMemLocation& where) {
      const cudaError_t status = cudaMemAdvise(p, bytes, advice, where);
      if (status != cudaSuccess) (void)cudaGetLastError();
      return status;
    };
  };
  try {
    if (advise.prefer_host) {
      const hinted done = hint_with_fallback("advise preferred-location", host_locations(numa_node),
                                             advising(cudaMemAdviseSetPreferredLocation));
      if (actions) actions->push_back(done.done);
    }
    if (advise.accessed_by_device) {
      const hinted done = hint_with_fallback("advise accessed-by", {device_location(ordinal_)},
                                             advising(cudaMemAdviseSetAccessedBy));
      if (actions) actions->push_back(done.done);
    }
  } catch (...) {
    deallocate(p, bytes);
    throw;
  }
  return p;
}

void managed_memory_resource::deallocate(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  if (pageable_)
    host_.deallocate(p, bytes);
  else
    UMLOAD_CUDA_BEST_EFFORT(cudaFree(p));
}

}  // namespace umload
