// The backend suite (tests/core/backend_suite.hpp) for the host backend, with the scalar oracle
// path and the best SIMD path this CPU has. The CUDA instantiation is
// tests/cuda/backend_suite_test.cpp.
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

}  // namespace
}  // namespace umload::test
