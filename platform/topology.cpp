#include "platform/topology.hpp"

#include <hwloc.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "kernels/error.hpp"

namespace umload::platform {
namespace {

struct topology_deleter {
  void operator()(hwloc_topology* t) const noexcept { hwloc_topology_destroy(t); }
};
using topology_ptr = std::unique_ptr<hwloc_topology, topology_deleter>;

std::string list_string(hwloc_const_bitmap_t set) {
  if (!set || hwloc_bitmap_iszero(set)) return {};
  char* text = nullptr;
  if (hwloc_bitmap_list_asprintf(&text, set) < 0 || !text) return {};
  std::string out(text);
  std::free(text);
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string canonical_bus_id(unsigned domain, unsigned bus, unsigned dev, unsigned func) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", domain, bus, dev, func);
  return buf;
}

bool same_bus_id(std::string_view a, std::string_view b) {
  unsigned d1, b1, v1, f1, d2, b2, v2, f2;
  return parse_pci_bus_id(a, d1, b1, v1, f1) && parse_pci_bus_id(b, d2, b2, v2, f2) && d1 == d2 &&
         b1 == b2 && v1 == v2 && f1 == f2;
}

topology_ptr open_topology(const topology_source& source) {
  // hwloc prints its "critical" errors (a missing /sys, say) to stderr unless HWLOC_HIDE_ERRORS is
  // 2; it reads the variable once, at its first error check. The library never prints: what
  // hwloc would have said comes back through the topology's notes. A value the user set stands.
  setenv("HWLOC_HIDE_ERRORS", "2", 0);
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) throw error("hwloc_topology_init failed");
  topology_ptr topo(raw);
  hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  switch (source.what) {
    case topology_source::kind::live:
      // hwloc 2.9 hides GH200's GPU-memory NUMA node unless this is set before discovery.
      setenv("HWLOC_KEEP_NVIDIA_GPU_NUMA_NODES", "1", 0);
      break;
    case topology_source::kind::xml_file: {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(source.value, ec)) {
        throw io_error("topology file " + source.value + " does not exist or is not a file",
                       ENOENT);
      }
      if (hwloc_topology_set_xml(raw, source.value.c_str()) != 0) {
        const int err = errno;
        throw format_error("hwloc rejected topology XML " + source.value + ": " +
                           std::strerror(err) + " (hwloc 2.9 reads format 2.0, not 3.0)");
      }
      break;
    }
    case topology_source::kind::xml_text:
      if (hwloc_topology_set_xmlbuffer(raw, source.value.data(),
                                       static_cast<int>(source.value.size() + 1)) != 0) {
        throw format_error("hwloc rejected topology XML of " + source.label);
      }
      break;
    case topology_source::kind::synthetic:
      if (hwloc_topology_set_synthetic(raw, source.value.c_str()) != 0) {
        throw usage_error("hwloc rejected synthetic topology '" + source.value +
                          "' (example: \"pack:2 numa:1(memory=64GB) core:8 pu:2\")");
      }
      break;
  }
  if (hwloc_topology_load(raw) != 0) {
    const int err = errno;
    if (source.what == topology_source::kind::live) {
      throw error(std::string("hwloc could not discover this machine's topology: ") +
                  std::strerror(err));
    }
    throw format_error("hwloc could not load topology " + source.label + ": " + std::strerror(err));
  }
  return topo;
}

void locate(hwloc_topology_t topo, std::string_view bus_id, topology_info& info) {
  gpu_locality& gpu = info.gpu;
  gpu.pci_bus_id = lower(std::string(bus_id));
  unsigned domain, bus, dev, func;
  if (!parse_pci_bus_id(bus_id, domain, bus, dev, func)) {
    gpu.reason = "malformed PCI bus id '" + std::string(bus_id) + "'";
    return;
  }
  gpu.pci_bus_id = canonical_bus_id(domain, bus, dev, func);
  for (const auto& node : info.numa_nodes) {
    if (node.gpu_memory && !node.pci_bus_id.empty() && same_bus_id(node.pci_bus_id, bus_id)) {
      gpu.memory_numa_node = static_cast<int>(node.os_index);
    }
  }
  hwloc_obj_t pci = hwloc_get_pcidev_by_busid(topo, domain, bus, dev, func);
  if (!pci) {
    gpu.reason = "PCI device " + gpu.pci_bus_id + " is not in the topology";
    return;
  }
  hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, pci);
  if (!anc || !anc->cpuset) {
    gpu.reason = "PCI device " + gpu.pci_bus_id + " has no CPU-side ancestor";
    return;
  }
  gpu.found = true;
  gpu.cpuset = list_string(anc->cpuset);
  hwloc_obj_t node = nullptr;
  while ((node = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, node)) != nullptr) {
    const bool gpu_mem = node->subtype && std::strcmp(node->subtype, "GPUMemory") == 0;
    if (gpu_mem || !node->cpuset || hwloc_bitmap_iszero(node->cpuset)) continue;
    if (hwloc_bitmap_intersects(node->cpuset, anc->cpuset)) {
      gpu.local_numa_nodes.push_back(static_cast<int>(node->os_index));
    }
  }
  if (!gpu.local_numa_nodes.empty()) gpu.numa_node = gpu.local_numa_nodes.front();
}

