// Every CPU block-FP8 path this machine supports (cpu::supported_isas) against the scalar oracle:
// one parameterised suite, run per path x dtype x thread count, over all 256 codes times edge
// scales, shapes that are not multiples of the block (DeepSeek-V3's 576-row kv_a_proj_with_mqa,
// a 160-row weight, 1 x 1, widths that are not multiples of 8 or 16), block sizes from 1 x 1 to
// larger than the weight (widths that are multiples of 64 take the AVX-512 VBMI table path for
// BF16, where the CPU has it), stacked matrices, single-scale weights, misaligned codes, scales and
// output, and outputs large enough for the non-temporal store path. Output buffers carry guard
// bytes on both sides so that a write outside the job is caught. The oracle itself is held to
// fp8::decode_* value by value, and to the exact product under a caller's flush-to-zero mode.
#include <gtest/gtest.h>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/error.hpp"
#include "kernels/fp8.hpp"
#include "kernels/fp8_cpu.hpp"
#include "tests/kernels/guarded_output.hpp"

namespace {

namespace fp8 = umload::fp8;
using umload::output_dtype;
using umload::cpu::isa;
using umload::test::first_difference;
using umload::test::guarded_output;

std::uint32_t bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

const std::vector<std::uint32_t>& edge_scales() {
  static const std::vector<std::uint32_t> all = {
      0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u,
      0x7F800001u, 0x00000001u, 0x007FFFFFu, 0x80000001u, 0x00800000u, 0x7F7FFFFFu,
      0x3F800000u, 0xBF800000u, 0x40000000u, 0x3F000000u, 0x3A800000u, 0x71000000u,
      0x7E800000u, 0x0B800000u, 0x03800000u, 0x3A83126Fu, 0x39A3D70Au, 0x3F7FFFFFu};
  return all;
}

// How a test fills its scales: ordinary block scales (2^-12 .. 2^-6, as real checkpoints hold),
// random bit patterns, or mostly ordinary with edge scales mixed in.
enum class scales_kind { ordinary, random_bits, with_edges };

struct input {
  std::vector<std::uint8_t> codes;
  std::vector<std::uint8_t> scale_bytes;  // F32 values, `scale_offset` bytes in
  std::size_t code_offset = 0, scale_offset = 0;
  const std::uint8_t* code_data() const { return codes.data() + code_offset; }
  const std::uint8_t* scale_data() const { return scale_bytes.data() + scale_offset; }
};

input make_input(const fp8::block_geometry& g, scales_kind kind, std::uint32_t seed,
                 std::size_t code_offset = 0, std::size_t scale_offset = 0) {
  std::mt19937 rng(seed);
  input in;
  in.code_offset = code_offset;
  in.scale_offset = scale_offset;
  in.codes.resize(g.values() + code_offset);
  for (auto& c : in.codes) c = static_cast<std::uint8_t>(rng());
  in.scale_bytes.resize(g.scales() * 4 + scale_offset);
  for (std::uint64_t i = 0; i < g.scales(); ++i) {
    std::uint32_t s = 0;
    const float ordinary = std::ldexp(1.0f + static_cast<float>(rng() % 1000) / 1000.0f,
                                      -12 + static_cast<int>(rng() % 7));
    switch (kind) {
      case scales_kind::ordinary: s = bits(ordinary); break;
      case scales_kind::random_bits: s = rng(); break;
      case scales_kind::with_edges:
        s = rng() % 5 == 0 ? edge_scales()[rng() % edge_scales().size()] : bits(ordinary);
        break;
    }
    std::memcpy(in.scale_bytes.data() + scale_offset + i * 4, &s, 4);
  }
  return in;
}

fp8::decode_job make_job(const input& in, const fp8::block_geometry& g, output_dtype dtype,
                         void* out) {
  fp8::decode_job job;
  job.codes = in.code_data();
  job.scales = in.scale_data();
  job.out = out;
  job.geometry = g;
  job.dtype = dtype;
  return job;
}

std::string name_of(const fp8::block_geometry& g) {
  return std::to_string(g.matrices) + "x" + std::to_string(g.rows) + "x" + std::to_string(g.cols) +
         " block " + std::to_string(g.block_rows) + "x" + std::to_string(g.block_cols);
}

TEST(Fp8Oracle, EachValueIsTheCoreDecodeOfItsBlockScale) {
  const fp8::block_geometry g{2, 37, 53, 16, 8};
  const input in = make_input(g, scales_kind::with_edges, 3);
  for (const output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) {
    std::vector<std::uint8_t> out(g.output(umload::element_bytes(dtype)));
    fp8::cpu::decode_scalar(make_job(in, g, dtype, out.data()));
    for (std::uint64_t m = 0; m < g.matrices; ++m)
      for (std::uint64_t r = 0; r < g.rows; ++r)
        for (std::uint64_t c = 0; c < g.cols; ++c) {
          const std::uint64_t i = (m * g.rows + r) * g.cols + c;
          float scale;
          std::memcpy(&scale, in.scale_data() + 4 * ((m * 3 + r / 16) * 7 + c / 8), 4);
          if (dtype == output_dtype::bf16) {
            std::uint16_t got;
            std::memcpy(&got, out.data() + 2 * i, 2);
            ASSERT_EQ(got, fp8::decode_bf16(in.code_data()[i], scale)) << i;
          } else {
            std::uint32_t got;
            std::memcpy(&got, out.data() + 4 * i, 4);
            ASSERT_EQ(got, fp8::decode_f32(in.code_data()[i], scale)) << i;
          }
        }
  }
}

#if defined(__x86_64__)
// A caller that flushes subnormals (torch.set_flush_denormal(True) sets FTZ and DAZ) gets the same
// values, and its mode back.
TEST(Fp8Oracle, CallersFlushToZeroModeIsIgnoredAndRestored) {
  const fp8::block_geometry g{1, 4, 256, 1, 256};
  input in = make_input(g, scales_kind::ordinary, 1);
  for (unsigned c = 0; c < 256; ++c) in.codes[c] = in.codes[256 + c] = static_cast<std::uint8_t>(c);
  const float tiny[4] = {std::ldexp(1.0f, -140), std::ldexp(1.0f, -130), 1e-40f, 1.0f};
  std::memcpy(in.scale_bytes.data(), tiny, sizeof tiny);
  std::vector<std::uint8_t> expected(g.output(4)), got(g.output(4));
  for (isa path : umload::cpu::supported_isas()) {
    fp8::cpu::decode_scalar(make_job(in, g, output_dtype::f32, expected.data()));
    const unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u);  // FTZ | DAZ
    fp8::cpu::decode(make_job(in, g, output_dtype::f32, got.data()), path, 1);
    const unsigned after = _mm_getcsr();
    _mm_setcsr(saved);
    EXPECT_EQ(after, saved | 0x8040u) << umload::cpu::to_string(path);
    EXPECT_EQ(first_difference(expected.data(), got.data(), got.size(), 4), -1)
        << umload::cpu::to_string(path);
  }
  // Code 1 (2^-9) times 2^-140 is 2^-149: a subnormal the flush would have made 0.
  std::uint32_t v;
  std::memcpy(&v, expected.data() + 4 * 1, 4);
  EXPECT_EQ(v, 0x00000001u);
}
#endif

