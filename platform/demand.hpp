// What a model asks of memory: one entry per output tensor, with the bytes read from disk and the
// bytes held after conversion, for this rank. The placement policy (plan.hpp) consumes it. It is
// built from plain descriptions of the stored tensors (name, dtype, shape, bytes), so platform/
// needs nothing from the checkpoint reader: the CLI converts its checkpoint into `stored_tensor`s,
// and tests use gpt_oss_tensors(), which builds the published gpt-oss shapes without any file.
//
//   auto d = make_demand(stored, {.dtype = output_dtype::bf16, .rank = 0, .world_size = 4},
//   "ckpt"); auto d20 = gpt_oss_demand(gpt_oss_preset::gpt_oss_20b, {});
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/vocabulary.hpp"
#include "platform/outputs.hpp"

namespace umload::platform {

using demand_options = output_options;

struct tensor_demand {
  std::string name;  // the output tensor's name (an expert pair's base name when decoded)
  int layer = -1;    // -1 outside the layers
  tensor_kind kind = tensor_kind::dense;
  std::uint64_t bytes_stored = 0;  // bytes this rank reads from disk
  std::uint64_t bytes_output = 0;  // bytes this rank holds once loaded
  // The smallest piece a staging slot must hold whole (one expert's blocks and scales); 0: any.
  std::uint64_t stage_unit_bytes = 0;
  bool sharded = false;  // an expert tensor: this rank holds only its share of the experts
  bool decoded = false;  // an MXFP4 pair decoded on load
  std::vector<std::string> sources;  // the stored tensors it is made from
  std::size_t output = 0;            // its index in derive_outputs' list (streaming order)
};

struct model_demand {
  std::string label;  // what to call the model in messages ("gpt-oss-120b", a path)
  demand_options options;
  std::vector<tensor_demand> tensors;  // in order of use
  std::uint64_t experts = 0;           // E, when the model has experts
  // The stored tensors it was made from, so that the policy can price alternatives (another
  // dtype, more ranks). May be empty; then no alternatives are suggested.
  std::vector<stored_tensor> source;

  std::uint64_t bytes_stored() const;
  std::uint64_t bytes_output() const;
  std::uint64_t largest_stage_unit() const;
};

// The outputs of derive_outputs (outputs.hpp), in order of use. Throws what derive_outputs
// throws: usage_error when rank/world_size are out of range or the experts do not divide over
// the ranks (the message lists the world sizes that do).
model_demand make_demand(std::vector<stored_tensor> tensors, const demand_options& options,
                         std::string label);

// Bytes per element of a safetensors dtype string; 0 for unknown or sub-byte types.
std::uint64_t element_bytes(std::string_view dtype);

// The published gpt-oss shapes (docs/formats.md gives their sources), for tests and docs.
enum class gpt_oss_preset : std::uint8_t { gpt_oss_20b, gpt_oss_120b };
std::string_view to_string(gpt_oss_preset p);  // "gpt-oss-20b"
std::optional<gpt_oss_preset> parse_gpt_oss_preset(
    std::string_view text);  // "gpt-oss-20b" or "20b"
std::vector<stored_tensor> gpt_oss_tensors(gpt_oss_preset preset);
model_demand gpt_oss_demand(gpt_oss_preset preset, const demand_options& options);

}  // namespace umload::platform
