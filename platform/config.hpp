// Every environment variable umload reads, read in one place, typed and validated (the model is
// kvikio's `defaults`). Nothing else in umload calls getenv. An empty variable counts as unset;
// any other value that does not parse is a usage_error naming the variable, never a silent
// default. Documented in docs/configuration.md.
//
//   const auto& env = umload::platform::process_defaults();   // reads the environment once
//   if (env.profile) ...                                       // UMLOAD_PROFILE
//
// Tests build a `defaults` from a map with read_defaults(lookup).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/vocabulary.hpp"

namespace umload::platform {

struct defaults {
  std::optional<std::string> profile;   // UMLOAD_PROFILE: a built-in profile name
  std::optional<std::string> topology;  // UMLOAD_TOPOLOGY: XML file or "synthetic:..."
  std::filesystem::path meminfo_path = "/proc/meminfo";  // UMLOAD_MEMINFO
  std::optional<std::filesystem::path> cgroup_dir;       // UMLOAD_CGROUP: a cgroup v2 directory
  bool cgroup_disabled = false;                          // UMLOAD_CGROUP=none
  std::optional<int> device_ordinal;                     // UMLOAD_DEVICE: CUDA ordinal to use
  io_mode io = io_mode::automatic;                       // UMLOAD_IO: auto|direct|buffered
  std::optional<std::uint64_t> staging_slot_bytes;       // UMLOAD_STAGING_SLOT_SIZE: a size
  std::optional<int> staging_slots;                      // UMLOAD_STAGING_SLOTS: 1..64
  std::optional<std::uint64_t> device_memory_bytes;      // UMLOAD_DEVICE_MEMORY: a size
  std::optional<std::uint64_t> host_memory_bytes;        // UMLOAD_HOST_MEMORY: a size
  std::optional<int> rank;                               // RANK (torchrun)
  std::optional<int> world_size;                         // WORLD_SIZE (torchrun)
  std::optional<int>
      local_rank;  // LOCAL_RANK (torchrun): picks the GPU when UMLOAD_DEVICE is unset

  // UMLOAD_DEVICE, else LOCAL_RANK, else 0.
  int device() const { return device_ordinal.value_or(local_rank.value_or(0)); }
};

// Returns the value of an environment variable, or nullopt when it is not set.
using env_lookup = std::function<std::optional<std::string>(std::string_view name)>;

// Reads and validates every variable through `env`. Throws usage_error naming the variable.
defaults read_defaults(const env_lookup& env);

// The process environment, read once on first use. Throws usage_error (on every call) while a
// variable is malformed.
const defaults& process_defaults();

// One line per variable (name, type, meaning), for --help text and the docs.
struct env_variable {
  std::string_view name;
  std::string_view type;
  std::string_view meaning;
};
const std::vector<env_variable>& environment_variables();

}  // namespace umload::platform
