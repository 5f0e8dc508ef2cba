// The live device_query: the only file in platform/ that calls the CUDA runtime. A build with
// CUDA must still run where there is no driver, no device or only the stub library; each of those
// answers present=false with the reason (kvikio's is_cuda_available does the same).
#include "platform/device.hpp"

#if UMLOAD_HAVE_CUDA
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>
#endif

namespace umload::platform {

#if UMLOAD_HAVE_CUDA
namespace {

std::string absence_from(cudaError_t rc) {
  switch (rc) {
    case cudaErrorInsufficientDriver:
      return "no CUDA driver: cudaGetDeviceCount returned cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "no CUDA device: cudaGetDeviceCount returned cudaErrorNoDevice";
    case cudaErrorStubLibrary: return "only the CUDA stub library is present: cudaErrorStubLibrary";
    default:
      return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(rc) + ": " +
             cudaGetErrorString(rc);
  }
}

int attribute(cudaDeviceAttr attr, int ordinal) {
  int value = -1;
  if (cudaDeviceGetAttribute(&value, attr, ordinal) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return value;
}

// The driver entry points this file calls, looked up once through the runtime's entry-point
// lookup: no link against libcuda, so a build still runs without a driver. Empty where the driver
// cannot be asked.
struct driver_entry_points {
  using device_get_fn = CUresult(CUDAAPI*)(CUdevice*, int);
  using retain_fn = CUresult(CUDAAPI*)(CUcontext*, CUdevice);
  using release_fn = CUresult(CUDAAPI*)(CUdevice);
  using push_fn = CUresult(CUDAAPI*)(CUcontext);
  using pop_fn = CUresult(CUDAAPI*)(CUcontext*);
  using mem_info_fn = CUresult(CUDAAPI*)(std::size_t*, std::size_t*);
  device_get_fn device_get = nullptr;
  retain_fn retain = nullptr;
  release_fn release = nullptr;
  push_fn push = nullptr;
  pop_fn pop = nullptr;
  mem_info_fn mem_info = nullptr;
  bool usable() const { return device_get && retain && release && push && pop && mem_info; }
};

const driver_entry_points& driver() {
  static const driver_entry_points found = [] {
    const auto entry = [](const char* name) -> void* {
      void* p = nullptr;
      cudaDriverEntryPointQueryResult result{};
      if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &result) !=
              cudaSuccess ||
          result != cudaDriverEntryPointSuccess) {
        cudaGetLastError();
        return nullptr;
      }
      return p;
    };
    driver_entry_points e;
    e.device_get = reinterpret_cast<driver_entry_points::device_get_fn>(entry("cuDeviceGet"));
    e.retain = reinterpret_cast<driver_entry_points::retain_fn>(entry("cuDevicePrimaryCtxRetain"));
    e.release =
        reinterpret_cast<driver_entry_points::release_fn>(entry("cuDevicePrimaryCtxRelease"));
    e.push = reinterpret_cast<driver_entry_points::push_fn>(entry("cuCtxPushCurrent"));
    e.pop = reinterpret_cast<driver_entry_points::pop_fn>(entry("cuCtxPopCurrent"));
    e.mem_info = reinterpret_cast<driver_entry_points::mem_info_fn>(entry("cuMemGetInfo"));
    return e;
  }();
  return found;
}

// The primary contexts the live query retained, one per device, held until a load lets go of
// them (release_held_cuda_contexts) or the process ends.
//
// Free memory can only be asked of a context. The CUDA driver resets (destroys) a primary context
// when its last reference is released ("The context is automatically reset once the last
// reference to it is released", cuDevicePrimaryCtxRelease in the CUDA Driver API reference). A
// retain, cuMemGetInfo, release in a process that has no context yet therefore makes a context
// and destroys it, and the backend's first runtime call (cudaSetDevice, cudaMalloc) makes it
// again: two context creations per process, each hundreds of milliseconds and the driver's share
// of device memory taken and given back. Held here, the context the runtime retains for the
// backend is the one already active: one context per process. Once the runtime works in it, it
// holds it ("Primary contexts will remain active until they are explicitly deinitialized using
// cudaDeviceReset()", CUDA Runtime API, Interactions with the CUDA Driver API), so letting go of
// this reference destroys nothing.
class held_contexts {
 public:
  // cuMemGetInfo of device `ordinal` in its primary context, retained the first time and pushed
  // and popped on this thread; under the lock, so that no release comes between. Empty when the
  // driver cannot be asked.
  std::optional<std::pair<std::uint64_t, std::uint64_t>> free_and_total(int ordinal) {
    std::lock_guard lock(mutex_);
    const CUcontext context = retained(ordinal);
    if (context == nullptr) return std::nullopt;
    const driver_entry_points& api = driver();
    std::optional<std::pair<std::uint64_t, std::uint64_t>> out;
    if (api.push(context) == CUDA_SUCCESS) {
      std::size_t free_bytes = 0, total_bytes = 0;
      if (api.mem_info(&free_bytes, &total_bytes) == CUDA_SUCCESS)
        out.emplace(free_bytes, total_bytes);
      CUcontext popped = nullptr;
      api.pop(&popped);
    }
    return out;
  }
  void release_all() noexcept {
    std::lock_guard lock(mutex_);
    for (const auto& h : held_) driver().release(h.device);
    held_.clear();
  }
  double seconds() const {
    std::lock_guard lock(mutex_);
    return seconds_;
  }