using path_case = std::tuple<isa, output_dtype, int>;

class Fp8CpuPath : public ::testing::TestWithParam<path_case> {
 protected:
  void check(const fp8::block_geometry& g, scales_kind kind, std::uint32_t seed,
             std::size_t out_offset = 0, std::size_t code_offset = 0,
             std::size_t scale_offset = 0) {
    const input in = make_input(g, kind, seed, code_offset, scale_offset);
    check_input(g, in, out_offset);
  }
  void check_input(const fp8::block_geometry& g, const input& in, std::size_t out_offset = 0) {
    const auto [path, dtype, threads] = GetParam();
    const unsigned element = umload::element_bytes(dtype);
    guarded_output expected(g.output(element), 0);
    guarded_output actual(expected.bytes, out_offset);
    fp8::cpu::decode_scalar(make_job(in, g, dtype, expected.payload));
    fp8::cpu::decode(make_job(in, g, dtype, actual.payload), path, threads);
    const std::int64_t diff =
        first_difference(expected.payload, actual.payload, expected.bytes, element);
    EXPECT_EQ(diff, -1) << name_of(g) << " out+" << out_offset << " codes+" << in.code_offset
                        << " scales+" << in.scale_offset << ": first wrong element " << diff;
    EXPECT_TRUE(actual.guards_intact()) << "wrote outside the output: " << name_of(g);
  }
};

