// Every CPU decode path this machine supports (cpu::supported_isas) against the scalar oracle:
// one parameterised suite, run per path x layout x dtype x thread count, over shapes with row
// tails, one group, several experts, every scale byte (255 included), misaligned outputs and
// outputs large enough for the non-temporal store path. Output buffers carry guard bytes on both
// sides so that a write outside the job is caught.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "kernels/cpu_decode.hpp"
#include "kernels/cpu_decode_detail.hpp"
#include "kernels/error.hpp"
#include "kernels/mxfp4.hpp"
#include "tests/kernels/guarded_output.hpp"

namespace {

using umload::decode_job;
using umload::layout;
using umload::output_dtype;
namespace cpu = umload::cpu;
using umload::test::first_difference;
using umload::test::guarded_output;
using rescalable = umload::cpu::detail::rescalable_scales;

struct shape {
  std::uint64_t experts, rows, groups;
};

// rescalable: scales anywhere in detail::rescalable_scales (every hf tile can take the AVX-512
// VBMI code-transpose path); rescalable_bounds: only its ends and middle; sparse_edge: rescalable
// with an occasional edge scale, so that neighbouring tiles take different paths.
enum class fill { random, every_scale, edge, rescalable, rescalable_bounds, sparse_edge };

struct input {
  std::vector<std::uint8_t> blocks, scales;
};

input make_input(const shape& s, fill kind, std::uint32_t seed) {
  input in;
  const std::uint64_t blocks = s.experts * s.rows * s.groups;
  in.blocks.resize(blocks * 16);
  in.scales.resize(blocks);
  std::mt19937 gen(seed);
  for (auto& b : in.blocks) b = static_cast<std::uint8_t>(gen());
  for (std::uint64_t i = 0; i < blocks; ++i) {
    switch (kind) {
      case fill::random: in.scales[i] = static_cast<std::uint8_t>(gen()); break;
      case fill::every_scale: in.scales[i] = static_cast<std::uint8_t>(i * 7 % 256); break;
      case fill::edge: {
        static const std::uint8_t edges[] = {0, 1, 2, 126, 127, 128, 252, 253, 254, 255};
        in.scales[i] = edges[gen() % std::size(edges)];
        break;
      }
      case fill::rescalable:
        in.scales[i] = static_cast<std::uint8_t>(
            rescalable::first + gen() % (rescalable::last - rescalable::first + 1));
        break;
      case fill::rescalable_bounds: {
        static const std::uint8_t bounds[] = {
            rescalable::first,    rescalable::first + 1, 126, 127, 128,
            rescalable::last - 1, rescalable::last};
        in.scales[i] = bounds[gen() % std::size(bounds)];
        break;
      }
      case fill::sparse_edge: {
        static const std::uint8_t edges[] = {0, 1, 253, 254, 255};
        const std::uint32_t draw = gen();
        in.scales[i] =
            draw % 97 == 0
                ? edges[draw / 97 % std::size(edges)]
                : static_cast<std::uint8_t>(rescalable::first +
                                            draw % (rescalable::last - rescalable::first + 1));
        break;
      }
    }
  }
  return in;
}

decode_job make_job(const input& in, const shape& s, layout order, output_dtype dtype, void* out) {
  decode_job job;
  job.blocks = in.blocks.data();
  job.scales = in.scales.data();
  job.out = out;
  job.experts = s.experts;
  job.rows = s.rows;
  job.groups = s.groups;
  job.order = order;
  job.dtype = dtype;
  return job;
}

using path_case = std::tuple<cpu::isa, layout, output_dtype, int>;

class CpuDecodePath : public ::testing::TestWithParam<path_case> {
 protected:
  void check(const shape& s, fill kind, std::uint32_t seed, std::size_t offset = 0) {
    const auto [path, order, dtype, threads] = GetParam();
    const input in = make_input(s, kind, seed);
    guarded_output expected(make_job(in, s, order, dtype, nullptr).out_bytes(), 0);
    guarded_output actual(expected.bytes, offset);
    cpu::decode_scalar(make_job(in, s, order, dtype, expected.payload));
    cpu::decode(make_job(in, s, order, dtype, actual.payload), path, threads);
    const std::int64_t diff = first_difference(expected.payload, actual.payload, expected.bytes,
                                               umload::element_bytes(dtype));
    EXPECT_EQ(diff, -1) << "experts " << s.experts << " rows " << s.rows << " groups " << s.groups
                        << " offset " << offset << ": first wrong element " << diff;
    EXPECT_TRUE(actual.guards_intact()) << "wrote outside the output: experts " << s.experts
                                        << " rows " << s.rows << " groups " << s.groups;
  }
};

TEST_P(CpuDecodePath, SingleBlock) {
  check({1, 1, 1}, fill::random, 1);
  check({1, 1, 1}, fill::edge, 2);
}

TEST_P(CpuDecodePath, RowTails) {
  for (std::uint64_t rows : {1, 2, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 97})
    check({1, rows, 2}, fill::random, static_cast<std::uint32_t>(rows));
}

TEST_P(CpuDecodePath, OneGroupManyExperts) {
  check({5, 33, 1}, fill::random, 3);
  check({3, 64, 1}, fill::edge, 4);
}

TEST_P(CpuDecodePath, EveryScaleByte) {
  check({2, 40, 16}, fill::every_scale, 5);  // 1280 blocks: each scale byte 5 times
  check({3, 19, 7}, fill::edge, 6);
}

// Every tile of these takes the AVX-512 VBMI code-transpose path where the CPU has it (hf, full
// tiles of 32 rows), down to the ends of the rescalable range; sparse edges mix both paths.
TEST_P(CpuDecodePath, RescalableScales) {
  check({2, 96, 5}, fill::rescalable, 13);
  check({1, 64, 90}, fill::rescalable_bounds, 14);
  check({3, 70, 3}, fill::sparse_edge, 15);
  check({1, 256, 40}, fill::sparse_edge, 16, 2);
}

TEST_P(CpuDecodePath, MisalignedOutput) {
  check({2, 37, 3}, fill::random, 7, 2);
  check({1, 64, 4}, fill::random, 8, 34);
}

TEST_P(CpuDecodePath, RealGroupCount) {
  check({2, 45, 90}, fill::random, 9);  // down_proj's 90 groups, odd rows
}

// Outputs past the non-temporal threshold (8 MiB), aligned and with a row tail.
TEST_P(CpuDecodePath, LargeStreamedOutput) {
  check({1, 1024, 128}, fill::random, 10);
  check({2, 528, 128}, fill::edge, 11);
  check({1, 1024, 128}, fill::random, 12, 2);
  check({1, 1024, 128}, fill::sparse_edge, 17);
}

std::vector<path_case> all_cases() {
  std::vector<path_case> cases;
  for (cpu::isa path : cpu::supported_isas())
    for (layout order : {layout::hf, layout::native})
      for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32})
        for (int threads : {1, 2, 3, 0}) {
          if (path == cpu::isa::scalar && threads != 1) continue;  // single-threaded oracle
          cases.emplace_back(path, order, dtype, threads);
        }
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<path_case>& info) {
  const auto [path, order, dtype, threads] = info.param;
  return std::string(cpu::to_string(path)) + "_" + umload::to_string(order) + "_" +
         umload::to_string(dtype) + "_threads" + (threads == 0 ? "all" : std::to_string(threads));
}

