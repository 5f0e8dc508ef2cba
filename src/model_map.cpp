#include "src/model_map.hpp"

#include <algorithm>
#include <map>

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

// Collects problems; throws on the first when `problems` is null.
class checker {
 public:
  explicit checker(std::vector<std::string>* problems) : problems_(problems) {}
  void report(const std::string& message) {
    if (!problems_) throw format_error(message);
    problems_->push_back(message);
  }

 private:
  std::vector<std::string>* problems_;
};

model_map build(const checkpoint& ckpt, std::vector<std::string>* problems) {
  checker check(problems);
  const auto where = [&](const tensor_ref& ref) {
    return ckpt.shards[ref.shard].path.string() + ": tensor '" + ref.name() + "'";
  };
  const model_config* config = ckpt.config ? &*ckpt.config : nullptr;
  if (config && config->model_type != "gpt_oss")
    check.report((ckpt.directory / "config.json").string() + ": model_type is '" +
                 config->model_type + "', not 'gpt_oss'");

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
        check.report(where(ref) + ": scales without their blocks '" + base + "_blocks'");
      continue;
    }
    if (!ends_with(name, blocks_suffix)) {
      group.dense.push_back(ref);
      map.dense_bytes += ref.bytes();
      continue;
    }
    const std::string base = name.substr(0, name.size() - blocks_suffix.size());
    const tensor_ref* scales = ckpt.find(base + std::string(scales_suffix));
    if (!scales) {
      check.report(where(ref) + ": blocks without their scales '" + base + "_scales'");
      continue;
    }
    const auto& bs = ref.entry->shape;
    const auto& ss = scales->entry->shape;
    bool ok = true;
    if (ref.entry->type != dtype::U8) {
      check.report(where(ref) + ": blocks must be U8, found " +
                   std::string(to_string(ref.entry->type)));
      ok = false;
    }
    if (scales->entry->type != dtype::U8) {
      check.report(where(*scales) + ": scales must be U8, found " +
                   std::string(to_string(scales->entry->type)));
      ok = false;
    }
    if (bs.size() != 4 || bs[3] != 16) {
      check.report(where(ref) + ": blocks shape " + shape_text(bs) +
                   " must be [experts, rows, groups, 16]");
      continue;
    }
    if (ss.size() != 3 || ss[0] != bs[0] || ss[1] != bs[1] || ss[2] != bs[2]) {
      check.report(where(*scales) + ": scales shape " + shape_text(ss) +
                   " does not match blocks shape " + shape_text(bs) + " (expected [" +
                   std::to_string(bs[0]) + ", " + std::to_string(bs[1]) + ", " +
                   std::to_string(bs[2]) + "])");
      continue;
    }
    if (bs[0] == 0 || bs[1] == 0 || bs[2] == 0) {
      check.report(where(ref) + ": blocks shape " + shape_text(bs) + " has a zero dimension");
      continue;
    }
    expert_pair pair;
    pair.base = base;
    pair.layer = layer;
    pair.proj = ends_with(base, "down_proj") ? projection::down : projection::gate_up;
    pair.blocks = ref;
    pair.scales = *scales;
    pair.experts = bs[0];
    pair.rows = bs[1];
    pair.groups = bs[2];
    if (config) {
      const std::uint64_t in = pair.in_features();
      const std::uint64_t want =
          pair.proj == projection::down ? config->intermediate_size : config->hidden_size;
      if (want != 0 && in != want && in != config->hidden_size && in != config->intermediate_size) {
        check.report(where(ref) + ": groups * 32 = " + std::to_string(in) +
                     " matches neither hidden_size " + std::to_string(config->hidden_size) +
                     " nor intermediate_size " + std::to_string(config->intermediate_size) +
                     " of config.json");
        ok = false;
      }
      if (config->num_local_experts != 0 && pair.experts != config->num_local_experts) {
        check.report(where(ref) + ": " + std::to_string(pair.experts) +
                     " experts, but config.json says num_local_experts = " +
                     std::to_string(config->num_local_experts));
        ok = false;
      }
    }
    if (!ok) continue;
    map.quantized_bytes += pair.quantized_bytes();
    group.pairs.push_back(std::move(pair));
  }
  for (auto& [layer, group] : groups) {
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
