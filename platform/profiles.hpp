// Built-in machine profiles: the machines of the hardware matrix described from published facts,
// so that `--profile NAME` makes platform, plan and load behave as on that machine. Each profile
// is a device description (the attribute values the CUDA runtime would report), a topology (hwloc
// XML under platform/profiles/, embedded at build time, or a synthetic description) and the
// memory figures the plan uses. Values not read off real hardware are listed as unconfirmed;
// docs/platforms.md gives the source of each fact.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "platform/device.hpp"
#include "platform/topology.hpp"

namespace umload::platform {

struct profile {
  std::string name;
  std::string description;
  device_info device;  // present=false for the `host` profile
  topology_source topology;
  std::uint64_t host_memory_bytes = 0;     // installed host memory
  std::uint64_t host_available_bytes = 0;  // what the plan assumes MemAvailable would say
  std::vector<std::string> notes;          // caveats the plan output repeats
  std::vector<std::string> sources;        // where the figures come from
};

// h100-pcie, h100-sxm, h200, gh200, gh200-144g, gb200, dgx-spark, host.
std::vector<std::string> profile_names();

// Throws usage_error listing the names when `name` is not a profile.
profile find_profile(std::string_view name);

namespace detail {
// The XML text embedded from platform/profiles/NAME.xml; empty when there is none.
std::string_view profile_xml(std::string_view name);
}  // namespace detail

}  // namespace umload::platform
