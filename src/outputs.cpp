#include "src/outputs.hpp"

#include "kernels/error.hpp"

namespace umload {

namespace {

// The map's tensors in one list, with the reference and (for blocks) the pair behind each.
struct stored_list {
  std::vector<platform::stored_tensor> tensors;
  std::vector<const tensor_ref*> refs;
  std::vector<const expert_pair*> pair_of;  // set on a pair's blocks

  explicit stored_list(const model_map& map) {
    for (const auto& group : map.groups) {
      for (const auto& ref : group.dense) add(ref, nullptr);
      for (const auto& pair : group.pairs) {
        add(pair.blocks, &pair);
        add(pair.scales, nullptr);
      }
    }
  }

 private:
  void add(const tensor_ref& ref, const expert_pair* pair) {
    tensors.push_back(
        {ref.name(), std::string(to_string(ref.entry->type)), ref.entry->shape, ref.bytes()});
    refs.push_back(&ref);
    pair_of.push_back(pair);
  }
};

}  // namespace

std::vector<platform::stored_tensor> stored_tensors(const model_map& map) {
  return stored_list(map).tensors;
}

std::vector<output_tensor> plan_outputs(const model_map& map,
                                        const platform::output_options& options) {
  const stored_list stored(map);
  const auto specs = platform::derive_outputs(stored.tensors, options, map.label);
  std::vector<output_tensor> outputs;
  outputs.reserve(specs.size());
  for (const auto& spec : specs) {
    output_tensor out;
    out.name = spec.name;
    out.shape = spec.shape;
    out.bytes = spec.bytes;
    out.layer = spec.layer;
    out.expert_begin = spec.expert_begin;
    out.expert_end = spec.expert_end;
    out.sliced = spec.sliced;
    const std::size_t first = spec.sources.front();
    out.source = *stored.refs[first];
    if (spec.decoded) {
      out.pair = stored.pair_of[first];
      if (!out.pair)
        throw error(tensor_message(map.label, spec.name, "decoded, but not a pair of the map"));
    }
    out.type = parse_stored_dtype(spec.dtype, map.label, spec.name);
    outputs.push_back(std::move(out));
  }
  return outputs;
}

}  // namespace umload
