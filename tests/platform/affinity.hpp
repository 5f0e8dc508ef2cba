// The calling thread's CPU affinity as the kernel holds it (sched_getaffinity, not hwloc), for
// tests that check what a binding did.
#pragma once

#include <sched.h>

#include <vector>

namespace umload::test {

inline std::vector<int> affinity_of_this_thread() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

// False where the system refuses it (a container's policy).
inline bool pin_this_thread(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// Puts the calling thread back on the affinity it had when the guard was made.
struct affinity_guard {
  std::vector<int> before = affinity_of_this_thread();
  ~affinity_guard() { pin_this_thread(before); }
};

}  // namespace umload::test
