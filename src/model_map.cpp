#include "src/model_map.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "kernels/error.hpp"
#include "platform/outputs.hpp"

namespace umload {

namespace {

constexpr std::string_view blocks_suffix = "_blocks";
constexpr std::string_view scales_suffix = "_scales";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
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

// Blocks and scales are both U8.
bool check_types(const tensor_ref& blocks, const tensor_ref& scales, checker& check) {
  bool ok = true;
  if (blocks.entry->type != dtype::U8) {
    check.report(check.where(blocks) + ": blocks must be U8, found " +
                 std::string(to_string(blocks.entry->type)));
    ok = false;
  }
  if (scales.entry->type != dtype::U8) {
    check.report(check.where(scales) + ": scales must be U8, found " +
                 std::string(to_string(scales.entry->type)));
    ok = false;
  }
  return ok;
}

// Blocks are [experts, rows, groups, 16], scales [experts, rows, groups], none of them zero.
bool check_shapes(const tensor_ref& blocks, const tensor_ref& scales, checker& check) {
  const auto& bs = blocks.entry->shape;
  const auto& ss = scales.entry->shape;
  if (bs.size() != 4 || bs[3] != 16) {
    check.report(check.where(blocks) + ": blocks shape " + shape_text(bs) +
                 " must be [experts, rows, groups, 16]");
    return false;
  }
  if (ss.size() != 3 || ss[0] != bs[0] || ss[1] != bs[1] || ss[2] != bs[2]) {
    check.report(check.where(scales) + ": scales shape " + shape_text(ss) +
                 " does not match blocks shape " + shape_text(bs) + " (expected [" +
                 std::to_string(bs[0]) + ", " + std::to_string(bs[1]) + ", " +
                 std::to_string(bs[2]) + "])");
    return false;
  }
  if (bs[0] == 0 || bs[1] == 0 || bs[2] == 0) {
    check.report(check.where(blocks) + ": blocks shape " + shape_text(bs) +
                 " has a zero dimension");
    return false;
  }
  return true;
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

// The expert pair of the tensor `<base>_blocks` in `layer`; nothing when a rule is broken.
std::optional<expert_pair> pair_of(const checkpoint& ckpt, const std::string& base,
                                   const tensor_ref& blocks, int layer, checker& check) {
  const tensor_ref* scales = ckpt.find(base + std::string(scales_suffix));
  if (!scales) {
    check.report(check.where(blocks) + ": blocks without their scales '" + base + "_scales'");
    return std::nullopt;
  }
  const bool types_ok = check_types(blocks, *scales, check);
  if (!check_shapes(blocks, *scales, check)) return std::nullopt;
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
  if (!types_ok || !config_ok) return std::nullopt;
  return pair;
}

// Sorts each layer's tensors into expert pairs and dense tensors, checking each pair.
model_map build(const checkpoint& ckpt, std::vector<std::string>* problems) {
  checker check(ckpt, problems);
  check_model_type(ckpt, check);
  std::map<int, layer_group> groups;
  model_map map;
  map.label = checkpoint_label(ckpt);
  for (const auto& [name, ref] : ckpt.tensors) {
    const int layer = platform::layer_of(name);
    auto& group = groups[layer];
    group.layer = layer;
    if (ends_with(name, scales_suffix)) {
      const std::string base = name.substr(0, name.size() - scales_suffix.size());
      if (!ckpt.find(base + std::string(blocks_suffix)))
        check.report(check.where(ref) + ": scales without their blocks '" + base + "_blocks'");
    } else if (!ends_with(name, blocks_suffix)) {
      group.dense.push_back(ref);
      map.dense_bytes += ref.bytes();
    } else if (auto pair = pair_of(ckpt, name.substr(0, name.size() - blocks_suffix.size()), ref,
                                   layer, check)) {
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
