#include "src/model_map.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "kernels/error.hpp"
#include "platform/outputs.hpp"
#include "src/schemes/scheme.hpp"

namespace umload {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Reports broken rules with the file and tensor they concern: collects them, or throws on the
// first when `problems` is null.
class checker {
 public:
  checker(const checkpoint& ckpt, std::vector<std::string>* problems)
      : ckpt_(ckpt), problems_(problems) {}
  void report(const std::string& message) {
    if (!problems_) throw format_error(message);
    problems_->push_back(message);
  }
  std::string where(const tensor_ref& ref) const {
    return ckpt_.shards[ref.shard].path.string() + ": tensor '" + ref.name() + "'";
  }

 private:
  const checkpoint& ckpt_;
  std::vector<std::string>* problems_;
};

// config.json, where there is one, names a GPT-OSS model.
void check_model_type(const checkpoint& ckpt, checker& check) {
  if (ckpt.config && ckpt.config->model_type != "gpt_oss")
    check.report((ckpt.directory / "config.json").string() + ": model_type is '" +
                 ckpt.config->model_type + "', not 'gpt_oss'");
}

// config.json's quant_method, where it names one, is a scheme's.
void check_quant_method(const checkpoint& ckpt, checker& check) {
  if (!ckpt.config || ckpt.config->quant_method.empty()) return;
  for (const schemes::scheme* s : schemes::known_schemes())
    if (s->quant_method() == ckpt.config->quant_method) return;
  check.report(schemes::unknown_scheme_message(ckpt.config->quant_method,
                                               (ckpt.directory / "config.json").string()));
}

// The scheme a stored tensor is a part of, with the part; nothing for a tensor of no scheme.
std::optional<std::pair<const schemes::scheme*, schemes::weight_part>> part_of(
    std::string_view name) {
  for (const schemes::scheme* s : schemes::known_schemes())
    if (auto part = s->part_of(name)) return std::pair{s, std::move(*part)};
  return std::nullopt;
}

// A pair's input features (groups * 32) and expert count agree with config.json.
bool check_config(const expert_pair& pair, const model_config& config, checker& check) {
  bool ok = true;
  const std::uint64_t in = pair.in_features();
  const std::uint64_t want =
      pair.proj == projection::down ? config.intermediate_size : config.hidden_size;
  if (want != 0 && in != want && in != config.hidden_size && in != config.intermediate_size) {
    check.report(check.where(pair.blocks) + ": groups * 32 = " + std::to_string(in) +
                 " matches neither hidden_size " + std::to_string(config.hidden_size) +
                 " nor intermediate_size " + std::to_string(config.intermediate_size) +
                 " of config.json");
    ok = false;
  }
  if (config.num_local_experts != 0 && pair.experts != config.num_local_experts) {
    check.report(check.where(pair.blocks) + ": " + std::to_string(pair.experts) +
                 " experts, but config.json says num_local_experts = " +
                 std::to_string(config.num_local_experts));
    ok = false;
  }
  return ok;
}

// The expert pair whose payload is `blocks`, in `layer`; nothing when a rule is broken.
std::optional<expert_pair> pair_of(const checkpoint& ckpt, const schemes::scheme& scheme,
                                   const std::string& base, const tensor_ref& blocks, int layer,
                                   checker& check) {
  const std::string scales_name = scheme.part_name(base, false);
  const tensor_ref* scales = ckpt.find(scales_name);
  if (!scales) {
    check.report(check.where(blocks) + ": blocks without their scales '" + scales_name + "'");
    return std::nullopt;
  }
  bool parts_ok = true, readable = true;
  for (const auto& problem : scheme.check(*blocks.entry, *scales->entry)) {
    check.report(check.where(problem.payload ? blocks : *scales) + ": " + problem.rule);
    parts_ok = false;
    readable = readable && !problem.fatal;
  }
  if (!readable) return std::nullopt;
  expert_pair pair;
  pair.base = base;
  pair.layer = layer;
  pair.proj = ends_with(base, "down_proj") ? projection::down : projection::gate_up;
  pair.blocks = blocks;
  pair.scales = *scales;
  pair.experts = blocks.entry->shape[0];
  pair.rows = blocks.entry->shape[1];
  pair.groups = blocks.entry->shape[2];
  const bool config_ok = !ckpt.config || check_config(pair, *ckpt.config, check);
  if (!parts_ok || !config_ok) return std::nullopt;
  return pair;
}

// Sorts each layer's tensors into expert pairs and dense tensors, checking each pair.
model_map build(const checkpoint& ckpt, std::vector<std::string>* problems) {
  checker check(ckpt, problems);
  check_model_type(ckpt, check);
  check_quant_method(ckpt, check);
  std::map<int, layer_group> groups;
  model_map map;
  map.label = checkpoint_label(ckpt);
  for (const auto& [name, ref] : ckpt.tensors) {
    const int layer = platform::layer_of(name);
    auto& group = groups[layer];
    group.layer = layer;
    const auto part = part_of(name);
    if (!part) {
      group.dense.push_back(ref);
      map.dense_bytes += ref.bytes();
    } else if (const auto& [scheme, weight] = *part; !weight.payload) {
      const std::string payload = scheme->part_name(weight.base, true);
      if (!ckpt.find(payload))
        check.report(check.where(ref) + ": scales without their blocks '" + payload + "'");
    } else if (auto pair = pair_of(ckpt, *scheme, weight.base, ref, layer, check)) {
      map.quantized_bytes += pair->quantized_bytes();
      group.pairs.push_back(std::move(*pair));
    }
  }
  for (auto& [layer, group] : groups) {
    // gate_up before down, then by name.
    std::sort(group.pairs.begin(), group.pairs.end(), [](const auto& a, const auto& b) {
      return a.proj != b.proj ? a.proj < b.proj : a.base < b.base;
    });
    map.groups.push_back(std::move(group));
  }
  return map;
}

}  // namespace

std::size_t model_map::pair_count() const {
  std::size_t n = 0;
  for (const auto& g : groups) n += g.pairs.size();
  return n;
}

model_map build_model_map(const checkpoint& ckpt) { return build(ckpt, nullptr); }

std::vector<std::string> validate_model(const checkpoint& ckpt) {
  std::vector<std::string> problems;
  build(ckpt, &problems);
  return problems;
}

}  // namespace umload
