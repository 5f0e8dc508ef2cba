#include "platform/profiles.hpp"

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

// Attribute sets: {integrated, pageable, host page tables, concurrent managed, direct managed
// access from host, host native atomics, NumaConfig, NumaId, HostNumaId}.
// discrete_hmm: an x86 server on the open kernel modules with Linux >= 6.1.24, where HMM makes
// PageableMemoryAccess 1 (CUDA Programming Guide, "System-Allocated Memory"; unconfirmed on
// these machines, whose driver and kernel vary).
constexpr attrs discrete_hmm{0, 1, 0, 1, 0, 0, 0, -1, 0};
// coherent_c2c: GH200/GB200 in NUMA mode, ATS over NVLink-C2C (CUDA Programming Guide, unified
// memory on hardware-coherent systems).
constexpr attrs coherent_c2c{0, 1, 1, 1, 1, 1, 1, 1, 0};

// Sources, one per figure; docs/platforms.md lists the same with the table they feed.
constexpr const char* src_hmm =
    "PageableMemoryAccess=1 (discrete-hmm): HMM, since CUDA 12.2 on Linux 6.1.24+ or 6.2.11+ "
    "(CUDA 12.2 release notes, quoted in https://github.com/alpaka-group/alpaka/issues/1995) and "
    "with the open kernel modules only "
    "(https://github.com/NVIDIA/open-gpu-kernel-modules/issues/338); 0 with the proprietary "
    "modules; the value on these machines is unconfirmed (driver and kernel vary)";
constexpr const char* src_dgx_numa =
    "DGX H100/H200 NUMA node 0 = CPUs 0-55,112-167, node 1 = 56-111,168-223, GPUs 0-3 on node 0: "
    "NVIDIA's MLPerf Inference v4.0 config for H100_SXM_80GBx8, numa_config "
    "\"0-3:0-55,112-167&4-7:56-111,168-223\" (github.com/mlcommons/inference_results_v4.0 "
    "closed/NVIDIA/configs/dlrm-v2/Server/__init__.py, commit "
    "3c4a1cf196b70175cfe7c59e067cd1d923aa4f3f); the same line is commented out for "
    "H200_SXM_140GBx8 there (the DGX H200 layout is unconfirmed)";
constexpr const char* src_dgx_host =
    "DGX H100/H200 host: 2 x Xeon Platinum 8480C (56 cores, 2 threads each), 2 TB, 8 GPUs: NVIDIA "
    "DGX H100/H200 user guide (docs.nvidia.com/dgx/dgxh100-user-guide); 1 TiB per node and "
    "MemAvailable 1900 GiB assumed";
constexpr const char* src_grace_node =
    "Grace LPDDR5X node 490,037 MiB (513,841,037,312 B) as Linux shows 480 GB; a GH200 "
    "benchmark host records 490,300 MB per node (github.com/dawnex3/SIGMOD2025Contest-Kirara "
    "include/hardware__ga01.h); MemAvailable 450 GiB assumed";
constexpr const char* src_spark_dump =
    "DGX Spark topology, CPU kinds and NUMA node 0 of 128,520,671,232 B: hwloc's dump of a DGX "
    "Spark (github.com/open-mpi/hwloc tests/hwloc/linux/nvidia-dgx-gb10.output, commit "
    "93e22d5597f607475f7882cf7e81bf754588203d): Cortex-A725 (CPUPart 0xd87, capacity 718) on "
    "CPUs 0-4,10-14, Cortex-X925 (0xd85, capacity 997) on 5-9,15-19";

