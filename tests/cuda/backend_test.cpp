// The CUDA backend through its interface, as the pipeline drives it: pinned staging slots filled
// with blocks and scales at separate offsets, one process() per run of experts, copy items, and
// per-layer release of the outputs. Outputs must equal the CPU oracle bit for bit under both
// strategies, and peak device memory must stay within one layer's outputs plus two scratch slots
// however many layers pass. Skips without a usable device (except the no-device test, which
// skips with one).
//
// CUDA API calls that fail on purpose in umload_cuda_test, for compute-sanitizer (run it with
// `--report-api-errors no`, or leave these cases out of its filter):
//   CudaCheck.AFailedCallIsClearedBeforeItIsThrown          cudaMalloc of 1 << 62 bytes
//   Cuda/BackendSuite.AllocationFailureIsABudgetError/cuda_discrete, cuda_zero_copy
//                                                           cudaHostAlloc and cudaMalloc of 1 << 60
//   Cuda/BackendSuite.AllocationFailureIsABudgetError/cuda_discrete_pageable,
//     cuda_zero_copy_pageable                               cudaMalloc of 1 << 60 (tests/core/
//                                                           backend_suite.hpp)
//   CudaBackendOrders.HostManagedIsAdvisedFaultedInAndPrefetchedAsOrdered
//                                                           cudaDeviceGetAttribute(HostNumaId) on
//     drivers without it; cudaMemAdvise and cudaMemPrefetchAsync at a host NUMA node the driver
//     refuses (the backend falls back to the host); cudaMemRangeGetAttribute on a range that is
//     not managed memory, where the driver refuses it
//   every case that makes a backend or asks the live query: cudaDeviceGetAttribute of
//     attributes the driver lacks (platform/device_cuda.cpp reads each, -1 where refused), and
//     the staging, advice and prefetch fallbacks (src/memory_cuda.hpp, hint_with_fallback)
// The injected launch failure of CudaBackendFaults is thrown by umload, not by a CUDA call.
#include "src/backend.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_decode.hpp"
#include "src/output_memory_cuda.hpp"
#include "tests/cuda/test_data.hpp"

namespace umload {
namespace {

using test::mxfp4_shape;

constexpr std::size_t slot_bytes = 4u << 20;
constexpr std::size_t scales_gap = 3 * 4096;  // the pipeline stages scales after a gap

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

class CudaBackend : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  }
  bool zero_copy() const { return GetParam(); }
};

