// convert: dense output equal to the oracle in every layout and dtype, the HF file layout (shard
// names, aligned headers, index last, config rewritten, small files copied), input untouched,
// destinations refused or replaced only as documented, and reruns after a crash.
#include <gtest/gtest.h>

#include "kernels/error.hpp"
#include "src/convert.hpp"
#include "src/loader.hpp"
#include "src/safetensors.hpp"
#include "src/verify.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

convert_options small_shards() {
  convert_options o;
  o.memory_budget = 32ull << 20;
  o.shard_bytes = 256ull << 10;
  return o;
}

class convert_layouts : public ::testing::TestWithParam<std::tuple<layout, output_dtype>> {};

TEST_P(convert_layouts, round_trip_equals_the_oracle) {
  temp_dir dir;
  synth_tiny(dir / "src", 3, 8, true);
  auto [order, dt] = GetParam();
  auto o = small_shards();
  o.pipeline.order = order;
  o.pipeline.dtype = dt;
  const auto r = convert_checkpoint(dir / "src", dir / "dst", o);
  EXPECT_GT(r.shards, 1u);
  const auto v = verify_conversion(dir / "src", dir / "dst", order, dt);
  EXPECT_EQ(v.decoded_tensors, 6u);
  EXPECT_EQ(v.dense_tensors, 3u + 3 * 13 + 3 * 2);
}

INSTANTIATE_TEST_SUITE_P(all, convert_layouts,
                         ::testing::Combine(::testing::Values(layout::hf, layout::native),
                                            ::testing::Values(output_dtype::bf16,
                                                              output_dtype::f32)),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_" +
                                  to_string(std::get<1>(info.param));
                         });

TEST(convert, writes_an_hf_loadable_layout) {
  temp_dir dir;
  synth_tiny(dir / "src", 2, 4);
  const auto before = file_digests(dir / "src");
  const auto r = convert_checkpoint(dir / "src", dir / "dst", small_shards());
  EXPECT_EQ(file_digests(dir / "src"), before);  // input never modified

  const auto index =
      nlohmann::json::parse(read_bytes(dir / "dst" / "model.safetensors.index.json"));
  std::uint64_t total = 0;
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items())
    files.insert(file.get<std::string>());
  EXPECT_EQ(files.size(), r.shards);
  for (std::size_t i = 1; i <= r.shards; ++i) {
    char want[64];
    std::snprintf(want, sizeof(want), "model-%05zu-of-%05zu.safetensors", i, r.shards);
    EXPECT_TRUE(files.count(want)) << want;
    const auto h = read_safetensors_header(dir / "dst" / want);
    EXPECT_EQ(h.data_offset % 4096, 0u);  // page aligned: the data can go out with O_DIRECT
    for (const auto& t : h.tensors) {
      EXPECT_EQ(t.begin % (element_bits(t.type) / 8), 0u) << t.name;
      total += t.bytes();
    }
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<std::uint64_t>(), total);
  EXPECT_TRUE(index["weight_map"].contains("model.layers.1.mlp.experts.gate_up_proj"));
  EXPECT_TRUE(index["weight_map"].contains("model.layers.1.mlp.experts.down_proj_bias"));
  EXPECT_FALSE(index["weight_map"].contains("model.layers.1.mlp.experts.down_proj_blocks"));

  const auto config = nlohmann::json::parse(read_bytes(dir / "dst" / "config.json"));
  EXPECT_FALSE(config.contains("quantization_config"));
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  EXPECT_EQ(config["model_type"], "gpt_oss");
  EXPECT_EQ(read_bytes(dir / "dst" / "tokenizer_config.json"),
            read_bytes(dir / "src" / "tokenizer_config.json"));
  EXPECT_EQ(read_bytes(dir / "dst" / "generation_config.json"),
            read_bytes(dir / "src" / "generation_config.json"));
  for (const auto& e : fs::directory_iterator(dir / "dst"))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos);

  const auto out = open_checkpoint(dir / "dst");
  const auto& gate_up = out.tensor("model.layers.0.mlp.experts.gate_up_proj");
  EXPECT_EQ(gate_up.entry->shape, (std::vector<std::uint64_t>{4, 64, 128}));  // [E, H, 2I]
  EXPECT_EQ(gate_up.entry->type, dtype::BF16);
}

