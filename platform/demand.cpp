#include "platform/demand.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>

#include "kernels/dtype.hpp"
#include "kernels/error.hpp"

namespace umload::platform {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// Order of use inside the forward pass: embeddings, each layer (norm, attention, norm, router,
// experts), final norm, head.
std::tuple<int, int, int> use_key(const tensor_demand& t) {
  const std::string& n = t.name;
  if (t.layer < 0) {
    if (contains(n, "embed_tokens")) return {0, 0, 0};
    if (contains(n, "lm_head")) return {3, 0, 0};
    return {2, 0, 0};
  }
  int within = 8;
  if (contains(n, "input_layernorm"))
    within = 0;
  else if (contains(n, ".self_attn."))
    within = 1;
  else if (contains(n, "post_attention_layernorm"))
    within = 2;
  else if (contains(n, ".mlp.router."))
    within = 3;
  else if (contains(n, "gate_up_proj"))
    within = ends_with(n, "_bias") ? 5 : 4;
  else if (contains(n, "down_proj"))
    within = ends_with(n, "_bias") ? 7 : 6;
  return {1, t.layer, within};
}

std::uint64_t product(const std::vector<std::uint64_t>& shape) {
  std::uint64_t p = 1;
  for (auto d : shape) p *= d;
  return p;
}

}  // namespace

std::uint64_t element_bytes(std::string_view dtype) {
  const auto d = parse_dtype(dtype);
  return d ? umload::element_bytes(*d) : 0;
}

std::uint64_t model_demand::bytes_stored() const {
  return std::accumulate(
      tensors.begin(), tensors.end(), std::uint64_t{0},
      [](std::uint64_t s, const tensor_demand& t) { return s + t.bytes_stored; });
}
std::uint64_t model_demand::bytes_output() const {
  return std::accumulate(
      tensors.begin(), tensors.end(), std::uint64_t{0},
      [](std::uint64_t s, const tensor_demand& t) { return s + t.bytes_output; });
}
std::uint64_t model_demand::largest_stage_unit() const {
  std::uint64_t m = 0;
  for (const auto& t : tensors) m = std::max(m, t.stage_unit_bytes);
  return m;
}

model_demand make_demand(std::vector<stored_tensor> tensors, const demand_options& options,
                         std::string label) {
  model_demand d;
  d.label = std::move(label);
  d.options = options;
  const auto outputs = derive_outputs(tensors, options, d.label);
  d.tensors.reserve(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const output_spec& o = outputs[i];
    tensor_demand t;
    t.name = o.name;
    t.layer = o.layer;
    t.kind = o.kind;
    t.bytes_stored = o.bytes_stored;
    t.bytes_output = o.bytes;
    t.stage_unit_bytes = o.stage_unit_bytes;
    t.sharded = o.per_expert;
    t.decoded = o.decoded;
    for (std::size_t s : o.sources) t.sources.push_back(tensors[s].name);
    t.output = i;
    if (d.experts == 0 && o.per_expert) d.experts = o.experts;
    d.tensors.push_back(std::move(t));
  }
  std::stable_sort(d.tensors.begin(), d.tensors.end(),
                   [](const tensor_demand& a, const tensor_demand& b) {
                     const auto ka = use_key(a), kb = use_key(b);
                     if (ka != kb) return ka < kb;
                     return a.name < b.name;
                   });
  d.source = std::move(tensors);
  return d;
}

std::string_view to_string(gpt_oss_preset p) {
  return p == gpt_oss_preset::gpt_oss_20b ? "gpt-oss-20b" : "gpt-oss-120b";
}

std::optional<gpt_oss_preset> parse_gpt_oss_preset(std::string_view text) {
  if (text == "gpt-oss-20b" || text == "20b") return gpt_oss_preset::gpt_oss_20b;
  if (text == "gpt-oss-120b" || text == "120b") return gpt_oss_preset::gpt_oss_120b;
  return std::nullopt;
}

std::vector<stored_tensor> gpt_oss_tensors(gpt_oss_preset preset) {
  const std::uint64_t layers = preset == gpt_oss_preset::gpt_oss_20b ? 24 : 36;
  const std::uint64_t experts = preset == gpt_oss_preset::gpt_oss_20b ? 32 : 128;
  const std::uint64_t hidden = 2880, inter = 2880, heads = 64, kv_heads = 8, head_dim = 64;
  const std::uint64_t vocab = 201088;
  std::vector<stored_tensor> out;
  auto add = [&](std::string name, std::string dtype, std::vector<std::uint64_t> shape) {
    const std::uint64_t bytes = product(shape) * element_bytes(dtype);
    out.push_back({std::move(name), std::move(dtype), std::move(shape), bytes});
  };
  add("model.embed_tokens.weight", "BF16", {vocab, hidden});
  for (std::uint64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", "BF16", {hidden});
    add(p + "post_attention_layernorm.weight", "BF16", {hidden});
    add(p + "self_attn.q_proj.weight", "BF16", {heads * head_dim, hidden});
    add(p + "self_attn.q_proj.bias", "BF16", {heads * head_dim});
    add(p + "self_attn.k_proj.weight", "BF16", {kv_heads * head_dim, hidden});
    add(p + "self_attn.k_proj.bias", "BF16", {kv_heads * head_dim});
    add(p + "self_attn.v_proj.weight", "BF16", {kv_heads * head_dim, hidden});
    add(p + "self_attn.v_proj.bias", "BF16", {kv_heads * head_dim});
    add(p + "self_attn.o_proj.weight", "BF16", {hidden, heads * head_dim});
    add(p + "self_attn.o_proj.bias", "BF16", {hidden});
    add(p + "self_attn.sinks", "BF16", {heads});
    add(p + "mlp.router.weight", "BF16", {experts, hidden});
    add(p + "mlp.router.bias", "BF16", {experts});
    add(p + "mlp.experts.gate_up_proj_blocks", "U8", {experts, 2 * inter, hidden / 32, 16});
    add(p + "mlp.experts.gate_up_proj_scales", "U8", {experts, 2 * inter, hidden / 32});
    add(p + "mlp.experts.gate_up_proj_bias", "BF16", {experts, 2 * inter});
    add(p + "mlp.experts.down_proj_blocks", "U8", {experts, hidden, inter / 32, 16});
    add(p + "mlp.experts.down_proj_scales", "U8", {experts, hidden, inter / 32});
    add(p + "mlp.experts.down_proj_bias", "BF16", {experts, hidden});
  }
  add("model.norm.weight", "BF16", {hidden});
  add("lm_head.weight", "BF16", {vocab, hidden});
  return out;
}

model_demand gpt_oss_demand(gpt_oss_preset preset, const demand_options& options) {
  return make_demand(gpt_oss_tensors(preset), options, std::string(to_string(preset)));
}

}  // namespace umload::platform