// Streams `layers` layers of two expert tensors and one dense tensor through the backend, a run of
// `experts_per_item` experts per item, two staging slots used in turn. Each layer's outputs are
// checked and released before the next layer, as a consumer that takes them layer by layer would.
void stream_layers(backend& engine, int layers, layout order, output_dtype dtype,
                   std::uint64_t& largest_layer_bytes) {
  const mxfp4_shape tensors[] = {{4, 576, 9}, {4, 289, 18}};  // gate_up-like, down-like (odd rows)
  const std::uint64_t experts_per_item = 2;
  std::byte* slots[2] = {engine.allocate_staging(slot_bytes), engine.allocate_staging(slot_bytes)};
  int next_slot = 0;
  const std::uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));

  for (int layer = 0; layer < layers; ++layer) {
    std::uint64_t layer_bytes = 0;
    std::vector<std::byte*> outputs;
    std::vector<std::vector<std::uint8_t>> expected;
    for (const auto& s : tensors) {
      const auto d = test::random_data(s, seed + layer);
      decode_job whole = test::job_for(s, order, dtype);
      expected.push_back(test::oracle(whole, d.blocks.data(), d.scales.data()));
      std::byte* out = engine.allocate_output(whole.out_bytes(), memory_kind::device);
      outputs.push_back(out);
      layer_bytes += whole.out_bytes();
      const std::uint64_t per_expert_blocks = s.rows * s.groups;
      for (std::uint64_t e0 = 0; e0 < s.experts; e0 += experts_per_item) {
        std::byte* slot = slots[next_slot];
        next_slot ^= 1;
        decode_job job = test::job_for({experts_per_item, s.rows, s.groups}, order, dtype);
        const std::size_t scales_at = round_up(job.block_bytes(), 4096) + scales_gap;
        ASSERT_LE(scales_at + job.scale_bytes(), slot_bytes);
        std::memcpy(slot, d.blocks.data() + e0 * per_expert_blocks * 16, job.block_bytes());
        std::memcpy(slot + scales_at, d.scales.data() + e0 * per_expert_blocks, job.scale_bytes());
        job.blocks = reinterpret_cast<const std::uint8_t*>(slot);
        job.scales = reinterpret_cast<const std::uint8_t*>(slot + scales_at);
        job.out = out + e0 * per_expert_blocks * 32 * element_bytes(dtype);
        staged_item item;
        item.what = staged_item::kind::decode;
        item.staged = slot;
        item.staged_bytes = job.block_bytes() + job.scale_bytes();
        item.job = job;
        item.destination = static_cast<std::byte*>(job.out);
        engine.process(item);
        // The slot may be refilled now: scribble over it to prove the backend no longer needs it.
        std::memset(slot, 0xA5, slot_bytes);
      }
    }
    // A dense BF16 tensor, copied as it is.
    std::vector<std::uint8_t> dense(100003);
    for (std::size_t i = 0; i < dense.size(); ++i)
      dense[i] = static_cast<std::uint8_t>(i * 31 + layer);
    std::byte* dense_out = engine.allocate_output(dense.size(), memory_kind::device);
    layer_bytes += dense.size();
    std::memcpy(slots[next_slot], dense.data(), dense.size());
    staged_item copy;
    copy.what = staged_item::kind::copy;
    copy.staged = slots[next_slot];
    copy.staged_bytes = dense.size();
    copy.destination = dense_out;
    engine.process(copy);
    std::memset(slots[next_slot], 0x5A, dense.size());
    engine.synchronize();

    for (std::size_t t = 0; t < outputs.size(); ++t) {
      std::vector<std::uint8_t> got(expected[t].size());
      UMLOAD_CUDA_CHECK(cudaMemcpy(got.data(), outputs[t], got.size(), cudaMemcpyDeviceToHost));
      EXPECT_EQ(test::first_difference(got, expected[t], element_bytes(dtype)), -1)
          << "layer " << layer << " tensor " << t;
      engine.release_output(outputs[t], expected[t].size(), memory_kind::device);
    }
    std::vector<std::uint8_t> got(dense.size());
    UMLOAD_CUDA_CHECK(cudaMemcpy(got.data(), dense_out, got.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(got, dense) << "layer " << layer << " dense tensor";
    engine.release_output(dense_out, dense.size(), memory_kind::device);
    largest_layer_bytes = std::max(largest_layer_bytes, layer_bytes);
  }
  engine.release_staging(slots[0], slot_bytes);
  engine.release_staging(slots[1], slot_bytes);
}

TEST_P(CudaBackend, OutputsEqualOracleAndDevicePeakStaysPerLayer) {
  cuda_backend_options options;
  options.zero_copy_staging = zero_copy();
  auto engine = make_cuda_backend(options);
  EXPECT_EQ(engine->name(), "cuda");
  for (layout order : {layout::hf, layout::native})
    for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) {
      SCOPED_TRACE(std::string(to_string(order)) + " " + to_string(dtype));
      std::uint64_t largest_layer = 0;
      stream_layers(*engine, 3, order, dtype, largest_layer);
    }
  const backend_stats stats = engine->stats();
  // Largest layer: the f32 one. Scratch: two slots at most, each as large as a staging slot.
  std::uint64_t f32_layer = 0;
  for (const mxfp4_shape s : {mxfp4_shape{4, 576, 9}, mxfp4_shape{4, 289, 18}})
    f32_layer += s.values() * 4;
  f32_layer += 100003;
  const std::uint64_t scratch = zero_copy() ? 0 : 2 * round_up(slot_bytes, 256);
  EXPECT_LE(stats.peak_device_bytes, f32_layer + scratch);
  EXPECT_GE(stats.peak_device_bytes, f32_layer);
  EXPECT_GT(stats.decode_seconds, 0.0);
  EXPECT_GT(stats.copy_seconds, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Strategies, CudaBackend, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "zero_copy" : "discrete"; });

// One decode item of `job`'s shape staged in `slot` (blocks, then scales a page later).
staged_item staged_decode(const decode_job& job, const test::mxfp4_data& d, std::byte* slot,
                          std::byte* out) {
  return test::staged_decode(job, d, slot, out, round_up(job.block_bytes(), 4096));
}

