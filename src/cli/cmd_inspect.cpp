#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/error.hpp"
#include "src/checkpoint.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/report.hpp"
#include "src/model_map.hpp"

namespace umload::cli {

namespace {

struct inspect_args {
  std::string source;
  bool json = false;
};

// Bytes of the model with every expert pair decoded to BF16.
std::uint64_t bf16_bytes_of(const model_map& map) {
  std::uint64_t bytes = map.dense_bytes;
  for (const auto& g : map.groups)
    for (const auto& p : g.pairs) bytes += p.values() * 2;
  return bytes;
}

// A checkpoint umload loads fine but transformers would load wrongly, without an error.
std::vector<std::string> transformers_warnings(const checkpoint& ckpt, const model_map& map) {
  std::vector<std::string> warnings;
  if (ckpt.config && ckpt.config->quant_method.empty() && map.pair_count() > 0)
    warnings.push_back(
        "config.json has no quantization_config, yet the checkpoint holds " +
        std::to_string(map.pair_count()) +
        " MXFP4 expert pairs: umload decodes them (it goes by the tensors), but HF transformers "
        "would load it without an error and with random experts (the _blocks/_scales tensors "
        "skipped as unexpected, the expert weights newly initialized)");
  return warnings;
}

nlohmann::json shards_json(const checkpoint& ckpt) {
  auto shards = nlohmann::json::array();
  for (const auto& s : ckpt.shards)
    shards.push_back({{"path", s.path.string()},
                      {"bytes", s.file_size},
                      {"tensors", s.tensors.size()},
                      {"header_bytes", s.header_bytes}});
  return shards;
}

nlohmann::json pairs_json(const checkpoint& ckpt, const model_map& map) {
  auto pairs = nlohmann::json::array();
  for (const auto& g : map.groups)
    for (const auto& p : g.pairs)
      pairs.push_back({{"name", p.base},
                       {"layer", p.layer},
                       {"experts", p.experts},
                       {"rows", p.rows},
                       {"in_features", p.in_features()},
                       {"blocks_shard", ckpt.shard_path(p.blocks.shard).filename().string()},
                       {"scales_shard", ckpt.shard_path(p.scales.shard).filename().string()},
                       {"quantized_bytes", p.quantized_bytes()},
                       {"bf16_bytes", p.values() * 2}});
  return pairs;
}

// What `inspect --json` prints.
nlohmann::json inspect_json(const checkpoint& ckpt, const model_map& map,
                            const std::vector<std::string>& problems,
                            const std::vector<std::string>& warnings) {
  nlohmann::json out;
  out["source"] = ckpt.source.string();
  out["single_file"] = ckpt.single_file;
  out["tensor_bytes"] = ckpt.tensor_bytes();
  out["file_bytes"] = ckpt.file_bytes();
  out["index_total_size"] = ckpt.index_total_size;
  out["tensor_count"] = ckpt.tensors.size();
  out["pair_count"] = map.pair_count();
  out["quantized_bytes"] = map.quantized_bytes;
  out["dense_bytes"] = map.dense_bytes;
  out["bf16_bytes_after_decode"] = bf16_bytes_of(map);
  out["shards"] = shards_json(ckpt);
  out["pairs"] = pairs_json(ckpt, map);
  if (ckpt.config) {
    const auto& c = *ckpt.config;
    out["config"] = {{"model_type", c.model_type},
                     {"hidden_size", c.hidden_size},
                     {"intermediate_size", c.intermediate_size},
                     {"num_hidden_layers", c.num_hidden_layers},
                     {"num_local_experts", c.num_local_experts},
                     {"vocab_size", c.vocab_size},
                     {"quant_method", c.quant_method}};
  }
  out["problems"] = problems;
  out["warnings"] = warnings;
  return out;
}

// What `inspect` prints without --json.
void print_inspect(const checkpoint& ckpt, const model_map& map,
                   const std::vector<std::string>& problems) {
  const std::uint64_t bf16_bytes = bf16_bytes_of(map);
  std::printf("checkpoint   %s (%s)\n", ckpt.source.string().c_str(),
              ckpt.single_file ? "single file" : "directory");
  std::printf("shards       %zu, %s on disk\n", ckpt.shards.size(),
              platform::format_bytes(ckpt.file_bytes()).c_str());
  for (const auto& s : ckpt.shards)
    std::printf("  %-40s %5zu tensors  %s\n", s.path.filename().string().c_str(), s.tensors.size(),
                platform::format_bytes(s.file_size).c_str());
  std::printf("tensors      %zu (%s)\n", ckpt.tensors.size(),
              platform::format_bytes(ckpt.tensor_bytes()).c_str());
  std::printf("expert pairs %zu, %s MXFP4 -> %s BF16\n", map.pair_count(),
              platform::format_bytes(map.quantized_bytes).c_str(),
              platform::format_bytes(bf16_bytes - map.dense_bytes).c_str());
  std::printf("dense        %s\n", platform::format_bytes(map.dense_bytes).c_str());
  std::printf("after decode %s with experts in BF16\n", platform::format_bytes(bf16_bytes).c_str());
  if (ckpt.config)
    std::printf(
        "config       %s, %llu layers, %llu experts, hidden %llu, intermediate %llu, %s\n",
        ckpt.config->model_type.c_str(),
        static_cast<unsigned long long>(ckpt.config->num_hidden_layers),
        static_cast<unsigned long long>(ckpt.config->num_local_experts),
        static_cast<unsigned long long>(ckpt.config->hidden_size),
        static_cast<unsigned long long>(ckpt.config->intermediate_size),
        ckpt.config->quant_method.empty() ? "not quantized" : ckpt.config->quant_method.c_str());
  else
    std::printf("config       none\n");
  std::printf("problems     %zu\n", problems.size());
  for (const auto& p : problems) std::printf("  %s\n", one_line(p).c_str());
}

int run_inspect(const inspect_args& args) {
  const checkpoint ckpt = open_checkpoint(args.source);
  const auto problems = validate_model(ckpt);
  model_map map;
  if (problems.empty()) map = build_model_map(ckpt);
  const auto warnings = transformers_warnings(ckpt, map);
  if (args.json)
    std::printf("%s\n", inspect_json(ckpt, map, problems, warnings).dump(2).c_str());
  else
    print_inspect(ckpt, map, problems);
  for (const auto& w : warnings) std::fprintf(stderr, "umload: warning: %s\n", w.c_str());
  // Like every other failure, a refused checkpoint says why on stderr, in one line.
  if (!problems.empty())
    std::fprintf(stderr, "umload: error: %s%s\n", one_line(problems.front()).c_str(),
                 problems.size() > 1
                     ? (" (and " + std::to_string(problems.size() - 1) + " more problems)").c_str()
                     : "");
  return problems.empty() ? 0 : static_cast<int>(exit_code::format);
}

}  // namespace

void add_inspect(CLI::App& app, int& status) {
  auto args = std::make_shared<inspect_args>();
  auto* cmd = app.add_subcommand(
      "inspect", "Shards, tensors, expert pairs, sizes and every validation problem");
  cmd->add_option("SRC", args->source, "Checkpoint directory or .safetensors file")->required();
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args, &status] { status = run_inspect(*args); });
}

}  // namespace umload::cli
