// Checkpoint-level rules (index, shards, config) and GPT-OSS pair rules, each from a generated
// defect in an otherwise valid synthetic checkpoint.
#include <gtest/gtest.h>

#include "kernels/error.hpp"
#include "src/checkpoint.hpp"
#include "src/model_map.hpp"
#include "src/safetensors.hpp"
#include "src/schemes/scheme.hpp"
#include "src/synth.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

const std::string layer0 = "model.layers.0.mlp.experts.";

// Rewrites one shard's header through `edit`; the data buffer stays as it was.
template <typename F>
void edit_shard_header(const fs::path& path, F&& edit) {
  const auto header = read_safetensors_header(path);
  const std::string bytes = read_bytes(path);
  nlohmann::json doc = nlohmann::json::parse(bytes.substr(8, header.header_bytes));
  edit(doc);
  std::string text = doc.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  write_bytes(path, le64(text.size()) + text + bytes.substr(header.data_offset));
}

fs::path shard_holding(const fs::path& dir, const std::string& tensor) {
  const auto index = nlohmann::json::parse(read_bytes(dir / "model.safetensors.index.json"));
  return dir / index["weight_map"][tensor].get<std::string>();
}

void rename_tensor(const fs::path& dir, const std::string& from, const std::string& to) {
  edit_shard_header(shard_holding(dir, from), [&](nlohmann::json& h) {
    h[to] = h[from];
    h.erase(from);
  });
  edit_json(dir / "model.safetensors.index.json", [&](nlohmann::json& idx) {
    idx["weight_map"][to] = idx["weight_map"][from];
    idx["weight_map"].erase(from);
  });
}

void expect_format_error(const fs::path& dir, const std::string& needle,
                         const std::string& file_part, const std::string& tensor_part = "") {
  try {
    const auto ckpt = open_checkpoint(dir);
    build_model_map(ckpt);
    FAIL() << "accepted a checkpoint with: " << needle;
  } catch (const format_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_NE(what.find(file_part), std::string::npos) << what;
    if (!tensor_part.empty()) {
      EXPECT_NE(what.find(tensor_part), std::string::npos) << what;
    }
  }
}

TEST(checkpoint, synthetic_tiny_opens_with_pairs_straddling_shards) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const auto ckpt = open_checkpoint(dir / "m");
  EXPECT_EQ(ckpt.shards.size(), 3u);
  EXPECT_TRUE(fs::exists(dir / "m" / "model-00000-of-00002.safetensors"));
  EXPECT_EQ(ckpt.tensors.size(), 3u + 2 * 19);
  EXPECT_EQ(ckpt.index_total_size, ckpt.tensor_bytes());
  ASSERT_TRUE(ckpt.config);
  EXPECT_EQ(ckpt.config->hidden_size, 64u);
  EXPECT_EQ(ckpt.config->quant_method, "mxfp4");
  EXPECT_EQ(ckpt.other_files.size(), 2u);  // generation_config.json, tokenizer_config.json
  const auto map = build_model_map(ckpt);
  EXPECT_EQ(map.pair_count(), 4u);
  bool straddles = false;
  for (const auto& g : map.groups)
    for (const auto& p : g.pairs) {
      straddles |= p.blocks.shard != p.scales.shard;
      EXPECT_EQ(p.experts, 4u);
      EXPECT_EQ(p.in_features(), 64u);
    }
  EXPECT_TRUE(straddles);
  EXPECT_EQ(map.groups.front().layer, -1);
  EXPECT_TRUE(validate_model(ckpt).empty());
}