TEST(convert, destination_equal_to_or_inside_the_source_is_refused) {
  temp_dir dir;
  synth_tiny(dir / "src");
  const auto before = file_digests(dir / "src");
  const convert_options defaults;
  EXPECT_THROW(convert_checkpoint(dir / "src", dir / "src", defaults), usage_error);
  EXPECT_THROW(convert_checkpoint(dir / "src", dir / "src" / "out", defaults), usage_error);
  EXPECT_THROW(convert_checkpoint(dir / "src", dir / "src" / ".", defaults), usage_error);
  EXPECT_EQ(file_digests(dir / "src"), before);
  EXPECT_FALSE(fs::exists(dir / "src" / "out"));
}

TEST(convert, another_model_is_not_overwritten_without_force) {
  temp_dir dir;
  synth_tiny(dir / "a", 2, 4, false, 1);
  synth_tiny(dir / "b", 2, 4, false, 2);
  const auto b_before = file_digests(dir / "b");
  try {
    convert_checkpoint(dir / "a", dir / "b", small_shards());
    FAIL();
  } catch (const conflict_error& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos);
    EXPECT_EQ(e.code(), exit_code::conflict);
  }
  EXPECT_EQ(file_digests(dir / "b"), b_before);
  auto o = small_shards();
  o.force = true;
  convert_checkpoint(dir / "a", dir / "b", o);
  EXPECT_NO_THROW(verify_conversion(dir / "a", dir / "b", layout::hf, output_dtype::bf16));
  EXPECT_FALSE(fs::exists(dir / "b" / "model-00000-of-00002.safetensors"));  // old shards gone
}

TEST(convert, rerun_after_a_crash_gives_a_correct_result) {
  temp_dir dir;
  synth_tiny(dir / "src", 2, 8);
  convert_checkpoint(dir / "src", dir / "dst", small_shards());
  // What a kill leaves: a partial shard, a truncated finished shard, no index.
  fs::remove(dir / "dst" / "model.safetensors.index.json");
  write_bytes(dir / "dst" / ".model-00002-of-00004.safetensors.partial", "garbage");
  for (const auto& e : fs::directory_iterator(dir / "dst"))
    if (e.path().filename().string().rfind("model-", 0) == 0) {
      fs::resize_file(e.path(), fs::file_size(e.path()) / 2);
      break;
    }
  convert_checkpoint(dir / "src", dir / "dst", small_shards());
  EXPECT_NO_THROW(verify_conversion(dir / "src", dir / "dst", layout::hf, output_dtype::bf16));
  for (const auto& e : fs::directory_iterator(dir / "dst"))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos);
}

TEST(convert, a_folder_left_by_a_kill_while_writing_the_marker_is_taken_as_empty) {
  temp_dir dir;
  synth_tiny(dir / "src", 2, 4);
  fs::create_directories(dir / "dst");
  write_bytes(dir / "dst" / "umload_convert.json.umload-tmp", "{\"tool\": \"umload con");
  convert_checkpoint(dir / "src", dir / "dst", small_shards());
  EXPECT_NO_THROW(verify_conversion(dir / "src", dir / "dst", layout::hf, output_dtype::bf16));
  EXPECT_FALSE(fs::exists(dir / "dst" / "umload_convert.json.umload-tmp"));
}

TEST(convert, budget_too_small_for_one_expert_says_what_is_needed) {
  temp_dir dir;
  synth_tiny(dir / "src");
  convert_options o;
  o.memory_budget = 1000;
  try {
    convert_checkpoint(dir / "src", dir / "dst", o);
    FAIL();
  } catch (const budget_error& e) {
    EXPECT_NE(std::string(e.what()).find("must be at least"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "dst" / "model.safetensors.index.json"));
}

TEST(convert, keep_is_not_a_convert_dtype) {
  temp_dir dir;
  synth_tiny(dir / "src");
  convert_options o;
  o.pipeline.dtype = output_dtype::keep;
  EXPECT_THROW(convert_checkpoint(dir / "src", dir / "dst", o), usage_error);
}

TEST(convert, expert_parallel_slices_convert_to_their_share) {
  temp_dir dir;
  synth_tiny(dir / "src", 2, 8);
  auto o = small_shards();
  o.pipeline.rank = 1;
  o.pipeline.world_size = 2;
  convert_checkpoint(dir / "src", dir / "r1", o);
  const auto part = open_checkpoint(dir / "r1");
  EXPECT_EQ(part.tensor("model.layers.0.mlp.experts.gate_up_proj").entry->shape[0], 4u);
  EXPECT_EQ(part.tensor("model.layers.0.mlp.experts.down_proj_bias").entry->shape[0], 4u);
  EXPECT_EQ(part.tensor("model.layers.0.mlp.router.weight").entry->shape[0], 8u);
}

}  // namespace
}  // namespace umload::test
