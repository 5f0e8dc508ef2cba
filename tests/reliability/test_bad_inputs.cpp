// The bad-input corpus at the command line: generated checkpoints, one defect each (every reader
// rule of the foundation issue plus duplicate names, index entries absent from their shard,
// missing shards, zero-size and absurd dimensions, mismatched pair dtypes, a config that is not
// GPT-OSS). `umload inspect` and `umload load --device cpu` must each exit with the documented
// code (3, format error) and print exactly one line on stderr naming the file (and the tensor,
// where there is one), never crash, and never touch the input.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>

#include "src/safetensors.hpp"
#include "tests/reliability/reliability.hpp"

namespace umload::test {
namespace {

constexpr const char* index_name = "model.safetensors.index.json";
const std::string layer0 = "model.layers.0.mlp.experts.";

fs::path shard_holding(const fs::path& dir, const std::string& tensor) {
  const auto index = nlohmann::json::parse(read_bytes(dir / index_name));
  return dir / index["weight_map"][tensor].get<std::string>();
}

// Rewrites a shard's header JSON and data buffer through `edit`.
void edit_shard(const fs::path& path,
                const std::function<void(nlohmann::json&, std::string&)>& edit) {
  const std::string bytes = read_bytes(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  std::string data = bytes.substr(8 + n);
  edit(header, data);
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  write_bytes(path, le64(text.size()) + text + data);
}

// Rewrites a shard's header text (same length) through `edit`, data untouched.
void edit_header_text(const fs::path& path, const std::function<void(std::string&)>& edit) {
  std::string bytes = read_bytes(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  std::string text = bytes.substr(8, n);
  edit(text);
  write_bytes(path, le64(text.size()) + text + bytes.substr(8 + n));
}

// The tensor with the largest begin offset in a shard header.
std::string last_tensor(const nlohmann::json& header) {
  std::string last;
  std::uint64_t begin = 0;
  for (const auto& [name, entry] : header.items())
    if (name != "__metadata__" &&
        (last.empty() || entry["data_offsets"][0].get<std::uint64_t>() >= begin)) {
      last = name;
      begin = entry["data_offsets"][0];
    }
  return last;
}

// Re-lays a shard out back to back after its entries' shapes, dtypes or names changed, and fixes
// the index's total_size, so the one intended defect is the only one.
void relayout(
    const fs::path& dir, const fs::path& shard,
    const std::function<void(std::map<std::string, std::pair<nlohmann::json, std::string>>&)>&
        edit) {
  std::map<std::string, std::pair<nlohmann::json, std::string>> tensors;  // name -> (entry, data)
  edit_shard(shard, [&](nlohmann::json& h, std::string& data) {
    for (const auto& [name, e] : h.items())
      if (name != "__metadata__") {
        const std::uint64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
        tensors[name] = {e, data.substr(b, end - b)};
      }
    edit(tensors);
    h = nlohmann::json::object();
    data.clear();
    for (auto& [name, t] : tensors) {
      t.first["data_offsets"] = {data.size(), data.size() + t.second.size()};
      data += t.second;
      h[name] = t.first;
    }
  });
  std::uint64_t total = 0;
  const auto index = nlohmann::json::parse(read_bytes(dir / index_name));
  std::set<std::string> files;
  for (const auto& [_, f] : index["weight_map"].items()) files.insert(f.get<std::string>());
  for (const auto& f : files)
    for (const auto& t : read_safetensors_header(dir / f).tensors) total += t.bytes();
  edit_json(dir / index_name, [&](nlohmann::json& idx) { idx["metadata"]["total_size"] = total; });
}

void rename_everywhere(const fs::path& dir, const std::string& from, const std::string& to) {
  relayout(dir, shard_holding(dir, from), [&](auto& t) {
    t[to] = t[from];
    t.erase(from);
  });
  edit_json(dir / index_name, [&](nlohmann::json& idx) {
    idx["weight_map"][to] = idx["weight_map"][from];
    idx["weight_map"].erase(from);
  });
}

struct defect {
  std::string name;
  std::function<void(const fs::path&)> apply;
  std::string file;             // part of the file name the message must carry
  std::string tensor;           // the tensor the message must carry ("" where none is involved)
  std::string phrase;           // what the message must say
  bool inspect_sees_it = true;  // false: only reading the data finds it (inspect reads headers)
};

// Names the case in test output instead of dumping the struct's bytes.
void PrintTo(const defect& d, std::ostream* out) { *out << d.name; }

const std::string shard0 = "model-00000-of-00002.safetensors";
const std::string down_blocks = layer0 + "down_proj_blocks";
const std::string down_scales = layer0 + "down_proj_scales";
const std::string gate_blocks = layer0 + "gate_up_proj_blocks";
const std::string gate_scales = layer0 + "gate_up_proj_scales";

std::vector<defect> defects() {
  const auto set_entry = [](std::string tensor, std::string key, nlohmann::json value) {
    return [=](const fs::path& d) {
      edit_shard(shard_holding(d, tensor),
                 [&](nlohmann::json& h, std::string&) { h[tensor][key] = value; });
    };
  };
  return {
      // safetensors rules
      {"empty_file", [](const fs::path& d) { write_bytes(d / shard0, ""); }, shard0, "",
       "too short"},
      {"truncated_header", [](const fs::path& d) { fs::resize_file(d / shard0, 5); }, shard0, "",
       "too short"},
      {"truncated_data",
       [](const fs::path& d) { fs::resize_file(d / shard0, fs::file_size(d / shard0) - 100); },
       shard0, "", "past the end of the data buffer"},
      {"header_past_eof",
       [](const fs::path& d) {
         std::string b = read_bytes(d / shard0);
         b.replace(0, 8, le64(b.size()));
         write_bytes(d / shard0, b);
       },
       shard0, "", "runs past the end"},
      {"huge_header_length",
       [](const fs::path& d) {
         std::string b = read_bytes(d / shard0);
         b.replace(0, 8, le64(200'000'000));
         write_bytes(d / shard0, b);
       },
       shard0, "", "exceeds the limit"},
      {"bad_utf8",
       [](const fs::path& d) {
         edit_header_text(d / shard0, [](std::string& t) { t[t.find("model.")] = '\xff'; });
       },
       shard0, "", "not valid UTF-8 JSON"},
      {"bad_json",
       [](const fs::path& d) {
         edit_header_text(d / shard0, [](std::string& t) { t[t.rfind('}')] = ' '; });
       },
       shard0, "", "not valid UTF-8 JSON"},
      {"not_an_object",
       [](const fs::path& d) { edit_header_text(d / shard0, [](std::string& t) { t[0] = '['; }); },
       shard0, "", "does not start with '{'"},
      {"unknown_dtype", set_entry(down_blocks, "dtype", "Q4"), ".safetensors", down_blocks,
       "unknown dtype 'Q4'"},
      {"size_mismatch", set_entry(down_blocks, "shape", {4, 64, 2, 17}), ".safetensors",
       down_blocks, "size mismatch"},
      {"gap",
       [](const fs::path& d) {
         edit_shard(d / shard0, [](nlohmann::json& h, std::string& data) {
           auto& e = h[last_tensor(h)];
           const std::uint64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
           e["data_offsets"] = {b + 16, end + 16};
           data.insert(b, std::string(16, '\0'));
         });
       },
       shard0, "", "gap"},
      {"overlap",
       [](const fs::path& d) {
         edit_shard(d / shard0, [](nlohmann::json& h, std::string& data) {
           auto& e = h[last_tensor(h)];
           const std::uint64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
           e["data_offsets"] = {b - 2, end - 2};
           data.resize(data.size() - 2);
         });
       },
       shard0, "", "overlap"},
      {"trailing_bytes",
       [](const fs::path& d) { write_bytes(d / shard0, read_bytes(d / shard0) + "12345678"); },
       shard0, "", "trailing bytes"},
      {"negative_dim", set_entry(down_blocks, "shape", {-4, 64, 2, 16}), ".safetensors",
       down_blocks, "non-negative"},
      {"float_dim", set_entry(down_blocks, "shape", {4.5, 64, 2, 16}), ".safetensors", down_blocks,
       "non-negative"},
      {"absurd_dims",
       set_entry(down_blocks, "shape", {4294967296ull, 4294967296ull, 4294967296ull, 16}), "",
       down_blocks, "more elements than 64 bits can count"},
      {"nul_padding_after_json",
       [](const fs::path& d) {
         edit_header_text(d / shard0, [](std::string& t) { t += std::string(8, '\0'); });
       },
       shard0, "", "NUL byte"},
      {"nested_shape", set_entry(down_blocks, "shape", nlohmann::json::parse("[[[[[1]]]]]")),
       ".safetensors", down_blocks, "shape holds an array"},
      {"dtype_twice_in_one_entry",
       [](const fs::path& d) {
         edit_header_text(shard_holding(d, down_blocks), [](std::string& t) {
           t.insert(t.find('{', t.find("\"" + down_blocks + "\"")) + 1, "\"dtype\":\"I8\",");
         });
       },
       ".safetensors", down_blocks, "field 'dtype' appears twice"},
      {"metadata_not_string",
       [](const fs::path& d) {
         edit_shard(d / shard0, [](nlohmann::json& h, std::string&) {
           h["__metadata__"] = {{"format", 1}};
         });
       },
       shard0, "", "not a string"},
      {"duplicate_name_in_one_header",
       [](const fs::path& d) {
         edit_header_text(shard_holding(d, down_blocks), [](std::string& t) {
           const auto at = t.find("\"" + down_blocks + "\"");
           const auto end = t.find('}', at) + 1;
           t.insert(1, t.substr(at, end - at) + ",");
         });
       },
       ".safetensors", down_blocks, "appears twice"},
      {"duplicate_name_across_shards",
       [](const fs::path& d) {
         const fs::path home = shard_holding(d, "model.norm.weight");
         const auto header = read_safetensors_header(home);
         const auto* entry = header.find("model.norm.weight");
         const fs::path other =
             home.filename() == shard0 ? d / "model-00002-of-00002.safetensors" : d / shard0;
         relayout(d, other, [&](auto& t) {
           t["model.norm.weight"] = {nlohmann::json{{"dtype", "BF16"}, {"shape", entry->shape}},
                                     std::string(entry->bytes(), '\0')};
         });
       },
       ".safetensors", "model.norm.weight", "more than one shard"},
      // index rules
      {"name_escaping_with_dotdot",
       [](const fs::path& d) {
         write_bytes(d.parent_path() / "outside.safetensors", read_bytes(d / shard0));
         edit_json(d / index_name, [](nlohmann::json& i) {
           i["weight_map"]["model.norm.weight"] = "../outside.safetensors";
         });
       },
       index_name, "model.norm.weight", "escapes the checkpoint directory"},
      {"absolute_name",
       [](const fs::path& d) {
         edit_json(d / index_name, [](nlohmann::json& i) {
           i["weight_map"]["model.norm.weight"] = "/etc/hostname";
         });
       },
       index_name, "model.norm.weight", "absolute path"},
      {"sub_folder_name",
       [](const fs::path& d) {
         edit_json(d / index_name, [](nlohmann::json& i) {
           i["weight_map"]["model.norm.weight"] = "sub/x.safetensors";
         });
       },
       index_name, "model.norm.weight", "sub-folder"},
      {"symlink_out_of_the_folder",
       [](const fs::path& d) {
         fs::rename(d / shard0, d.parent_path() / "elsewhere.safetensors");
         fs::create_symlink(d.parent_path() / "elsewhere.safetensors", d / shard0);
       },
       index_name, "", "symbolic link"},
      {"config_symlink_out_of_the_folder",
       [](const fs::path& d) {
         fs::rename(d / "config.json", d.parent_path() / "config.json");
         fs::create_symlink(d.parent_path() / "config.json", d / "config.json");
       },
       "config.json", "", "symbolic link"},
      {"small_file_symlink_out_of_the_folder",
       [](const fs::path& d) {
         write_bytes(d.parent_path() / "secret.txt", "not for copying");
         fs::create_symlink(d.parent_path() / "secret.txt", d / "tokenizer.json");
       },
       "tokenizer.json", "", "symbolic link"},
      {"missing_shard",
       [](const fs::path& d) { fs::remove(d / "model-00001-of-00002.safetensors"); },
       "model-00001-of-00002.safetensors", "", "does not exist"},
      {"shard_is_a_folder",
       [](const fs::path& d) {
         fs::remove(d / "model-00001-of-00002.safetensors");
         fs::create_directory(d / "model-00001-of-00002.safetensors");
       },
       "model-00001-of-00002.safetensors", "", "not a regular file"},
      {"index_entry_absent_from_its_shard",
       [](const fs::path& d) {
         edit_json(d / index_name,
                   [](nlohmann::json& i) { i["weight_map"]["model.ghost.weight"] = shard0; });
       },
       index_name, "model.ghost.weight", "does not hold it"},
      {"index_names_the_wrong_shard",
       [](const fs::path& d) {
         edit_json(d / index_name, [](nlohmann::json& i) {
           const std::string f = i["weight_map"]["model.norm.weight"];
           i["weight_map"]["model.norm.weight"] =
               f == shard0 ? "model-00002-of-00002.safetensors" : shard0;
         });
       },
       index_name, "model.norm.weight", "does not hold it"},
      {"shard_tensor_not_in_the_index",
       [](const fs::path& d) {
         edit_json(d / index_name,
                   [](nlohmann::json& i) { i["weight_map"].erase("model.norm.weight"); });
       },
       ".safetensors", "model.norm.weight", "is not listed"},
      {"total_size_mismatch",
       [](const fs::path& d) {
         edit_json(d / index_name, [](nlohmann::json& i) { i["metadata"]["total_size"] = 12345; });
       },
       index_name, "", "total_size is 12345"},
      {"index_not_json",
       [](const fs::path& d) { write_bytes(d / index_name, "{\"weight_map\": "); }, index_name, "",
       "not valid UTF-8 JSON"},
      {"weight_map_value_not_a_string",
       [](const fs::path& d) {
         edit_json(d / index_name,
                   [](nlohmann::json& i) { i["weight_map"]["model.norm.weight"] = 3; });
       },
       index_name, "model.norm.weight", "not a file name"},
      // GPT-OSS pair rules
      {"blocks_without_scales",
       [](const fs::path& d) { rename_everywhere(d, down_scales, layer0 + "down_proj_scalez"); },
       ".safetensors", down_blocks, "blocks without their scales"},
      {"scales_without_blocks",
       [](const fs::path& d) { rename_everywhere(d, down_blocks, layer0 + "down_proj_blockz"); },
       ".safetensors", down_scales, "scales without their blocks"},
      {"scales_shape_disagrees",
       [](const fs::path& d) {
         relayout(d, shard_holding(d, gate_scales), [](auto& t) {
           t[gate_scales].first["shape"] = {4, 64, 4};
         });
       },
       ".safetensors", gate_scales, "does not match blocks shape"},
      {"blocks_last_dim_not_16",
       [](const fs::path& d) {
         relayout(d, shard_holding(d, gate_blocks), [](auto& t) {
           t[gate_blocks].first["shape"] = {4, 128, 4, 8};
         });
       },
       ".safetensors", gate_blocks, "[experts, rows, groups, 16]"},
      {"scales_dtype_not_u8", set_entry(down_scales, "dtype", "I8"), ".safetensors", down_scales,
       "scales must be U8, found I8"},
      {"blocks_dtype_not_u8", set_entry(down_blocks, "dtype", "F8_E4M3"), ".safetensors",
       down_blocks, "blocks must be U8, found F8_E4M3"},
      {"zero_size_experts",
       [](const fs::path& d) {
         for (const auto& name : {down_blocks, down_scales})
           relayout(d, shard_holding(d, name), [&](auto& t) {
             t[name].first["shape"][0] = 0;
             t[name].second.clear();
           });
       },
       ".safetensors", down_blocks, "zero dimension"},
      {"groups_disagree_with_config",
       [](const fs::path& d) {
         edit_json(d / "config.json", [](nlohmann::json& c) {
           c["hidden_size"] = 96;
           c["intermediate_size"] = 96;
         });
       },
       ".safetensors", "_blocks", "matches neither hidden_size 96"},
      {"experts_disagree_with_config",
       [](const fs::path& d) {
         edit_json(d / "config.json", [](nlohmann::json& c) { c["num_local_experts"] = 3; });
       },
       ".safetensors", "_blocks", "num_local_experts = 3"},
      {"config_not_gpt_oss",
       [](const fs::path& d) {
         edit_json(d / "config.json", [](nlohmann::json& c) { c["model_type"] = "llama"; });
       },
       "config.json", "", "not 'gpt_oss'"},
      {"config_not_json",
       [](const fs::path& d) { write_bytes(d / "config.json", "{\"model_type\": gpt_oss}"); },
       "config.json", "", "not valid UTF-8 JSON"},
      {"config_nested_100000_deep",
       [](const fs::path& d) {
         write_bytes(d / "config.json", "{\"rope_scaling\": " + std::string(100000, '[') +
                                            std::string(100000, ']') + "}");
       },
       "config.json", "", "nests deeper"},
      {"index_nested_100000_deep",
       [](const fs::path& d) {
         write_bytes(d / index_name,
                     "{\"metadata\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
       },
       index_name, "", "nests deeper"},
      {"config_an_array", [](const fs::path& d) { write_bytes(d / "config.json", "[1, 2]"); },
       "config.json", "", "not a JSON object"},
      {"config_size_a_string",
       [](const fs::path& d) {
         edit_json(d / "config.json", [](nlohmann::json& c) { c["hidden_size"] = "64"; });
       },
       "config.json", "", "not a non-negative integer"},
      // Only reading the data finds these.
      {"scale_byte_255",
       [](const fs::path& d) {
         relayout(d, shard_holding(d, down_scales),
                  [](auto& t) { t[down_scales].second[5] = '\xff'; });
       },
       ".safetensors", down_scales, "255", false},
      // A name with a newline must not break the one-line message.
      {"newline_in_a_tensor_name",
       [](const fs::path& d) {
         rename_everywhere(d, "model.norm.weight", "model.norm\nweight");
         edit_shard(shard_holding(d, "model.norm\nweight"), [](nlohmann::json& h, std::string&) {
           h["model.norm\nweight"]["dtype"] = "Q4";
         });
       },
       ".safetensors", "model.norm", "unknown dtype"},
  };
}

class bad_checkpoint : public ::testing::TestWithParam<defect> {};

void expect_one_line_error(const cli_result& r, const defect& c, const std::string& command) {
  const std::string where = command + " / " + c.name + ": ";
  EXPECT_EQ(r.status, 3) << where << r.err;
  ASSERT_FALSE(r.err.empty()) << where << "nothing on stderr";
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << where << r.err;
  EXPECT_EQ(r.err.back(), '\n') << where << r.err;
  EXPECT_EQ(r.err.rfind("umload: error: ", 0), 0u) << where << r.err;
  if (!c.file.empty()) {
    EXPECT_NE(r.err.find(c.file), std::string::npos) << where << r.err;
  }
  if (!c.tensor.empty()) {
    EXPECT_NE(r.err.find(c.tensor.substr(0, c.tensor.find('\n'))), std::string::npos)
        << where << r.err;
  }
  EXPECT_NE(r.err.find(c.phrase), std::string::npos) << where << r.err;
}

TEST_P(bad_checkpoint, inspect_and_load_refuse_it_on_one_line) {
  const auto& c = GetParam();
  temp_dir dir;
  const fs::path ckpt = synth_tiny(dir / "m");
  c.apply(ckpt);
  const auto input = file_digests(dir.path());
  const std::string quoted = "'" + ckpt.string() + "'";
  if (c.inspect_sees_it) {
    expect_one_line_error(run_cli("inspect " + quoted), c, "inspect");
    const auto json = run_cli("inspect --json " + quoted);
    EXPECT_EQ(json.status, 3) << c.name << ": " << json.err;
  } else {
    EXPECT_EQ(run_cli("inspect " + quoted).status, 0) << c.name;
  }
  expect_one_line_error(run_cli("load --device cpu --progress none " + quoted), c, "load");
  EXPECT_TRUE(file_digests(dir.path()) == input) << c.name << ": the input changed";
}

INSTANTIATE_TEST_SUITE_P(corpus, bad_checkpoint, ::testing::ValuesIn(defects()),
                         [](const auto& info) { return info.param.name; });

TEST(bad_single_file, a_lone_safetensors_file_is_checked_the_same_way) {
  temp_dir dir;
  const std::string text =
      R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})";
  write_bytes(dir / "one.safetensors", le64(text.size()) + text + std::string(12, 'x'));
  for (const std::string cmd : {"inspect ", "load --device cpu "}) {
    const auto r = run_cli(cmd + (dir / "one.safetensors").string());
    defect c{"gap_single_file", nullptr, "one.safetensors", "b", "gap"};
    expect_one_line_error(r, c, cmd);
  }
}

}  // namespace
}  // namespace umload::test