TEST(checkpoint, real_20b_shapes_match_the_published_byte_counts) {
  temp_dir dir;
  synth_options o;
  o.preset = "gpt-oss-20b";
  o.holes = true;
  o.out = dir / "20b";
  const auto r = synthesize(o);
  EXPECT_EQ(r.tensors, 459u);
  EXPECT_EQ(r.tensor_bytes, 13'761'264'768ull);
  const auto ckpt = open_checkpoint(dir / "20b");
  const auto map = build_model_map(ckpt);
  EXPECT_EQ(map.quantized_bytes / 24, 423'014'400ull);
  o.preset = "gpt-oss-120b";
  o.out = dir / "120b";
  const auto big = synthesize(o);
  EXPECT_EQ(big.tensors, 687u);
  EXPECT_EQ(big.tensor_bytes, 65'248'815'744ull);
}

TEST(checkpoint, missing_shard) {
  temp_dir dir;
  synth_tiny(dir / "m");
  fs::remove(dir / "m" / "model-00001-of-00002.safetensors");
  expect_format_error(dir / "m", "does not exist", "model-00001-of-00002.safetensors");
}

TEST(checkpoint, file_name_escaping_the_directory) {
  for (const std::string bad : {"../outside.safetensors", "/etc/passwd", "sub/x.safetensors"}) {
    temp_dir dir;
    synth_tiny(dir / "m");
    edit_json(dir / "m" / "model.safetensors.index.json",
              [&](nlohmann::json& idx) { idx["weight_map"]["model.norm.weight"] = bad; });
    expect_format_error(dir / "m", bad, "model.safetensors.index.json", "model.norm.weight");
  }
}

TEST(checkpoint, symbolic_link_out_of_the_directory) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const fs::path shard = dir / "m" / "model-00002-of-00002.safetensors";
  fs::rename(shard, dir / "elsewhere.safetensors");
  fs::create_symlink(dir / "elsewhere.safetensors", shard);
  expect_format_error(dir / "m", "symbolic link", "model.safetensors.index.json");
}

TEST(checkpoint, hugging_face_cache_snapshot_links_into_blobs_are_followed) {
  // models--org--name/snapshots/<rev>/file -> ../../blobs/<hash>, as the hub cache lays it out.
  temp_dir dir;
  const fs::path repo = dir / "models--openai--gpt-oss-tiny";
  const fs::path snapshot = repo / "snapshots" / "abc123";
  synth_tiny(dir / "m");
  fs::create_directories(repo / "blobs");
  fs::create_directories(snapshot);
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir / "m")) {
    const std::string blob = "blob" + std::to_string(n++);
    fs::rename(e.path(), repo / "blobs" / blob);
    fs::create_symlink(fs::path("../../blobs") / blob, snapshot / e.path().filename());
  }
  const auto ckpt = open_checkpoint(snapshot);
  EXPECT_EQ(build_model_map(ckpt).pair_count(), 4u);
  EXPECT_EQ(ckpt.other_files.size(), 2u);
  // A link to a blob of another folder than the snapshot's own repository is still refused.
  fs::create_directories(dir / "elsewhere" / "blobs");
  fs::rename(repo / "blobs" / "blob0", dir / "elsewhere" / "blobs" / "blob0");
  for (const auto& e : fs::directory_iterator(snapshot))
    if (fs::read_symlink(e.path()).filename() == "blob0") {
      fs::remove(e.path());
      fs::create_symlink(dir / "elsewhere" / "blobs" / "blob0", e.path());
    }
  EXPECT_THROW(build_model_map(open_checkpoint(snapshot)), format_error);
}

TEST(checkpoint, total_size_mismatch) {
  temp_dir dir;
  synth_tiny(dir / "m");
  edit_json(dir / "m" / "model.safetensors.index.json",
            [](nlohmann::json& idx) { idx["metadata"]["total_size"] = 12345; });
  expect_format_error(dir / "m", "total_size is 12345", "model.safetensors.index.json");
}

TEST(checkpoint, index_entry_absent_from_its_shard) {
  temp_dir dir;
  synth_tiny(dir / "m");
  edit_json(dir / "m" / "model.safetensors.index.json", [](nlohmann::json& idx) {
    idx["weight_map"]["model.ghost.weight"] = "model-00000-of-00002.safetensors";
  });
  expect_format_error(dir / "m", "does not hold it", "model.safetensors.index.json",
                      "model.ghost.weight");
}

TEST(checkpoint, shard_tensor_missing_from_the_index) {
  temp_dir dir;
  synth_tiny(dir / "m");
  edit_json(dir / "m" / "model.safetensors.index.json",
            [](nlohmann::json& idx) { idx["weight_map"].erase("model.norm.weight"); });
  expect_format_error(dir / "m", "is not listed", ".safetensors", "model.norm.weight");
}

