// One backend test suite, written once and instantiated per backend (rmm's mr_ref_test_basic is
// the model): tests/core/test_backend.cpp instantiates it for the host backend,
// tests/cuda/backend_suite_test.cpp for the CUDA backend (label gpu; its cases skip without a
// device). Every decode is compared with the CPU oracle (cpu::decode_scalar) bit for bit, so a
// behaviour that differs between backends is a failing case, not a missing one.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/error.hpp"
#include "src/backend.hpp"
#include "tests/cuda/test_data.hpp"

namespace umload::test {

struct backend_case {
  std::string name;
  std::function<bool()> usable;  // false: the cases skip (no device)
  std::function<std::unique_ptr<backend>()> make;
  memory_kind decode_into = memory_kind::host;  // where this backend's decodes land
};

class BackendSuite : public ::testing::TestWithParam<backend_case> {
 protected:
  void SetUp() override {
    if (!GetParam().usable()) GTEST_SKIP() << GetParam().name << " backend not usable here";
    engine_ = GetParam().make();
  }
  void TearDown() override { engine_.reset(); }
  backend& engine() { return *engine_; }
  memory_kind kind() const { return GetParam().decode_into; }

  // Reads an output back into host memory, whatever it lives in.
  std::vector<std::uint8_t> read(const std::byte* p, std::size_t bytes) {
    std::vector<std::uint8_t> out(bytes);
    engine_->read_back(out.data(), p, bytes, kind());
    return out;
  }

  // Stages `d` in `slot` as the pipeline does (scales a page after the blocks) and decodes it.
  void decode(const decode_job& job, const mxfp4_data& d, std::byte* slot, std::byte* out) {
    engine_->process(
        staged_decode(job, d, slot, out, (job.block_bytes() + 4095) / 4096 * 4096 + 4096));
  }

 private:
  std::unique_ptr<backend> engine_;
};

inline std::string case_name(const ::testing::TestParamInfo<backend_case>& info) {
  return info.param.name;
}

constexpr std::size_t suite_slot_bytes = 2u << 20;

TEST_P(BackendSuite, DecodesEqualTheOracleInEveryLayoutAndDtype) {
  const mxfp4_shape shapes[] = {{1, 1, 1}, {3, 5, 3}, {2, 130, 5}, {4, 289, 18}};
  std::byte* slots[2] = {engine().allocate_staging(suite_slot_bytes),
                         engine().allocate_staging(suite_slot_bytes)};
  int next = 0;
  const std::uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (layout order : {layout::hf, layout::native})
    for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32})
      for (const auto& s : shapes) {
        SCOPED_TRACE(s.name() + " " + to_string(order) + " " + to_string(dtype));
        const auto d = random_data(s, seed);
        const decode_job job = job_for(s, order, dtype);
        std::byte* out = engine().allocate_output(job.out_bytes(), kind());
        decode(job, d, slots[next], out);
        // The slot may be refilled once process() returns: scribble over it.
        std::memset(slots[next], 0xA5, suite_slot_bytes);
        next ^= 1;
        engine().synchronize();
        EXPECT_EQ(
            first_difference(read(out, job.out_bytes()),
                             oracle(job, d.blocks.data(), d.scales.data()), element_bytes(dtype)),
            -1);
        engine().release_output(out, job.out_bytes(), kind());
      }
  engine().release_staging(slots[0], suite_slot_bytes);
  engine().release_staging(slots[1], suite_slot_bytes);
}

TEST_P(BackendSuite, CopyItemsArriveAsTheyAre) {
  std::vector<std::uint8_t> dense(100003);
  for (std::size_t i = 0; i < dense.size(); ++i) dense[i] = static_cast<std::uint8_t>(i * 31 + 7);
  std::byte* slot = engine().allocate_staging(suite_slot_bytes);
  std::byte* out = engine().allocate_output(dense.size(), kind());
  std::memcpy(slot, dense.data(), dense.size());
  staged_item copy;
  copy.what = staged_item::kind::copy;
  copy.staged = slot;
  copy.staged_bytes = dense.size();
  copy.destination = out;
  engine().process(copy);
  std::memset(slot, 0x5A, dense.size());
  engine().synchronize();
  EXPECT_EQ(read(out, dense.size()), dense);
  engine().release_output(out, dense.size(), kind());
  engine().release_staging(slot, suite_slot_bytes);
}

