#include "platform/platform.hpp"

#include <algorithm>
#include <memory>

#include "kernels/error.hpp"
#include "platform/profiles.hpp"
#include "platform/units.hpp"

namespace umload::platform {
namespace {

std::string bytes_text(std::uint64_t b) { return format_bytes(b) + " (" + format_count(b) + " B)"; }

}  // namespace

detect_options detect_options::from(const defaults& env) {
  detect_options o;
  o.profile = env.profile;
  o.topology = env.topology;
  o.meminfo_path = env.meminfo_path;
  o.cgroup_dir = env.cgroup_dir;
  o.cgroup_disabled = env.cgroup_disabled;
  o.device = env.device();
  return o;
}

memory_figures derive_memory(memory_model model, const device_info& device,
                             const std::optional<meminfo>& host,
                             const std::optional<cgroup_limit>& cgroup) {
  memory_figures m;
  if (host) {
    m.host_bytes = host->available_bytes();
    m.host_source = host->available_is_estimate() ? "MemFree + Buffers + Cached (no MemAvailable)"
                                                  : "MemAvailable";
    if (host->huge_pages_configured()) {
      m.host_source += "; " + format_bytes(host->huge_pages_free_bytes()) +
                       " in free huge pages not counted (they serve hugetlbfs only)";
    }
  } else {
    m.host_source = "unknown (no meminfo)";
  }
  if (cgroup && cgroup->remaining() < m.host_bytes) {
    m.host_bytes = cgroup->remaining();
    m.host_source = "cgroup " + cgroup->dir.string() + ": memory.max - memory.current";
  }
  switch (model) {
    case memory_model::host:
      m.device_bytes = 0;
      m.device_source = "no GPU";
      break;
    case memory_model::discrete:
    case memory_model::discrete_hmm:
      if (device.free_memory) {
        m.device_bytes = *device.free_memory;
        m.device_source = "cudaMemGetInfo free (trusted on discrete GPUs)";
      } else {
        m.device_bytes = device.total_memory;
        m.device_source = "device total memory";
      }
      break;
    case memory_model::coherent:
      m.device_bytes = device.total_memory;
      m.device_source =
          "device total memory (HBM); cudaMemGetInfo is not trusted on coherent "
          "machines, where page cache can sit in HBM";
      break;
    case memory_model::integrated:
      m.single_pool = true;
      m.device_bytes = std::min(device.total_memory, m.host_bytes);
      m.device_source = device.total_memory <= m.host_bytes
                            ? "CUDA pool total (one pool with the host; cudaMemGetInfo ignored)"
                            : "host available (" + m.host_source +
                                  "): one pool with the GPU; cudaMemGetInfo ignored";
      break;
  }
  return m;
}

namespace {

// The device the query reports and the memory model it implies.
void detect_device(platform_info& info, const detect_options& options) {
  std::unique_ptr<device_query> owned;
  const device_query* query = options.query;
  if (!query) {
    owned = make_cuda_device_query();
    query = owned.get();
  }
  info.device = query->query(options.device);
  const classification c = classify(info.device);
  info.model = c.model;
  info.reason = c.reason;
}

// The topology asked for, located around the device; a live topology that cannot be read is a
// note, a named one an error.
void detect_topology(platform_info& info, const detect_options& options) {
  const topology_source topo = topology_source::parse(options.topology.value_or(""));
  const std::string bus = info.device.present ? info.device.pci_bus_id : std::string();
  if (topo.what == topology_source::kind::live) {
    try {
      info.topology = load_topology(topo, bus);
    } catch (const error& e) {
      info.notes.push_back(std::string("topology unavailable: ") + e.what());
    }
  } else {
    info.topology = load_topology(topo, bus);
  }
  info.notes.insert(info.notes.end(), info.topology.notes.begin(), info.topology.notes.end());
}

// The host's meminfo; a missing /proc/meminfo is a note, any other path named an error.
void detect_meminfo(platform_info& info, const detect_options& options) {
  const bool default_meminfo = options.meminfo_path == "/proc/meminfo";
  try {
    info.host_meminfo = read_meminfo(options.meminfo_path);
    info.meminfo_source = options.meminfo_path.string();
  } catch (const error& e) {
    if (!default_meminfo) throw;
    info.notes.push_back(std::string("host memory unknown: ") + e.what());
  }
}

// The cgroup limit of this process: the directory given, or the one /proc/self/cgroup names.
void detect_cgroup(platform_info& info, const detect_options& options) {
  if (options.cgroup_disabled) return;
  std::optional<std::filesystem::path> dir = options.cgroup_dir;
  if (!dir) {
    if (auto text = read_text_if_present(options.proc_self_cgroup))
      dir = cgroup_dir_from(*text, options.cgroup_root);
  }
  if (dir) info.cgroup = read_cgroup_limit(*dir, options.cgroup_dir ? *dir : options.cgroup_root);
}

// Notes on the figures the memory model does not trust and on a GPU whose locality is unknown.
void note_untrusted_figures(platform_info& info) {
  if (info.device.present && info.device.free_memory && info.model != memory_model::discrete &&
      info.model != memory_model::discrete_hmm) {
    info.notes.push_back("cudaMemGetInfo reported " + format_bytes(*info.device.free_memory) +
                         " free; ignored on " + std::string(to_string(info.model)) +
                         " machines, where it counts page cache and buffers as used");
  }
  if (info.device.present && !info.topology.gpu.found && !info.topology.gpu.reason.empty()) {
    info.notes.push_back("GPU locality unknown: " + info.topology.gpu.reason);
  }
}

}  // namespace

platform_info detect_platform(const detect_options& options) {
  if (options.profile) return profile_platform(*options.profile, options.topology);

  platform_info info;
  info.source = "live";
  info.description = "this machine";
  detect_device(info, options);
  detect_topology(info, options);
  detect_meminfo(info, options);
  detect_cgroup(info, options);
  info.memory = derive_memory(info.model, info.device, info.host_meminfo, info.cgroup);
  note_untrusted_figures(info);
  return info;
}

platform_info profile_platform(std::string_view name, const std::optional<std::string>& topology) {
  const profile p = find_profile(name);
  platform_info info;
  info.source = "profile " + p.name;
  info.profile = p.name;
  info.description = p.description;
  info.device = p.device;
  const classification c = classify(p.device);
  info.model = c.model;
  info.reason = c.reason;
  const topology_source topo = topology ? topology_source::parse(*topology) : p.topology;
  info.topology = load_topology(topo, p.device.present ? p.device.pci_bus_id : std::string());
  meminfo assumed;
  assumed.total = p.host_memory_bytes;
  assumed.available = p.host_available_bytes;
  info.memory = derive_memory(info.model, info.device, assumed, std::nullopt);
  info.memory.host_source = "profile figure: assumed MemAvailable of " +
                            format_bytes(p.host_available_bytes) + " out of " +
                            format_bytes(p.host_memory_bytes) + " installed";
  if (info.model != memory_model::host)
    info.memory.device_source = "profile figure: " + info.memory.device_source;
  info.notes = p.notes;
  info.sources = p.sources;
  return info;
}

platform_info with_model(platform_info info, memory_model model) {
  if (model == info.model) return info;
  info.notes.push_back("memory model forced to " + std::string(to_string(model)) + " (detected " +
                       std::string(to_string(info.model)) + ")");
  info.reason = "forced by --platform " + std::string(to_string(model)) + "; detected " +
                std::string(to_string(info.model)) + ": " + info.reason;
  const memory_model detected = info.model;
  info.model = model;
  const auto host = info.memory.host_bytes;
  const auto host_src = info.memory.host_source;
  if (model == memory_model::host) {
    info.memory.device_bytes = 0;
    info.memory.device_source = "no GPU (forced host)";
    info.memory.single_pool = false;
  } else if (model == memory_model::integrated) {
    info.memory.single_pool = true;
    if (detected == memory_model::host) {
      info.memory.device_bytes = host;
      info.memory.device_source = "host available (" + host_src + "): one pool";
    }
  } else {
    info.memory.single_pool = false;
    if (detected == memory_model::host) {
      info.memory.device_bytes = 0;
      info.memory.device_source = "no device detected: give --device-memory";
    }
  }
  return info;
}

nlohmann::json to_json(const platform_info& info) {
  using nlohmann::json;
  const device_info& d = info.device;
  json attrs = json::object();
  for (const auto& a : attributes(d)) attrs[std::string(a.name)] = a.value;
  json device = {
      {"present", d.present},
      {"ordinal", d.ordinal},
      {"device_count", d.device_count},
      {"name", d.name},
      {"pci_bus_id", d.pci_bus_id},
      {"compute_capability", d.compute_major >= 0 ? std::to_string(d.compute_major) + "." +
                                                        std::to_string(d.compute_minor)
                                                  : std::string()},
      {"sm_count", d.sm_count},
      {"total_memory", d.total_memory},
      {"free_memory", d.free_memory ? json(*d.free_memory) : json(nullptr)},
      {"driver_version", d.driver_version},
      {"runtime_version", d.runtime_version},
      {"attributes", attrs},
      {"unconfirmed", d.unconfirmed},
  };
  if (!d.present) device["absence_reason"] = d.absence_reason;
  json nodes = json::array();
  for (const auto& n : info.topology.numa_nodes) {
    nodes.push_back({{"os_index", n.os_index},
                     {"memory_bytes", n.memory_bytes},
                     {"cpus", n.cpus},
                     {"cpuset", n.cpuset},
                     {"gpu_memory", n.gpu_memory},
                     {"subtype", n.subtype},
                     {"pci_bus_id", n.pci_bus_id}});
  }
  json kinds = json::array();
  for (const auto& k : info.topology.cpu_kinds) {
    json infos = json::object();
    for (const auto& [name, value] : k.infos) infos[name] = value;
    kinds.push_back(
        {{"cpuset", k.cpuset}, {"pus", k.pus}, {"efficiency", k.efficiency}, {"infos", infos}});
  }
  const gpu_locality& g = info.topology.gpu;
  json topo = {
      {"source", info.topology.source},
      {"packages", info.topology.packages},
      {"cores", info.topology.cores},
      {"pus", info.topology.pus},
      {"cpuset", info.topology.cpuset},
      {"numa_nodes", nodes},
      {"nvidia_gpus", info.topology.nvidia_gpus},
      {"cpu_kinds", kinds},
      {"gpu",
       {{"found", g.found},
        {"pci_bus_id", g.pci_bus_id},
        {"cpuset", g.cpuset},
        {"numa_node", g.numa_node},
        {"local_numa_nodes", g.local_numa_nodes},
        {"memory_numa_node", g.memory_numa_node},
        {"reason", g.reason}}},
  };
  json j = {
      {"memory_model", std::string(to_string(info.model))},
      {"reason", info.reason},
      {"source", info.source},
      {"profile", info.profile},
      {"description", info.description},
      {"device", device},
      {"topology", topo},
      {"memory",
       {{"device_bytes", info.memory.device_bytes},
        {"device_source", info.memory.device_source},
        {"host_bytes", info.memory.host_bytes},
        {"host_source", info.memory.host_source},
        {"single_pool", info.memory.single_pool}}},
      {"notes", info.notes},
      {"sources", info.sources},
  };
  if (info.host_meminfo) {
    const meminfo& m = *info.host_meminfo;
    auto opt = [](const std::optional<std::uint64_t>& v) { return v ? json(*v) : json(nullptr); };
    j["meminfo"] = {{"source", info.meminfo_source},
                    {"mem_total", opt(m.total)},
                    {"mem_available", opt(m.available)},
                    {"mem_free", opt(m.free)},
                    {"cached", opt(m.cached)},
                    {"huge_pages_total", opt(m.huge_pages_total)},
                    {"huge_pages_free", opt(m.huge_pages_free)},
                    {"huge_page_size", opt(m.huge_page_size)}};
  }
  if (info.cgroup) {
    j["cgroup"] = {{"dir", info.cgroup->dir.string()},
                   {"memory_max", info.cgroup->max},
                   {"memory_current", info.cgroup->current}};
  }
  return j;
}

namespace {

// The device line, its free memory and its nonzero attributes, or why there is none.
void describe_device(std::ostringstream& o, const device_info& d) {
  if (d.present) {
    o << "device " << d.ordinal << " of " << d.device_count << ": " << d.name << ", compute "
      << d.compute_major << "." << d.compute_minor << ", " << d.sm_count << " SMs, PCI "
      << (d.pci_bus_id.empty() ? "?" : d.pci_bus_id) << ", " << bytes_text(d.total_memory) << "\n";
    if (d.free_memory) o << "  cudaMemGetInfo free: " << bytes_text(*d.free_memory) << "\n";
    o << "  attributes (cudaDeviceAttr number = value):\n";
    for (const auto& a : attributes(d)) {
      if (a.number == 0) continue;
      o << "    " << a.name << " (" << a.number << ") = " << a.value
        << (a.confirmed ? "" : "  [unconfirmed]") << "\n";
    }
  } else {
    o << "device: none (" << d.absence_reason << ")\n";
  }
}

// The topology summary, its NUMA nodes, its CPU kinds (when more than one) and, with a device,
// where the GPU sits.
void describe_topology(std::ostringstream& o, const topology_info& t, bool device_present) {
  o << "topology: " << (t.source.empty() ? "unknown" : t.source) << ": " << t.packages
    << " package(s), " << t.cores << " cores, " << t.pus << " PUs, cpuset " << t.cpuset << "\n";
  for (const auto& n : t.numa_nodes) {
    o << "  NUMA node " << n.os_index << ": " << bytes_text(n.memory_bytes);
    if (n.gpu_memory) {
      o << ", GPU memory" << (n.pci_bus_id.empty() ? "" : " of " + n.pci_bus_id) << " (no CPUs)";
    } else {
      o << ", " << n.cpus << " CPUs (" << n.cpuset << ")";
    }
    o << "\n";
  }
  for (const auto& k : t.cpu_kinds.size() > 1 ? t.cpu_kinds : std::vector<cpu_kind>{}) {
    o << "  CPU kind " << k.cpuset << ": efficiency rank " << k.efficiency;
    for (const auto& [name, value] : k.infos) o << ", " << name << " " << value;
    o << "\n";
  }
  if (device_present) {
    const gpu_locality& g = t.gpu;
    if (g.found) {
      o << "  GPU " << g.pci_bus_id << ": local NUMA node " << g.numa_node << ", cpuset "
        << g.cpuset;
      if (g.memory_numa_node >= 0) o << ", its memory is NUMA node " << g.memory_numa_node;
      o << "\n";
    } else {
      o << "  GPU locality unknown: " << g.reason << "\n";
    }
  }
}

// The device and host figures the plan starts from, with their sources and the cgroup limit.
void describe_memory(std::ostringstream& o, const platform_info& info) {
  o << "memory for the plan:\n  device: " << bytes_text(info.memory.device_bytes) << " — "
    << info.memory.device_source << "\n  host:   " << bytes_text(info.memory.host_bytes) << " — "
    << info.memory.host_source << "\n";
  if (info.memory.single_pool) o << "  (one pool: device and host figures are the same memory)\n";
  if (info.cgroup) {
    o << "  cgroup " << info.cgroup->dir.string() << ": memory.max "
      << format_bytes(info.cgroup->max) << ", current " << format_bytes(info.cgroup->current)
      << "\n";
  }
}

}  // namespace

std::string describe(const platform_info& info) {
  std::ostringstream o;
  o << "platform: " << info.source;
  if (!info.description.empty()) o << " (" << info.description << ")";
  o << "\nmemory model: " << to_string(info.model) << "\n  why: " << info.reason << "\n";
  describe_device(o, info.device);
  describe_topology(o, info.topology, info.device.present);
  describe_memory(o, info);
  for (const auto& n : info.notes) o << "note: " << n << "\n";
  for (const auto& s : info.sources) o << "source: " << s << "\n";
  return o.str();
}

}  // namespace umload::platform