TEST(CudaBackendMemory, HostManagedOutputIsReadableOnTheHost) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  auto engine = make_cuda_backend({});
  const mxfp4_shape s{2, 130, 5};
  const auto d = test::random_data(s, test::fresh_seed());
  decode_job job = test::job_for(s, layout::hf, output_dtype::bf16);
  const auto expected = test::oracle(job, d.blocks.data(), d.scales.data());
  std::byte* slot = engine->allocate_staging(slot_bytes);
  std::byte* out = engine->allocate_output(job.out_bytes(), memory_kind::host_managed);
  engine->process(staged_decode(job, d, slot, out));
  engine->synchronize();
  std::vector<std::uint8_t> got(expected.size());
  std::memcpy(got.data(), out, got.size());
  EXPECT_EQ(test::first_difference(got, expected, 2), -1);
  EXPECT_LE(engine->stats().peak_device_bytes, 2 * round_up(slot_bytes, 256));  // scratch only
  engine->release_output(out, job.out_bytes(), memory_kind::host_managed);
  engine->release_staging(slot, slot_bytes);
}

// Without pageable memory access the GPU cannot write plain host memory: the backend refuses such
// a destination with a usage error instead of launching a kernel that would fault, and the
// device stays usable afterwards.
TEST(CudaBackendMemory, PageableHostOutputIsRefusedWhereTheGpuCannotWriteIt) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  int pageable = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, 0), cudaSuccess);
  if (pageable) GTEST_SKIP() << "this device writes pageable host memory (ATS or HMM)";
  auto engine = make_cuda_backend({});
  const mxfp4_shape s{2, 130, 5};
  const auto d = test::random_data(s, test::fresh_seed());
  const decode_job job = test::job_for(s, layout::native, output_dtype::bf16);
  std::byte* slot = engine->allocate_staging(slot_bytes);
  std::byte* host = engine->allocate_output(job.out_bytes(), memory_kind::host);
  EXPECT_THROW(engine->process(staged_decode(job, d, slot, host)), usage_error);
  std::byte* device = engine->allocate_output(job.out_bytes(), memory_kind::device);
  engine->process(staged_decode(job, d, slot, device));
  engine->synchronize();
  std::vector<std::uint8_t> got(job.out_bytes());
  engine->read_back(got.data(), device, got.size(), memory_kind::device);
  EXPECT_EQ(test::first_difference(got, test::oracle(job, d.blocks.data(), d.scales.data()), 2),
            -1);
  engine->release_output(device, job.out_bytes(), memory_kind::device);
  engine->release_output(host, job.out_bytes(), memory_kind::host);
  engine->release_staging(slot, slot_bytes);
}

// A framework's current device is the caller's: a backend on another GPU gives it back after
// every call.
TEST(CudaBackendDevice, CallersCurrentDeviceIsRestored) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cuda_backend_options options;
  options.ordinal = 1;
  auto engine = make_cuda_backend(options);
  std::byte* out = engine->allocate_output(1 << 20, memory_kind::device);
  engine->synchronize();
  engine->release_output(out, 1 << 20, memory_kind::device);
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, 0);
}

