// Options that load, convert and plan share, parsed the same way everywhere.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "src/pipeline.hpp"

namespace umload {
struct load_request;
}

namespace umload::cli {

struct decode_args {
  std::string layout = "hf";
  std::string dtype = "bf16";
  int threads = 0;
  std::string isa;  // empty: best
  bool allow_nan_scales = false;
  std::optional<int> rank;
  std::optional<int> world_size;
};

// Registers --layout, --dtype, --threads, --isa, --allow-nan-scales, --rank, --world-size.
void add_decode_options(CLI::App& cmd, decode_args& args, bool allow_keep);

// Fills the pipeline options; rank and world size default to torchrun's RANK and WORLD_SIZE
// (resolve_shard: one check, one wording).
void apply_decode_options(const decode_args& args, pipeline_options& pipeline);
// Fills a load request (layout, dtype, NaN scales, shard, threads, CPU path).
void apply_decode_options(const decode_args& args, load_request& request);
std::optional<cpu::isa> parse_isa_option(const std::string& text);

}  // namespace umload::cli
