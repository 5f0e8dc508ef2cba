// A checkpoint on disk: a directory with model.safetensors.index.json and its shards, or one
// .safetensors file, plus config.json. Opening reads headers only, never weight data, and checks
// every cross-file rule: weight_map entries exist in the shard they name, shard names stay inside
// the directory, total_size matches, no tensor is listed twice.
//
//   auto ckpt = umload::open_checkpoint("gpt-oss-20b");
//   const auto& t = ckpt.tensor("model.norm.weight");   // shard, entry, absolute file offset
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/safetensors.hpp"

namespace umload {

// The config.json fields the loader uses. Missing fields stay 0.
struct model_config {
  std::uint64_t hidden_size = 0;
  std::uint64_t intermediate_size = 0;
  std::uint64_t num_local_experts = 0;
  std::uint64_t num_hidden_layers = 0;
  std::uint64_t num_attention_heads = 0;
  std::uint64_t num_key_value_heads = 0;
  std::uint64_t head_dim = 0;
  std::uint64_t vocab_size = 0;
  std::string model_type;
  std::string quant_method;  // "mxfp4" when quantization_config says so
  nlohmann::json raw;        // the whole file, for the converter to rewrite
};

// One tensor of the checkpoint and where its bytes are.
struct tensor_ref {
  std::size_t shard = 0;  // index into checkpoint::shards
  const tensor_entry* entry = nullptr;
  std::uint64_t file_offset = 0;  // absolute offset of its first byte in the shard file

  const std::string& name() const { return entry->name; }
  std::uint64_t bytes() const { return entry->bytes(); }
};

struct checkpoint {
  std::filesystem::path source;     // what the user named
  std::filesystem::path directory;  // the folder holding the shards
  bool single_file = false;
  std::optional<std::filesystem::path> index_path;
  std::uint64_t index_total_size = 0;  // 0 when there is no index
  std::vector<safetensors_header> shards;
  std::map<std::string, tensor_ref, std::less<>> tensors;  // by name
  std::optional<model_config> config;
  std::vector<std::filesystem::path> other_files;  // small files beside the shards (tokenizer...)

  const tensor_ref& tensor(std::string_view name) const;  // throws format_error when absent
  const tensor_ref* find(std::string_view name) const;
  std::uint64_t tensor_bytes() const;  // sum over tensors
  std::uint64_t file_bytes() const;    // sum of shard file sizes
  const std::filesystem::path& shard_path(std::size_t i) const { return shards[i].path; }
};

// What messages call the checkpoint: the last component of what the user named.
std::string checkpoint_label(const checkpoint& ckpt);

// Opens a directory or a single .safetensors file. Throws format_error or io_error.
checkpoint open_checkpoint(const std::filesystem::path& source);

// Parses config.json text; `path` names the file in errors.
model_config parse_model_config(std::string_view json_text, const std::filesystem::path& path);

// Parses model.safetensors.index.json text: total_size and weight_map (tensor -> file name).
struct checkpoint_index {
  std::uint64_t total_size = 0;
  std::map<std::string, std::string> weight_map;
};
checkpoint_index parse_checkpoint_index(std::string_view json_text,
                                        const std::filesystem::path& path);

}  // namespace umload
