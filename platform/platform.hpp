// What machine this is: the GPU (through device_query), its memory model and why, the hwloc
// topology with the GPU's place in it, and the memory figures a plan may spend. Detection is
// live (CUDA + hwloc + /proc/meminfo + cgroup v2) or a named profile (profiles.hpp).
//
//   auto info = umload::platform::detect_platform(detect_options::from(process_defaults()));
//   info.model;                    // memory_model::host on a machine without a GPU
//   info.memory.device_bytes;      // what device-resident tensors may use
//
// detect_platform never throws for "no GPU"; it throws usage_error for an unknown profile,
// io_error/format_error for an unreadable or rejected topology or meminfo file given by the user.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "platform/config.hpp"
#include "platform/device.hpp"
#include "platform/meminfo.hpp"
#include "platform/topology.hpp"

namespace umload::platform {

// The memory a plan may spend, and where each figure came from.
struct memory_figures {
  std::uint64_t device_bytes = 0;  // for device-resident tensors (the pool, when single_pool)
  std::string device_source;
  std::uint64_t host_bytes = 0;  // for host-resident tensors and staging
  std::string host_source;
  bool single_pool = false;  // integrated: device and host draw on the same memory
};

struct platform_info {
  std::string source;   // "live" or "profile NAME"
  std::string profile;  // empty when live
  std::string description;
  device_info device;
  memory_model model = memory_model::host;
  std::string reason;
  topology_info topology;
  std::optional<meminfo> host_meminfo;  // live only
  std::string meminfo_source;
  std::optional<cgroup_limit> cgroup;  // live only
  memory_figures memory;
  std::vector<std::string> notes;
  std::vector<std::string> sources;  // profiles: where the facts come from
};

struct detect_options {
  std::optional<std::string> profile;   // a profile name: no live query at all
  std::optional<std::string> topology;  // XML path or "synthetic:DESC"; overrides the profile's
  std::filesystem::path meminfo_path = "/proc/meminfo";
  std::optional<std::filesystem::path> cgroup_dir;  // default: from /proc/self/cgroup
  bool cgroup_disabled = false;
  std::filesystem::path cgroup_root = "/sys/fs/cgroup";
  std::filesystem::path proc_self_cgroup = "/proc/self/cgroup";
  int device = 0;
  const device_query* query = nullptr;  // nullptr: the live CUDA query

  static detect_options from(const defaults& env);
};

platform_info detect_platform(const detect_options& options);

// The figures a plan may spend, from the classification, the device and the host memory. Pure.
// discrete: cudaMemGetInfo free (total when absent); coherent: device total (cudaMemGetInfo
// counts page cache sitting in HBM); integrated: min(CUDA pool, MemAvailable, cgroup room);
// host: no device memory. Host: MemAvailable, bounded by the cgroup's room.
memory_figures derive_memory(memory_model model, const device_info& device,
                             const std::optional<meminfo>& host,
                             const std::optional<cgroup_limit>& cgroup);

// Builds the platform of a named profile (no live query). Throws usage_error for unknown names.
platform_info profile_platform(std::string_view name,
                               const std::optional<std::string>& topology = {});

// Forces the memory model (plan --platform MODEL): keeps the detected figures and says so.
platform_info with_model(platform_info info, memory_model model);

nlohmann::json to_json(const platform_info& info);
std::string describe(const platform_info& info);  // human-readable, several lines

}  // namespace umload::platform
