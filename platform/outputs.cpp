#include "platform/outputs.hpp"

#include <algorithm>
#include <charconv>
#include <map>

#include "kernels/error.hpp"
#include "kernels/mxfp4_layout.hpp"

namespace umload::platform {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

std::string divisors_text(std::uint64_t n) {
  std::string out;
  for (std::uint64_t d = 1; d <= n; ++d)
    if (n % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
  return out;
}

// The stored tensors of one layer (or of none), split into pairs and everything else.
struct group {
  std::vector<std::size_t> single;                         // by name
  std::vector<std::pair<std::size_t, std::size_t>> pairs;  // blocks, scales
};

std::map<int, group> group_by_layer(const std::vector<stored_tensor>& stored) {
  std::map<std::string_view, std::size_t> by_name;
  for (std::size_t i = 0; i < stored.size(); ++i) by_name.emplace(stored[i].name, i);
  std::map<int, group> groups;
  for (const auto& [name, i] : by_name) {
    auto& g = groups[layer_of(name)];
    if (const auto part = mxfp4::part_of(name)) {
      const bool blocks = part->kind == mxfp4::part_kind::blocks;
      const auto other = by_name.find(mxfp4::part_name(
          part->base, blocks ? mxfp4::part_kind::scales : mxfp4::part_kind::blocks));
      if (other != by_name.end()) {
        const std::size_t b = blocks ? i : other->second, s = blocks ? other->second : i;
        if (mxfp4::is_pair(stored[b].shape, stored[s].shape)) {
          if (blocks) g.pairs.emplace_back(b, s);
          continue;
        }
      }
    }
    g.single.push_back(i);
  }
  for (auto& [layer, g] : groups)
    std::stable_sort(g.pairs.begin(), g.pairs.end(), [&](const auto& x, const auto& y) {
      const bool dx = ends_with(stored[x.first].name, "down_proj_blocks");
      const bool dy = ends_with(stored[y.first].name, "down_proj_blocks");
      return dx != dy ? dy : stored[x.first].name < stored[y.first].name;
    });
  return groups;
}

class deriver {
 public:
  deriver(const std::vector<stored_tensor>& stored, const output_options& options,
          std::string_view label)
      : stored_(stored), options_(options), label_(label) {
    checked_shard(options.rank, options.world_size);
  }

  // A stored tensor loaded as it is (or its share of the experts).
  void add_single(std::size_t i, int layer) {
    const stored_tensor& t = stored_[i];
    output_spec out;
    out.name = t.name;
    out.dtype = t.dtype;
    out.shape = t.shape;
    out.layer = layer;
    out.kind = kind_of(t.name);
    out.sources = {i};
    out.bytes = out.bytes_stored = t.bytes;
    if (!t.shape.empty()) out.expert_end = t.shape[0];
    const bool expert_tensor =
        out.kind == tensor_kind::expert_weight || out.kind == tensor_kind::expert_bias;
    if (expert_tensor && !t.shape.empty() && t.shape[0] > 0) {
      share(out, t.name, t.shape[0]);
      out.bytes = out.bytes_stored = t.bytes / t.shape[0] * (out.expert_end - out.expert_begin);
      out.shape[0] = out.expert_end - out.expert_begin;
    }
    outputs_.push_back(std::move(out));
  }

  void add_pair(std::size_t blocks, std::size_t scales, int layer) {
    if (options_.dtype == output_dtype::keep) {
      for (std::size_t half : {blocks, scales}) {
        add_single(half, layer);
        output_spec& out = outputs_.back();
        out.kind = tensor_kind::expert_weight;
        out.stage_unit_bytes = stored_[half].bytes / stored_[half].shape[0];
      }
      return;
    }
    const stored_tensor& b = stored_[blocks];
    output_spec out;
    out.name = std::string(mxfp4::part_of(b.name)->base);
    out.dtype = options_.dtype == output_dtype::f32 ? "F32" : "BF16";
    out.layer = layer;
    out.kind = tensor_kind::expert_weight;
    out.decoded = true;
    out.sources = {blocks, scales};
    out.geometry = mxfp4::geometry_of(b.shape);
    share(out, out.name, b.shape[0]);
    const std::uint64_t experts = out.expert_end - out.expert_begin;
    const auto& g = out.geometry;
    out.shape = mxfp4::decoded_shape(experts, g, options_.layout);
    out.bytes = experts * g.output(element_bytes(options_.dtype));
    out.bytes_stored = experts * g.stored();
    out.stage_unit_bytes = g.stored();
    outputs_.push_back(std::move(out));
  }

  std::vector<output_spec> take() { return std::move(outputs_); }

 private:
  // This rank's contiguous share of `experts` experts.
  void share(output_spec& out, const std::string& name, std::uint64_t experts) const {
    const auto w = static_cast<std::uint64_t>(options_.world_size);
    if (experts % w != 0)
      throw usage_error(tensor_message(
          label_, name,
          std::to_string(experts) + " experts do not divide evenly over world size " +
              std::to_string(w) + "; world sizes that divide them: " + divisors_text(experts)));
    out.per_expert = true;
    out.sliced = w > 1;
    out.experts = experts;
    out.expert_begin = experts / w * static_cast<std::uint64_t>(options_.rank);
    out.expert_end = out.expert_begin + experts / w;
  }

  const std::vector<stored_tensor>& stored_;
  output_options options_;
  std::string_view label_;
  std::vector<output_spec> outputs_;
};

}  // namespace

shard checked_shard(int rank, int world_size) {
  if (world_size < 1)
    throw usage_error("world size " + std::to_string(world_size) + " must be at least 1");
  if (rank < 0 || rank >= world_size)
    throw usage_error("rank " + std::to_string(rank) + " must be in [0, " +
                      std::to_string(world_size) + ") for world size " +
                      std::to_string(world_size));
  return {rank, world_size};
}

std::string_view to_string(tensor_kind k) {
  switch (k) {
    case tensor_kind::dense: return "dense";
    case tensor_kind::expert_weight: return "expert_weight";
    case tensor_kind::expert_bias: return "expert_bias";
    case tensor_kind::router: return "router";
    case tensor_kind::embedding: return "embedding";
    case tensor_kind::attention: return "attention";
    case tensor_kind::norm: return "norm";
  }
  return "dense";
}

tensor_kind kind_of(std::string_view name) {
  if (contains(name, ".mlp.experts."))
    return mxfp4::part_of(name) ? tensor_kind::expert_weight : tensor_kind::expert_bias;
  if (contains(name, ".mlp.router.")) return tensor_kind::router;
  if (contains(name, "embed_tokens") || contains(name, "lm_head")) return tensor_kind::embedding;
  if (contains(name, ".self_attn.")) return tensor_kind::attention;
  if (contains(name, "layernorm") || contains(name, "model.norm")) return tensor_kind::norm;
  return tensor_kind::dense;
}

int layer_of(std::string_view name) {
  constexpr std::string_view prefix = "model.layers.";
  if (name.substr(0, prefix.size()) != prefix) return -1;
  name.remove_prefix(prefix.size());
  int layer = -1;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), layer);
  if (ec != std::errc() || end == name.data() || end == name.data() + name.size() || *end != '.')
    return -1;
  return layer;
}

std::vector<output_spec> derive_outputs(const std::vector<stored_tensor>& stored,
                                        const output_options& options, std::string_view label) {
  deriver d(stored, options, label);
  for (const auto& [layer, g] : group_by_layer(stored)) {
    for (std::size_t i : g.single) d.add_single(i, layer);
    for (const auto& [blocks, scales] : g.pairs) d.add_pair(blocks, scales, layer);
  }
  return d.take();
}

}  // namespace umload::platform
