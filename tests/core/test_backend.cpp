// The backend suite (tests/core/backend_suite.hpp) for the host backend, with the scalar oracle
// path and the best SIMD path this CPU has. The CUDA instantiation is
// tests/cuda/backend_suite_test.cpp.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "src/memory.hpp"
#include "tests/core/backend_suite.hpp"

namespace umload::test {
namespace {

INSTANTIATE_TEST_SUITE_P(
    Host, BackendSuite,
    ::testing::Values(backend_case{"host_scalar", [] { return true; },
                                   [] { return make_host_backend(2, cpu::isa::scalar); },
                                   memory_kind::host},
                      backend_case{"host_best", [] { return true; },
                                   [] { return make_host_backend(0, cpu::best_isa()); },
                                   memory_kind::host}),
    case_name);

// What only the host backend does: standing in for a device, it reports the advice and device
// prefetches a GPU plan orders as simulated, and still binds host memory to the node.
TEST(HostBackend, StandsInForADeviceAndSaysWhatWasSimulated) {
  auto engine = make_host_backend(1, cpu::isa::scalar);
  const placed_output managed = engine->place_output(1 << 16, {memory_kind::host_managed, 0});
  ASSERT_NE(managed.data, nullptr);
  ASSERT_EQ(managed.simulated.size(), 2u);
  EXPECT_EQ(managed.simulated[0], "advise preferred-location host-numa:0");
  EXPECT_EQ(managed.simulated[1], "advise accessed-by device");
  EXPECT_EQ(engine->prefetch_to_device(managed.data, 1 << 16, nullptr).rfind("simulated", 0), 0u);
  engine->release_output(managed.data, 1 << 16, memory_kind::host_managed);
  EXPECT_EQ(engine->stats().peak_device_bytes, 0u);
}

// The host placement both backends share: bound to its node before first touch, and the bind
// said in the words the load report lists ("numa-bind <outcome>: <detail>"); no node, no bind.
TEST(HostMemory, PlacementOnANodeSaysWhatTheBindDid) {
  host_memory_resource host;
  for (const std::size_t bytes : {std::size_t{1} << 16, std::size_t{4} << 20}) {
    std::vector<std::string> actions;
    auto* p = static_cast<std::byte*>(host.allocate_on(bytes, 0, &actions));
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(actions.size(), 1u);
    EXPECT_EQ(actions[0].rfind("numa-bind ", 0), 0u) << actions[0];
    std::memset(p, 7, bytes);
    EXPECT_EQ(p[bytes - 1], std::byte{7});
    host.deallocate(p, bytes);

    actions.clear();
    p = static_cast<std::byte*>(host.allocate_on(bytes, 4095, &actions));
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(actions.size(), 1u);
    EXPECT_EQ(actions[0].rfind("numa-bind not-here", 0), 0u) << actions[0];
    host.deallocate(p, bytes);

    actions.clear();
    p = static_cast<std::byte*>(host.allocate_on(bytes, -1, &actions));
    EXPECT_TRUE(actions.empty());
    // Large mappings are 2 MiB aligned, so transparent huge pages can back them.
    if (bytes >= (std::size_t{2} << 20)) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % (std::size_t{2} << 20), 0u);
    }
    host.deallocate(p, bytes);
  }
  EXPECT_EQ(host.allocate_on(0, 0, nullptr), nullptr);
}

TEST(HostMemory, FaultingInLeavesZeroedPagesAndSaysWhatWasDone) {
  host_memory_resource host;
  const std::size_t bytes = 1 << 20;
  auto* p = static_cast<std::uint8_t*>(host.allocate(bytes));
  const std::string done = populate_for_write(p, bytes);
  EXPECT_TRUE(done == "populate-write" || done == "populate-write refused") << done;
  EXPECT_EQ(std::count(p, p + bytes, 0), static_cast<std::ptrdiff_t>(bytes));
  EXPECT_EQ(populate_for_write(nullptr, bytes), "nothing to fault in");
  host.deallocate(p, bytes);
}

// Every host resource refuses memory it cannot have with a budget_error, never std::bad_alloc.
TEST(HostMemory, ImpossibleAllocationsAreBudgetErrors) {
  const std::size_t impossible = std::size_t{1} << 60;
  host_memory_resource host;
  aligned_host_resource aligned;
  EXPECT_THROW(host.allocate(impossible), budget_error);
  EXPECT_THROW(aligned.allocate(impossible), budget_error);
  tracking_adaptor tracked(host);
  EXPECT_THROW(tracked.allocate(impossible), budget_error);
  EXPECT_EQ(tracked.live_bytes(), 0u);
}

// The adaptors the CUDA output memory is built from, over host memory: live and peak bytes, and
// a limit over its own bytes and those of a tracked resource beside it.
TEST(HostMemory, TrackingAndLimitingAdaptorsCountWhatTheyHold) {
  host_memory_resource host;
  tracking_adaptor tracked(host);
  void* a = tracked.allocate(1 << 20);
  void* b = tracked.allocate(1 << 16);
  tracked.deallocate(a, 1 << 20);
  EXPECT_EQ(tracked.live_bytes(), 1u << 16);
  EXPECT_EQ(tracked.peak_bytes(), (1u << 20) + (1u << 16));

  limiting_adaptor limited(host, 1 << 20, "guarded memory", &tracked);
  void* c = limited.allocate((1 << 20) - (1 << 16));  // with b beside it: exactly the limit
  EXPECT_EQ(limited.live_bytes(), (1u << 20) - (1u << 16));
  try {
    limited.allocate(4096);
    ADD_FAILURE() << "allocation past the limit was not refused";
  } catch (const budget_error& e) {
    EXPECT_NE(std::string(e.what()).find("guarded memory"), std::string::npos) << e.what();
  }
  tracked.deallocate(b, 1 << 16);
  void* d = limited.allocate(4096);  // b's bytes were given back
  limited.deallocate(d, 4096);
  limited.deallocate(c, (1 << 20) - (1 << 16));
  EXPECT_EQ(limited.live_bytes(), 0u);
}

}  // namespace
}  // namespace umload::test