INSTANTIATE_TEST_SUITE_P(SupportedPaths, CpuDecodePath, ::testing::ValuesIn(all_cases()),
                         case_name);

// Byte 0x12 at scale 127 decodes to [1.0, 0.5] on every path, both dtypes.
TEST(CpuDecode, LowNibbleFirstOnEveryPath) {
  std::uint8_t blocks[16] = {0x12};
  std::uint8_t scale = 127;
  for (cpu::isa path : cpu::supported_isas())
    for (layout order : {layout::hf, layout::native}) {
      std::uint16_t bf16[32] = {};
      std::uint32_t f32[32] = {};
      decode_job job{blocks, &scale, bf16, 1, 1, 1, order, output_dtype::bf16};
      cpu::decode(job, path, 1);
      EXPECT_EQ(bf16[0], 0x3F80) << cpu::to_string(path);
      EXPECT_EQ(bf16[1], 0x3F00) << cpu::to_string(path);
      EXPECT_EQ(bf16[2], 0x0000) << cpu::to_string(path);
      job.out = f32;
      job.dtype = output_dtype::f32;
      cpu::decode(job, path, 1);
      EXPECT_EQ(f32[0], 0x3F800000u) << cpu::to_string(path);
      EXPECT_EQ(f32[1], 0x3F000000u) << cpu::to_string(path);
    }
}

// The identity the hf VBMI path relies on instead of 32 table rows per lookup: for every scale in
// rescalable_scales and every code, row 127 moved by the exponent step is the core's value; and
// the range is maximal (each scale outside it has a code where the identity fails).
TEST(CpuDecode, RescaledRow127EqualsCoreExactlyInRange) {
  const auto& table = cpu::detail::table();
  for (unsigned code = 0; code < 16; ++code)
    ASSERT_EQ(table.bf16[127][code], umload::mxfp4::decode_bf16(code, 127));
  for (unsigned scale = 0; scale < 256; ++scale) {
    const bool in_range = scale >= rescalable::first && scale <= rescalable::last;
    bool all_equal = true;
    for (unsigned code = 0; code < 16; ++code) {
      const std::uint16_t rescaled = cpu::detail::rescale_bf16(table.bf16[127][code], code, scale);
      const std::uint16_t expected = umload::mxfp4::decode_bf16(code, scale);
      if (in_range) {
        ASSERT_EQ(rescaled, expected) << "scale " << scale << " code " << code;
      }
      all_equal = all_equal && rescaled == expected;
    }
    EXPECT_EQ(all_equal, in_range) << "scale " << scale;
  }
}