TEST(checkpoint, index_that_is_not_json) {
  temp_dir dir;
  synth_tiny(dir / "m");
  write_bytes(dir / "m" / "model.safetensors.index.json", "{\"weight_map\": ");
  expect_format_error(dir / "m", "not valid UTF-8 JSON", "model.safetensors.index.json");
}

TEST(model_map, blocks_without_scales) {
  temp_dir dir;
  synth_tiny(dir / "m");
  rename_tensor(dir / "m", layer0 + "down_proj_scales", layer0 + "down_proj_scalez");
  expect_format_error(dir / "m", "blocks without their scales", ".safetensors",
                      layer0 + "down_proj_blocks");
}

TEST(model_map, scales_without_blocks) {
  temp_dir dir;
  synth_tiny(dir / "m");
  rename_tensor(dir / "m", layer0 + "down_proj_blocks", layer0 + "down_proj_blockz");
  expect_format_error(dir / "m", "scales without their blocks", ".safetensors",
                      layer0 + "down_proj_scales");
}

TEST(model_map, scales_shape_disagrees_with_blocks) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const std::string name = layer0 + "gate_up_proj_scales";  // [4, 128, 2]
  edit_shard_header(shard_holding(dir / "m", name), [&](nlohmann::json& h) {
    h[name]["shape"] = {4, 64, 4};
  });
  expect_format_error(dir / "m", "does not match blocks shape", ".safetensors", name);
}

TEST(model_map, blocks_last_dim_not_16) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const std::string name = layer0 + "gate_up_proj_blocks";  // [4, 128, 2, 16]
  edit_shard_header(shard_holding(dir / "m", name), [&](nlohmann::json& h) {
    h[name]["shape"] = {4, 128, 4, 8};
  });
  expect_format_error(dir / "m", "must be [experts, rows, groups, 16]", ".safetensors", name);
}

TEST(model_map, pair_dtype_not_u8) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const std::string name = layer0 + "down_proj_scales";
  edit_shard_header(shard_holding(dir / "m", name),
                    [&](nlohmann::json& h) { h[name]["dtype"] = "I8"; });
  expect_format_error(dir / "m", "scales must be U8, found I8", ".safetensors", name);
}

TEST(model_map, groups_disagree_with_config) {
  temp_dir dir;
  synth_tiny(dir / "m");
  edit_json(dir / "m" / "config.json", [](nlohmann::json& c) {
    c["hidden_size"] = 96;
    c["intermediate_size"] = 96;
  });
  expect_format_error(dir / "m", "matches neither hidden_size 96", ".safetensors", "_blocks");
}

TEST(model_map, config_that_is_not_gpt_oss) {
  temp_dir dir;
  synth_tiny(dir / "m");
  edit_json(dir / "m" / "config.json", [](nlohmann::json& c) { c["model_type"] = "llama"; });
  expect_format_error(dir / "m", "not 'gpt_oss'", "config.json");
}

TEST(model_map, unknown_quant_method_names_it_and_the_known_schemes) {
  temp_dir dir;
  synth_tiny(dir / "m");
  edit_json(dir / "m" / "config.json",
            [](nlohmann::json& c) { c["quantization_config"]["quant_method"] = "gptq"; });
  expect_format_error(dir / "m",
                      "quant_method 'gptq' is not a scheme umload knows (known: 'mxfp4')",
                      "config.json");
  EXPECT_THROW((void)schemes::scheme_named("gptq", "config.json"), format_error);
  EXPECT_EQ(schemes::scheme_named("mxfp4", "config.json").decode(), schemes::decode_kind::mxfp4);
}

