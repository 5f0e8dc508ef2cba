// What a load produces: the one derivation, from the stored tensors' names, dtypes and shapes,
// of every output tensor of this rank (its name, dtype, shape, bytes held and bytes read), in
// streaming order. The plan's demand (demand.hpp), the loader, convert, verify and the Python
// module all take their outputs from here, so they cannot disagree.
//
//   auto outs = derive_outputs(stored, {.dtype = output_dtype::bf16, .world_size = 4, .rank = 1});
//   for (const auto& o : outs) ... o.name, o.shape, o.bytes, o.decoded, o.sources
//
// Rules: `X_blocks` [E, rows, G, 16] with `X_scales` [E, rows, G] is one MXFP4 pair; decoded it is
// one tensor X (bf16 or f32, hf [E, G*32, rows] or native [E, rows, G*32]); kept, it is its two
// halves as stored. Every other tensor is loaded as stored. With world size W > 1, a pair and
// every tensor named `.mlp.experts.` hold this rank's contiguous E/W experts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/mxfp4.hpp"
#include "kernels/vocabulary.hpp"

namespace umload::platform {

// One tensor as the checkpoint stores it. dtype is the safetensors string ("BF16", "U8", ...).
struct stored_tensor {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t bytes = 0;
};

// Which experts a process holds: rank `rank` of `world_size`.
struct shard {
  int rank = 0;
  int world_size = 1;
};

// The one check of a shard (and its wording): throws usage_error unless world_size >= 1 and
// 0 <= rank < world_size.
shard checked_shard(int rank, int world_size);

struct output_options {
  output_dtype dtype = output_dtype::bf16;
  umload::layout layout = umload::layout::hf;
  int rank = 0;
  int world_size = 1;
};

enum class tensor_kind : std::uint8_t {
  dense,          // anything not named below
  expert_weight,  // MXFP4 expert pair (decoded) or one half of it (kept)
  expert_bias,    // other tensors under .mlp.experts.
  router,         // .mlp.router.
  embedding,      // embed_tokens, lm_head
  attention,      // .self_attn.
  norm,           // layer norms and the final norm
};
std::string_view to_string(tensor_kind k);
tensor_kind kind_of(std::string_view name);

// "model.layers.12.mlp..." -> 12; -1 for a tensor outside the layers.
int layer_of(std::string_view name);

struct output_spec {
  std::string name;                  // a decoded pair's base name, else the stored name
  std::string dtype;                 // safetensors spelling: "BF16"/"F32" when decoded
  std::vector<std::uint64_t> shape;  // this rank's
  std::uint64_t bytes = 0;           // held once loaded, by this rank
  std::uint64_t bytes_stored = 0;    // read from disk by this rank
  int layer = -1;
  tensor_kind kind = tensor_kind::dense;
  bool decoded = false;       // an MXFP4 pair decoded on load
  bool per_expert = false;    // a pair or a `.mlp.experts.` tensor: splits over ranks
  bool sliced = false;        // per_expert and world size > 1: cut to this rank's experts
  std::uint64_t experts = 0;  // per_expert: E, the stored first dimension
  // The experts (first dimension) of the stored tensor(s) this output holds.
  std::uint64_t expert_begin = 0;
  std::uint64_t expert_end = 0;
  mxfp4::expert_geometry geometry;  // decoded: one expert's rows and groups
  // Indices into the stored list: the blocks and then the scales of a decoded pair, else the
  // one stored tensor.
  std::vector<std::size_t> sources;
  // The smallest piece a staging slot must hold whole: one expert of a pair (blocks and scales
  // when decoded, the half when kept); 0: any.
  std::uint64_t stage_unit_bytes = 0;
};

// The outputs of `stored` under `options`, in streaming order: tensors outside the layers, then
// each layer; in a group, the stored tensors by name, then the pairs (gate_up before down; a
// kept pair as blocks then scales). Throws usage_error for a bad shard, or for experts that do
// not divide over the world size (naming `label`, the tensor and the world sizes that do).
std::vector<output_spec> derive_outputs(const std::vector<stored_tensor>& stored,
                                        const output_options& options, std::string_view label);

}  // namespace umload::platform
