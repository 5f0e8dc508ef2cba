#include "platform/binding.hpp"

#include <hwloc.h>

#include <algorithm>
#include <atomic>
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

// The CPUs of `cpuset` this machine allows, into `wanted`; bound when there are some.
bind_result machine_cpus(std::string_view cpuset, bitmap_ptr& wanted) {
  const auto& m = machine();
  const std::string asked = "cpuset " + std::string(cpuset);
  if (!m.topology) return {bind_outcome::refused, asked + ": " + m.failure};
  wanted.reset(hwloc_bitmap_alloc());
  if (!wanted || hwloc_bitmap_list_sscanf(wanted.get(), std::string(cpuset).c_str()) != 0)
    return {bind_outcome::refused, asked + ": not a cpuset list"};
  hwloc_bitmap_and(wanted.get(), wanted.get(), hwloc_topology_get_allowed_cpuset(m.topology));
  if (hwloc_bitmap_iszero(wanted.get()))
    return {bind_outcome::not_here, asked + ": none of its CPUs is on this machine (allowed " +
                                        list_of(hwloc_topology_get_allowed_cpuset(m.topology)) +
                                        ")"};
  return {bind_outcome::bound, "cpuset " + list_of(wanted.get())};
}

// What the calling thread holds of thread_binder: the binder it last entered (counted once per
// thread), the one whose cpuset it is on now, and the binding it had before.
struct binder_record {
  std::uint64_t seen = 0;
  std::uint64_t active = 0;
  bitmap_ptr saved;
};
thread_local binder_record this_thread;
std::atomic<std::uint64_t> next_binder_serial{1};

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
  bitmap_ptr wanted;
  bind_result r = machine_cpus(cpuset, wanted);
  if (!r.bound()) return r;
  if (hwloc_set_cpubind(machine().topology, wanted.get(), HWLOC_CPUBIND_THREAD) != 0)
    return {bind_outcome::refused,
            "cpuset " + std::string(cpuset) + ": hwloc_set_cpubind: " + std::strerror(errno)};
  return r;
}

thread_binder::thread_binder(std::string_view cpuset)
    : asked_(cpuset), serial_(next_binder_serial++) {
  if (asked_.empty()) return;
  bitmap_ptr wanted;
  const bind_result r = machine_cpus(asked_, wanted);
  if (!r.bound()) {
    outcome_ = r.outcome;
    detail_ = r.detail;
    return;
  }
  cpuset_ = list_of(wanted.get());
  cpus_ = static_cast<unsigned>(std::max(0, hwloc_bitmap_weight(wanted.get())));
  wanted_ = wanted.release();
}

thread_binder::~thread_binder() { hwloc_bitmap_free(wanted_); }

void thread_binder::note_failure(std::string what) {
  std::lock_guard lock(mutex_);
  if (failure_.empty()) failure_ = std::move(what);
}

void thread_binder::enter() noexcept {
  if (!wanted_) return;
  binder_record& record = this_thread;
  if (record.active != 0) return;  // already on a binder's CPUs (a decode inside a decode)
  if (record.seen != serial_) {
    record.seen = serial_;
    ++threads_;
  }
  ++entries_;
  try {
    const hwloc_topology_t topology = machine().topology;
    if (!record.saved) record.saved.reset(hwloc_bitmap_alloc());
    if (!record.saved) return note_failure("no memory for the thread's binding");
    if (hwloc_get_cpubind(topology, record.saved.get(), HWLOC_CPUBIND_THREAD) != 0)
      return note_failure(std::string("hwloc_get_cpubind: ") + std::strerror(errno));
    if (hwloc_set_cpubind(topology, wanted_, HWLOC_CPUBIND_THREAD) != 0)
      return note_failure(std::string("hwloc_set_cpubind: ") + std::strerror(errno));
    record.active = serial_;
    ++bound_;
    bitmap_ptr got(hwloc_bitmap_alloc());
    if (got && hwloc_get_cpubind(topology, got.get(), HWLOC_CPUBIND_THREAD) == 0 &&
        hwloc_bitmap_isequal(got.get(), wanted_)) {
      ++read_back_equal_;
    } else {
      note_failure("a thread read back cpuset " + (got ? list_of(got.get()) : std::string("?")));
    }
  } catch (...) {
    // Out of memory for the record's words: the binding itself stands as done.
  }
}

void thread_binder::leave() noexcept {
  if (!wanted_) return;
  binder_record& record = this_thread;
  if (record.active != serial_) return;
  record.active = 0;
  if (hwloc_set_cpubind(machine().topology, record.saved.get(), HWLOC_CPUBIND_THREAD) == 0) {
    ++restored_;
    return;
  }
  try {
    note_failure(std::string("putting a thread back: hwloc_set_cpubind: ") + std::strerror(errno));
  } catch (...) {
  }
}

thread_binder::counts thread_binder::tally() const {
  return {threads_.load(), entries_.load(), bound_.load(), read_back_equal_.load(),
          restored_.load()};
}

std::string thread_binder::summary() const {
  if (asked_.empty()) return {};
  if (!wanted_) return std::string(to_string(outcome_)) + ": " + detail_;
  const counts c = tally();
  std::lock_guard lock(mutex_);
  if (c.entries == 0) return "not used: no thread entered (cpuset " + cpuset_ + ")";
  if (c.bound == 0) return "refused: cpuset " + cpuset_ + ": " + failure_;
  return "bound: cpuset " + cpuset_ + " (" + std::to_string(c.threads) + " threads; " +
         std::to_string(c.bound) + " of " + std::to_string(c.entries) + " entries bound, " +
         std::to_string(c.read_back_equal) + " read back equal, " + std::to_string(c.restored) +
         " put back after" + (failure_.empty() ? std::string() : "; " + failure_) + ")";
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
