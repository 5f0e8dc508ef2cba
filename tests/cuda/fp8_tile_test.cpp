// The CUDA block-FP8 kernel's per-unit work (kernels/fp8_tile.hpp) run on the host over every
// unit of whole grids, with a sink that records each store: every output element must be written
// exactly once, with the CPU oracle's value, and vector stores only where plan() allows them.
// Needs no GPU; carries no `gpu` label.
#include "kernels/fp8_tile.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/fp8.hpp"
#include "kernels/fp8_cpu.hpp"
#include "tests/cuda/recording_sink.hpp"

namespace umload {
namespace {

using test::recording_sink;

struct case_data {
  fp8::block_geometry geometry;
  std::vector<std::uint8_t> codes;
  std::vector<float> scales;
};

case_data make_case(const fp8::block_geometry& g, std::uint32_t seed) {
  std::mt19937 rng(seed);
  case_data d{g, std::vector<std::uint8_t>(g.values()), std::vector<float>(g.scales())};
  for (auto& c : d.codes) c = static_cast<std::uint8_t>(rng());
  const std::uint32_t edges[] = {0x00000000u, 0x80000000u, 0x7F800000u, 0x7FC00000u,
                                 0x00000001u, 0x7F7FFFFFu, 0x3F800000u};
  for (std::size_t i = 0; i < d.scales.size(); ++i) {
    const std::uint32_t b =
        i % 11 == 3 ? edges[rng() % std::size(edges)] : 0x3A000000u + rng() % 0x2000000u;
    std::memcpy(&d.scales[i], &b, 4);
  }
  return d;
}

std::string name_of(const fp8::block_geometry& g) {
  return std::to_string(g.matrices) + "x" + std::to_string(g.rows) + "x" + std::to_string(g.cols) +
         "/" + std::to_string(g.block_rows) + "x" + std::to_string(g.block_cols);
}

// Runs every unit of the grid that plan() gives for the job, with the output's alignment flag
// forced to `vector_out` (where the geometry allows vector stores at all), and compares with the
// oracle.
template <typename Out>
void check_grid(const case_data& d, bool vector_out) {
  const output_dtype dtype = sizeof(Out) == 2 ? output_dtype::bf16 : output_dtype::f32;
  fp8::decode_job job;
  job.codes = d.codes.data();
  job.scales = d.scales.data();
  job.geometry = d.geometry;
  job.dtype = dtype;
  std::vector<Out> expected(d.geometry.values());
  job.out = expected.data();
  fp8::cpu::decode_scalar(job);

  alignas(16) static std::uint8_t aligned_probe[16];
  job.out = aligned_probe;  // plan() reads the address only
  fp8_tile::grid g = fp8_tile::plan(job);
  const bool rows_allow = (d.geometry.cols * sizeof(Out)) % 16 == 0;
  EXPECT_EQ(g.vector_out, rows_allow);
  g.vector_out = vector_out && rows_allow;
  EXPECT_EQ(g.units, d.geometry.total_rows() * ((d.geometry.cols + 7) / 8));

  recording_sink<Out> sink(d.geometry.values());
  for (std::uint64_t unit = 0; unit < g.units; ++unit)
    fp8_tile::decode_unit<Out>(g, unit, d.codes.data(), d.scales.data(), sink);
  SCOPED_TRACE(name_of(d.geometry) + (sizeof(Out) == 2 ? " bf16" : " f32") +
               (g.vector_out ? " vector" : " element"));
  EXPECT_EQ(sink.errors, 0);
  std::uint64_t wrong_writes = 0, wrong_values = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    wrong_writes += sink.writes[i] != 1;
    wrong_values += sink.out[i] != expected[i];
  }
  EXPECT_EQ(wrong_writes, 0u) << "elements not written exactly once";
  EXPECT_EQ(wrong_values, 0u) << "elements that differ from the oracle";
}

TEST(Fp8TileMath, WholeGridsEqualTheOracle) {
  const fp8::block_geometry shapes[] = {
      {1, 576, 7168, 128, 128},  // DeepSeek-V3 kv_a_proj_with_mqa: a 64-row edge block
      {1, 160, 256, 128, 128},
      {1, 1, 1, 128, 128},
      {1, 3, 13, 128, 128},
      {1, 7, 37, 2, 5},
      {1, 33, 70, 1, 1},
      {1, 40, 300, 2, 200},
      {3, 130, 72, 64, 32},
      {1, 5, 17, 4, 3},
      {1, 9, 24, 3, 7},
      fp8::block_geometry::per_tensor(50, 77),
      fp8::block_geometry::per_tensor(8, 64, 3)};
  std::uint32_t seed = 1;
  for (const auto& s : shapes) {
    const case_data d = make_case(s, seed++);
    for (const bool vector_out : {true, false}) {
      check_grid<std::uint16_t>(d, vector_out);
      check_grid<std::uint32_t>(d, vector_out);
    }
  }
}

TEST(Fp8TileMath, PlanReadsAlignment) {
  alignas(16) static std::uint8_t buffer[64];
  fp8::decode_job job;
  job.geometry = {1, 4, 64, 128, 128};
  job.codes = buffer;
  job.scales = buffer;
  job.out = buffer;
  fp8_tile::grid g = fp8_tile::plan(job);
  EXPECT_TRUE(g.aligned_codes);
  EXPECT_TRUE(g.aligned_scales);
  EXPECT_TRUE(g.vector_out);
  job.codes = buffer + 4;
  job.scales = buffer + 2;
  job.out = buffer + 8;
  g = fp8_tile::plan(job);
  EXPECT_FALSE(g.aligned_codes);
  EXPECT_FALSE(g.aligned_scales);
  EXPECT_FALSE(g.vector_out);
  job.codes = buffer;
  job.out = buffer;
  job.geometry.cols = 60;  // rows of 60 codes / 120 output bytes: no aligned unit loads or stores
  g = fp8_tile::plan(job);
  EXPECT_FALSE(g.aligned_codes);
  EXPECT_FALSE(g.vector_out);
  job.dtype = output_dtype::f32;  // 240-byte rows
  EXPECT_TRUE(fp8_tile::plan(job).vector_out);
}

}  // namespace
}  // namespace umload