 private:
  // Device `ordinal`'s primary context, retained the first time it is asked for; nullptr when
  // the driver refuses. The caller holds the lock.
  CUcontext retained(int ordinal) {
    for (const auto& h : held_)
      if (h.ordinal == ordinal) return h.context;
    const driver_entry_points& api = driver();
    if (!api.usable()) return nullptr;
    const auto start = std::chrono::steady_clock::now();
    held h{ordinal, 0, nullptr};
    if (api.device_get(&h.device, ordinal) != CUDA_SUCCESS ||
        api.retain(&h.context, h.device) != CUDA_SUCCESS)
      return nullptr;
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    held_.push_back(h);
    return h.context;
  }

  struct held {
    int ordinal;
    CUdevice device;
    CUcontext context;
  };
  mutable std::mutex mutex_;
  std::vector<held> held_;
  double seconds_ = 0;
};

held_contexts& contexts() {
  static held_contexts held;  // its destructor releases nothing: the driver ends with the process
  return held;
}

}  // namespace

cuda_devices probe_cuda_devices() {
  cuda_devices found;
  const cudaError_t rc = cudaGetDeviceCount(&found.count);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    found.count = 0;
    found.absence_reason = absence_from(rc);
  } else if (found.count == 0) {
    found.absence_reason = "no CUDA device: cudaGetDeviceCount returned 0";
  }
  return found;
}

namespace {

// Whether device `ordinal` exists; when not, d.absence_reason says why.
bool find_device(device_info& d, int ordinal) {
  const cuda_devices devices = probe_cuda_devices();
  const int count = devices.count;
  d.device_count = count;
  if (count == 0) {
    d.absence_reason = devices.absence_reason;
    return false;
  }
  if (ordinal < 0 || ordinal >= count) {
    d.absence_reason = "CUDA device " + std::to_string(ordinal) + " does not exist (" +
                       std::to_string(count) + " present)";
    return false;
  }
  return true;
}

// Driver and runtime versions, name and lower-case PCI bus id; returns the properties' total
// memory (0 when they cannot be read).
std::uint64_t read_identity(device_info& d, int ordinal) {
  cudaDriverGetVersion(&d.driver_version);
  cudaRuntimeGetVersion(&d.runtime_version);
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, ordinal) == cudaSuccess) {
    d.name = prop.name;
  } else {
    cudaGetLastError();
  }
  char bus_id[64] = {};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, ordinal) == cudaSuccess) {
    d.pci_bus_id = bus_id;
    for (auto& c : d.pci_bus_id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  } else {
    cudaGetLastError();
  }
  return prop.totalGlobalMem;
}

// The cudaDeviceAttr values the classification and the plan read, -1 where one cannot be read.
void read_attributes(device_info& d, int ordinal) {
  d.compute_major = attribute(cudaDevAttrComputeCapabilityMajor, ordinal);
  d.compute_minor = attribute(cudaDevAttrComputeCapabilityMinor, ordinal);
  d.sm_count = attribute(cudaDevAttrMultiProcessorCount, ordinal);
  d.integrated = attribute(cudaDevAttrIntegrated, ordinal);
  d.managed_memory = attribute(cudaDevAttrManagedMemory, ordinal);
  d.host_native_atomic = attribute(cudaDevAttrHostNativeAtomicSupported, ordinal);
  d.pageable_memory_access = attribute(cudaDevAttrPageableMemoryAccess, ordinal);
  d.concurrent_managed_access = attribute(cudaDevAttrConcurrentManagedAccess, ordinal);
  d.pageable_uses_host_page_tables =
      attribute(cudaDevAttrPageableMemoryAccessUsesHostPageTables, ordinal);
  d.direct_managed_access_from_host = attribute(cudaDevAttrDirectManagedMemAccessFromHost, ordinal);
  d.memory_pools_supported = attribute(cudaDevAttrMemoryPoolsSupported, ordinal);
  d.numa_config = attribute(cudaDevAttrNumaConfig, ordinal);
  d.numa_id = attribute(cudaDevAttrNumaId, ordinal);
  d.host_numa_id = attribute(cudaDevAttrHostNumaId, ordinal);
}

// Free and total memory from the driver, the properties' total where the driver gives none.
void read_memory(device_info& d, int ordinal, std::uint64_t properties_total) {
  // Free memory is asked of the device's own primary context, pushed and popped on this
  // thread: the caller's current device stays as it was, and no context is made on a GPU
  // other than the one examined (cudaSetDevice would make one on the device it restores). That
  // context stays held (held_contexts) for the backend to work in.
  if (const auto info = contexts().free_and_total(ordinal)) {
    d.free_memory = info->first;
    d.total_memory = info->second;
  }
  if (d.total_memory == 0) d.total_memory = properties_total;
}

class cuda_device_query final : public device_query {
 public:
  device_info query(int ordinal) const override {
    device_info d;
    d.ordinal = ordinal;
    if (!find_device(d, ordinal)) return d;
    const std::uint64_t properties_total = read_identity(d, ordinal);
    read_attributes(d, ordinal);
    read_memory(d, ordinal, properties_total);
    d.present = true;
    return d;
  }
};

}  // namespace

std::unique_ptr<device_query> make_cuda_device_query() {
  return std::make_unique<cuda_device_query>();
}

double cuda_context_seconds() { return contexts().seconds(); }

void release_held_cuda_contexts() noexcept { contexts().release_all(); }

#else

namespace {
class no_cuda_query final : public device_query {
 public:
  device_info query(int ordinal) const override {
    device_info d;
    d.ordinal = ordinal;
    d.absence_reason = "built without CUDA (UMLOAD_ENABLE_CUDA=OFF)";
    return d;
  }
};
}  // namespace

std::unique_ptr<device_query> make_cuda_device_query() { return std::make_unique<no_cuda_query>(); }

cuda_devices probe_cuda_devices() { return {0, "built without CUDA (UMLOAD_ENABLE_CUDA=OFF)"}; }

double cuda_context_seconds() { return 0; }

void release_held_cuda_contexts() noexcept {}

#endif

}  // namespace umload::platform
