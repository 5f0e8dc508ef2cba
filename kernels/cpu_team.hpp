// Internal to the CPU kernels (MXFP4, cpu_decode.cpp; block FP8, fp8_cpu.cpp): the thread team a
// decode runs on. The work is cut into pieces that write disjoint output; each thread that takes
// a share calls the caller's team_hooks around it (the caller's thread too, when it works alone).
#pragma once

#include <cstdint>

#include "kernels/cpu_decode.hpp"

namespace umload::cpu::detail {

// What a thread sets up around its share besides the hooks: nothing.
struct no_thread_setup {};

// One thread's share of a decode, between its enter and leave hooks. `Setup` (a per-thread
// state, such as a floating-point mode) is in place from before `enter` until after `leave`.
template <typename Setup = no_thread_setup>
class hooked_share {
 public:
  explicit hooked_share(const team_hooks& hooks) : hooks_(hooks) {
    if (hooks_.enter) hooks_.enter(hooks_.context);
  }
  ~hooked_share() {
    if (hooks_.leave) hooks_.leave(hooks_.context);
  }
  hooked_share(const hooked_share&) = delete;
  hooked_share& operator=(const hooked_share&) = delete;

 private:
  const team_hooks& hooks_;
  Setup setup_;
};

// Runs body(i) for i in [0, count) over `workers` threads, each inside a hooked_share<Setup>;
// pieces are handed out dynamically because the cores may be shared with other work.
template <typename Setup = no_thread_setup, typename Body>
void parallel_pieces(std::uint64_t count, int workers, const team_hooks& hooks, Body body) {
  if (workers <= 1 || count <= 1) {
    const hooked_share<Setup> share(hooks);
    for (std::uint64_t i = 0; i < count; ++i) body(i);
    return;
  }
  const auto n = static_cast<std::int64_t>(count);
#pragma omp parallel num_threads(workers)
  {
    const hooked_share<Setup> share(hooks);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t i = 0; i < n; ++i) body(static_cast<std::uint64_t>(i));
  }
}

}  // namespace umload::cpu::detail