std::vector<profile> all_profiles() {
  std::vector<profile> out;
  {
    profile p;
    p.name = "h100-pcie";
    p.description = "NVIDIA H100 PCIe 80GB in a two-socket x86 server, GPU on socket 1";
    auto a = discrete_hmm;
    a.host_numa_id = 1;
    p.device = gpu("NVIDIA H100 PCIe", "0000:ca:00.0", 9, 0, 114, 84'943'044'608, a,
                   {"TotalMemory", "HostNumaId", "PageableMemoryAccess"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 512 * gib;
    p.host_available_bytes = 480 * gib;
    p.notes = {
        "stand-in host: 2 x 32 cores, 2 x 256 GiB; the GPU hangs off socket 1 so staging "
        "and readers belong to NUMA node 1"};
    p.sources = {
        "H100 PCIe 80GB HBM2e, 114 SMs, compute 9.0, PCIe Gen5 x16: NVIDIA H100 Tensor "
        "Core GPU datasheet (nvidia.com/en-us/data-center/h100)",
        "TotalMemory 84,943,044,608 B: cudaMemGetInfo's total on an H100 PCIe (nvidia-smi "
        "prints 81,559 MiB); the exact bytes vary with the driver (unconfirmed)",
        src_hmm, "host layout: a generic two-socket server (assumed)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "h100-sxm";
    p.description = "NVIDIA H100 SXM5 80GB, GPU 0 of a DGX H100 (8 GPUs, 2 sockets)";
    p.device = gpu("NVIDIA H100 80GB HBM3", "0000:1b:00.0", 9, 0, 132, 85'027'979'264, discrete_hmm,
                   {"TotalMemory", "HostNumaId", "PageableMemoryAccess"});
    p.device.device_count = 8;
    p.topology = embedded(p.name);
    p.host_memory_bytes = 2048 * gib;
    p.host_available_bytes = 1900 * gib;
    p.sources = {
        "H100 SXM5 80GB HBM3, 132 SMs, compute 9.0: NVIDIA H100 datasheet; deviceQuery on "
        "a DGX-class 8 x H100 80GB HBM3 shows 132 multiprocessors and totalGlobalMem "
        "85,045,477,376 B with driver 12.7 (github.com/thamada/nvidia-smi "
        "nvsim/H100SXMx8_deviceQuery.py)",
        "TotalMemory 85,027,979,264 B: cudaMemGetInfo's total on an H100 80GB HBM3; the "
        "exact bytes vary with the driver (unconfirmed)",
        src_hmm,
        src_dgx_host,
        src_dgx_numa,
        "GPU PCI bus ids 1b, 43, 52, 61 (socket 0), 9d, c3, d1, df (socket 1) and nvidia-smi's "
        "81,559 MiB per GPU: nvidia-smi on an 8 x H100 80GB HBM3 node "
        "(github.com/verdimrc/playground-nemo-2.0-gh "
        "05-byoc-te-mb/with-ngc-pytorch-25.06-cleanup.md, commit "
        "155bbece89e7d5d1f43fea19b897ed1b2e0eae81); the socket of each from the NUMA config "
        "above"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "h200";
    p.description = "NVIDIA H200 SXM 141GB, GPU 0 of a DGX H200 (8 GPUs, 2 sockets)";
    p.device = gpu("NVIDIA H200", "0000:1b:00.0", 9, 0, 132, 150'109'945'856, discrete_hmm,
                   {"TotalMemory", "HostNumaId", "PageableMemoryAccess"});
    p.device.device_count = 8;
    p.topology = embedded(p.name);
    p.host_memory_bytes = 2048 * gib;
    p.host_available_bytes = 1900 * gib;
    p.sources = {
        "H200 SXM 141 GB HBM3e, 4.8 TB/s, 132 SMs, compute 9.0: NVIDIA H200 datasheet "
        "(nvidia.com/en-us/data-center/h200)",
        "TotalMemory 150,109,945,856 B: cudaMemGetInfo's total on an H200 (nvidia-smi "
        "prints 143,771 MiB); the exact bytes vary with the driver (unconfirmed)",
        src_hmm,
        src_dgx_host,
        src_dgx_numa,
        "GPU PCI bus ids as h100-sxm (unconfirmed)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "gh200";
    p.description = "NVIDIA GH200 Grace Hopper Superchip, 96 GB HBM3 + 480 GB LPDDR5X, NUMA mode";
    p.device = gpu(
        "NVIDIA GH200 480GB", "0009:01:00.0", 9, 0, 132, 97280 * mib, coherent_c2c,
        {"TotalMemory", "NumaConfig", "NumaId", "HostNumaId", "DirectManagedMemAccessFromHost"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 490037 * mib;
    p.host_available_bytes = 450 * gib;
    p.notes = {"in NUMA mode the page cache can land in HBM (NUMA node 1): direct I/O avoids it"};
    p.sources = {
        "GH200: 72 Arm Neoverse V2 cores, 480 GB LPDDR5X, 96 GB HBM3 (or 144 GB HBM3e), "
        "NVLink-C2C 900 GB/s: NVIDIA GH200 Grace Hopper Superchip datasheet",
        "HBM as NUMA node 1 of 97,280 MiB (102,005,473,280 B), the plan's device figure: "
        "OpenCL reports 97280 MB on an NVIDIA GH200 480GB (github.com/mredenti/PowerCapping "
        "configuration/OpenCL_benchmark.md); nvidia-smi prints 97,871 MiB; cudaMemGetInfo's "
        "total is unconfirmed",
        "PCI bus id 0009:01:00.0: nvidia-smi on GH200 480GB systems in public logs", src_grace_node,
        "attribute values (pageable=1, host page tables=1, NumaConfig=1): CUDA Programming "
        "Guide, unified memory on hardware-coherent systems (unconfirmed on hardware)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "gh200-144g";
    p.description = "NVIDIA GH200 Grace Hopper Superchip, 144 GB HBM3e + 480 GB LPDDR5X, NUMA mode";
    p.device = gpu(
        "NVIDIA GH200 144G HBM3e", "0009:01:00.0", 9, 0, 132, 146831 * mib, coherent_c2c,
        {"TotalMemory", "NumaConfig", "NumaId", "HostNumaId", "DirectManagedMemAccessFromHost"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 490037 * mib;
    p.host_available_bytes = 450 * gib;
    p.notes = {
        "device memory is nvidia-smi's 146,831 MiB; CUDA's figure is a few hundred MiB "
        "less on the 96 GB part (unconfirmed here)"};
    p.sources = {"GH200 with 144 GB HBM3e: NVIDIA GH200 Grace Hopper Superchip datasheet",
                 "TotalMemory 146,831 MiB (153,963,462,656 B): nvidia-smi on GH200 144G HBM3e "
                 "(unconfirmed: no public nvidia-smi output, cudaMemGetInfo or NUMA node size "
                 "was found that could be cited; a test in a public repository that could not be "
                 "named expects cuDeviceTotalMem 153,008,209,920 B (145,920 MiB) for this part)",
                 src_grace_node, "attributes as gh200 (unconfirmed on this memory configuration)"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "gb200";
    p.description =
        "NVIDIA GB200 compute tray: GPU 0 of four (two per Grace, two Graces), "
        "189,471 MiB HBM3e each, NUMA mode";
    auto a = coherent_c2c;
    a.numa_id = 2;
    p.device = gpu("NVIDIA GB200", "0008:01:00.0", 10, 0, 152, 189471 * mib, a,
                   {"TotalMemory", "MultiProcessorCount", "NumaConfig", "HostNumaId",
                    "DirectManagedMemAccessFromHost", "HostNativeAtomicSupported"});
    p.device.device_count = 4;
    p.topology = embedded(p.name);
    p.host_memory_bytes = 490037 * mib;
    p.host_available_bytes = 450 * gib;
    p.notes = {
        "each Grace's memory is shared by two GPUs: with one rank per GPU, give each "
        "rank half with --host-memory",
        "with driver R580's CDMM mode the GPU memory is no NUMA node (NumaConfig 0); the "
        "plan is the same"};
    p.sources = {
        "GB200 compute tray: 2 Grace CPUs and 4 Blackwell GPUs; GB200 NVL72 = 18 trays, 72 "
        "GPUs, 36 Grace CPUs: NVIDIA GB200 NVL72 datasheet",
        "4 x NVIDIA GB200, compute capability 10.0, CPU affinity 0-71 for GPUs 0-1 and "
        "72-143 for GPUs 2-3, GPU NUMA ids 2, 10, 18: nvidia-smi topo in "
        "https://github.com/sgl-project/sglang/issues/11208 (driver 570.172.08)",
        "two NUMA nodes per tray, GPUs 0-1 with CPUs 0-71 and GPUs 2-3 with CPUs 72-143: "
        "https://github.com/ishandhanani/srt-slurm/pull/164",
        "TotalMemory 189,471 MiB (198,674,743,296 B) and PCI bus ids 0008:01:00.0, "
        "0009:01:00.0: nvidia-smi on GB200 trays in public logs; GPUs 2-3 at "
        "0018:01:00.0, 0019:01:00.0 and NUMA id 26 by analogy (unconfirmed)",
        "152 SMs: weak public sources (unconfirmed)",
        src_grace_node,
        "CDMM (driver R580): NVIDIA GB200 NVL Multi-Node Tuning Guide"};
    out.push_back(std::move(p));
  }
  {
    profile p;
    p.name = "dgx-spark";
    p.description =
        "NVIDIA DGX Spark (GB10), the machine of hwloc's dump: 128 GB LPDDR5X shared "
        "by CPU and GPU, 119.69 GiB to Linux";
    const attrs spark{1, 1, 1, 1, 1, 1, 0, -1, 0};
    p.device = gpu("NVIDIA GB10", "000f:01:00.0", 12, 1, 48, 128'520'671'232, spark,
                   {"TotalMemory", "MultiProcessorCount", "PageableMemoryAccessUsesHostPageTables",
                    "DirectManagedMemAccessFromHost", "HostNativeAtomicSupported", "HostNumaId"});
    p.topology = embedded(p.name);
    p.host_memory_bytes = 128'520'671'232;
    p.host_available_bytes = std::uint64_t{121'737'812} * 1024;
    p.notes = {
        "one pool: the checkpoint's page cache, staging and the weights share it; "
        "cudaMemGetInfo's free is MemFree there (page cache counts as used)",
        "GPUDirect Storage is not available on Spark"};
    p.sources = {
        "DGX Spark: GB10 Grace Blackwell, 20 Arm cores (10 Cortex-X925 + 10 Cortex-A725), "
        "128 GB LPDDR5X unified, 273 GB/s: NVIDIA DGX Spark datasheet",
        src_spark_dump,
        "MemTotal 125,508,468 kB (128,520,671,232 B) and MemAvailable 121,737,812 kB "
        "(124,659,519,488 B, 116.10 GiB): /proc/meminfo of the same dump "
        "(nvidia-dgx-gb10.tar.bz2, same commit)",
        "TotalMemory: taken as MemTotal; on the later Sparks CUDA's total is 58 MiB under "
        "MemTotal (unconfirmed for this one)",
        "integrated=1, pageable=1, free = MemFree: DGX Spark known issues, memory "
        "reporting with unified memory (docs.nvidia.com/dgx/dgx-spark/known-issues.html)",
        "compute 12.1 (sm_121): CUDA 13.0 release notes"};
    out.push_back(std::move(p));
  }
  {
    // The same machine with the memory later units report; topology and attributes as above.
    profile p = out.back();
    p.name = "dgx-spark-121g";
    p.description =
        "NVIDIA DGX Spark (GB10) as later units report it: 121.69 GiB to Linux, "
        "121.63 GiB to CUDA";
    p.device.total_memory = 130'602'405'888;
    p.host_memory_bytes = std::uint64_t{127'600'748} * 1024;
    // MemTotal - MemAvailable measured at 8.63 GiB on an idle unit (sources below).
    p.host_available_bytes = p.host_memory_bytes - 9'266'391'941;
    p.topology = embedded(p.name);
    p.sources = {
        "DGX Spark datasheet as dgx-spark; topology and CPU kinds of hwloc's dump "
        "(profile dgx-spark) with NUMA node 0 of MemTotal",
        "MemTotal 127,600,748 kB (130,663,165,952 B, 121.69 GiB): nvtop on a DGX Spark "
        "shows 121.690Gi (https://github.com/Syllo/nvtop/issues/449)",
        "TotalMemory 130,602,405,888 B (121.63 GiB): cuDeviceTotalMem on a GB10 in a public "
        "repository's notes that could not be named here (unconfirmed)",
        "MemAvailable 121,396,774,011 B (113.06 GiB): MemTotal less the 8.63 GiB that "
        "MemTotal - MemAvailable measured on an idle unit "
        "(https://github.com/Syllo/nvtop/issues/449, driver 580.173.02); cudaMemGetInfo's free "
        "at vLLM's startup on a fresh unit is lower, 110.34 GiB, as it counts page cache as used "
        "(https://github.com/MiaAI-Lab/GLM-5.3-Flash-EXL3-2x-DGX-Sparks/issues/47)"};
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
  return {"h100-pcie", "h100-sxm",  "h200",           "gh200", "gh200-144g",
          "gb200",     "dgx-spark", "dgx-spark-121g", "host"};
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