void read_cpu_kinds(hwloc_topology_t topo, topology_info& info) {
  const int n = hwloc_cpukinds_get_nr(topo, 0);
  if (n <= 0) return;
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  if (!set) return;
  for (int i = 0; i < n; ++i) {
    int efficiency = -1;
    unsigned nr_infos = 0;
    hwloc_info_s* infos = nullptr;
    if (hwloc_cpukinds_get_info(topo, static_cast<unsigned>(i), set, &efficiency, &nr_infos, &infos,
                                0) != 0)
      continue;
    cpu_kind k;
    k.cpuset = list_string(set);
    k.pus = static_cast<unsigned>(std::max(0, hwloc_bitmap_weight(set)));
    k.efficiency = efficiency;
    for (unsigned j = 0; j < nr_infos; ++j) {
      if (infos[j].name && infos[j].value) k.infos.emplace_back(infos[j].name, infos[j].value);
    }
    info.cpu_kinds.push_back(std::move(k));
  }
  hwloc_bitmap_free(set);
}

struct bitmap_deleter {
  void operator()(hwloc_bitmap_s* b) const noexcept { hwloc_bitmap_free(b); }
};
using bitmap_ptr = std::unique_ptr<hwloc_bitmap_s, bitmap_deleter>;

bitmap_ptr parse_list(const std::string& list) {
  bitmap_ptr b(hwloc_bitmap_alloc());
  if (b && hwloc_bitmap_list_sscanf(b.get(), list.c_str()) != 0) hwloc_bitmap_zero(b.get());
  return b;
}

std::string describe_kind(const cpu_kind& k) {
  std::string out = k.cpuset;
  std::string infos;
  for (const auto& [name, value] : k.infos)
    infos += (infos.empty() ? "" : ", ") + name + " " + value;
  if (!infos.empty()) out += " (" + infos + ")";
  return out;
}

// The Linux backend tags the root object Backend=Linux when it read /sys; without /sys hwloc
// falls back to other backends (x86 CPUID) after printing a critical error.
bool discovered_by_linux_backend(hwloc_topology_t topo) {
#ifdef __linux__
  const hwloc_obj_t root = hwloc_get_root_obj(topo);
  for (unsigned i = 0; i < root->infos_count; ++i) {
    const hwloc_info_s& info = root->infos[i];
    if (std::strcmp(info.name, "Backend") == 0 && std::strcmp(info.value, "Linux") == 0)
      return true;
  }
  return false;
#else
  (void)topo;
  return true;
#endif
}

}  // namespace

cpu_choice choose_worker_cpus(const topology_info& t, bool near_gpu) {
  const bool located = near_gpu && t.gpu.found && !t.gpu.cpuset.empty();
  const std::string base = located ? t.gpu.cpuset : t.cpuset;
  const std::string where =
      located ? "the CPUs next to the GPU (" + base + ")" : "the machine's CPUs (" + base + ")";
  const auto& kinds = t.cpu_kinds;
  const bool ranked =
      kinds.size() > 1 &&
      std::all_of(kinds.begin(), kinds.end(), [](const cpu_kind& k) { return k.efficiency >= 0; });
  if (!ranked) {
    std::string why = kinds.size() > 1
                          ? std::to_string(kinds.size()) + " CPU kinds that hwloc could not rank"
                      : kinds.empty() ? std::string("no CPU kinds reported")
                                      : std::string("one CPU kind");
    if (!located) {
      return {{},
              std::string(near_gpu ? "GPU locality unknown" : "no GPU to stay near") + " and " +
                  why + ": the OS places the threads"};
    }
    return {base, where + "; " + why};
  }
  const auto best = std::max_element(
      kinds.begin(), kinds.end(),
      [](const cpu_kind& a, const cpu_kind& b) { return a.efficiency < b.efficiency; });
  bitmap_ptr chosen = parse_list(base);
  bitmap_ptr fast = parse_list(best->cpuset);
  if (!chosen || !fast) return {base, where};
  hwloc_bitmap_and(chosen.get(), chosen.get(), fast.get());
  const std::string kind_text = "the most performant of " + std::to_string(kinds.size()) +
                                " CPU kinds, " + describe_kind(*best);
  if (hwloc_bitmap_iszero(chosen.get())) {
    return {base, where + "; " + kind_text + ", has none of them, so all are kept"};
  }
  std::string others;
  for (const auto& k : kinds) {
    if (&k != &*best) others += (others.empty() ? "" : "; ") + describe_kind(k);
  }
  return {list_string(chosen.get()), where + " cut to " + kind_text + "; left out: " + others};
}

