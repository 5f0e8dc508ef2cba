#include "platform/config.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "kernels/error.hpp"
#include "platform/profiles.hpp"
#include "platform/units.hpp"

namespace umload::platform {
namespace {

std::optional<std::string> get(const env_lookup& env, std::string_view name) {
  auto value = env(name);
  if (!value || value->empty()) return std::nullopt;
  return value;
}

[[noreturn]] void bad_variable(std::string_view name, const std::string& value,
                               std::string_view expected) {
  throw usage_error("environment variable " + std::string(name) + "='" + value +
                    "' is invalid: expected " + std::string(expected));
}

std::optional<int> get_int(const env_lookup& env, std::string_view name, int lo, int hi) {
  auto text = get(env, name);
  if (!text) return std::nullopt;
  int value = 0;
  const char* first = text->data();
  const char* last = first + text->size();
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc{} || ptr != last || value < lo || value > hi) {
    bad_variable(name, *text,
                 "an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return value;
}

std::optional<std::uint64_t> get_size(const env_lookup& env, std::string_view name) {
  auto text = get(env, name);
  if (!text) return std::nullopt;
  try {
    return parse_size(*text);
  } catch (const usage_error& e) {
    bad_variable(name, *text, std::string("a size: ") + e.what());
  }
}

}  // namespace

defaults read_defaults(const env_lookup& env) {
  defaults d;
  if (auto p = get(env, "UMLOAD_PROFILE")) {
    const auto names = profile_names();
    if (std::find(names.begin(), names.end(), *p) == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      bad_variable("UMLOAD_PROFILE", *p, "one of " + list);
    }
    d.profile = *p;
  }
  d.topology = get(env, "UMLOAD_TOPOLOGY");
  if (auto m = get(env, "UMLOAD_MEMINFO")) d.meminfo_path = *m;
  if (auto c = get(env, "UMLOAD_CGROUP")) {
    if (*c == "none") {
      d.cgroup_disabled = true;
    } else {
      d.cgroup_dir = *c;
    }
  }
  d.device_ordinal = get_int(env, "UMLOAD_DEVICE", 0, 1023);
  if (auto io = get(env, "UMLOAD_IO")) {
    try {
      d.io = parse_io_mode(*io);
    } catch (const usage_error&) {
      bad_variable("UMLOAD_IO", *io, "auto, direct or buffered");
    }
  }
  d.staging_slot_bytes = get_size(env, "UMLOAD_STAGING_SLOT_SIZE");
  if (d.staging_slot_bytes && (*d.staging_slot_bytes < 4096 || *d.staging_slot_bytes % 4096 != 0)) {
    bad_variable("UMLOAD_STAGING_SLOT_SIZE", *get(env, "UMLOAD_STAGING_SLOT_SIZE"),
                 "a multiple of 4 KiB, at least 4 KiB");
  }
  d.staging_slots = get_int(env, "UMLOAD_STAGING_SLOTS", 1, 64);
  d.device_memory_bytes = get_size(env, "UMLOAD_DEVICE_MEMORY");
  d.host_memory_bytes = get_size(env, "UMLOAD_HOST_MEMORY");
  d.world_size = get_int(env, "WORLD_SIZE", 1, 1 << 20);
  d.rank = get_int(env, "RANK", 0, (1 << 20) - 1);
  d.local_rank = get_int(env, "LOCAL_RANK", 0, 1023);
  if (d.rank && d.world_size && *d.rank >= *d.world_size) {
    throw usage_error("environment: RANK=" + std::to_string(*d.rank) +
                      " is not below WORLD_SIZE=" + std::to_string(*d.world_size));
  }
  if (d.rank.has_value() != d.world_size.has_value()) {
    throw usage_error("environment: RANK and WORLD_SIZE must be set together (torchrun sets both)");
  }
  return d;
}

const defaults& process_defaults() {
  static std::mutex mutex;
  static std::unique_ptr<defaults> cached;
  std::lock_guard lock(mutex);
  if (!cached) {
    cached = std::make_unique<defaults>(read_defaults([](std::string_view name) {
      const char* v = std::getenv(std::string(name).c_str());
      return v ? std::optional<std::string>(v) : std::nullopt;
    }));
  }
  return *cached;
}

const std::vector<env_variable>& environment_variables() {
  static const std::vector<env_variable> vars{
      {"UMLOAD_PROFILE", "profile name",
       "behave as on a built-in machine profile (as --profile); see `umload platform --help`"},
      {"UMLOAD_TOPOLOGY", "path | synthetic:DESC",
       "read the hwloc topology from this XML file (format 2.0) or synthetic description"},
      {"UMLOAD_MEMINFO", "path",
       "read host memory figures from this file instead of /proc/meminfo"},
      {"UMLOAD_CGROUP", "path | none",
       "cgroup v2 directory whose memory.max/memory.current limit host memory; none ignores "
       "cgroups"},
      {"UMLOAD_DEVICE", "integer 0..1023", "CUDA device ordinal (default: LOCAL_RANK, else 0)"},
      {"UMLOAD_IO", "auto | direct | buffered", "force the I/O mode the plan would choose"},
      {"UMLOAD_STAGING_SLOT_SIZE", "size (multiple of 4 KiB)", "bytes per staging slot"},
      {"UMLOAD_STAGING_SLOTS", "integer 1..64", "number of staging slots"},
      {"UMLOAD_DEVICE_MEMORY", "size", "device memory the plan may use (as --device-memory)"},
      {"UMLOAD_HOST_MEMORY", "size", "host memory the plan may use (as --host-memory)"},
      {"RANK", "integer", "this process's rank (torchrun); needs WORLD_SIZE"},
      {"WORLD_SIZE", "integer >= 1", "number of ranks sharing the experts (torchrun)"},
      {"LOCAL_RANK", "integer 0..1023", "rank on this node (torchrun); picks the GPU"},
  };
  return vars;
}

}  // namespace umload::platform
