// One derivation of what a load produces: the plan's placements and the pipeline's outputs come
// from platform::derive_outputs, so on 20b- and 120b-shaped checkpoints, sharded and not, they
// name the same tensors with the same bytes, and each placement points at its output by index.
#include <gtest/gtest.h>

#include <set>

#include "kernels/error.hpp"
#include "platform/demand.hpp"
#include "platform/outputs.hpp"
#include "src/checkpoint.hpp"
#include "src/model_map.hpp"
#include "src/outputs.hpp"
#include "src/planning.hpp"
#include "src/synth.hpp"
#include "tests/core/fixtures.hpp"

namespace umload {
namespace {

using test::temp_dir;

struct shaped {
  std::string preset;
  int world_size;
};

class outputs_agree : public ::testing::TestWithParam<shaped> {};

// Headers of the published shapes (data left as holes), with every layer.
checkpoint synthesize_shape(const temp_dir& dir, const std::string& preset) {
  synth_options o;
  o.preset = preset;
  o.holes = true;
  o.out = dir / preset;
  synthesize(o);
  return open_checkpoint(o.out);
}

TEST_P(outputs_agree, plan_and_pipeline_name_the_same_outputs) {
  const auto [preset, world] = GetParam();
  temp_dir dir;
  const checkpoint ckpt = synthesize_shape(dir, preset);
  const model_map map = build_model_map(ckpt);
  platform_choice choice;
  choice.profile = "gh200";  // a coherent plan: device and host_managed placements both occur
  const auto info = choose_platform(choice);
  for (const auto dtype : {output_dtype::bf16, output_dtype::f32, output_dtype::keep}) {
    for (const int rank : {0, world - 1}) {
      SCOPED_TRACE(preset + " " + to_string(dtype) + " rank " + std::to_string(rank) + "/" +
                   std::to_string(world));
      pipeline_options options;
      options.dtype = dtype;
      options.rank = rank;
      options.world_size = world;
      const auto outputs = plan_outputs(map, options);
      const auto plan = plan_checkpoint(map, options, info, choice);
      ASSERT_EQ(plan.orders.placements.size(), outputs.size());
      std::set<std::size_t> seen;
      std::uint64_t total = 0;
      for (const auto& p : plan.orders.placements) {
        ASSERT_LT(p.output, outputs.size());
        EXPECT_TRUE(seen.insert(p.output).second) << p.tensor;
        EXPECT_EQ(outputs[p.output].name, p.tensor);
        EXPECT_EQ(outputs[p.output].bytes, p.bytes) << p.tensor;
        total += p.bytes;
      }
      EXPECT_EQ(total, plan.output_bytes);
      // The published shapes without any file give the same outputs as the synthesized files.
      const auto published =
          platform::make_demand(platform::gpt_oss_tensors(*platform::parse_gpt_oss_preset(preset)),
                                output_options_of(options), preset);
      ASSERT_EQ(published.tensors.size(), outputs.size());
      for (const auto& t : published.tensors) {
        EXPECT_EQ(outputs[t.output].name, t.name);
        EXPECT_EQ(outputs[t.output].bytes, t.bytes_output) << t.name;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(shapes, outputs_agree,
                         ::testing::Values(shaped{"gpt-oss-20b", 1}, shaped{"gpt-oss-20b", 4},
                                           shaped{"gpt-oss-120b", 1}, shaped{"gpt-oss-120b", 8}),
                         [](const auto& info) {
                           std::string name =
                               info.param.preset + "_w" + std::to_string(info.param.world_size);
                           for (auto& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

TEST(outputs, decoded_pair_is_priced_by_its_geometry) {
  const auto stored = platform::gpt_oss_tensors(platform::gpt_oss_preset::gpt_oss_20b);
  const auto outs = platform::derive_outputs(stored, {.dtype = output_dtype::f32}, "20b");
  const platform::output_spec* gate_up = nullptr;
  for (const auto& o : outs)
    if (o.name == "model.layers.3.mlp.experts.gate_up_proj") gate_up = &o;
  ASSERT_NE(gate_up, nullptr);
  EXPECT_TRUE(gate_up->decoded);
  EXPECT_EQ(gate_up->dtype, "F32");
  EXPECT_EQ(gate_up->shape, (std::vector<std::uint64_t>{32, 2880, 5760}));
  EXPECT_EQ(gate_up->bytes, 32ull * 5760 * 2880 * 4);
  EXPECT_EQ(gate_up->geometry.stored(), 5760ull * 90 * 17);
  ASSERT_EQ(gate_up->sources.size(), 2u);
  EXPECT_EQ(stored[gate_up->sources[0]].name, "model.layers.3.mlp.experts.gate_up_proj_blocks");
  EXPECT_EQ(stored[gate_up->sources[1]].name, "model.layers.3.mlp.experts.gate_up_proj_scales");
}

TEST(outputs, one_wording_for_a_bad_shard) {
  const auto stored = platform::gpt_oss_tensors(platform::gpt_oss_preset::gpt_oss_20b);
  for (const auto& [rank, world] : {std::pair{2, 2}, std::pair{-1, 2}, std::pair{0, 0}}) {
    try {
      platform::derive_outputs(stored, {.rank = rank, .world_size = world}, "20b");
      FAIL() << rank << "/" << world;
    } catch (const usage_error& e) {
      const std::string want = world < 1 ? "world size 0 must be at least 1"
                                         : "rank " + std::to_string(rank) + " must be in [0, 2)";
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace umload