TEST(model_map, config_text_fields_that_are_not_strings_are_refused) {
  temp_dir dir;
  synth_tiny(dir / "m");
  edit_json(dir / "m" / "config.json",
            [](nlohmann::json& c) { c["quantization_config"]["quant_method"] = 4; });
  try {
    (void)open_checkpoint(dir / "m");
    FAIL() << "a quant_method of 4 was read as no quant_method";
  } catch (const format_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("config.json: field 'quantization_config.quant_method' is 4, not a string"),
              std::string::npos)
        << what;
  }
  edit_json(dir / "m" / "config.json", [](nlohmann::json& c) {
    c["quantization_config"]["quant_method"] = "mxfp4";
    c["model_type"] = nlohmann::json::array();
  });
  EXPECT_THROW((void)open_checkpoint(dir / "m"), format_error);
}

TEST(schemes, mxfp4_pairs_blocks_with_scales_and_sizes_the_decoded_weight) {
  const auto& s = schemes::mxfp4_scheme();
  const auto blocks = s.part_of("model.layers.2.mlp.experts.down_proj_blocks");
  ASSERT_TRUE(blocks);
  EXPECT_EQ(blocks->base, "model.layers.2.mlp.experts.down_proj");
  EXPECT_TRUE(blocks->payload);
  EXPECT_FALSE(s.part_of("model.layers.2.mlp.experts.down_proj_scales")->payload);
  EXPECT_FALSE(s.part_of("model.layers.2.mlp.experts.down_proj_bias"));
  EXPECT_EQ(s.part_name(blocks->base, false), "model.layers.2.mlp.experts.down_proj_scales");
  tensor_entry b{"w_blocks", dtype::U8, {4, 6, 3, 16}, 0, 4 * 6 * 3 * 16};
  tensor_entry sc{"w_scales", dtype::U8, {4, 6, 3}, 0, 4 * 6 * 3};
  EXPECT_TRUE(s.check(b, sc).empty());
  EXPECT_EQ(s.experts(b), 4u);
  EXPECT_EQ(s.decoded_shape(b, 2, layout::hf), (std::vector<std::uint64_t>{2, 96, 6}));
  EXPECT_EQ(s.decoded_shape(b, 2, layout::native), (std::vector<std::uint64_t>{2, 6, 96}));
  EXPECT_EQ(s.output_bytes(b, 2, output_dtype::f32), 2u * 6 * 96 * 4);
  EXPECT_EQ(s.stage_unit_bytes(b), 6u * 3 * 17);
  sc.type = dtype::F8_E4M3;
  sc.shape = {4, 6, 2};
  const auto problems = s.check(b, sc);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].rule, "scales must be U8, found F8_E4M3");
  EXPECT_FALSE(problems[0].fatal);
  EXPECT_TRUE(problems[1].fatal);
}

TEST(model_map, zero_size_expert_dimension) {
  temp_dir dir;
  const std::string header = make_safetensors_header(
      {{"model.layers.0.mlp.experts.down_proj_blocks", dtype::U8, {0, 2, 2, 16}, 0},
       {"model.layers.0.mlp.experts.down_proj_scales", dtype::U8, {0, 2, 2}, 0}});
  write_bytes(dir / "z.safetensors", header);
  expect_format_error(dir / "z.safetensors", "zero dimension", "z.safetensors", "down_proj_blocks");
}

TEST(model_map, validate_lists_every_problem) {
  temp_dir dir;
  synth_tiny(dir / "m");
  rename_tensor(dir / "m", layer0 + "down_proj_scales", layer0 + "down_proj_scalez");
  const std::string name = "model.layers.1.mlp.experts.gate_up_proj_scales";
  edit_shard_header(shard_holding(dir / "m", name),
                    [&](nlohmann::json& h) { h[name]["dtype"] = "I8"; });
  const auto problems = validate_model(open_checkpoint(dir / "m"));
  EXPECT_EQ(problems.size(), 2u);
}

TEST(checkpoint, single_file_checkpoint) {
  temp_dir dir;
  synth_options o;
  o.preset = "tiny";
  o.shards = 1;
  o.out = dir / "one";
  synthesize(o);
  const auto ckpt = open_checkpoint(dir / "one" / "model-00000-of-00000.safetensors");
  EXPECT_TRUE(ckpt.single_file);
  EXPECT_TRUE(ckpt.config);  // config.json beside the file is used
  EXPECT_EQ(build_model_map(ckpt).pair_count(), 4u);
}

}  // namespace
}  // namespace umload::test