// A decode that fails after its input copy was enqueued (here an injected launch failure) leaves
// its scratch slot marked busy, so that a later growth of that slot waits for the copy before it
// frees the memory the copy writes. That wait cannot be seen from outside: cudaFree synchronizes
// the device, so a free without it would still come after the copy, and memcheck would see
// nothing. The slot's state is read instead (detail::busy_scratch_slots, no device call), right
// after the failure and before any call that synchronizes; then the items after the failure must
// still equal the oracle, one of them growing the slot that failed, and every slot is retired by
// synchronize().
TEST(CudaBackendFaults, DecodeThatFailsAfterItsCopyKeepsItsScratchSlotBusy) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  auto engine = make_cuda_backend({});  // the discrete strategy: scratch slots
  const std::size_t small_slot = 1u << 20, large_slot = 8u << 20;
  std::byte* slot = engine->allocate_staging(small_slot);
  const mxfp4_shape small{2, 130, 5};
  const auto d = test::random_data(small, test::fresh_seed());
  const decode_job job = test::job_for(small, layout::hf, output_dtype::bf16);
  std::byte* out = engine->allocate_output(job.out_bytes(), memory_kind::device);
  EXPECT_EQ(detail::busy_scratch_slots(*engine), 0);
  detail::inject_decode_failures(1);
  EXPECT_THROW(engine->process(staged_decode(job, d, slot, out)), cuda_error);
  EXPECT_EQ(detail::busy_scratch_slots(*engine), 1) << "the failed decode's slot was let go";
  // Two more items: the second lands on the slot that failed and must grow it (its bytes are
  // larger than the slot, which was sized to the 1 MiB staging slot).
  engine->process(staged_decode(job, d, slot, out));
  std::byte* large = engine->allocate_staging(large_slot);
  const mxfp4_shape big{2, 1536, 90};
  const auto big_data = test::random_data(big, test::fresh_seed());
  const decode_job big_job = test::job_for(big, layout::hf, output_dtype::bf16);
  ASSERT_GT(big_job.block_bytes() + big_job.scale_bytes(), small_slot);
  std::byte* big_out = engine->allocate_output(big_job.out_bytes(), memory_kind::device);
  engine->process(staged_decode(big_job, big_data, large, big_out));
  engine->synchronize();
  EXPECT_EQ(detail::busy_scratch_slots(*engine), 0);
  std::vector<std::uint8_t> got(job.out_bytes());
  engine->read_back(got.data(), out, got.size(), memory_kind::device);
  EXPECT_EQ(test::first_difference(got, test::oracle(job, d.blocks.data(), d.scales.data()), 2),
            -1);
  got.resize(big_job.out_bytes());
  engine->read_back(got.data(), big_out, got.size(), memory_kind::device);
  EXPECT_EQ(test::first_difference(
                got, test::oracle(big_job, big_data.blocks.data(), big_data.scales.data()), 2),
            -1);
  engine->release_output(big_out, big_job.out_bytes(), memory_kind::device);
  engine->release_output(out, job.out_bytes(), memory_kind::device);
  engine->release_staging(large, large_slot);
  engine->release_staging(slot, small_slot);
}

// cudaMallocManaged does not lower cudaMemGetInfo's free count: on a card without pageable
// memory access the backend keeps its own count, so host_managed tensors that each fit but
// together pass the card's free memory are refused with a budget error.
TEST(CudaBackendMemory, ManagedMemoryIsGuardedOverEveryAllocation) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  int pageable = 0, managed = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, 0), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&managed, cudaDevAttrConcurrentManagedAccess, 0), cudaSuccess);
  if (pageable || !managed)
    GTEST_SKIP() << "host_managed is plain host memory here, or unsupported";
  auto engine = make_cuda_backend({});
  std::size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  const std::size_t part = free_bytes / 10 * 6;
  std::byte* first = engine->allocate_output(part, memory_kind::host_managed);
  EXPECT_THROW(engine->allocate_output(part, memory_kind::host_managed), budget_error);
  engine->release_output(first, part, memory_kind::host_managed);
  std::byte* again = engine->allocate_output(part, memory_kind::host_managed);
  EXPECT_NE(again, nullptr);
  engine->release_output(again, part, memory_kind::host_managed);
}

// The --check summary's CUB scratch is device memory of this backend: it counts in the peak.
TEST(CudaBackendMemory, SummaryScratchCountsInPeakDeviceBytes) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  auto engine = make_cuda_backend({});
  const std::uint64_t values = 1u << 22;
  std::byte* out = engine->allocate_output(values * 2, memory_kind::device);
  UMLOAD_CUDA_CHECK(cudaMemset(out, 0, values * 2));
  // cudaMemset runs on the legacy default stream, and the summary on the backend's non-blocking
  // compute stream, which does not wait for it.
  UMLOAD_CUDA_CHECK(cudaDeviceSynchronize());
  const auto s = engine->summarize(out, values, output_dtype::bf16, memory_kind::device);
  EXPECT_EQ(s.non_finite, 0u);
  EXPECT_GE(engine->stats().peak_device_bytes, values * 2 + cuda::summarize_scratch_bytes(values));
  engine->release_output(out, values * 2, memory_kind::device);
}

// A host_managed placement is advised as ordered (preferred location the host NUMA node, accessed
// by the device) or says which fallback it took (the host for a node the driver refuses; the
// advice skipped), faulted in toward its host node on the backend's own stream, and moved to the
// device by prefetch_to_device on the caller's stream after synchronize() waited for that
// fault-in (two prefetches of one range on unordered streams could land in either order). The
// range attributes show each, where the range is managed memory: with pageable memory access
// host_managed is a plain mapping, which cudaMemRangeGetAttribute is not documented for, and a
// refused query is said and skipped. Never run without a GPU: bench/gpu_check.sh runs it.
bool has(const std::vector<std::string>& actions, const std::string& action) {
  return std::find(actions.begin(), actions.end(), action) != actions.end();
}