topology_source topology_source::parse(std::string_view spec) {
  topology_source s;
  if (spec.empty()) {
    s.label = "live";
    return s;
  }
  constexpr std::string_view prefix = "synthetic:";
  if (spec.substr(0, prefix.size()) == prefix) {
    s.what = kind::synthetic;
    s.value = std::string(spec.substr(prefix.size()));
    s.label = std::string(spec);
    return s;
  }
  s.what = kind::xml_file;
  s.value = std::string(spec);
  s.label = std::string(spec);
  return s;
}

bool parse_pci_bus_id(std::string_view text, unsigned& domain, unsigned& bus, unsigned& dev,
                      unsigned& func) {
  // domain:bus:device.function, hexadecimal; nvidia-smi writes an 8-digit domain.
  auto field = [&](char end, unsigned& out, std::size_t max_digits) {
    std::size_t n = 0;
    out = 0;
    while (!text.empty() && std::isxdigit(static_cast<unsigned char>(text.front()))) {
      if (++n > max_digits) return false;
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text.front())));
      out = out * 16 + static_cast<unsigned>(c <= '9' ? c - '0' : c - 'a' + 10);
      text.remove_prefix(1);
    }
    if (n == 0) return false;
    if (end == 0) return text.empty();
    if (text.empty() || text.front() != end) return false;
    text.remove_prefix(1);
    return true;
  };
  return field(':', domain, 8) && field(':', bus, 2) && field('.', dev, 2) && field(0, func, 1) &&
         dev <= 0x1f && func <= 0x7;
}

std::uint64_t topology_info::cpu_memory_bytes() const {
  std::uint64_t sum = 0;
  for (const auto& n : numa_nodes) {
    if (!n.gpu_memory) sum += n.memory_bytes;
  }
  return sum;
}

const numa_node_info* topology_info::node(int os_index) const {
  for (const auto& n : numa_nodes) {
    if (static_cast<int>(n.os_index) == os_index) return &n;
  }
  return nullptr;
}

topology_info load_topology(const topology_source& source, std::string_view gpu_bus_id) {
  topology_ptr topo = open_topology(source);
  hwloc_topology_t t = topo.get();
  topology_info info;
  info.source = source.label.empty()
                    ? (source.what == topology_source::kind::live ? "live" : source.value)
                    : source.label;
  info.packages =
      static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE)));
  info.cores = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE)));
  info.pus = static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU)));
  info.cpuset = list_string(hwloc_topology_get_allowed_cpuset(t));

  hwloc_obj_t node = nullptr;
  while ((node = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, node)) != nullptr) {
    numa_node_info n;
    n.os_index = node->os_index;
    n.memory_bytes = node->attr ? node->attr->numanode.local_memory : 0;
    n.subtype = node->subtype ? node->subtype : "";
    if (const char* bus = hwloc_obj_get_info_by_name(node, "PCIBusID")) n.pci_bus_id = lower(bus);
    n.gpu_memory = n.subtype == "GPUMemory" || !n.pci_bus_id.empty();
    n.cpuset = list_string(node->cpuset);
    n.cpus = n.gpu_memory || !node->cpuset
                 ? 0u
                 : static_cast<unsigned>(std::max(0, hwloc_bitmap_weight(node->cpuset)));
    info.numa_nodes.push_back(std::move(n));
  }

  hwloc_obj_t pci = nullptr;
  while ((pci = hwloc_get_next_pcidev(t, pci)) != nullptr) {
    const auto& a = pci->attr->pcidev;
    if (a.vendor_id == 0x10de && (a.class_id >> 8) == 0x03) {
      info.nvidia_gpus.push_back(canonical_bus_id(a.domain, a.bus, a.dev, a.func));
    }
  }
  read_cpu_kinds(t, info);
  if (source.what == topology_source::kind::live && !discovered_by_linux_backend(t)) {
    info.notes.push_back(
        "hwloc found no sysfs CPU topology (/sys missing or not mounted): the topology comes from "
        "CPUID alone, so NUMA nodes, caches and device locality may be missing");
  }
  if (!gpu_bus_id.empty()) {
    locate(t, gpu_bus_id, info);
  } else {
    info.gpu.reason = "no GPU to locate";
  }
  return info;
}

}  // namespace umload::platform
