// The CUDA kernels' per-thread work (kernels/cuda_tile.hpp) run on the host over every thread of
// every tile of whole grids, with a sink that records each store: every output element must be
// written exactly once, with the CPU oracle's value. Needs no GPU; carries no `gpu` label.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_decode.hpp"
#include "kernels/cuda_tile.hpp"
#include "kernels/mxfp4.hpp"
#include "tests/cuda/recording_sink.hpp"

namespace umload {
namespace {

using namespace cuda_tile;

std::vector<split_table_row> host_table() {
  std::vector<split_table_row> table(256);
  for (unsigned s = 0; s < 256; ++s) table[s] = make_split_table_row(s);
  return table;
}

TEST(CudaTileDecode, SplitRowHoldsDecodeBf16OfEachMagnitude) {
  for (unsigned s = 0; s < 256; ++s) {
    const split_table_row row = make_split_table_row(s);
    for (unsigned m = 0; m < 8; ++m) {
      const std::uint32_t lo = (m < 4 ? row.lo0 : row.lo1) >> (8 * (m & 3)) & 0xFF;
      const std::uint32_t hi = (m < 4 ? row.hi0 : row.hi1) >> (8 * (m & 3)) & 0xFF;
      EXPECT_EQ(lo | hi << 8, mxfp4::decode_bf16(m, s)) << "scale " << s << " magnitude " << m;
    }
  }
}

TEST(CudaTileDecode, ByteRermMatchesCudaSemantics) {
  // Documented examples of __byte_perm: selector 0x3210 is x, 0x7654 is y, 0x0123 reverses x.
  EXPECT_EQ(byte_perm(0x33221100u, 0x77665544u, 0x3210u), 0x33221100u);
  EXPECT_EQ(byte_perm(0x33221100u, 0x77665544u, 0x7654u), 0x77665544u);
  EXPECT_EQ(byte_perm(0x33221100u, 0x77665544u, 0x0123u), 0x00112233u);
  EXPECT_EQ(byte_perm(0x33221100u, 0x77665544u, 0x5140u), 0x55114400u);
}

// decode_word against decode_bf16 for every byte value at every byte position of the packed word,
// at every scale (the other bytes random): every (code, scale, position) pair is covered.
TEST(CudaTileDecode, DecodeWordEqualsDecodeBf16Exhaustively) {
  const auto table = host_table();
  std::mt19937 rng(7);
  int failures = 0;
  for (unsigned s = 0; s < 256 && failures < 10; ++s)
    for (unsigned position = 0; position < 4; ++position)
      for (unsigned byte = 0; byte < 256; ++byte) {
        std::uint32_t packed = rng();
        packed = (packed & ~(0xFFu << (8 * position))) | (byte << (8 * position));
        std::uint32_t out[4];
        decode_word(table[s], sign_mask(s), packed, out);
        for (unsigned i = 0; i < 8; ++i) {
          const std::uint32_t got = (out[i / 2] >> (16 * (i & 1))) & 0xFFFF;
          const std::uint32_t want = mxfp4::decode_bf16((packed >> (4 * i)) & 0xF, s);
          if (got != want && ++failures < 10)
            ADD_FAILURE() << "scale " << s << " packed " << std::hex << packed << " value " << i
                          << ": got " << got << " want " << want;
        }
      }
  EXPECT_EQ(failures, 0);
}

TEST(CudaTileDecode, ReferenceTableValues) {
  const auto table = host_table();
  std::uint32_t out[4];
  decode_word(table[127], sign_mask(127), 0x12u, out);  // byte 0x12: [1.0, 0.5], rest code 0
  EXPECT_EQ(out[0], 0x3F003F80u);
  decode_word(table[0], sign_mask(0), 0x21u, out);  // scale 0, codes 1, 2: subnormals
  EXPECT_EQ(out[0], 0x00400020u);
  decode_word(table[254], sign_mask(254), 0x84u, out);  // code 4 overflows, code 8 is -0
  EXPECT_EQ(out[0], 0x80007F80u);
  decode_word(table[255], sign_mask(255), 0x8Fu, out);  // NaN scale: NaN, sign not applied
  EXPECT_EQ(out[0], 0x7FC07FC0u);
}

using test::recording_sink;

struct shape {
  std::uint64_t experts, rows, groups;
};

std::string name_of(const shape& s) {
  return std::to_string(s.experts) + "x" + std::to_string(s.rows) + "x" + std::to_string(s.groups);
}

// Random codes; scales cycle through all 256 bytes in a shuffled order, so each appears when the
// shape has at least 256 blocks.
void fill_input(const shape& s, std::vector<std::uint8_t>& blocks,
                std::vector<std::uint8_t>& scales, unsigned seed) {
  std::mt19937 rng(seed);
  const std::uint64_t n = s.experts * s.rows * s.groups;
  blocks.resize(n * 16 + 16);
  scales.resize(n);
  for (auto& b : blocks) b = static_cast<std::uint8_t>(rng());
  std::vector<std::uint8_t> all(256);
  for (unsigned i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
  std::shuffle(all.begin(), all.end(), rng);
  for (std::uint64_t i = 0; i < n; ++i) scales[i] = all[i % 256];
}

template <typename Out>
void check_against_oracle(const shape& s, layout order, const recording_sink<Out>& sink,
                          const std::uint8_t* blocks, const std::uint8_t* scales,
                          const std::string& what) {
  std::vector<Out> expected(sink.out.size());
  decode_job job;
  job.blocks = blocks;
  job.scales = scales;
  job.out = expected.data();
  job.experts = s.experts;
  job.rows = s.rows;
  job.groups = s.groups;
  job.order = order;
  job.dtype = sizeof(Out) == 2 ? output_dtype::bf16 : output_dtype::f32;
  cpu::decode_scalar(job);
  int bad = 0;
  for (std::size_t i = 0; i < expected.size() && bad < 5; ++i) {
    if (sink.writes[i] != 1) {
      ++bad;
      ADD_FAILURE() << what << ": element " << i << " written " << sink.writes[i] << " times";
    } else if (sink.out[i] != expected[i]) {
      ++bad;
      ADD_FAILURE() << what << ": element " << i << " is " << std::hex << +sink.out[i]
                    << ", oracle " << +expected[i];
    }
  }
  EXPECT_EQ(sink.errors, 0) << what;
}

const shape shapes[] = {{1, 1, 1},   {1, 2, 1},    {3, 5, 3},   {2, 7, 2},
                        {1, 127, 5}, {2, 128, 4},  {1, 129, 9}, {3, 130, 1},
                        {2, 256, 8}, {1, 300, 90}, {2, 64, 90}, {4, 136, 6}};

template <typename Out>
void run_native(const shape& s, bool aligned_blocks, bool vector_out) {
  std::vector<std::uint8_t> blocks_buffer, scales;
  fill_input(s, blocks_buffer, scales, 11);
  const std::uint8_t* blocks = blocks_buffer.data() + (aligned_blocks ? 0 : 1);
  decode_job job;
  job.blocks = blocks;
  job.experts = s.experts;
  job.rows = s.rows;
  job.groups = s.groups;
  job.order = layout::native;
  job.dtype = sizeof(Out) == 2 ? output_dtype::bf16 : output_dtype::f32;
  native_grid g = plan_native(job);
  g.aligned_blocks = aligned_blocks;  // the host loads bytes either way; the flag picks the path
  g.vector_out = vector_out;
  const auto table = host_table();
  recording_sink<Out> sink(job.values());
  ASSERT_EQ(g.units * (16 / sizeof(Out)), job.values());
  for (std::uint64_t unit = 0; unit < g.units; ++unit)
    native_unit<Out>(g, unit, blocks, scales.data(), table.data(), sink);
  check_against_oracle(s, layout::native, sink, blocks, scales.data(),
                       "native " + name_of(s) + (vector_out ? " vector" : " scalar"));
}

template <typename Out>
void run_hf(const shape& s, unsigned blocks_offset, bool vector_out) {
  std::vector<std::uint8_t> blocks_buffer, scales;
  fill_input(s, blocks_buffer, scales, 13);
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(blocks_buffer.data()) % 16, 0u);
  const std::uint8_t* blocks = blocks_buffer.data() + blocks_offset;
  decode_job job;
  job.blocks = blocks;
  job.experts = s.experts;
  job.rows = s.rows;
  job.groups = s.groups;
  job.order = layout::hf;
  job.dtype = sizeof(Out) == 2 ? output_dtype::bf16 : output_dtype::f32;
  hf_grid g = plan_hf(job);  // the host loads bytes at every width; the width picks the GPU's loads
  g.vector_out = vector_out && (s.rows * sizeof(Out)) % 16 == 0;
  const auto table = host_table();
  recording_sink<Out> sink(job.values());
  std::vector<std::uint32_t> tile_words(hf_tile_words);
  for (std::uint64_t index = 0; index < g.tiles(); ++index) {
    const hf_tile t = hf_tile_at(g, index);
    // Poison: no decoded BF16 value has more than one mantissa bit set, so reading a word that
    // phase 1 did not write shows up as a mismatch.
    std::fill(tile_words.begin(), tile_words.end(), 0xBEEFDEADu);
    for (unsigned thread = 0; thread < hf_threads; ++thread)
      hf_decode_to_tile(g, t, thread, blocks, scales.data(), table.data(), tile_words.data());
    for (unsigned thread = 0; thread < hf_threads; ++thread)
      hf_store_tile<Out>(g, t, thread, tile_words.data(), sink);
  }
  check_against_oracle(s, layout::hf, sink, blocks, scales.data(),
                       "hf " + name_of(s) + (g.vector_out ? " vector" : " scalar"));
}

TEST(CudaTileGrid, NativeBf16EveryElementOnceWithOracleValue) {
  for (const shape& s : shapes)
    for (bool aligned : {true, false})
      for (bool vector_out : {true, false}) run_native<std::uint16_t>(s, aligned, vector_out);
}

TEST(CudaTileGrid, NativeF32EveryElementOnceWithOracleValue) {
  for (const shape& s : shapes)
    for (bool aligned : {true, false})
      for (bool vector_out : {true, false}) run_native<std::uint32_t>(s, aligned, vector_out);
}

TEST(CudaTileGrid, HfBf16EveryElementOnceWithOracleValue) {
  for (const shape& s : shapes)
    for (unsigned offset : {0u, 8u, 4u, 1u})  // blocks 16-, 8-, 4- and 1-byte aligned
      for (bool vector_out : {true, false}) run_hf<std::uint16_t>(s, offset, vector_out);
}

TEST(CudaTileGrid, HfF32EveryElementOnceWithOracleValue) {
  for (const shape& s : shapes)
    for (unsigned offset : {0u, 8u, 4u, 1u})  // blocks 16-, 8-, 4- and 1-byte aligned
      for (bool vector_out : {true, false}) run_hf<std::uint32_t>(s, offset, vector_out);
}

TEST(CudaTileGrid, TilesCoverEachBlockOnce) {
  for (const shape& s : shapes) {
    decode_job job;
    job.experts = s.experts;
    job.rows = s.rows;
    job.groups = s.groups;
    const hf_grid g = plan_hf(job);
    std::vector<int> covered(s.experts * s.rows * s.groups, 0);
    for (std::uint64_t index = 0; index < g.tiles(); ++index) {
      const hf_tile t = hf_tile_at(g, index);
      ASSERT_LT(t.expert, s.experts);
      ASSERT_GT(t.nrows, 0u);
      ASSERT_GT(t.ngroups, 0u);
      for (unsigned r = 0; r < t.nrows; ++r)
        for (unsigned k = 0; k < t.ngroups; ++k)
          ++covered[(t.expert * s.rows + t.row0 + r) * s.groups + t.group0 + k];
    }
    for (int c : covered) ASSERT_EQ(c, 1) << name_of(s);
  }
}

TEST(CudaTilePlan, AlignmentDecidesTheWidePaths) {
  alignas(16) static std::uint8_t bytes[64];
  decode_job job;
  job.experts = 1;
  job.rows = 8;
  job.groups = 1;
  job.blocks = bytes;
  job.out = bytes;
  EXPECT_EQ(plan_hf(job).block_width, 16u);
  EXPECT_TRUE(plan_hf(job).vector_out);
  job.rows = 9;  // 18-byte output rows
  EXPECT_FALSE(plan_hf(job).vector_out);
  job.blocks = bytes + 8;  // a safetensors offset that is a multiple of 8, staged by direct I/O
  EXPECT_EQ(plan_hf(job).block_width, 8u);
  job.blocks = bytes + 24;
  EXPECT_EQ(plan_hf(job).block_width, 8u);
  job.blocks = bytes + 12;
  EXPECT_EQ(plan_hf(job).block_width, 4u);
  job.blocks = bytes + 3;
  EXPECT_EQ(plan_hf(job).block_width, 1u);
  job.blocks = bytes + 4;
  job.out = bytes + 2;
  EXPECT_EQ(plan_hf(job).block_width, 4u);
  EXPECT_TRUE(plan_native(job).aligned_blocks);  // 4-byte units
  EXPECT_FALSE(plan_native(job).vector_out);
  job.dtype = output_dtype::f32;
  job.blocks = bytes + 2;
  EXPECT_TRUE(plan_native(job).aligned_blocks);  // 2-byte units
  job.blocks = bytes + 1;
  EXPECT_FALSE(plan_native(job).aligned_blocks);
}

TEST(CudaTileSummary, CountsNonFiniteAndChecksumsIndexAndBits) {
  const std::uint16_t values[] = {0x3F80, 0x7F80, 0xFF80, 0x7FC0, 0x0020, 0x8000};
  const output_summary s = summarize_host(values, 6, output_dtype::bf16);
  EXPECT_EQ(s.non_finite, 3u);
  std::uint16_t swapped[] = {0x7F80, 0x3F80, 0xFF80, 0x7FC0, 0x0020, 0x8000};
  EXPECT_NE(summarize_host(swapped, 6, output_dtype::bf16).checksum, s.checksum);
  const std::uint32_t wide[] = {0x3F800000u, 0x7F800000u, 0x00200000u};
  EXPECT_EQ(summarize_host(wide, 3, output_dtype::f32).non_finite, 1u);
}

}  // namespace
}  // namespace umload
