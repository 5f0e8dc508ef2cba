#include "platform/profiles.hpp"

#include <cmath>

#include "kernels/error.hpp"

namespace umload::platform {
namespace {

constexpr std::uint64_t gib = std::uint64_t{1} << 30;
constexpr std::uint64_t mib = std::uint64_t{1} << 20;

struct attrs {
  int integrated, pageable, host_page_tables, concurrent_managed, direct_from_host, native_atomic;
  int numa_config, numa_id, host_numa_id;
};

device_info gpu(std::string name, std::string bus, int major, int minor, int sms,
                std::uint64_t total, const attrs& a, std::vector<std::string> unconfirmed) {
  device_info d;
  d.present = true;
  d.ordinal = 0;
  d.device_count = 1;
  d.name = std::move(name);
  d.pci_bus_id = std::move(bus);
  d.compute_major = major;
  d.compute_minor = minor;
  d.sm_count = sms;
  d.total_memory = total;
  d.integrated = a.integrated;
  d.managed_memory = 1;
  d.host_native_atomic = a.native_atomic;
  d.pageable_memory_access = a.pageable;
  d.concurrent_managed_access = a.concurrent_managed;
  d.pageable_uses_host_page_tables = a.host_page_tables;
  d.direct_managed_access_from_host = a.direct_from_host;
  d.memory_pools_supported = 1;
  d.numa_config = a.numa_config;
  d.numa_id = a.numa_id;
  d.host_numa_id = a.host_numa_id;
  d.driver_version = 13000;
  d.runtime_version = 13000;
  d.unconfirmed = std::move(unconfirmed);
  return d;
}

topology_source embedded(const std::string& name) {
  topology_source s;
  s.what = topology_source::kind::xml_text;
  s.value = std::string(detail::profile_xml(name));
  s.label = "profile " + name + " (platform/profiles/" + name + ".xml)";
  return s;
}

constexpr attrs discrete_x86{0, 0, 0, 1, 0, 0, 0, -1, 0};
constexpr attrs coherent_c2c{0, 1, 1, 1, 1, 1, 1, 1, 0};

const std::vector<std::string> sxm_sources{
    "H100 SXM5 80GB HBM3, 132 SMs, compute 9.0: NVIDIA H100 Tensor Core GPU datasheet and "
    "architecture whitepaper",
    "DGX H100/H200 host: 2 x Intel Xeon Platinum 8480C (56 cores each), 2 TB DDR5: NVIDIA DGX "
    "H100/H200 user guide",
    "CUDA-visible memory 81559 MiB: as nvidia-smi prints it for H100 80GB in public logs "
    "(unconfirmed)",
};

std::vector<profile> all_profiles() {
  std::vector<profile> out;
  {
    profile p;
    p.name = "h100-pcie";
    p.description = "NVIDIA H100 PCIe 80GB in a two-socket x86 server, GPU on socket 1";
    auto a = discrete_x86;
    a.host_numa_id = 1;
    p.device = gpu("NVIDIA H100 PCIe", "0000:ca:00.0", 9, 0, 114, 81559 * mib, a,
                   {"TotalMemory", "HostNumaId", "PageableMemoryAccess"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 512 * gib;
    p.host_available_bytes = 480 * gib;
    p.notes = {
        "stand-in host: 2 x 32 cores, 2 x 256 GiB; the GPU hangs off socket 1 so staging "
        "and readers belong to NUMA node 1"};
    p.sources = {"H100 PCIe 80GB HBM2e, 114 SMs, compute 9.0, PCIe Gen5 x16: NVIDIA H100 datasheet",
                 "host layout: a generic two-socket server (assumed)",
                 "PageableMemoryAccess=0 assumes no HMM (proprietary driver or Linux < 6.1)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "h100-sxm";
    p.description = "NVIDIA H100 SXM5 80GB, GPU 0 of a DGX H100 (8 GPUs, 2 sockets)";
    p.device = gpu("NVIDIA H100 80GB HBM3", "0000:1b:00.0", 9, 0, 132, 81559 * mib, discrete_x86,
                   {"TotalMemory", "HostNumaId", "PageableMemoryAccess"});
    p.device.device_count = 8;
    p.topology = embedded(p.name);
    p.host_memory_bytes = 2048 * gib;
    p.host_available_bytes = 1900 * gib;
    p.sources = sxm_sources;
    p.sources.push_back(
        "GPU PCI bus ids 1b, 43, 52, 61 (socket 0), 9d, c3, d1, df (socket 1): DGX "
        "H100 user guide (unconfirmed)");
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "h200";
    p.description = "NVIDIA H200 SXM 141GB, GPU 0 of a DGX H200 (8 GPUs, 2 sockets)";
    p.device = gpu("NVIDIA H200", "0000:1b:00.0", 9, 0, 132, 143771 * mib, discrete_x86,
                   {"TotalMemory", "HostNumaId", "PageableMemoryAccess"});
    p.device.device_count = 8;
    p.topology = embedded(p.name);
    p.host_memory_bytes = 2048 * gib;
    p.host_available_bytes = 1900 * gib;
    p.sources = {"H200 SXM 141 GB HBM3e, 4.8 TB/s, 132 SMs, compute 9.0: NVIDIA H200 datasheet",
                 "DGX H200 host: 2 x Xeon Platinum 8480C, 2 TB: NVIDIA DGX H200 user guide",
                 "CUDA-visible memory 143771 MiB: nvidia-smi in public logs (unconfirmed)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "gh200";
    p.description = "NVIDIA GH200 Grace Hopper Superchip, 96 GB HBM3 + 480 GB LPDDR5X, NUMA mode";
    p.device = gpu(
        "NVIDIA GH200 480GB", "0009:01:00.0", 9, 0, 132, 96'000'000'000, coherent_c2c,
        {"TotalMemory", "NumaConfig", "NumaId", "HostNumaId", "DirectManagedMemAccessFromHost"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 480'000'000'000;
    p.host_available_bytes = 450'000'000'000;
    p.notes = {"device memory is the nominal 96 GB; the CUDA-visible amount is unconfirmed",
               "in NUMA mode the page cache can land in HBM (NUMA node 1): direct I/O avoids it"};
    p.sources = {
        "GH200: 72 Arm Neoverse V2 cores, up to 480 GB LPDDR5X, 96 GB HBM3 (or 144 GB "
        "HBM3e), NVLink-C2C 900 GB/s: NVIDIA Grace Hopper Superchip datasheet",
        "attribute values (pageable=1, host page tables=1, NumaConfig=1): CUDA Programming "
        "Guide, unified memory chapter; ../shared/reference/platforms.md",
        "PCI bus id 0009:01:00.0 and HBM as NUMA node 1 (GPUMemory): public hwloc and "
        "nvidia-smi output from GH200 systems (unconfirmed)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "gh200-144g";
    p.description = "NVIDIA GH200 Grace Hopper Superchip, 144 GB HBM3e + 480 GB LPDDR5X, NUMA mode";
    p.device = gpu(
        "NVIDIA GH200 144G HBM3e", "0009:01:00.0", 9, 0, 132, 144'000'000'000, coherent_c2c,
        {"TotalMemory", "NumaConfig", "NumaId", "HostNumaId", "DirectManagedMemAccessFromHost"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 480'000'000'000;
    p.host_available_bytes = 450'000'000'000;
    p.notes = {"device memory is the nominal 144 GB; the CUDA-visible amount is unconfirmed"};
    p.sources = {"GH200 with 144 GB HBM3e: NVIDIA GH200 NVL2 / Grace Hopper datasheet",
                 "attributes as gh200 (unconfirmed on this memory configuration)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "gb200";
    p.description =
        "NVIDIA GB200 superchip: one B200 GPU (186 GB HBM3e) of two sharing a Grace "
        "with 480 GB LPDDR5X";
    p.device = gpu("NVIDIA GB200", "0008:01:00.0", 10, 0, 148, 186'000'000'000, coherent_c2c,
                   {"TotalMemory", "MultiProcessorCount", "NumaConfig", "NumaId", "HostNumaId",
                    "DirectManagedMemAccessFromHost", "HostNativeAtomicSupported"});
    p.device.device_count = 2;
    p.topology = embedded(p.name);
    p.host_memory_bytes = 480'000'000'000;
    p.host_available_bytes = 450'000'000'000;
    p.notes = {
        "the Grace memory is shared by the superchip's two GPUs: with one rank per GPU, "
        "give each rank half with --host-memory",
        "device memory is the nominal 186 GB (13.4 TB over 72 GPUs in GB200 NVL72); the "
        "CUDA-visible amount is unconfirmed"};
    p.sources = {
        "GB200 NVL72: 72 Blackwell GPUs, 13.4 TB HBM3e, 36 Grace CPUs with up to 17 TB "
        "LPDDR5X, NVLink-C2C: NVIDIA GB200 NVL72 datasheet",
        "148 SMs, compute 10.0 for B200: public CUDA deviceQuery output (unconfirmed)",
        "PCI bus ids 0008:01:00.0 and 0009:01:00.0: assumed by analogy with GH200"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "dgx-spark";
    p.description = "NVIDIA DGX Spark (GB10): 128 GB LPDDR5X shared by CPU and GPU";
    const attrs spark{1, 1, 1, 1, 1, 1, 0, -1, 0};
    const auto usable = static_cast<std::uint64_t>(std::llround(121.7 * static_cast<double>(gib)));
    p.device = gpu("NVIDIA GB10", "000f:01:00.0", 12, 1, 48, usable, spark,
                   {"TotalMemory", "MultiProcessorCount", "PageableMemoryAccessUsesHostPageTables",
                    "DirectManagedMemAccessFromHost", "HostNativeAtomicSupported", "HostNumaId"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 128'520'671'232;
    p.host_available_bytes = usable;
    p.notes = {"one pool: the checkpoint's page cache, staging and the weights share 128 GB",
               "GPUDirect Storage is not available on Spark"};
    p.sources = {
        "DGX Spark: GB10 Grace Blackwell, 20 Arm cores (10 Cortex-X925 + 10 Cortex-A725), "
        "128 GB LPDDR5X unified, 273 GB/s: NVIDIA DGX Spark datasheet",
        "one NUMA node of 128,520,671,232 B, ~121.7 GiB usable by CUDA, "
        "cudaDevAttrIntegrated=1, pageable=1: ../shared/reference/platforms.md",
        "compute 12.1 (sm_121): CUDA 13.0 release notes"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "host";
    p.description = "a CPU-only machine: 8 cores, 64 GiB, no GPU";
    p.device.absence_reason = "profile host: no GPU";
    p.topology.what = topology_source::kind::synthetic;
    p.topology.value = "pack:1 numa:1(memory=68719476736) core:8 pu:2";
    p.topology.label = "profile host (synthetic: " + p.topology.value + ")";
    p.host_memory_bytes = 64 * gib;
    p.host_available_bytes = 60 * gib;
    p.sources = {"a generic CI machine (assumed figures)"};
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

std::vector<std::string> profile_names() {
  return {"h100-pcie", "h100-sxm", "h200", "gh200", "gh200-144g", "gb200", "dgx-spark", "host"};
}

profile find_profile(std::string_view name) {
  for (auto& p : all_profiles()) {
    if (p.name == name) return p;
  }
  std::string list;
  for (const auto& n : profile_names()) list += (list.empty() ? "" : ", ") + n;
  throw usage_error("unknown profile '" + std::string(name) + "'; profiles: " + list);
}

}  // namespace umload::platform
