// The CUDA block-FP8 kernel against the CPU oracle, bit for bit: both dtypes, all 256 codes times
// edge scales, shapes that are not multiples of the block, stacked and single-scale weights, any
// block size, misaligned codes, scales and output. Every case skips without a usable device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "kernels/fp8.hpp"
#include "kernels/fp8_cpu.hpp"
#include "kernels/fp8_cuda.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace umload {
namespace {

bool device_usable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

using test::device_buffer;

struct fp8_data {
  std::vector<std::uint8_t> codes;
  std::vector<std::uint8_t> scales;  // F32 bytes
};

fp8_data make_data(const fp8::block_geometry& g, std::uint32_t seed) {
  std::mt19937 rng(seed);
  fp8_data d{std::vector<std::uint8_t>(g.values()), std::vector<std::uint8_t>(g.scale_bytes())};
  for (std::size_t i = 0; i < d.codes.size(); ++i)
    d.codes[i] = static_cast<std::uint8_t>(i < 256 ? i : rng());
  const std::uint32_t edges[] = {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u,
                                 0x7F800001u, 0x00000001u, 0x007FFFFFu, 0x7F7FFFFFu, 0x3F800000u};
  for (std::uint64_t i = 0; i < g.scales(); ++i) {
    const std::uint32_t b =
        i < std::size(edges) ? edges[i] : 0x39000000u + rng() % 0x3000000u;  // 2^-13 .. 2^-7
    std::memcpy(d.scales.data() + 4 * i, &b, 4);
  }
  return d;
}

class Fp8CudaDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!device_usable()) GTEST_SKIP() << "no usable CUDA device";
    UMLOAD_CUDA_CHECK(cudaSetDevice(0));
  }

  void check(const fp8::block_geometry& g, output_dtype dtype, std::uint32_t seed,
             std::size_t in_offset = 0, std::size_t out_offset = 0) {
    SCOPED_TRACE(std::to_string(g.matrices) + "x" + std::to_string(g.rows) + "x" +
                 std::to_string(g.cols) + " block " + std::to_string(g.block_rows) + "x" +
                 std::to_string(g.block_cols) + " " + to_string(dtype) + " in+" +
                 std::to_string(in_offset) + " out+" + std::to_string(out_offset));
    const fp8_data d = make_data(g, seed);
    fp8::decode_job job;
    job.geometry = g;
    job.dtype = dtype;
    job.codes = d.codes.data();
    job.scales = d.scales.data();
    std::vector<std::uint8_t> expected(job.out_bytes());
    job.out = expected.data();
    fp8::cpu::decode_scalar(job);

    device_buffer codes(d.codes.size() + in_offset);
    device_buffer scales(d.scales.size() + in_offset);
    device_buffer out(expected.size() + out_offset);
    UMLOAD_CUDA_CHECK(cudaMemcpy(codes.get() + in_offset, d.codes.data(), d.codes.size(),
                                 cudaMemcpyHostToDevice));
    UMLOAD_CUDA_CHECK(cudaMemcpy(scales.get() + in_offset, d.scales.data(), d.scales.size(),
                                 cudaMemcpyHostToDevice));
    // Poison: 0xFFFF.. is a NaN the decode never writes (its NaN is 0x7FC0 / 0x7FC00000).
    UMLOAD_CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.bytes()));
    job.codes = codes.get() + in_offset;
    job.scales = scales.get() + in_offset;
    job.out = out.get() + out_offset;
    fp8::cuda::decode(job, nullptr);
    UMLOAD_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<std::uint8_t> got(expected.size());
    UMLOAD_CUDA_CHECK(
        cudaMemcpy(got.data(), out.get() + out_offset, got.size(), cudaMemcpyDeviceToHost));
    std::int64_t first = -1;
    for (std::size_t i = 0; i < got.size() && first < 0; ++i)
      if (got[i] != expected[i]) first = static_cast<std::int64_t>(i / element_bytes(dtype));
    EXPECT_EQ(first, -1) << "first differing element " << first;
  }
};

TEST_F(Fp8CudaDecode, RealShapesAndPartialBlocks) {
  for (const output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) {
    check({1, 576, 7168, 128, 128}, dtype, 1);
    check({1, 7168, 2048, 128, 128}, dtype, 2);
    check({1, 160, 256, 128, 128}, dtype, 3);
    check({1, 1, 1, 128, 128}, dtype, 4);
    check({1, 5, 37, 128, 128}, dtype, 5);
  }
}

TEST_F(Fp8CudaDecode, AnyBlockSizeStackedAndSingleScale) {
  for (const output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) {
    check({1, 33, 70, 1, 1}, dtype, 6);
    check({1, 50, 77, 7, 3}, dtype, 7);
    check({3, 130, 72, 64, 32}, dtype, 8);
    check(fp8::block_geometry::per_tensor(50, 77), dtype, 9);
  }
}

TEST_F(Fp8CudaDecode, MisalignedInputsAndOutputs) {
  for (const output_dtype dtype : {output_dtype::bf16, output_dtype::f32})
    for (const std::size_t offset : {1u, 2u, 4u, 8u}) {
      check({1, 160, 256, 128, 128}, dtype, 10, offset, 0);
      check({1, 160, 256, 128, 128}, dtype, 11, 0, offset);
    }
}

TEST_F(Fp8CudaDecode, EmptyJobLaunchesNothingAndBadJobsAreRefused) {
  fp8::decode_job job;
  job.geometry = {1, 0, 16, 128, 128};
  EXPECT_NO_THROW(fp8::cuda::decode(job, nullptr));
  job.geometry = {1, 4, 16, 128, 128};
  EXPECT_THROW(fp8::cuda::decode(job, nullptr), usage_error);  // null pointers
  job.geometry.block_rows = 0;
  EXPECT_THROW(fp8::cuda::decode(job, nullptr), usage_error);
}

}  // namespace
}  // namespace umload