bool has_prefix(const std::vector<std::string>& actions, const std::string& prefix) {
  return std::any_of(actions.begin(), actions.end(),
                     [&](const std::string& a) { return a.rfind(prefix, 0) == 0; });
}

// The location type a range attribute reports, or nullopt (said) where the driver refuses.
std::optional<int> range_location_type(cudaMemRangeAttribute attribute, const void* p,
                                       std::size_t bytes) {
  int type = -1;
  const cudaError_t status = cudaMemRangeGetAttribute(&type, sizeof type, attribute, p, bytes);
  if (status == cudaSuccess) return type;
  (void)cudaGetLastError();
  std::printf("cudaMemRangeGetAttribute(%d) refused: %s; not checked\n",
              static_cast<int>(attribute), cudaGetErrorName(status));
  return std::nullopt;
}

TEST(CudaBackendOrders, HostManagedIsAdvisedFaultedInAndPrefetchedAsOrdered) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  int pageable = 0, managed = 0, host_numa = -1;
  ASSERT_EQ(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, 0), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&managed, cudaDevAttrConcurrentManagedAccess, 0), cudaSuccess);
  if (cudaDeviceGetAttribute(&host_numa, cudaDevAttrHostNumaId, 0) != cudaSuccess) {
    (void)cudaGetLastError();
    host_numa = -1;
  }
  if (!pageable && !managed) GTEST_SKIP() << "no host_managed memory on this device";
  auto engine = make_cuda_backend({});
  const std::size_t bytes = 8u << 20;
  const output_request request{memory_kind::host_managed, host_numa};
  const placed_output placed = engine->place_output(bytes, request);
  ASSERT_NE(placed.data, nullptr);
  for (const auto& a : placed.actions) std::printf("placed: %s\n", a.c_str());
  const std::string node = host_numa >= 0 ? "host-numa:" + std::to_string(host_numa) : "host";
  const bool advised_node = has(placed.actions, "advise preferred-location " + node);
  const bool advised_host =
      host_numa >= 0 && has_prefix(placed.actions, "advise preferred-location host (fallback: ");
  EXPECT_TRUE(advised_node || advised_host ||
              has_prefix(placed.actions, "fallback: advise preferred-location skipped"));
  EXPECT_TRUE(has(placed.actions, "advise accessed-by cuda:0") ||
              has_prefix(placed.actions, "fallback: advise accessed-by skipped"));
  const bool managed_range = !pageable;
  if (managed_range && (advised_node || advised_host)) {
    if (const auto type =
            range_location_type(cudaMemRangeAttributePreferredLocationType, placed.data, bytes)) {
      EXPECT_EQ(*type, advised_node && host_numa >= 0 ? cudaMemLocationTypeHostNuma
                                                      : cudaMemLocationTypeHost);
    }
  }
  const std::string faulted = engine->fault_in(placed.data, bytes, request);
  std::printf("fault-in: %s\n", faulted.c_str());
  EXPECT_TRUE(faulted.rfind("prefetch host", 0) == 0 ||
              faulted.rfind("fallback: prefetch skipped", 0) == 0)
      << faulted;
  engine->synchronize();  // the fault-in ran on the backend's prefetch stream
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  EXPECT_EQ(engine->prefetch_to_device(placed.data, bytes, stream), "prefetch cuda:0");
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  if (managed_range) {
    if (const auto type = range_location_type(cudaMemRangeAttributeLastPrefetchLocationType,
                                              placed.data, bytes)) {
      EXPECT_EQ(*type, cudaMemLocationTypeDevice);
    }
  }
  // The backend's own stream: synchronize() waits for it.
  EXPECT_EQ(engine->prefetch_to_device(placed.data, bytes, nullptr), "prefetch cuda:0");
  engine->synchronize();
  cudaStreamDestroy(stream);
  engine->release_output(placed.data, bytes, memory_kind::host_managed);
}

