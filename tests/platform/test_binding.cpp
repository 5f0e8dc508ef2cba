// thread_binder on this machine: a thread that enters is on the ordered CPUs, as the thread itself
// reads them back with sched_getaffinity (not through hwloc), and leave() puts back exactly what it
// had; inside a CPU decode's OpenMP team every thread, the caller's included, is on them while it
// decodes. Containers may refuse sched_setaffinity: the binder then says so and the checks of the
// binding itself skip.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu_decode.hpp"
#include "platform/binding.hpp"
#include "tests/platform/affinity.hpp"

namespace up = umload::platform;
using umload::test::affinity_guard;
using umload::test::affinity_of_this_thread;
using umload::test::pin_this_thread;

namespace {

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

TEST(ThreadBinder, EmptyCpusetBindsNothing) {
  up::thread_binder b("");
  const auto before = affinity_of_this_thread();
  b.enter();
  EXPECT_EQ(affinity_of_this_thread(), before);
  b.leave();
  EXPECT_EQ(b.cpus(), 0u);
  EXPECT_EQ(b.summary(), "");
  EXPECT_EQ(b.tally().entries, 0u);
}

TEST(ThreadBinder, CpusetAbsentHereIsNotHere) {
  up::thread_binder b("4000-4095");
  b.enter();
  b.leave();
  EXPECT_EQ(b.cpus(), 0u);
  EXPECT_TRUE(starts_with(b.summary(), "not-here: cpuset 4000-4095")) << b.summary();
  EXPECT_TRUE(starts_with(up::thread_binder("abc").summary(), "refused: cpuset abc: not a "))
      << up::thread_binder("abc").summary();
  EXPECT_TRUE(starts_with(up::thread_binder("0").summary(), "not used: no thread entered"));
}

// The thread pins itself to its first CPU, enters a binder for its last, and is there; leaving
// puts it back on the first.
TEST(ThreadBinder, EnterBindsAndLeavePutsTheThreadBack) {
  const affinity_guard guard;
  if (guard.before.size() < 2) GTEST_SKIP() << "needs two CPUs, has " << guard.before.size();
  const int first = guard.before.front(), last = guard.before.back();
  if (!pin_this_thread({first})) GTEST_SKIP() << "sched_setaffinity refused here";
  up::thread_binder b(std::to_string(last) + ",4000");  // CPU 4000: not here, cut away
  EXPECT_EQ(b.cpus(), 1u);
  b.enter();
  EXPECT_EQ(affinity_of_this_thread(), std::vector<int>{last});
  b.enter();  // already on the binder's CPUs: nothing more
  b.leave();
  EXPECT_EQ(affinity_of_this_thread(), std::vector<int>{first});
  b.leave();  // not entered any more: nothing
  EXPECT_EQ(affinity_of_this_thread(), std::vector<int>{first});
  const auto t = b.tally();
  EXPECT_EQ(t.threads, 1u);
  EXPECT_EQ(t.bound, 1u);
  EXPECT_EQ(t.read_back_equal, 1u);
  EXPECT_EQ(t.restored, 1u);
  EXPECT_TRUE(starts_with(b.summary(), "bound: cpuset " + std::to_string(last) + " (1 threads;"))
      << b.summary();
}

// A decode over a team of three threads with the binder as its hooks: each thread, read from
// inside its share, is on the binder's CPU while it decodes, and every one is back where it was
// afterwards, the caller on its own CPU.
TEST(ThreadBinder, EveryThreadOfADecodeTeamIsOnTheCpusetWhileItDecodes) {
  const affinity_guard guard;
  if (guard.before.size() < 2) GTEST_SKIP() << "needs two CPUs, has " << guard.before.size();
  const int first = guard.before.front(), last = guard.before.back();
  if (!pin_this_thread({first})) GTEST_SKIP() << "sched_setaffinity refused here";

  struct probe {
    up::thread_binder binder;
    std::mutex mutex;
    std::map<std::thread::id, std::vector<int>> inside;
    explicit probe(const std::string& cpuset) : binder(cpuset) {}
    static void enter(void* self) {
      auto& p = *static_cast<probe*>(self);
      p.binder.enter();
      const auto cpus = affinity_of_this_thread();
      std::lock_guard lock(p.mutex);
      p.inside[std::this_thread::get_id()] = cpus;
    }
    static void leave(void* self) { static_cast<probe*>(self)->binder.leave(); }
  } p(std::to_string(last));

  std::vector<std::uint8_t> blocks(4 * 512 * 8 * 16, 0x5A), scales(4 * 512 * 8, 127);
  std::vector<std::uint16_t> out(4 * 512 * 8 * 32);
  const umload::decode_job job{blocks.data(),
                               scales.data(),
                               out.data(),
                               4,
                               512,
                               8,
                               umload::layout::hf,
                               umload::output_dtype::bf16};
  const umload::cpu::team_hooks hooks{&probe::enter, &probe::leave, &p};
  umload::cpu::decode(job, umload::cpu::best_isa(), 3, hooks);

  EXPECT_GT(p.inside.size(), 1u) << "a team, not the caller alone";
  EXPECT_EQ(p.inside.count(std::this_thread::get_id()), 1u) << "the caller decodes too";
  for (const auto& [thread, cpus] : p.inside) EXPECT_EQ(cpus, std::vector<int>{last});
  const auto t = p.binder.tally();
  EXPECT_EQ(t.threads, p.inside.size());
  EXPECT_EQ(t.bound, t.entries);
  EXPECT_EQ(t.read_back_equal, t.bound);
  EXPECT_EQ(t.restored, t.bound);
  EXPECT_EQ(affinity_of_this_thread(), std::vector<int>{first}) << "the caller is put back";
  // The team's threads are back where they were too: the next team from this thread reuses them
  // (the OpenMP runtime keeps its threads), and none is still on the binder's CPU alone.
  struct look {
    std::mutex mutex;
    std::vector<std::vector<int>> seen;
    static void enter(void* self) {
      auto& l = *static_cast<look*>(self);
      const auto cpus = affinity_of_this_thread();
      std::lock_guard lock(l.mutex);
      l.seen.push_back(cpus);
    }
  } after;
  umload::cpu::decode(job, umload::cpu::best_isa(), 3, {&look::enter, nullptr, &after});
  ASSERT_FALSE(after.seen.empty());
  for (const auto& cpus : after.seen) EXPECT_NE(cpus, std::vector<int>{last});
}