TEST_P(Fp8CpuPath, Every256CodesTimesEdgeScales) {
  // Row r holds all 256 codes twice (in order, then reversed) under scale r.
  const auto& edges = edge_scales();
  const fp8::block_geometry g{1, edges.size(), 512, 1, 512};
  input in = make_input(g, scales_kind::ordinary, 0);
  for (std::uint64_t r = 0; r < g.rows; ++r) {
    for (unsigned c = 0; c < 256; ++c) {
      in.codes[r * 512 + c] = static_cast<std::uint8_t>(c);
      in.codes[r * 512 + 511 - c] = static_cast<std::uint8_t>(c);
    }
    std::memcpy(in.scale_bytes.data() + 4 * r, &edges[r], 4);
  }
  check_input(g, in);
}

TEST_P(Fp8CpuPath, RandomScaleBits) { check({1, 64, 512, 16, 64}, scales_kind::random_bits, 4); }

TEST_P(Fp8CpuPath, DeepSeekKvAProjection576x7168) {
  // 576 rows: four whole 128-row blocks and a 64-row edge block. 8.3 MB of BF16 output, so the
  // non-temporal store path is taken.
  check({1, 576, 7168, 128, 128}, scales_kind::with_edges, 5);
}

TEST_P(Fp8CpuPath, PartialEdgeBlocks) {
  check({1, 160, 256, 128, 128}, scales_kind::with_edges, 6);
  check({1, 160, 200, 128, 128}, scales_kind::with_edges, 7);
  check({1, 129, 129, 128, 128}, scales_kind::with_edges, 8);
}

TEST_P(Fp8CpuPath, TinyAndOddWidths) {
  for (const std::uint64_t cols : {1u, 3u, 7u, 8u, 9u, 15u, 16u, 17u, 31u, 33u, 47u, 100u})
    check({1, 5, cols, 128, 128}, scales_kind::with_edges, static_cast<std::uint32_t>(cols));
  check({1, 1, 1, 128, 128}, scales_kind::with_edges, 9);
}

TEST_P(Fp8CpuPath, AnyBlockSize) {
  check({1, 33, 70, 1, 1}, scales_kind::with_edges, 10);
  check({1, 50, 77, 7, 3}, scales_kind::with_edges, 11);
  check({1, 64, 96, 64, 32}, scales_kind::with_edges, 12);
  check({1, 40, 300, 2, 200}, scales_kind::with_edges, 13);
  check({1, 20, 40, 256, 256}, scales_kind::with_edges, 14);  // one block larger than the weight
  // Widths that are multiples of 64 (the AVX-512 VBMI table path for BF16), rows ending mid-block.
  check({1, 9, 200, 3, 64}, scales_kind::with_edges, 26);
  check({1, 5, 450, 2, 192}, scales_kind::with_edges, 27);
}

TEST_P(Fp8CpuPath, StackedMatrices) { check({3, 130, 70, 64, 32}, scales_kind::with_edges, 15); }

TEST_P(Fp8CpuPath, SingleScale) {
  check(fp8::block_geometry::per_tensor(50, 77), scales_kind::with_edges, 16);
  check(fp8::block_geometry::per_tensor(9, 33, 4), scales_kind::random_bits, 17);
}

