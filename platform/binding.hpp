// Carrying out a plan's placement orders on this machine: reader threads bound to a cpuset,
// decode threads bound to a cpuset for the length of each decode and put back after it, host
// memory bound to a NUMA node before it is first touched. One live hwloc topology serves the
// whole process; it is loaded at the first call. Binding is a placement hint: where the kernel
// or a container refuses it, the result says so and nothing is thrown.
//
//   auto r = umload::platform::bind_this_thread("0-71");    // hwloc_set_cpubind, THREAD
//   auto m = umload::platform::bind_memory(p, bytes, 1);    // hwloc_set_area_membind, BIND
//   if (!m.bound()) report(m.detail);
//
//   umload::platform::thread_binder decode("5-9,15-19");    // each decode thread, around its
//   share: decode.enter(); /* work */ decode.leave();               // bound, then back where it
//   was
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

struct hwloc_bitmap_s;

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

// Puts each thread that calls enter() on the CPUs of `cpuset` this machine has, and leave() puts
// it back on the binding it had before, so that no thread, the caller's included, stays pinned
// once its work is done. enter() and leave() pair on one thread; many threads may use one binder
// at once. What enter() set is read back on the thread itself (hwloc_get_cpubind), so the record
// says what the threads actually got. An empty cpuset binds nothing.
class thread_binder {
 public:
  explicit thread_binder(std::string_view cpuset);
  ~thread_binder();
  thread_binder(const thread_binder&) = delete;
  thread_binder& operator=(const thread_binder&) = delete;

  void enter() noexcept;
  void leave() noexcept;

  // CPUs of the cpuset on this machine (0: nothing to bind to, or an empty cpuset).
  unsigned cpus() const { return cpus_; }

  struct counts {
    std::size_t threads = 0;          // distinct threads that entered
    std::size_t entries = 0;          // enter() calls
    std::size_t bound = 0;            // entries whose binding was set
    std::size_t read_back_equal = 0;  // of those, read back equal to the cpuset
    std::size_t restored = 0;         // leave() calls that put the thread's binding back
  };
  counts tally() const;

  // What was done, in words: "bound: cpuset 5-9,15-19 (...)", "not-here: ...", "refused: ...";
  // "not used: ..." when no thread entered; empty for an empty cpuset.
  std::string summary() const;

 private:
  void note_failure(std::string what);

  std::string asked_;                 // the cpuset as ordered
  hwloc_bitmap_s* wanted_ = nullptr;  // the cpuset cut to this machine's CPUs; null: bind nothing
  std::string cpuset_;                // the same, in list syntax
  bind_outcome outcome_ = bind_outcome::bound;
  std::string detail_;  // why not, when the cpuset cannot be bound at all
  unsigned cpus_ = 0;
  std::uint64_t serial_ = 0;  // tells binders apart in each thread's record
  std::atomic<std::size_t> threads_{0}, entries_{0}, bound_{0}, read_back_equal_{0}, restored_{0};
  mutable std::mutex mutex_;
  std::string failure_;  // the first refusal or differing read-back, in words
};

}  // namespace umload::platform
