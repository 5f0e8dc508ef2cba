// The live CUDA query on a machine with a GPU: what it reads must be self-consistent and the GPU
// must be found in the live hwloc topology by its PCI bus id. Skips without a device; the values
// printed are what docs/platforms.md lists as unconfirmed for the profiles.
#include <gtest/gtest.h>
#if UMLOAD_HAVE_CUDA
#include <cuda.h>
#include <cuda_runtime_api.h>
#endif

#include <cstdio>

#include "platform/platform.hpp"

namespace up = umload::platform;

TEST(LiveGpu, AttributesAndLocality) {
  const auto query = up::make_cuda_device_query();
  const up::device_info d = query->query(0);
  if (!d.present) GTEST_SKIP() << "no usable GPU: " << d.absence_reason;
  EXPECT_GE(d.device_count, 1);
  EXPECT_GE(d.compute_major, 7);
  EXPECT_GT(d.sm_count, 0);
  EXPECT_GT(d.total_memory, 0u);
  EXPECT_FALSE(d.pci_bus_id.empty());
  for (int v : {d.integrated, d.pageable_memory_access, d.concurrent_managed_access,
                d.pageable_uses_host_page_tables}) {
    EXPECT_TRUE(v == 0 || v == 1) << v;
  }
  const auto c = up::classify(d);
  EXPECT_NE(c.model, up::memory_model::host);
  const auto info = up::detect_platform({});
  EXPECT_EQ(info.model, c.model);
  EXPECT_TRUE(info.topology.gpu.found) << info.topology.gpu.reason;
  std::printf("%s\n", up::to_json(info).dump(2).c_str());
}

#if UMLOAD_HAVE_CUDA
// Examining one GPU makes no context on another: on a multi-GPU host, querying device 1 leaves
// device 0's primary context as it was (inactive in a process that never used it), and the
// caller's current device unchanged.
TEST(LiveGpu, QueryMakesNoContextOnAnotherGpu) {
  const auto query = up::make_cuda_device_query();
  const up::device_info first = query->query(0);
  if (!first.present || first.device_count < 2) GTEST_SKIP() << "needs two CUDA devices";
  using device_get_fn = CUresult(CUDAAPI*)(CUdevice*, int);
  using state_fn = CUresult(CUDAAPI*)(CUdevice, unsigned int*, int*);
  void* get = nullptr;
  void* state = nullptr;
  ASSERT_EQ(
      cudaGetDriverEntryPointByVersion("cuDeviceGet", &get, 12000, cudaEnableDefault, nullptr),
      cudaSuccess);
  ASSERT_EQ(cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &state, 12000,
                                             cudaEnableDefault, nullptr),
            cudaSuccess);
  CUdevice device0 = 0;
  ASSERT_EQ(reinterpret_cast<device_get_fn>(get)(&device0, 0), CUDA_SUCCESS);
  unsigned int flags = 0;
  int active_before = 0, active_after = 0;
  ASSERT_EQ(reinterpret_cast<state_fn>(state)(device0, &flags, &active_before), CUDA_SUCCESS);
  int current_before = -1, current_after = -1;
  ASSERT_EQ(cudaGetDevice(&current_before), cudaSuccess);
  const up::device_info second = query->query(1);
  EXPECT_TRUE(second.present);
  EXPECT_TRUE(second.free_memory.has_value());
  ASSERT_EQ(reinterpret_cast<state_fn>(state)(device0, &flags, &active_after), CUDA_SUCCESS);
  ASSERT_EQ(cudaGetDevice(&current_after), cudaSuccess);
  EXPECT_EQ(active_after, active_before);
  EXPECT_EQ(current_after, current_before);
}
#endif
