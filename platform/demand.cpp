#include "platform/demand.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>

#include "kernels/error.hpp"

namespace umload::platform {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// "model.layers.12.mlp..." -> 12; -1 otherwise.
int layer_of(std::string_view name) {
  constexpr std::string_view prefix = "model.layers.";
  const auto at = name.find(prefix);
  if (at == std::string_view::npos) return -1;
  std::size_t i = at + prefix.size();
  int layer = 0;
  bool any = false;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
    layer = layer * 10 + (name[i] - '0');
    any = true;
    ++i;
    if (layer > 1'000'000) return -1;
  }
  return any && i < name.size() && name[i] == '.' ? layer : -1;
}

tensor_kind kind_of(std::string_view name) {
  if (contains(name, ".mlp.experts.")) {
    return ends_with(name, "_blocks") || ends_with(name, "_scales") ? tensor_kind::expert_weight
                                                                    : tensor_kind::expert_bias;
  }
  if (contains(name, ".mlp.router.")) return tensor_kind::router;
  if (contains(name, "embed_tokens") || contains(name, "lm_head")) return tensor_kind::embedding;
  if (contains(name, ".self_attn.")) return tensor_kind::attention;
  if (contains(name, "layernorm") || contains(name, "model.norm")) return tensor_kind::norm;
  return tensor_kind::dense;
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

std::string divisors_text(std::uint64_t n) {
  std::string out;
  for (std::uint64_t d = 1; d <= n; ++d) {
    if (n % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
  }
  return out;
}

}  // namespace

std::string_view to_string(output_dtype d) {
  switch (d) {
    case output_dtype::bf16: return "bf16";
    case output_dtype::f32: return "f32";
    case output_dtype::keep: return "keep";
  }
  return "bf16";
}
std::string_view to_string(output_layout l) { return l == output_layout::hf ? "hf" : "native"; }
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
std::optional<output_dtype> parse_output_dtype(std::string_view text) {
  for (auto d : {output_dtype::bf16, output_dtype::f32, output_dtype::keep}) {
    if (text == to_string(d)) return d;
  }
  return std::nullopt;
}
std::optional<output_layout> parse_output_layout(std::string_view text) {
  if (text == "hf") return output_layout::hf;
  if (text == "native") return output_layout::native;
  return std::nullopt;
}

std::uint64_t element_bytes(std::string_view dtype) {
  static const std::map<std::string_view, std::uint64_t> sizes{
      {"BOOL", 1},    {"U8", 1},          {"I8", 1},          {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"F8_E8M0", 1}, {"F8_E4M3FNUZ", 1}, {"F8_E5M2FNUZ", 1}, {"I16", 2},     {"U16", 2},
      {"F16", 2},     {"BF16", 2},        {"I32", 4},         {"U32", 4},     {"F32", 4},
      {"F64", 8},     {"I64", 8},         {"U64", 8},         {"C64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
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
  if (options.world_size < 1) {
    throw usage_error("world size " + std::to_string(options.world_size) + " must be at least 1");
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    throw usage_error("rank " + std::to_string(options.rank) + " must be in [0, " +
                      std::to_string(options.world_size) + ")");
  }
  const auto world = static_cast<std::uint64_t>(options.world_size);
  model_demand d;
  d.label = std::move(label);
  d.options = options;

  std::map<std::string, const stored_tensor*, std::less<>> by_name;
  for (const auto& t : tensors) by_name.emplace(t.name, &t);

  auto check_experts = [&](const stored_tensor& t, std::uint64_t experts) {
    if (d.experts == 0) d.experts = experts;
    if (experts % world != 0) {
      throw usage_error(d.label + ": " + t.name + " holds " + std::to_string(experts) +
                        " experts, which do not divide over " + std::to_string(world) +
                        " ranks; world sizes that divide them: " + divisors_text(experts));
    }
  };

  for (const auto& t : tensors) {
    const tensor_kind kind = kind_of(t.name);
    tensor_demand out;
    out.layer = layer_of(t.name);
    out.kind = kind;
    const bool is_expert = kind == tensor_kind::expert_weight || kind == tensor_kind::expert_bias;
    const std::uint64_t experts = is_expert && !t.shape.empty() ? t.shape[0] : 0;

    if (ends_with(t.name, "_scales") &&
        by_name.count(t.name.substr(0, t.name.size() - 7) + "_blocks")) {
      continue;  // priced with its blocks
    }
    if (ends_with(t.name, "_blocks")) {
      const std::string base = t.name.substr(0, t.name.size() - 7);
      auto sit = by_name.find(base + "_scales");
      if (sit != by_name.end() && t.shape.size() == 4 && experts > 0) {
        const stored_tensor& scales = *sit->second;
        check_experts(t, experts);
        const std::uint64_t share = experts / world;
        const std::uint64_t per_expert_blocks = t.bytes / experts;
        const std::uint64_t per_expert_scales = scales.bytes / experts;
        if (options.dtype == output_dtype::keep) {
          for (const stored_tensor* part : {&t, &scales}) {
            tensor_demand half = out;
            half.name = part->name;
            half.kind = tensor_kind::expert_weight;
            half.bytes_stored = part->bytes / experts * share;
            half.bytes_output = half.bytes_stored;
            half.stage_unit_bytes = part->bytes / experts;
            half.sharded = true;
            half.sources = {part->name};
            d.tensors.push_back(std::move(half));
          }
        } else {
          const std::uint64_t values_per_expert = t.shape[1] * t.shape[2] * 32;
          const std::uint64_t elem = options.dtype == output_dtype::f32 ? 4 : 2;
          out.name = base;
          out.kind = tensor_kind::expert_weight;
          out.bytes_stored = (per_expert_blocks + per_expert_scales) * share;
          out.bytes_output = values_per_expert * elem * share;
          out.stage_unit_bytes = per_expert_blocks + per_expert_scales;
          out.sharded = true;
          out.decoded = true;
          out.sources = {t.name, scales.name};
          d.tensors.push_back(std::move(out));
        }
        continue;
      }
    }
    out.name = t.name;
    out.sources = {t.name};
    if (is_expert && experts > 0) {
      check_experts(t, experts);
      const std::uint64_t share = experts / world;
      out.bytes_stored = t.bytes / experts * share;
      out.bytes_output = t.bytes / experts * share;
      out.sharded = true;
    } else {
      out.bytes_stored = t.bytes;
      out.bytes_output = t.bytes;  // dense tensors are loaded as stored, whatever --dtype
    }
    d.tensors.push_back(std::move(out));
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
