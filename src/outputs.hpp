// The outputs of a load or convert as the pipeline needs them: platform/outputs.hpp's derivation
// (the one owner of what a load produces) run over the model map, each output tied to the tensor
// references and the expert pair it is made from.
//
//   auto outputs = umload::plan_outputs(map, {.dtype = output_dtype::bf16, .world_size = 2});
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "platform/outputs.hpp"
#include "src/model_map.hpp"
#include "src/safetensors.hpp"

namespace umload {

// One tensor the pipeline produces.
struct output_tensor {
  std::string name;
  dtype type = dtype::BF16;
  std::vector<std::uint64_t> shape;
  std::uint64_t bytes = 0;
  int layer = -1;
  const expert_pair* pair = nullptr;  // decoded from this pair; null: copied from `source`
  tensor_ref source;
  std::uint64_t expert_begin = 0;  // the experts this rank holds (sliced tensors)
  std::uint64_t expert_end = 0;
  bool sliced = false;  // tensor under .mlp.experts., cut to the rank's experts
};

// The map's tensors as platform/ sees them (names, dtypes, shapes, bytes), in the map's order.
std::vector<platform::stored_tensor> stored_tensors(const model_map& map);

// platform::derive_outputs over the map's tensors: the tensors a load or convert produces, in
// streaming order (non-layer tensors, then layers). Throws usage_error for a bad shard or
// experts that do not divide over the world size.
std::vector<output_tensor> plan_outputs(const model_map& map,
                                        const platform::output_options& options);

}  // namespace umload
