#include <gtest/gtest.h>

#include "kernels/error.hpp"
#include "platform/demand.hpp"

namespace up = umload::platform;
using umload::output_dtype;
using up::gpt_oss_preset;

namespace {
std::uint64_t stored_total(const std::vector<up::stored_tensor>& ts) {
  std::uint64_t s = 0;
  for (const auto& t : ts) s += t.bytes;
  return s;
}
up::demand_options opts(output_dtype d, int rank = 0, int world = 1) {
  up::demand_options o;
  o.dtype = d;
  o.rank = rank;
  o.world_size = world;
  return o;
}
}  // namespace

TEST(GptOssShapes, MatchThePublishedCheckpoints) {
  const auto t20 = up::gpt_oss_tensors(gpt_oss_preset::gpt_oss_20b);
  const auto t120 = up::gpt_oss_tensors(gpt_oss_preset::gpt_oss_120b);
  EXPECT_EQ(t20.size(), 459u);
  EXPECT_EQ(t120.size(), 687u);
  EXPECT_EQ(stored_total(t20), 13'761'264'768u);
  EXPECT_EQ(stored_total(t120), 65'248'815'744u);
}

TEST(Demand, Bf16TotalsMatchThePublishedFigures) {
  const auto d20 = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::bf16));
  const auto d120 = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_120b, opts(output_dtype::bf16));
  EXPECT_EQ(d20.bytes_output(), 41'829'514'368u);
  EXPECT_EQ(d120.bytes_output(), 233'658'313'344u);
  EXPECT_EQ(d20.bytes_stored(), 13'761'264'768u);
  EXPECT_EQ(d20.experts, 32u);
  EXPECT_EQ(d120.experts, 128u);
  // One output per expert pair: 459 - 2 * 24 scales folded into their blocks.
  EXPECT_EQ(d20.tensors.size(), 459u - 48u);
}

TEST(Demand, DecodedPairIsOneTensorPerLayerAndProjection) {
  const auto d = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::bf16));
  const up::tensor_demand* gate_up = nullptr;
  for (const auto& t : d.tensors) {
    if (t.name == "model.layers.3.mlp.experts.gate_up_proj") gate_up = &t;
  }
  ASSERT_TRUE(gate_up);
  EXPECT_TRUE(gate_up->decoded);
  EXPECT_TRUE(gate_up->sharded);
  EXPECT_EQ(gate_up->layer, 3);
  EXPECT_EQ(gate_up->kind, up::tensor_kind::expert_weight);
  EXPECT_EQ(gate_up->bytes_output, 32ull * 5760 * 2880 * 2);
  EXPECT_EQ(gate_up->bytes_stored, 32ull * 5760 * 90 * 17);
  EXPECT_EQ(gate_up->stage_unit_bytes, 5760ull * 90 * 17);
  EXPECT_EQ(gate_up->sources.size(), 2u);
}

TEST(Demand, KeepHoldsWhatIsStored) {
  const auto d = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_120b, opts(output_dtype::keep));
  EXPECT_EQ(d.bytes_output(), 65'248'815'744u);
  EXPECT_EQ(d.bytes_output(), d.bytes_stored());
  EXPECT_EQ(d.tensors.size(), 687u);
}

TEST(Demand, F32WidensDecodedExpertsOnly) {
  // --dtype applies to the decoded expert weights; every other tensor is loaded as stored.
  const auto bf = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::bf16));
  const auto f = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::f32));
  ASSERT_EQ(bf.tensors.size(), f.tensors.size());
  std::uint64_t experts_bf16 = 0;
  for (std::size_t i = 0; i < bf.tensors.size(); ++i) {
    if (bf.tensors[i].kind == up::tensor_kind::expert_weight) {
      EXPECT_EQ(f.tensors[i].bytes_output, 2 * bf.tensors[i].bytes_output) << bf.tensors[i].name;
      experts_bf16 += bf.tensors[i].bytes_output;
    } else {
      EXPECT_EQ(f.tensors[i].bytes_output, bf.tensors[i].bytes_output) << bf.tensors[i].name;
    }
  }
  EXPECT_EQ(f.bytes_output(), bf.bytes_output() + experts_bf16);
}

TEST(Demand, OrderOfUse) {
  const auto d = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::bf16));
  EXPECT_EQ(d.tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(d.tensors.back().name, "lm_head.weight");
  EXPECT_EQ(d.tensors[d.tensors.size() - 2].name, "model.norm.weight");
  int last_layer = -1;
  for (const auto& t : d.tensors) {
    if (t.layer < 0) continue;
    EXPECT_GE(t.layer, last_layer);  // layer 10 after layer 9, not after layer 1
    last_layer = t.layer;
  }
  EXPECT_EQ(d.tensors[1].name, "model.layers.0.input_layernorm.weight");
}

TEST(Demand, ExpertsShardOverRanks) {
  const auto whole = up::gpt_oss_demand(gpt_oss_preset::gpt_oss_120b, opts(output_dtype::bf16));
  std::uint64_t shared = 0, experts = 0;
  for (const auto& t : whole.tensors) (t.sharded ? experts : shared) += t.bytes_output;
  for (int rank = 0; rank < 4; ++rank) {
    const auto part =
        up::gpt_oss_demand(gpt_oss_preset::gpt_oss_120b, opts(output_dtype::bf16, rank, 4));
    EXPECT_EQ(part.bytes_output(), shared + experts / 4);
    for (const auto& t : part.tensors) {
      if (t.kind == up::tensor_kind::router) {  // every rank loads the router
        EXPECT_FALSE(t.sharded);
      }
    }
  }
}

TEST(Demand, BadRanks) {
  EXPECT_THROW(up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::bf16, 0, 0)),
               umload::usage_error);
  EXPECT_THROW(up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::bf16, 2, 2)),
               umload::usage_error);
  try {
    up::gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, opts(output_dtype::bf16, 0, 3));
    FAIL();
  } catch (const umload::usage_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("32 experts"), std::string::npos) << what;
    EXPECT_NE(what.find("1, 2, 4, 8, 16, 32"), std::string::npos) << what;
  }
}

TEST(Demand, Names) {
  EXPECT_EQ(umload::parse_output_dtype("keep"), output_dtype::keep);
  EXPECT_THROW(umload::parse_output_dtype("fp8"), umload::usage_error);
  EXPECT_EQ(umload::parse_layout("native"), umload::layout::native);
  EXPECT_EQ(up::parse_gpt_oss_preset("120b"), gpt_oss_preset::gpt_oss_120b);
  EXPECT_EQ(up::element_bytes("BF16"), 2u);
  EXPECT_EQ(up::element_bytes("F4"), 0u);
}
