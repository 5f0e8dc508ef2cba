// Carrying out a plan's placement orders on this machine: reader threads bound to a cpuset, host
// memory bound to a NUMA node before it is first touched. One live hwloc topology serves the
// whole process; it is loaded at the first call. Binding is a placement hint: where the kernel
// or a container refuses it, the result says so and nothing is thrown.
//
//   auto r = umload::platform::bind_this_thread("0-71");    // hwloc_set_cpubind, THREAD
//   auto m = umload::platform::bind_memory(p, bytes, 1);    // hwloc_set_area_membind, BIND
//   if (!m.bound()) report(m.detail);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace umload::platform {

enum class bind_outcome : std::uint8_t {
  bound,     // done
  not_here,  // the cpuset or node does not exist on this machine (a profile's plan)
  refused,   // the system refused it (no NUMA support, seccomp, EPERM)
};
std::string_view to_string(bind_outcome o);  // "bound", "not-here", "refused"

struct bind_result {
  bind_outcome outcome = bind_outcome::refused;
  std::string detail;  // what was asked and, unless bound, why it was not done
  bool bound() const { return outcome == bind_outcome::bound; }
};

// Binds the calling thread to the CPUs of `cpuset` (hwloc list syntax, "0-55,112-167") that this
// machine has; not_here when it has none of them.
bind_result bind_this_thread(std::string_view cpuset);

// Binds the pages of [p, p + bytes) to NUMA node `numa_node` (its OS index). Call it before the
// first touch: pages already present stay where they are.
bind_result bind_memory(void* p, std::size_t bytes, int numa_node);

// Whether this machine has NUMA node `numa_node` (OS index).
bool has_numa_node(int numa_node);

}  // namespace umload::platform
