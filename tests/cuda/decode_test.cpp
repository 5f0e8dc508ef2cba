// CUDA decode kernels against the CPU oracle, bit for bit: both layouts, both dtypes, odd shapes,
// unaligned inputs and outputs, random and edge data (all 256 scale bytes), and the CUB output
// check against the same summary computed on the host. Skips without a usable device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_decode.hpp"
#include "src/backend.hpp"
#include "tests/cuda/device_buffer.hpp"
#include "tests/cuda/test_data.hpp"

namespace umload {
namespace {

using test::mxfp4_shape;

using test::device_buffer;

class CudaDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device";
    UMLOAD_CUDA_CHECK(cudaSetDevice(0));
  }

  // Decodes on the device with blocks at `in_offset` bytes and the output at `out_offset` bytes
  // past 256-byte aligned allocations, and compares with the oracle and its summary.
  void check(const mxfp4_shape& s, const test::mxfp4_data& d, layout order, output_dtype dtype,
             std::size_t in_offset = 0, std::size_t out_offset = 0) {
    SCOPED_TRACE(s.name() + " " + to_string(order) + " " + to_string(dtype) + " in+" +
                 std::to_string(in_offset) + " out+" + std::to_string(out_offset));
    decode_job job = test::job_for(s, order, dtype);
    const auto expected = test::oracle(job, d.blocks.data(), d.scales.data());

    device_buffer blocks(d.blocks.size() + in_offset);
    device_buffer scales(d.scales.size());
    device_buffer out(expected.size() + out_offset);
    UMLOAD_CUDA_CHECK(cudaMemcpy(blocks.get() + in_offset, d.blocks.data(), d.blocks.size(),
                                 cudaMemcpyHostToDevice));
    UMLOAD_CUDA_CHECK(
        cudaMemcpy(scales.get(), d.scales.data(), d.scales.size(), cudaMemcpyHostToDevice));
    // Poison: 0xFFFF is a NaN no decode produces (the NaN scale gives 0x7FC0).
    UMLOAD_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.bytes()));
    job.blocks = blocks.get() + in_offset;
    job.scales = scales.get();
    job.out = out.get() + out_offset;
    cuda::decode(job, nullptr);
    UMLOAD_CUDA_CHECK(cudaDeviceSynchronize());

    std::vector<std::uint8_t> got(expected.size());
    UMLOAD_CUDA_CHECK(
        cudaMemcpy(got.data(), out.get() + out_offset, got.size(), cudaMemcpyDeviceToHost));
    const std::int64_t at = test::first_difference(got, expected, element_bytes(dtype));
    EXPECT_EQ(at, -1) << "first differing element " << at;

    if (out_offset % element_bytes(dtype) == 0) {
      const std::size_t scratch_bytes = cuda::summarize_scratch_bytes(job.values());
      device_buffer scratch(scratch_bytes);
      const auto device_summary =
          cuda::summarize(job.out, job.values(), dtype, scratch.get(), scratch_bytes, nullptr);
      const auto host_summary = cuda_tile::summarize_host(expected.data(), job.values(), dtype);
      EXPECT_EQ(device_summary.non_finite, host_summary.non_finite);
      EXPECT_EQ(device_summary.checksum, host_summary.checksum);
    }
  }
};

const mxfp4_shape odd_shapes[] = {{1, 1, 1},   {3, 5, 3},    {2, 7, 2},   {1, 127, 5},
                                  {2, 128, 4}, {1, 129, 9},  {3, 130, 1}, {1, 300, 90},
                                  {4, 136, 6}, {2, 1001, 17}};

TEST_F(CudaDecode, OddShapesRandomDataBothLayoutsBothDtypes) {
  const std::uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const auto& s : odd_shapes) {
    const auto d = test::random_data(s, seed);
    for (layout order : {layout::hf, layout::native})
      for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) check(s, d, order, dtype);
  }
}

TEST_F(CudaDecode, RealShapesClusteredAndEdgeScales) {
  const std::uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  // Two experts of gpt-oss-20b's gate_up (5760 x 90 groups) and down (2880 x 90).
  for (const mxfp4_shape s : {mxfp4_shape{2, 5760, 90}, mxfp4_shape{2, 2880, 90}}) {
    const auto d = test::clustered_data(s, seed);
    for (layout order : {layout::hf, layout::native})
      for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) check(s, d, order, dtype);
  }
}

TEST_F(CudaDecode, AllScaleBytesWithEveryCodeByte) {
  // 256 rows x 1 group per expert: row r has scale r, and its 16 bytes are 16r .. 16r + 15, so
  // every code byte meets 16 scales and every scale meets 16 bytes; four experts rotate the bytes.
  const mxfp4_shape s{4, 256, 1};
  test::mxfp4_data d;
  d.blocks.resize(s.blocks() * 16);
  d.scales.resize(s.blocks());
  for (std::uint64_t e = 0; e < 4; ++e)
    for (std::uint64_t r = 0; r < 256; ++r) {
      d.scales[e * 256 + r] = static_cast<std::uint8_t>(r);
      for (int j = 0; j < 16; ++j)
        d.blocks[(e * 256 + r) * 16 + j] = static_cast<std::uint8_t>(16 * r + j + 64 * e);
    }
  for (layout order : {layout::hf, layout::native})
    for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) check(s, d, order, dtype);
}

TEST_F(CudaDecode, UnalignedInputsAndOutputsTakeTheNarrowerPaths) {
  const std::uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const mxfp4_shape s : {mxfp4_shape{2, 136, 6}, mxfp4_shape{1, 129, 9}}) {
    const auto d = test::random_data(s, seed);
    for (layout order : {layout::hf, layout::native})
      for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) {
        check(s, d, order, dtype, 1, 0);
        check(s, d, order, dtype, 2, element_bytes(dtype));
        check(s, d, order, dtype, 0, 2 * element_bytes(dtype));
        // Blocks 8- and 4-byte aligned (as direct I/O stages them): the hf kernel's uint2 and
        // 32-bit block loads.
        check(s, d, order, dtype, 8, 0);
        check(s, d, order, dtype, 4, 0);
        check(s, d, order, dtype, 12, 0);
      }
  }
}

TEST_F(CudaDecode, EmptyJobLaunchesNothing) {
  decode_job job;
  EXPECT_NO_THROW(cuda::decode(job, nullptr));
  EXPECT_EQ(cuda::summarize_scratch_bytes(0), 0u);
  const auto s = cuda::summarize(nullptr, 0, output_dtype::bf16, nullptr, 0, nullptr);
  EXPECT_EQ(s.non_finite, 0u);
  EXPECT_EQ(s.checksum, 0u);
}

TEST_F(CudaDecode, NullPointersAreAUsageError) {
  decode_job job = test::job_for({1, 1, 1}, layout::hf, output_dtype::bf16);
  EXPECT_THROW(cuda::decode(job, nullptr), usage_error);
}

}  // namespace
}  // namespace umload
