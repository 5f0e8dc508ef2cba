// The live device_query: the only file in platform/ that calls the CUDA runtime. A build with
// CUDA must still run where there is no driver, no device or only the stub library; each of those
// answers present=false with the reason (kvikio's is_cuda_available does the same).
#include "platform/device.hpp"

#if UMLOAD_HAVE_CUDA
#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cctype>
#include <optional>
#include <utility>
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

// cuMemGetInfo of device `ordinal` in its primary context (retained for the call, then
// released), through the runtime's driver entry-point lookup: no link against libcuda, so a
// build still runs without a driver. Empty when the driver cannot be asked.
std::optional<std::pair<std::uint64_t, std::uint64_t>> free_and_total(int ordinal) {
  using device_get_fn = CUresult(CUDAAPI*)(CUdevice*, int);
  using retain_fn = CUresult(CUDAAPI*)(CUcontext*, CUdevice);
  using release_fn = CUresult(CUDAAPI*)(CUdevice);
  using push_fn = CUresult(CUDAAPI*)(CUcontext);
  using pop_fn = CUresult(CUDAAPI*)(CUcontext*);
  using mem_info_fn = CUresult(CUDAAPI*)(std::size_t*, std::size_t*);
  const auto entry = [](const char* name) -> void* {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return p;
  };
  const auto device_get = reinterpret_cast<device_get_fn>(entry("cuDeviceGet"));
  const auto retain = reinterpret_cast<retain_fn>(entry("cuDevicePrimaryCtxRetain"));
  const auto release = reinterpret_cast<release_fn>(entry("cuDevicePrimaryCtxRelease"));
  const auto push = reinterpret_cast<push_fn>(entry("cuCtxPushCurrent"));
  const auto pop = reinterpret_cast<pop_fn>(entry("cuCtxPopCurrent"));
  const auto mem_info = reinterpret_cast<mem_info_fn>(entry("cuMemGetInfo"));
  if (!device_get || !retain || !release || !push || !pop || !mem_info) return std::nullopt;
  CUdevice device = 0;
  CUcontext context = nullptr;
  if (device_get(&device, ordinal) != CUDA_SUCCESS || retain(&context, device) != CUDA_SUCCESS)
    return std::nullopt;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> out;
  if (push(context) == CUDA_SUCCESS) {
    std::size_t free_bytes = 0, total_bytes = 0;
    if (mem_info(&free_bytes, &total_bytes) == CUDA_SUCCESS) out.emplace(free_bytes, total_bytes);
    CUcontext popped = nullptr;
    pop(&popped);
  }
  release(device);
  return out;
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
  // other than the one examined (cudaSetDevice would make one on the device it restores).
  if (const auto info = free_and_total(ordinal)) {
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

#endif

}  // namespace umload::platform