// What the team hooks saw: per thread, how many shares it entered and left, and whether a thread
// entered twice before leaving.
struct hook_record {
  std::mutex mutex;
  std::map<std::thread::id, int> entered, left;
  bool nested = false;
  std::map<std::thread::id, bool> inside;
  static void enter(void* self) {
    auto& r = *static_cast<hook_record*>(self);
    std::lock_guard lock(r.mutex);
    r.nested = r.nested || r.inside[std::this_thread::get_id()];
    r.inside[std::this_thread::get_id()] = true;
    ++r.entered[std::this_thread::get_id()];
  }
  static void leave(void* self) {
    auto& r = *static_cast<hook_record*>(self);
    std::lock_guard lock(r.mutex);
    r.inside[std::this_thread::get_id()] = false;
    ++r.left[std::this_thread::get_id()];
  }
};

// Every thread that takes a share of a decode, the caller's included (also when it works alone),
// enters the hooks once as it starts and leaves once as it finishes; no output byte changes.
TEST(CpuDecode, TeamHooksRunAroundEveryThreadsShare) {
  const shape s{4, 300, 9};
  const input in = make_input(s, fill::random, 21);
  for (cpu::isa path : cpu::supported_isas())
    for (layout order : {layout::hf, layout::native})
      for (int threads : {1, 3}) {
        if (path == cpu::isa::scalar && threads != 1) continue;
        SCOPED_TRACE(std::string(cpu::to_string(path)) + " " + umload::to_string(order) + " x" +
                     std::to_string(threads));
        guarded_output plain(make_job(in, s, order, output_dtype::bf16, nullptr).out_bytes(), 0);
        guarded_output hooked(plain.bytes, 0);
        cpu::decode(make_job(in, s, order, output_dtype::bf16, plain.payload), path, threads);
        hook_record record;
        const cpu::team_hooks hooks{&hook_record::enter, &hook_record::leave, &record};
        cpu::decode(make_job(in, s, order, output_dtype::bf16, hooked.payload), path, threads,
                    hooks);
        EXPECT_EQ(first_difference(plain.payload, hooked.payload, plain.bytes, 2), -1);
        EXPECT_FALSE(record.nested);
        EXPECT_EQ(record.entered, record.left);
        EXPECT_EQ(record.entered.count(std::this_thread::get_id()), 1u) << "the caller's share";
        EXPECT_LE(record.entered.size(), static_cast<std::size_t>(threads));
        for (const auto& [thread, shares] : record.entered) EXPECT_EQ(shares, 1);
      }
}

TEST(CpuDecode, EmptyJobWritesNothing) {
  decode_job job;
  for (cpu::isa path : cpu::supported_isas()) EXPECT_NO_THROW(cpu::decode(job, path, 2));
}

TEST(CpuDecode, NegativeThreadsIsUsageError) {
  std::uint8_t blocks[16] = {}, scale = 127;
  std::uint16_t out[32];
  decode_job job{blocks, &scale, out, 1, 1, 1, layout::native, output_dtype::bf16};
  EXPECT_THROW(cpu::decode(job, cpu::isa::portable, -1), umload::usage_error);
}

TEST(CpuDecode, IsaNamesRoundTrip) {
  for (cpu::isa i : {cpu::isa::scalar, cpu::isa::portable, cpu::isa::avx2, cpu::isa::avx512}) {
    cpu::isa parsed{};
    ASSERT_TRUE(cpu::parse_isa(cpu::to_string(i), parsed));
    EXPECT_EQ(parsed, i);
  }
  cpu::isa parsed{};
  EXPECT_FALSE(cpu::parse_isa("avx1024", parsed));
  EXPECT_FALSE(cpu::parse_isa("", parsed));
}

TEST(CpuDecode, SupportedPathsStartWithScalarAndPortable) {
  const auto paths = cpu::supported_isas();
  ASSERT_GE(paths.size(), 2u);
  EXPECT_EQ(paths[0], cpu::isa::scalar);
  EXPECT_EQ(paths[1], cpu::isa::portable);
  EXPECT_EQ(cpu::best_isa(), paths.back());
}

TEST(CpuDecode, FindNanScale) {
  std::vector<std::uint8_t> scales(1000, 127);
  EXPECT_EQ(cpu::find_nan_scale(scales.data(), scales.size()), -1);
  EXPECT_EQ(cpu::find_nan_scale(scales.data(), 0), -1);
  scales[999] = 255;
  EXPECT_EQ(cpu::find_nan_scale(scales.data(), scales.size()), 999);
  EXPECT_EQ(cpu::find_nan_scale(scales.data(), 999), -1);  // outside the range
  scales[500] = 255;
  scales[0] = 254;
  EXPECT_EQ(cpu::find_nan_scale(scales.data(), scales.size()), 500);
  scales[0] = 255;
  EXPECT_EQ(cpu::find_nan_scale(scales.data(), scales.size()), 0);
}

}  // namespace
