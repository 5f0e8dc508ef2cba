#include "platform/binding.hpp"

#include <hwloc.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

namespace umload::platform {
namespace {

struct live_topology {
  hwloc_topology_t topology = nullptr;
  std::string failure;  // why it could not be loaded
  live_topology() {
    if (hwloc_topology_init(&topology) != 0) {
      topology = nullptr;
      failure = "hwloc_topology_init failed";
      return;
    }
    hwloc_topology_set_flags(topology, HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM);
    if (hwloc_topology_load(topology) != 0) {
      failure = std::string("hwloc could not discover this machine: ") + std::strerror(errno);
      hwloc_topology_destroy(topology);
      topology = nullptr;
    }
  }
  ~live_topology() {
    if (topology) hwloc_topology_destroy(topology);
  }
};

const live_topology& machine() {
  static const live_topology t;
  return t;
}

struct bitmap_deleter {
  void operator()(hwloc_bitmap_s* b) const noexcept { hwloc_bitmap_free(b); }
};
using bitmap_ptr = std::unique_ptr<hwloc_bitmap_s, bitmap_deleter>;

std::string list_of(hwloc_const_bitmap_t set) {
  char* text = nullptr;
  if (hwloc_bitmap_list_asprintf(&text, set) < 0 || !text) return {};
  std::string out(text);
  std::free(text);
  return out;
}

}  // namespace

std::string_view to_string(bind_outcome o) {
  switch (o) {
    case bind_outcome::bound: return "bound";
    case bind_outcome::not_here: return "not-here";
    case bind_outcome::refused: return "refused";
  }
  return "refused";
}

bind_result bind_this_thread(std::string_view cpuset) {
  const auto& m = machine();
  const std::string asked = "cpuset " + std::string(cpuset);
  if (!m.topology) return {bind_outcome::refused, asked + ": " + m.failure};
  bitmap_ptr wanted(hwloc_bitmap_alloc());
  if (!wanted || hwloc_bitmap_list_sscanf(wanted.get(), std::string(cpuset).c_str()) != 0)
    return {bind_outcome::refused, asked + ": not a cpuset list"};
  hwloc_bitmap_and(wanted.get(), wanted.get(), hwloc_topology_get_allowed_cpuset(m.topology));
  if (hwloc_bitmap_iszero(wanted.get()))
    return {bind_outcome::not_here, asked + ": none of its CPUs is on this machine (allowed " +
                                        list_of(hwloc_topology_get_allowed_cpuset(m.topology)) +
                                        ")"};
  if (hwloc_set_cpubind(m.topology, wanted.get(), HWLOC_CPUBIND_THREAD) != 0)
    return {bind_outcome::refused, asked + ": hwloc_set_cpubind: " + std::strerror(errno)};
  return {bind_outcome::bound, "cpuset " + list_of(wanted.get())};
}

bind_result bind_memory(void* p, std::size_t bytes, int numa_node) {
  const auto& m = machine();
  const std::string asked = "NUMA node " + std::to_string(numa_node);
  if (!m.topology) return {bind_outcome::refused, asked + ": " + m.failure};
  hwloc_obj_t node = numa_node < 0 ? nullptr
                                   : hwloc_get_numanode_obj_by_os_index(
                                         m.topology, static_cast<unsigned>(numa_node));
  if (node == nullptr)
    return {bind_outcome::not_here,
            asked + ": this machine has " +
                std::to_string(hwloc_get_nbobjs_by_type(m.topology, HWLOC_OBJ_NUMANODE)) +
                " NUMA node(s)"};
  if (bytes == 0) return {bind_outcome::bound, asked};
  if (hwloc_set_area_membind(m.topology, p, bytes, node->nodeset, HWLOC_MEMBIND_BIND,
                             HWLOC_MEMBIND_BYNODESET) == 0)
    return {bind_outcome::bound, asked};
  // Kernels without NUMA support (ENOSYS) and containers whose seccomp policy refuses mbind
  // (EPERM) leave the pages where first touch puts them.
  return {bind_outcome::refused, asked + ": hwloc_set_area_membind: " + std::strerror(errno)};
}

bool has_numa_node(int numa_node) {
  const auto& m = machine();
  return m.topology && numa_node >= 0 &&
         hwloc_get_numanode_obj_by_os_index(m.topology, static_cast<unsigned>(numa_node)) !=
             nullptr;
}

}  // namespace umload::platform
