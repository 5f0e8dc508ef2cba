// The machine's shape through hwloc: NUMA nodes with their memory and CPUs, and where a GPU sits
// (its local NUMA node and cpuset, found through its PCI bus id, and its own memory node when the
// GPU's memory is a NUMA node, as on GH200). The topology comes from the live machine, from an
// XML file (hwloc format 2.0), from XML text (the built-in profiles) or from a synthetic
// description, which is how tests and profiles model machines that are not present.
//
//   auto info = load_topology(topology_source::parse("synthetic:pack:2 numa:1 core:4 pu:1"),
//                             "0000:1a:00.0");
//   info.gpu.cpuset;       // "4-7": reader threads belong there
//   info.gpu.numa_node;    // staging buffers belong there
//   choose_worker_cpus(info, true).cpuset;  // the same, cut to the fastest CPU kind if several
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace umload::platform {

struct topology_source {
  enum class kind : std::uint8_t { live, xml_file, xml_text, synthetic };
  kind what = kind::live;
  std::string value;  // path, XML text or synthetic description
  std::string label;  // how to name it in output ("live", the path, "profile gh200", ...)

  // "synthetic:DESC" -> synthetic, anything else -> an XML file path. Empty -> live.
  static topology_source parse(std::string_view spec);
  static topology_source live() { return {}; }
};

struct numa_node_info {
  unsigned os_index = 0;
  std::uint64_t memory_bytes = 0;
  std::string cpuset;       // hwloc list syntax, "0-55,112-167"; the locality for CPU-less nodes
  unsigned cpus = 0;        // PUs in the cpuset; 0 for GPU-memory nodes
  bool gpu_memory = false;  // subtype GPUMemory, or a PCIBusID info naming a GPU
  std::string subtype;
  std::string pci_bus_id;  // for GPU-memory nodes
};

struct gpu_locality {
  bool found = false;
  std::string pci_bus_id;             // what was looked up
  std::string cpuset;                 // cpuset of the GPU's first non-I/O ancestor
  int numa_node = -1;                 // nearest NUMA node with CPUs (staging, reader threads)
  std::vector<int> local_numa_nodes;  // every CPU node local to the GPU
  int memory_numa_node = -1;          // the GPU's own memory as a NUMA node, -1 if none
  std::string reason;                 // why not found
};

// One kind of CPU core as hwloc reports it (hwloc_cpukinds_get_info): from the OS (Linux's
// cpu_capacity, Intel's hybrid core types), from XML <cpukind> elements, or ranked by frequency.
struct cpu_kind {
  std::string cpuset;  // hwloc list syntax
  unsigned pus = 0;
  int efficiency = -1;  // hwloc's rank, 0 = least performant; -1 when hwloc could not rank kinds
  std::vector<std::pair<std::string, std::string>> infos;  // CoreType, CPUPart, LinuxCapacity...
};

struct topology_info {
  std::string source;
  unsigned packages = 0;
  unsigned cores = 0;
  unsigned pus = 0;
  std::string cpuset;                      // the machine's allowed cpuset
  std::vector<numa_node_info> numa_nodes;  // by os_index
  std::vector<std::string> nvidia_gpus;    // PCI bus ids of NVIDIA display/3D controllers
  gpu_locality gpu;                        // for the bus id passed to load_topology
  std::vector<cpu_kind> cpu_kinds;         // least performant first; empty when hwloc knows none
  std::vector<std::string> notes;          // what discovery lacked (hwloc itself stays silent)

  std::uint64_t cpu_memory_bytes() const;  // sum over NUMA nodes that are not GPU memory
  const numa_node_info* node(int os_index) const;
};

// Loads the topology (I/O filter KEEP_IMPORTANT, so PCI GPUs are kept) and locates the GPU with
// `gpu_bus_id` when non-empty. Live discovery sets HWLOC_KEEP_NVIDIA_GPU_NUMA_NODES=1 first
// (unless the caller set it) so GH200's HBM node is visible, and HWLOC_HIDE_ERRORS=2 (likewise)
// so hwloc never prints: a live discovery that found no /sys says so in `notes`. Throws io_error
// for an unreadable file, format_error for XML hwloc rejects, usage_error for a bad synthetic
// description.
topology_info load_topology(const topology_source& source, std::string_view gpu_bus_id = {});

// Where reader and decode threads go, and why, in words.
struct cpu_choice {
  std::string cpuset;  // hwloc list; empty: no binding, the OS decides
  std::string reason;
};

// The CPUs for reader and decode threads. Start from the GPU's cpuset when `near_gpu` and the GPU
// was located, else from the whole machine; when the machine has several CPU kinds ranked by
// efficiency, keep the most performant kind's CPUs among them (all of them when that kind has
// none there). With one kind and no GPU locality there is nothing to choose: no binding. Pure.
cpu_choice choose_worker_cpus(const topology_info& topology, bool near_gpu);

// "0000:1a:00.0" or "00000009:01:00.0" -> domain, bus, device, function. False if malformed.
bool parse_pci_bus_id(std::string_view text, unsigned& domain, unsigned& bus, unsigned& dev,
                      unsigned& func);

}  // namespace umload::platform