// A failed call that the caller catches leaves nothing behind for the next launch check.
TEST(CudaCheck, AFailedCallIsClearedBeforeItIsThrown) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  void* p = nullptr;
  EXPECT_THROW(UMLOAD_CUDA_CHECK(cudaMalloc(&p, std::size_t{1} << 62)), cuda_error);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaBackendStaging, BindsToAnExistingNumaNodeAndRefusesAMissingOne) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  cuda_backend_options options;
  options.staging_numa_node = 0;
  auto engine = make_cuda_backend(options);
  std::byte* slot = engine->allocate_staging(1 << 20);
  ASSERT_NE(slot, nullptr);
  std::memset(slot, 1, 1 << 20);
  engine->release_staging(slot, 1 << 20);
  options.staging_numa_node = 4095;
  EXPECT_THROW(make_cuda_backend(options), usage_error);
}

// A plan that does not pin: staging slots in pageable memory, reported as such, and copied
// through the scratch slots; the GPU reads them in place only with pageable memory access, and
// the backend refuses zero-copy staging from them elsewhere. Never run without a GPU.
TEST(CudaBackendStaging, PageableStagingIsSaidAndZeroCopyFromItNeedsPageableAccess) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  int pageable = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, 0), cudaSuccess);
  cuda_backend_options options;
  EXPECT_EQ(make_cuda_backend(options)->stats().staging.rfind("pinned", 0), 0u);
  options.pinned_staging = false;
  auto engine = make_cuda_backend(options);
  std::byte* slot = engine->allocate_staging(slot_bytes);
  cudaPointerAttributes attributes{};
  ASSERT_EQ(cudaPointerGetAttributes(&attributes, slot), cudaSuccess);
  EXPECT_EQ(attributes.type, cudaMemoryTypeUnregistered);
  EXPECT_EQ(engine->stats().staging, "pageable");
  engine->release_staging(slot, slot_bytes);
  options.zero_copy_staging = true;
  if (pageable) {
    EXPECT_NO_THROW(make_cuda_backend(options));
  } else {
    EXPECT_THROW(make_cuda_backend(options), usage_error);
  }
}

// The CUDA backend's output placement on its own: each kind placed and given back, device bytes
// counted live and at peak, host memory bound and faulted in, and a pageable destination refused
// where the device cannot write it. Never run without a GPU.
TEST(CudaOutputMemory, PlacesEachKindAndCountsDeviceBytes) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  cuda_output_memory outputs(0);
  const std::size_t bytes = 1 << 20;
  const placed_output device = outputs.place(bytes, {memory_kind::device});
  ASSERT_NE(device.data, nullptr);
  EXPECT_TRUE(device.actions.empty());
  EXPECT_EQ(outputs.live_device_bytes(), bytes);
  EXPECT_EQ(outputs.fault_in(device.data, bytes, {memory_kind::device}, nullptr),
            "device memory: resident from cudaMalloc");
  EXPECT_NO_THROW(outputs.require_reachable(device.data, bytes));

  const placed_output host = outputs.place(bytes, {memory_kind::host, 0});
  ASSERT_NE(host.data, nullptr);
  ASSERT_EQ(host.actions.size(), 1u);
  EXPECT_EQ(host.actions[0].rfind("numa-bind ", 0), 0u) << host.actions[0];
  EXPECT_EQ(outputs.fault_in(host.data, bytes, {memory_kind::host, 0}, nullptr)
                .rfind("populate-write", 0),
            0u);
  if (outputs.pageable_access()) {
    EXPECT_NO_THROW(outputs.require_reachable(host.data, bytes));
  } else {
    EXPECT_THROW(outputs.require_reachable(host.data, bytes), usage_error);
  }
  EXPECT_EQ(outputs.live_device_bytes(), bytes);  // host memory is not device memory

  outputs.release(host.data, bytes, memory_kind::host);
  outputs.release(device.data, bytes, memory_kind::device);
  EXPECT_EQ(outputs.live_device_bytes(), 0u);
  EXPECT_EQ(outputs.peak_device_bytes(), bytes);
  EXPECT_EQ(outputs.place(0, {memory_kind::device}).data, nullptr);
}

TEST(CudaBackendProbe, BadOrdinalIsAUsageError) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  cuda_backend_options options;
  options.ordinal = cuda_device_count();
  EXPECT_THROW(make_cuda_backend(options), usage_error);
}

// Runs where there is no usable device (this is what CI without a GPU checks): the probe says no,
// and asking for the backend is a cuda_error, never a crash.
TEST(CudaBackendProbe, NoDeviceMeansFalseAndACudaError) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(cuda_device_count(), 0);
  EXPECT_THROW(make_cuda_backend({}), cuda_error);
}

}  // namespace
}  // namespace umload