TEST_P(Fp8CpuPath, MisalignedCodesScalesAndOutput) {
  for (const std::size_t out_offset : {1u, 2u, 3u, 6u, 30u})
    check({1, 37, 300, 16, 128}, scales_kind::with_edges, 18, out_offset, 0, 0);
  for (const std::size_t in_offset : {1u, 3u, 5u})
    check({1, 37, 300, 16, 128}, scales_kind::with_edges, 19, 0, in_offset, in_offset);
  // Large enough to stream, but misaligned: the path must fall back to ordinary stores.
  check({1, 576, 7168, 128, 128}, scales_kind::ordinary, 20, 2, 1, 1);
}

TEST_P(Fp8CpuPath, DeepSeekExpert7168x2048) {
  check({1, 7168, 2048, 128, 128}, scales_kind::ordinary, 21);
}

std::vector<path_case> all_cases() {
  std::vector<path_case> cases;
  for (isa path : umload::cpu::supported_isas())
    for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32})
      for (int threads : {1, 3}) {
        if (path == isa::scalar && threads != 1) continue;
        cases.emplace_back(path, dtype, threads);
      }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllPaths, Fp8CpuPath, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<path_case>& info) {
                           return std::string(umload::cpu::to_string(std::get<0>(info.param))) +
                                  "_" + umload::to_string(std::get<1>(info.param)) + "_t" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(Fp8CpuRows, RowRangesCoverTheJobAsOneCallDoes) {
  const fp8::block_geometry g{2, 150, 90, 128, 32};
  const input in = make_input(g, scales_kind::with_edges, 23);
  for (isa path : umload::cpu::supported_isas()) {
    std::vector<std::uint8_t> whole(g.output(2)), pieces(g.output(2), 0xEE);
    fp8::cpu::decode_scalar(make_job(in, g, output_dtype::bf16, whole.data()));
    const auto job = make_job(in, g, output_dtype::bf16, pieces.data());
    const std::uint64_t cuts[] = {0, 1, 127, 128, 149, 150, 151, 299, 300};
    for (std::size_t i = 0; i + 1 < std::size(cuts); ++i)
      fp8::cpu::decode_rows(job, path, cuts[i], cuts[i + 1]);
    EXPECT_EQ(first_difference(whole.data(), pieces.data(), whole.size(), 2), -1)
        << umload::cpu::to_string(path);
  }
}

TEST(Fp8CpuRows, EveryThreadCallsItsHooks) {
  const fp8::block_geometry g{1, 512, 256, 128, 128};
  const input in = make_input(g, scales_kind::ordinary, 24);
  std::vector<std::uint8_t> out(g.output(2));
  struct counts {
    std::atomic<int> enter{0}, leave{0};
  } seen;
  umload::cpu::team_hooks hooks;
  hooks.enter = [](void* c) { ++static_cast<counts*>(c)->enter; };
  hooks.leave = [](void* c) { ++static_cast<counts*>(c)->leave; };
  hooks.context = &seen;
  fp8::cpu::decode(make_job(in, g, output_dtype::bf16, out.data()), umload::cpu::best_isa(), 2,
                   hooks);
  EXPECT_GE(seen.enter.load(), 1);
  EXPECT_EQ(seen.enter.load(), seen.leave.load());
}

TEST(Fp8CpuErrors, BadJobsAreRefused) {
  const fp8::block_geometry g{1, 4, 4, 128, 128};
  const input in = make_input(g, scales_kind::ordinary, 25);
  std::vector<std::uint8_t> out(g.output(4));
  auto job = make_job(in, g, output_dtype::f32, out.data());
  EXPECT_THROW(fp8::cpu::decode(job, isa::portable, -1), umload::usage_error);
  EXPECT_THROW(fp8::cpu::decode_rows(job, isa::portable, 3, 5), umload::usage_error);
  EXPECT_THROW(fp8::cpu::decode_rows(job, isa::portable, 3, 2), umload::usage_error);
  job.dtype = output_dtype::keep;
  EXPECT_THROW(fp8::cpu::decode(job, isa::portable), umload::usage_error);
  job.dtype = output_dtype::f32;
  job.geometry.block_cols = 0;
  EXPECT_THROW(fp8::cpu::decode(job, isa::portable), umload::usage_error);
  EXPECT_THROW(fp8::cpu::decode_scalar(job), umload::usage_error);
}

}  // namespace
