// convert on the GPU: the same files, byte for byte, as convert on the CPU, in both layouts and
// both dtypes, with edge scale bytes; the report names the device and its peak memory; a device
// ordinal past the count is refused before the destination is touched. Also which device a load
// takes under a host-only plan, and a coherent plan's advice and prefetches carried out. Skips
// without a usable device (the no-device behaviour is tested in tests/core/test_cli.cpp).
#include "src/convert.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/error.hpp"
#include "src/backend.hpp"
#include "src/loader.hpp"
#include "src/planning.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

class CudaConvert : public ::testing::TestWithParam<std::tuple<layout, output_dtype>> {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  }
};

TEST_P(CudaConvert, WritesTheSameFilesAsTheCpu) {
  temp_dir dir;
  synth_tiny(dir / "src", 3, 8, true);
  convert_options o;
  o.memory_budget = 32ull << 20;
  o.shard_bytes = 256ull << 10;
  o.pipeline.order = std::get<0>(GetParam());
  o.pipeline.dtype = std::get<1>(GetParam());
  o.device = "cpu";
  const auto cpu = convert_checkpoint(dir / "src", dir / "cpu", o);
  o.device = "cuda";
  const auto gpu = convert_checkpoint(dir / "src", dir / "gpu", o);
  EXPECT_EQ(cpu.device, "cpu");
  EXPECT_EQ(gpu.device.rfind("cuda:", 0), 0u) << gpu.device;
  EXPECT_GT(gpu.pipeline.peak_device_bytes, 0u);
  EXPECT_GT(gpu.pipeline.quantized_bytes, 0u);
  EXPECT_EQ(gpu.shards, cpu.shards);
  const auto a = file_digests(dir / "cpu");
  const auto b = file_digests(dir / "gpu");
  EXPECT_GT(a.size(), 3u);
  EXPECT_EQ(a, b);
}

INSTANTIATE_TEST_SUITE_P(LayoutsAndDtypes, CudaConvert,
                         ::testing::Combine(::testing::Values(layout::hf, layout::native),
                                            ::testing::Values(output_dtype::bf16,
                                                              output_dtype::f32)));

TEST(CudaConvertDevice, OrdinalPastTheCountIsRefusedAndLeavesNothing) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  temp_dir dir;
  synth_tiny(dir / "src", 1, 4);
  convert_options o;
  o.device = "cuda:" + std::to_string(cuda_device_count());
  EXPECT_THROW(convert_checkpoint(dir / "src", dir / "dst", o), usage_error);
  EXPECT_FALSE(fs::exists(dir / "dst"));
}

// A plan for a host-only machine puts every tensor in host memory: "auto" follows it onto the
// CPU, an explicit CUDA device is refused.
TEST(CudaLoadDevice, HostOnlyPlanDecodesOnTheCpuOrRefusesCuda) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  temp_dir dir;
  synth_tiny(dir / "src", 1, 4);
  const auto automatic = run_cli("load --json --platform host " + (dir / "src").string());
  ASSERT_EQ(automatic.status, 0) << automatic.err;
  EXPECT_EQ(automatic.json()["device"], "cpu");
  const auto cuda = run_cli("load --json --platform host --device cuda " + (dir / "src").string());
  EXPECT_EQ(cuda.status, 2);
  EXPECT_NE(cuda.err.find("host-only plan"), std::string::npos) << cuda.err;
}

// A coherent plan (a GH200's, with device memory too small for the experts) carried out on a
// real GPU: the spilled tensors are host_managed memory advised as ordered, accessed by this GPU,
// or with the fallback the driver's refusal led to said in their actions (the profile's host NUMA
// node may not exist here: the host instead) and counted in the report's `fallbacks`; nothing
// is simulated; the digest is the CPU's; the timing block's parts add up to at most its total;
// and the weight set's prefetch moves the asked layer's spilled tensors to the device.
TEST(CudaLoadOrders, CoherentPlanOnTheGpuAdvisesSpilledTensorsAndPrefetchesThem) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  temp_dir dir;
  synth_tiny(dir / "m", 3, 8, false);
  load_options o;
  o.platform.profile = "gh200";
  o.platform.device_memory_bytes = (std::uint64_t{1} << 30) + (256u << 10);
  o.digest = true;
  load_options on_cpu = o;
  on_cpu.device = "cpu";
  o.device = "cuda";
  const auto cpu = load_checkpoint(dir / "m", on_cpu);
  const auto gpu = load_checkpoint(dir / "m", o);
  EXPECT_EQ(gpu.report.digest, cpu.report.digest);
  EXPECT_FALSE(gpu.report.host_stands_in);
  EXPECT_TRUE(gpu.report.actions.simulated.empty());
  std::size_t spilled = 0, fell_back = 0;
  const auto any_starts = [](const std::vector<std::string>& actions, const char* prefix) {
    return std::any_of(actions.begin(), actions.end(),
                       [&](const std::string& a) { return a.rfind(prefix, 0) == 0; });
  };
  for (const auto& t : gpu.report.actions.tensors) {
    EXPECT_TRUE(t.simulated.empty()) << t.tensor;
    for (const auto& a : t.actions) fell_back += a.find("fallback") != std::string::npos;
    if (t.actual != "host-managed") continue;
    ++spilled;
    EXPECT_TRUE(any_starts(t.actions, "advise accessed-by cuda:") ||
                any_starts(t.actions, "fallback: advise accessed-by skipped"))
        << t.tensor;
    EXPECT_TRUE(any_starts(t.actions, "advise preferred-location ") ||
                any_starts(t.actions, "fallback: advise preferred-location skipped"))
        << t.tensor;
  }
  EXPECT_GT(spilled, 0u) << "the plan spilled nothing";
  const auto report = to_json(gpu.report);
  EXPECT_EQ(report["actions"]["fallbacks"], fell_back);
  const auto& t = report["timing"];
  EXPECT_GT(t["backend_seconds"].get<double>(), 0.0);
  EXPECT_GE(t["total_seconds"].get<double>(),
            t["backend_seconds"].get<double>() + t["allocate_seconds"].get<double>() +
                t["pipeline_seconds"].get<double>() + t["finish_seconds"].get<double>() - 1e-9);
  const auto issued = gpu.weights->prefetch({1});
  EXPECT_FALSE(issued.empty());
  for (const auto& line : issued)
    EXPECT_NE(line.find(": prefetch cuda:"), std::string::npos) << line;
}

// torchrun with one visible GPU per rank: LOCAL_RANK 3 means the one GPU this process sees;
// an explicit UMLOAD_DEVICE still means what it says.
TEST(CudaDeviceChoice, LocalRankPicksTheOnlyVisibleGpu) {
  if (cuda_device_count() != 1) GTEST_SKIP() << "needs exactly one visible CUDA device";
  platform::defaults env;
  env.local_rank = 3;
  EXPECT_EQ(default_cuda_ordinal(env), 0);
  env.device_ordinal = 3;
  EXPECT_EQ(default_cuda_ordinal(env), 3);
}

}  // namespace
}  // namespace umload::test
