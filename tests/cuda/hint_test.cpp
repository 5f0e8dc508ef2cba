// The fallback of advice and prefetches the driver refuses (src/memory_cuda.hpp,
// hint_with_fallback), with the driver replaced by a function that refuses at will: a host NUMA
// node refused falls back to the host, every location refused skips the hint, and either says
// "fallback" for the load report; an error that is not a refusal is thrown. No GPU is needed
// (no label: runs wherever CUDA is built), so the fallback is checked here although the real
// refusal has never been seen on a card.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/error.hpp"
#include "src/memory_cuda.hpp"
#include "src/orders.hpp"

namespace umload {
namespace {

// A driver that refuses the locations of `refused` types with `status` and records every call.
struct fake_driver {
  std::vector<cudaMemLocationType> refused;
  cudaError_t status = cudaErrorInvalidValue;
  std::vector<std::string> calls;
  cudaError_t operator()(const cudaMemLocation& where) {
    calls.push_back(to_string(where));
    for (const auto type : refused)
      if (where.type == type) return status;
    return cudaSuccess;
  }
};

hinted hint(fake_driver& driver, const char* what, int numa_node) {
  return hint_with_fallback(what, host_locations(numa_node),
                            [&](const cudaMemLocation& where) { return driver(where); });
}

TEST(CudaHints, TheHostNumaNodeIsAskedFirstAndTakenWhenTheDriverAgrees) {
  fake_driver driver;
  const hinted done = hint(driver, "advise preferred-location", 1);
  EXPECT_EQ(done.done, "advise preferred-location host-numa:1");
  EXPECT_TRUE(done.taken);
  EXPECT_FALSE(done.fell_back);
  EXPECT_EQ(driver.calls, (std::vector<std::string>{"host-numa:1"}));
}

TEST(CudaHints, ARefusedHostNumaNodeFallsBackToTheHostAndSaysSo) {
  for (const cudaError_t refusal :
       {cudaErrorInvalidValue, cudaErrorInvalidDevice, cudaErrorNotSupported}) {
    fake_driver driver{{cudaMemLocationTypeHostNuma}, refusal, {}};
    const hinted done = hint(driver, "advise preferred-location", 3);
    EXPECT_TRUE(done.taken);
    EXPECT_TRUE(done.fell_back);
    EXPECT_EQ(done.done, std::string("advise preferred-location host (fallback: host-numa:3 "
                                     "refused: ") +
                             cudaGetErrorName(refusal) + ")");
    EXPECT_EQ(driver.calls, (std::vector<std::string>{"host-numa:3", "host"}));
  }
}

TEST(CudaHints, EveryLocationRefusedSkipsTheHintWithoutFailing) {
  fake_driver driver{
      {cudaMemLocationTypeHostNuma, cudaMemLocationTypeHost}, cudaErrorInvalidValue, {}};
  hinted done;
  ASSERT_NO_THROW(done = hint(driver, "prefetch", 0));
  EXPECT_FALSE(done.taken);
  EXPECT_TRUE(done.fell_back);
  EXPECT_EQ(done.done,
            "fallback: prefetch skipped (host-numa:0 refused: cudaErrorInvalidValue; host "
            "refused: cudaErrorInvalidValue)");
  // Not counted as advice or as a prefetch in the report: it starts with neither word.
  EXPECT_NE(done.done.rfind("advise", 0), 0u);
  EXPECT_NE(done.done.rfind("prefetch", 0), 0u);
}

TEST(CudaHints, WithoutANodeOnlyTheHostIsAsked) {
  fake_driver driver{{cudaMemLocationTypeHost}, cudaErrorInvalidValue, {}};
  const hinted done = hint(driver, "advise preferred-location", -1);
  EXPECT_EQ(driver.calls, (std::vector<std::string>{"host"}));
  EXPECT_EQ(done.done,
            "fallback: advise preferred-location skipped (host refused: cudaErrorInvalidValue)");
}

// A sticky error from earlier work is not a refusal of the hint: it is thrown, not hidden.
TEST(CudaHints, AnErrorThatIsNotARefusalIsThrown) {
  fake_driver driver{{cudaMemLocationTypeHostNuma}, cudaErrorIllegalAddress, {}};
  EXPECT_THROW(hint(driver, "advise preferred-location", 1), cuda_error);
  EXPECT_FALSE(refused_hint(cudaErrorIllegalAddress));
  EXPECT_FALSE(refused_hint(cudaErrorMemoryAllocation));
  EXPECT_TRUE(refused_hint(cudaErrorInvalidValue));
}

// The load report counts every action that fell back, wherever the word stands.
TEST(CudaHints, TheLoadReportCountsFallbacks) {
  load_actions actions;
  tensor_record spilled;
  spilled.actions = {
      "advise preferred-location host (fallback: host-numa:1 refused: "
      "cudaErrorInvalidValue)",
      "advise accessed-by cuda:0",
      "fault-in fallback: prefetch skipped (host refused: cudaErrorInvalidValue)"};
  tensor_record plain;
  plain.actions = {"numa-bind bound: NUMA node 0", "fault-in populate-write"};
  actions.tensors = {spilled, plain};
  EXPECT_EQ(actions.fallbacks(), 2u);
  const auto j = to_json(actions);
  EXPECT_EQ(j["fallbacks"], 2u);
  EXPECT_EQ(j["advice"], 2u);
  EXPECT_EQ(j["prefetches"], 0u);
}

}  // namespace
}  // namespace umload
