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

#if UMLOAD_HAVE_CUDA
// One CUDA context per process: the driver destroys a primary context when its last reference is
// released, so a query that let go of the context it read free memory in would leave none, and
// the backend would make a second. The query holds it: after the query returns, before any
// runtime call that makes a context, device 0's primary context is active; a second query
// retains nothing more; the runtime then works in that same context; and once the runtime holds
// it, letting go of the query's hold leaves it active.
TEST(LiveGpu, QueryHoldsThePrimaryContextTheRuntimeThenWorksIn) {
  const auto query = up::make_cuda_device_query();
  const up::device_info d = query->query(0);
  if (!d.present) GTEST_SKIP() << "no usable GPU: " << d.absence_reason;
  ASSERT_TRUE(d.free_memory.has_value());
  using device_get_fn = CUresult(CUDAAPI*)(CUdevice*, int);
  using state_fn = CUresult(CUDAAPI*)(CUdevice, unsigned int*, int*);
  using current_fn = CUresult(CUDAAPI*)(CUcontext*);
  using retain_fn = CUresult(CUDAAPI*)(CUcontext*, CUdevice);
  using release_fn = CUresult(CUDAAPI*)(CUdevice);
  const auto entry = [](const char* name) {
    void* p = nullptr;
    EXPECT_EQ(cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, nullptr),
              cudaSuccess)
        << name;
    return p;
  };
  const auto device_get = reinterpret_cast<device_get_fn>(entry("cuDeviceGet"));
  const auto state = reinterpret_cast<state_fn>(entry("cuDevicePrimaryCtxGetState"));
  const auto current = reinterpret_cast<current_fn>(entry("cuCtxGetCurrent"));
  const auto retain = reinterpret_cast<retain_fn>(entry("cuDevicePrimaryCtxRetain"));
  const auto release = reinterpret_cast<release_fn>(entry("cuDevicePrimaryCtxRelease"));
  ASSERT_TRUE(device_get && state && current && retain && release);
  CUdevice device0 = 0;
  ASSERT_EQ(device_get(&device0, 0), CUDA_SUCCESS);
  unsigned int flags = 0;
  int active = 0;
  ASSERT_EQ(state(device0, &flags, &active), CUDA_SUCCESS);
  EXPECT_EQ(active, 1) << "the query let go of the context it read free memory in";
  const double retained = up::cuda_context_seconds();
  EXPECT_TRUE(query->query(0).free_memory.has_value());
  EXPECT_EQ(up::cuda_context_seconds(), retained) << "a second query retained again";

  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(cudaFree(nullptr), cudaSuccess);  // the runtime's context on device 0
  CUcontext in_use = nullptr, primary = nullptr;
  ASSERT_EQ(current(&in_use), CUDA_SUCCESS);
  ASSERT_EQ(retain(&primary, device0), CUDA_SUCCESS);
  EXPECT_EQ(in_use, primary);
  ASSERT_EQ(release(device0), CUDA_SUCCESS);
  up::release_held_cuda_contexts();
  ASSERT_EQ(state(device0, &flags, &active), CUDA_SUCCESS);
  EXPECT_EQ(active, 1) << "the runtime holds no reference of its own";
}
#endif

// Without a usable device the query holds nothing and spends no time on contexts.
TEST(LiveGpu, NoDeviceMeansNoContextHeld) {
  const up::device_info d = up::make_cuda_device_query()->query(0);
  if (d.present) GTEST_SKIP() << "a GPU is present";
  EXPECT_EQ(up::cuda_context_seconds(), 0.0);
  up::release_held_cuda_contexts();  // nothing to let go of: no effect, no error
  EXPECT_EQ(up::cuda_context_seconds(), 0.0);
}