TEST_P(BackendSuite, SummaryEqualsTheHostSummary) {
  const mxfp4_shape s{2, 130, 5};
  const auto d = clustered_data(s, fresh_seed());
  std::byte* slot = engine().allocate_staging(suite_slot_bytes);
  for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) {
    const decode_job job = job_for(s, layout::hf, dtype);
    std::byte* out = engine().allocate_output(job.out_bytes(), kind());
    decode(job, d, slot, out);
    engine().synchronize();
    const auto expected = oracle(job, d.blocks.data(), d.scales.data());
    const auto want = cuda_tile::summarize_host(expected.data(), job.values(), dtype);
    const auto got = engine().summarize(out, job.values(), dtype, kind());
    EXPECT_EQ(got.non_finite, want.non_finite);
    EXPECT_EQ(got.checksum, want.checksum);
    engine().release_output(out, job.out_bytes(), kind());
  }
  engine().release_staging(slot, suite_slot_bytes);
}

// Memory that cannot be had is a budget error (exit code 5) on every backend and every kind,
// never std::bad_alloc or a CUDA error. On the CUDA backends this makes CUDA API calls fail on
// purpose (cudaHostAlloc of pinned staging, cudaMalloc of device outputs, 1 << 60 bytes each):
// compute-sanitizer reports them unless run with `--report-api-errors no` (the list of such
// cases is at the top of tests/cuda/backend_test.cpp).
TEST_P(BackendSuite, AllocationFailureIsABudgetError) {
  const std::size_t impossible = std::size_t{1} << 60;
  EXPECT_THROW(engine().allocate_staging(impossible), budget_error);
  EXPECT_THROW(engine().allocate_output(impossible, kind()), budget_error);
  EXPECT_THROW(engine().allocate_output(impossible, memory_kind::host), budget_error);
  // And the backend is still usable afterwards.
  std::byte* out = engine().allocate_output(4096, kind());
  EXPECT_NE(out, nullptr);
  engine().release_output(out, 4096, kind());
}

TEST_P(BackendSuite, EmptyOutputsAreNull) {
  EXPECT_EQ(engine().allocate_output(0, kind()), nullptr);
  engine().release_output(nullptr, 0, kind());
}

// A host placement with a NUMA node is bound before first touch where the node exists, and says
// so; a node this machine lacks (a profile's plan) is reported, not thrown.
TEST_P(BackendSuite, HostOutputsAreBoundToTheirNodeAndSayWhatWasDone) {
  const placed_output here = engine().place_output(1 << 20, {memory_kind::host, 0});
  ASSERT_NE(here.data, nullptr);
  ASSERT_FALSE(here.actions.empty());
  EXPECT_NE(here.actions.front().find("numa-bind"), std::string::npos) << here.actions.front();
  std::memset(here.data, 1, 1 << 20);
  engine().release_output(here.data, 1 << 20, memory_kind::host);
  const placed_output missing = engine().place_output(1 << 20, {memory_kind::host, 4095});
  ASSERT_NE(missing.data, nullptr);
  ASSERT_FALSE(missing.actions.empty());
  EXPECT_NE(missing.actions.front().find("not-here"), std::string::npos) << missing.actions.front();
  engine().release_output(missing.data, 1 << 20, memory_kind::host);
}

// Faulting a destination in ahead of its decode leaves its bytes for the decode to write; the
// result is the same as without it.
TEST_P(BackendSuite, FaultingInAheadChangesNoResult) {
  const mxfp4_shape s{2, 130, 5};
  const auto d = random_data(s, fresh_seed());
  const decode_job job = job_for(s, layout::native, output_dtype::bf16);
  std::byte* slot = engine().allocate_staging(suite_slot_bytes);
  std::byte* out = engine().allocate_output(job.out_bytes(), kind());
  const std::string done = engine().fault_in(out, job.out_bytes(), {kind(), -1});
  EXPECT_FALSE(done.empty());
  decode(job, d, slot, out);
  engine().synchronize();
  EXPECT_EQ(first_difference(read(out, job.out_bytes()),
                             oracle(job, d.blocks.data(), d.scales.data()), 2),
            -1);
  engine().release_output(out, job.out_bytes(), kind());
  engine().release_staging(slot, suite_slot_bytes);
}

}  // namespace umload::test
