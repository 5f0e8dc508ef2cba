// What the GPU says about itself, and which memory model that makes the machine. The CUDA
// runtime is reached only through `device_query`, so tests (and the built-in profiles) can
// describe any GPU with a plain `device_info`; the live query is make_cuda_device_query().
//
//   auto query = umload::platform::make_cuda_device_query();
//   device_info gpu = query->query(0);            // never throws for "no GPU": present=false
//   classification c = classify(gpu);             // memory_model + the reason, in words
//
// Attribute numbers are the cudaDeviceAttr values of CUDA 13.0 (driver_types.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace umload::platform {

// How the GPU's memory relates to the host's (CUDA Programming Guide, unified memory;
// docs/platforms.md):
//   host         no usable GPU: everything in host memory, decoded on CPU cores
//   discrete     separate device memory behind PCIe/NVLink (H100, H200)
//   discrete_hmm discrete, and the GPU can touch pageable memory through HMM (software coherence)
//   coherent     hardware-coherent superchip (GH200, GB200: NVLink-C2C + ATS), HBM + LPDDR5X
//   integrated   one memory pool shared by CPU and GPU (DGX Spark GB10)
enum class memory_model : std::uint8_t { host, discrete, discrete_hmm, coherent, integrated };

std::string_view to_string(memory_model m);  // "host", "discrete", "discrete-hmm", ...
std::optional<memory_model> parse_memory_model(std::string_view text);  // accepts both spellings

// Everything umload reads about one device. An attribute the query could not read stays -1.
struct device_info {
  bool present = false;        // a usable device exists at `ordinal`
  std::string absence_reason;  // why not, when !present ("no CUDA driver ...")
  int ordinal = 0;
  int device_count = 0;
  std::string name;
  std::string pci_bus_id;                    // "0000:1a:00.0" (cudaDeviceGetPCIBusId), lower case
  int driver_version = -1;                   // cudaDriverGetVersion, e.g. 13000
  int runtime_version = -1;                  // cudaRuntimeGetVersion
  int compute_major = -1;                    // cudaDevAttrComputeCapabilityMajor (75)
  int compute_minor = -1;                    // cudaDevAttrComputeCapabilityMinor (76)
  int sm_count = -1;                         // cudaDevAttrMultiProcessorCount (16)
  std::uint64_t total_memory = 0;            // cudaMemGetInfo total (device memory, or the pool)
  std::optional<std::uint64_t> free_memory;  // cudaMemGetInfo free: trusted on discrete only

  int integrated = -1;                 // cudaDevAttrIntegrated (18)
  int managed_memory = -1;             // cudaDevAttrManagedMemory (83)
  int host_native_atomic = -1;         // cudaDevAttrHostNativeAtomicSupported (86)
  int pageable_memory_access = -1;     // cudaDevAttrPageableMemoryAccess (88)
  int concurrent_managed_access = -1;  // cudaDevAttrConcurrentManagedAccess (89)
  int pageable_uses_host_page_tables =
      -1;  // cudaDevAttrPageableMemoryAccessUsesHostPageTables (100)
  int direct_managed_access_from_host = -1;  // cudaDevAttrDirectManagedMemAccessFromHost (101)
  int memory_pools_supported = -1;           // cudaDevAttrMemoryPoolsSupported (115)
  int numa_config = -1;   // cudaDevAttrNumaConfig (130): 1 = GPU memory is a NUMA node
  int numa_id = -1;       // cudaDevAttrNumaId (131)
  int host_numa_id = -1;  // cudaDevAttrHostNumaId (134): -1 without NUMA

  // Names of attributes whose values were not read off real hardware (profiles only).
  std::vector<std::string> unconfirmed;
};

// One attribute for display: its cudaDeviceAttr number (0 when it is not an attribute).
struct device_attribute {
  std::string_view name;
  int number;
  long long value;
  bool confirmed;
};
std::vector<device_attribute> attributes(const device_info& d);

struct classification {
  memory_model model = memory_model::host;
  std::string reason;
};

// integrated=1 -> integrated; host page tables=1 -> coherent; pageable=1 -> discrete-hmm;
// otherwise discrete; no device -> host. Pure.
classification classify(const device_info& d);

// The seam between umload and the CUDA runtime.
class device_query {
 public:
  virtual ~device_query() = default;
  // Describes device `ordinal`. Never throws for "no driver", "no device", a stub library or an
  // ordinal out of range: returns present=false with the reason.
  virtual device_info query(int ordinal) const = 0;
};

// The CUDA runtime. In builds without CUDA it reports present=false, "built without CUDA".
// Free memory is read in the examined device's primary context, which the query retains the
// first time and holds (until release_held_cuda_contexts or the end of the process), so that the
// CUDA backend works in that same context instead of making a second one: one context per
// process (platform/device_cuda.cpp says why).
std::unique_ptr<device_query> make_cuda_device_query();

// Seconds this process has spent retaining primary contexts for the live query, over all
// devices: the CUDA context's creation, where the query was first to need it. A load counts the
// part spent while it examined its GPU in its backend time (src/loader.hpp, load_timing). 0
// without CUDA, and until a live query reads a device's free memory.
double cuda_context_seconds();

// Lets go of every context the live query holds. A load calls it once its backend exists: the
// CUDA runtime then holds its own reference to the context it works in, which stays; a context
// nobody else holds (a load that decodes on the CPU) is destroyed by the driver. The next query
// retains again.
void release_held_cuda_contexts() noexcept;

// The one probe of how many CUDA devices this process sees (cudaGetDeviceCount, its error
// cleared): 0 with the reason when there is no driver, no device, only the stub library, or no
// CUDA in this build. The live query and the CUDA backend both ask it.
struct cuda_devices {
  int count = 0;
  std::string absence_reason;  // when count == 0
};
cuda_devices probe_cuda_devices();

// A query that answers with a fixed description: for tests and profiles.
class fixed_device_query final : public device_query {
 public:
  explicit fixed_device_query(device_info info) : info_(std::move(info)) {}
  device_info query(int ordinal) const override;

 private:
  device_info info_;
};

}  // namespace umload::platform
