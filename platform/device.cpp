#include "platform/device.hpp"

#include <algorithm>

namespace umload::platform {

std::string_view to_string(memory_model m) {
  switch (m) {
    case memory_model::host: return "host";
    case memory_model::discrete: return "discrete";
    case memory_model::discrete_hmm: return "discrete-hmm";
    case memory_model::coherent: return "coherent";
    case memory_model::integrated: return "integrated";
  }
  return "host";
}

std::optional<memory_model> parse_memory_model(std::string_view text) {
  for (auto m : {memory_model::host, memory_model::discrete, memory_model::discrete_hmm,
                 memory_model::coherent, memory_model::integrated}) {
    if (text == to_string(m)) return m;
  }
  if (text == "discrete_hmm") return memory_model::discrete_hmm;
  return std::nullopt;
}

std::vector<device_attribute> attributes(const device_info& d) {
  auto confirmed = [&](std::string_view name) {
    return std::find(d.unconfirmed.begin(), d.unconfirmed.end(), name) == d.unconfirmed.end();
  };
  std::vector<device_attribute> out;
  auto add = [&](std::string_view name, int number, long long value) {
    out.push_back({name, number, value, confirmed(name)});
  };
  add("ComputeCapabilityMajor", 75, d.compute_major);
  add("ComputeCapabilityMinor", 76, d.compute_minor);
  add("MultiProcessorCount", 16, d.sm_count);
  add("Integrated", 18, d.integrated);
  add("ManagedMemory", 83, d.managed_memory);
  add("HostNativeAtomicSupported", 86, d.host_native_atomic);
  add("PageableMemoryAccess", 88, d.pageable_memory_access);
  add("ConcurrentManagedAccess", 89, d.concurrent_managed_access);
  add("PageableMemoryAccessUsesHostPageTables", 100, d.pageable_uses_host_page_tables);
  add("DirectManagedMemAccessFromHost", 101, d.direct_managed_access_from_host);
  add("MemoryPoolsSupported", 115, d.memory_pools_supported);
  add("NumaConfig", 130, d.numa_config);
  add("NumaId", 131, d.numa_id);
  add("HostNumaId", 134, d.host_numa_id);
  add("TotalMemory", 0, static_cast<long long>(d.total_memory));
  return out;
}

classification classify(const device_info& d) {
  if (!d.present) {
    return {memory_model::host,
            "no usable GPU (" +
                (d.absence_reason.empty() ? std::string("no device") : d.absence_reason) +
                "): weights stay in host memory and are decoded on CPU cores"};
  }
  if (d.integrated == 1) {
    return {memory_model::integrated,
            "cudaDevAttrIntegrated=1: the GPU has no memory of its own; device memory is host "
            "memory, one pool shared with the CPU and the page cache"};
  }
  if (d.pageable_uses_host_page_tables == 1) {
    return {memory_model::coherent,
            "cudaDevAttrPageableMemoryAccessUsesHostPageTables=1: the GPU reaches host memory "
            "through the host's page tables (ATS, hardware coherence, e.g. NVLink-C2C)"};
  }
  if (d.pageable_memory_access == 1) {
    return {memory_model::discrete_hmm,
            "cudaDevAttrPageableMemoryAccess=1 without host page tables: discrete memory with "
            "HMM (software coherence); weights still belong in device memory"};
  }
  return {memory_model::discrete,
          "separate device memory (cudaDevAttrIntegrated=0, cudaDevAttrPageableMemoryAccess=" +
              std::to_string(d.pageable_memory_access) + "): weights belong in device memory"};
}

device_info fixed_device_query::query(int ordinal) const {
  if (!info_.present) return info_;
  if (ordinal < 0 || ordinal >= std::max(1, info_.device_count)) {
    device_info none;
    none.ordinal = ordinal;
    none.device_count = info_.device_count;
    none.absence_reason = "device " + std::to_string(ordinal) + " does not exist (" +
                          std::to_string(info_.device_count) + " present)";
    return none;
  }
  device_info copy = info_;
  copy.ordinal = ordinal;
  return copy;
}

}  // namespace umload::platform
