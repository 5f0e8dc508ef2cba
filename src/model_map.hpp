// The GPT-OSS view of a checkpoint: which tensors are MXFP4 expert pairs (blocks + scales), how
// they are shaped, and how everything groups by layer. The groups' order (tensors outside any
// layer, then the layers in order) is the order in which outputs are derived and streamed
// (src/outputs.hpp).
//
//   auto map = umload::build_model_map(ckpt);
//   for (const auto& group : map.groups) for (const auto& pair : group.pairs) ...
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/mxfp4.hpp"
#include "src/checkpoint.hpp"

namespace umload {

enum class projection : std::uint8_t { gate_up, down };

// One MXFP4 expert weight: `<base>_blocks` [E, rows, G, 16] U8 and `<base>_scales` [E, rows, G] U8.
struct expert_pair {
  std::string base;  // "model.layers.3.mlp.experts.gate_up_proj"
  int layer = -1;
  projection proj = projection::gate_up;
  tensor_ref blocks;
  tensor_ref scales;
  std::uint64_t experts = 0;
  std::uint64_t rows = 0;    // output features
  std::uint64_t groups = 0;  // input features / 32

  mxfp4::expert_geometry geometry() const { return {rows, groups}; }
  std::uint64_t in_features() const { return geometry().in_features(); }
  std::uint64_t values() const { return experts * geometry().values(); }
  std::uint64_t quantized_bytes() const { return blocks.bytes() + scales.bytes(); }
};

struct layer_group {
  int layer = -1;                  // -1 for tensors outside any layer (embeddings, norm, head)
  std::vector<expert_pair> pairs;  // gate_up before down
  std::vector<tensor_ref> dense;   // everything else, by name
};

struct model_map {
  std::string label;  // what messages call the model: the checkpoint's file or folder name
  std::vector<layer_group> groups;  // the non-layer group first, then layers in order
  std::uint64_t quantized_bytes = 0;
  std::uint64_t dense_bytes = 0;
  std::size_t pair_count() const;
};

// Pairs `_blocks` with `_scales`, checks config.json's model_type, each pair's dtypes and shapes
// and its agreement with the config (G*32 equals H or I, E equals num_local_experts), and groups
// by layer. Throws format_error naming file and tensor on the first broken rule.
model_map build_model_map(const checkpoint& ckpt);

// Every problem build_model_map would find, as messages, without stopping at the first.
std::vector<std::string> validate_model(const checkpoint& ckpt);

}  // namespace umload
