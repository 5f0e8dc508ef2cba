#include "src/synth.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kernels/error.hpp"
#include "src/file.hpp"
#include "src/safetensors.hpp"

namespace umload {

namespace fs = std::filesystem;

namespace {

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::uint64_t key_hash(std::uint64_t seed, const std::string& key) {
  std::uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return splitmix(h);
}

enum class fill_kind { bf16, blocks, scales, edge_scales };

struct synth_tensor {
  std::string name;
  dtype type;
  std::vector<std::uint64_t> shape;
  fill_kind fill;
  std::uint64_t bytes() const {
    std::uint64_t n = type == dtype::BF16 ? 2 : 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// Word w of a tensor's content, by kind. BF16 values are finite and of moderate size; scales
// sit in a realistic band (2^-9 .. 2^2) unless edge scales are asked for.
std::uint64_t content_word(fill_kind kind, std::uint64_t base, std::uint64_t w) {
  const std::uint64_t r = splitmix(base + w);
  switch (kind) {
    case fill_kind::blocks: return r;
    case fill_kind::bf16: {
      std::uint64_t out = 0;
      for (int i = 0; i < 4; ++i) {
        const std::uint64_t bits = (r >> (16 * i)) & 0xFFFF;
        const std::uint64_t value = (bits & 0x807F) | ((0x78 + ((bits >> 7) & 0x7)) << 7);
        out |= value << (16 * i);
      }
      return out;
    }
    case fill_kind::scales: {
      std::uint64_t out = 0;
      for (int i = 0; i < 8; ++i) out |= (118 + ((r >> (8 * i)) & 0xFF) % 12) << (8 * i);
      return out;
    }
    case fill_kind::edge_scales: {
      std::uint64_t out = 0;
      for (int i = 0; i < 8; ++i) out |= ((w * 8 + i) % 255) << (8 * i);
      return out;
    }
  }
  return r;
}

void fill_range(void* dst, std::uint64_t bytes, fill_kind kind, std::uint64_t base,
                std::uint64_t first_byte) {
  auto* out = static_cast<unsigned char*>(dst);
  std::uint64_t pos = first_byte;
  const std::uint64_t end = first_byte + bytes;
  while (pos < end) {
    const std::uint64_t w = pos / 8;
    const std::uint64_t word = content_word(kind, base, w);
    const std::uint64_t from = pos % 8;
    const std::uint64_t n = std::min<std::uint64_t>(8 - from, end - pos);
    for (std::uint64_t i = 0; i < n; ++i)
      out[pos - first_byte + i] = (word >> (8 * (from + i))) & 0xFF;
    pos += n;
  }
}

std::vector<synth_tensor> model_tensors(const synth_shape& s, bool edge) {
  std::vector<synth_tensor> t;
  const auto bf16 = [&](std::string name, std::vector<std::uint64_t> shape) {
    t.push_back({std::move(name), dtype::BF16, std::move(shape), fill_kind::bf16});
  };
  bf16("model.embed_tokens.weight", {s.vocab, s.hidden});
  for (std::uint64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    bf16(p + "input_layernorm.weight", {s.hidden});
    bf16(p + "post_attention_layernorm.weight", {s.hidden});
    bf16(p + "self_attn.q_proj.weight", {s.heads * s.head_dim, s.hidden});
    bf16(p + "self_attn.q_proj.bias", {s.heads * s.head_dim});
    bf16(p + "self_attn.k_proj.weight", {s.kv_heads * s.head_dim, s.hidden});
    bf16(p + "self_attn.k_proj.bias", {s.kv_heads * s.head_dim});
    bf16(p + "self_attn.v_proj.weight", {s.kv_heads * s.head_dim, s.hidden});
    bf16(p + "self_attn.v_proj.bias", {s.kv_heads * s.head_dim});
    bf16(p + "self_attn.o_proj.weight", {s.hidden, s.heads * s.head_dim});
    bf16(p + "self_attn.o_proj.bias", {s.hidden});
    bf16(p + "self_attn.sinks", {s.heads});
    bf16(p + "mlp.router.weight", {s.experts, s.hidden});
    bf16(p + "mlp.router.bias", {s.experts});
    const std::string e = p + "mlp.experts.";
    const fill_kind scales = edge ? fill_kind::edge_scales : fill_kind::scales;
    bf16(e + "gate_up_proj_bias", {s.experts, 2 * s.intermediate});
    t.push_back({e + "gate_up_proj_blocks",
                 dtype::U8,
                 {s.experts, 2 * s.intermediate, s.hidden / 32, 16},
                 fill_kind::blocks});
    t.push_back({e + "gate_up_proj_scales",
                 dtype::U8,
                 {s.experts, 2 * s.intermediate, s.hidden / 32},
                 scales});
    bf16(e + "down_proj_bias", {s.experts, s.hidden});
    t.push_back({e + "down_proj_blocks",
                 dtype::U8,
                 {s.experts, s.hidden, s.intermediate / 32, 16},
                 fill_kind::blocks});
    t.push_back(
        {e + "down_proj_scales", dtype::U8, {s.experts, s.hidden, s.intermediate / 32}, scales});
  }
  bf16("model.norm.weight", {s.hidden});
  bf16("lm_head.weight", {s.vocab, s.hidden});
  return t;
}

// The official special-token ids; a smaller vocabulary gets its last ids instead (transformers
// refuses a pad id outside the vocabulary).
std::uint64_t token_id(const synth_shape& s, std::uint64_t official) {
  return s.vocab > 200002 ? official : s.vocab - 1 - (200002 - official) % s.vocab;
}

nlohmann::json make_config(const synth_shape& s) {
  nlohmann::json layer_types = nlohmann::json::array();
  for (std::uint64_t l = 0; l < s.layers; ++l)
    layer_types.push_back(l % 2 == 0 ? "sliding_attention" : "full_attention");
  return {{"architectures", {"GptOssForCausalLM"}},
          {"model_type", "gpt_oss"},
          {"attention_bias", true},
          {"attention_dropout", 0.0},
          {"eos_token_id", token_id(s, 200002)},
          {"pad_token_id", token_id(s, 199999)},
          {"experts_per_token", std::min<std::uint64_t>(4, s.experts)},
          {"num_experts_per_tok", std::min<std::uint64_t>(4, s.experts)},
          {"head_dim", s.head_dim},
          {"hidden_act", "silu"},
          {"hidden_size", s.hidden},
          {"initial_context_length", 4096},
          {"initializer_range", 0.02},
          {"intermediate_size", s.intermediate},
          {"layer_types", layer_types},
          {"max_position_embeddings", 131072},
          {"num_attention_heads", s.heads},
          {"num_hidden_layers", s.layers},
          {"num_key_value_heads", s.kv_heads},
          {"num_local_experts", s.experts},
          {"output_router_logits", false},
          {"rms_norm_eps", 1e-05},
          {"rope_scaling",
           {{"beta_fast", 32.0},
            {"beta_slow", 1.0},
            {"factor", 32.0},
            {"original_max_position_embeddings", 4096},
            {"rope_type", "yarn"},
            {"truncate", false}}},
          {"rope_theta", 150000},
          {"router_aux_loss_coef", 0.9},
          {"sliding_window", 128},
          {"swiglu_limit", 7.0},
          {"tie_word_embeddings", false},
          {"transformers_version", "4.55.0.dev0"},
          {"use_cache", true},
          {"vocab_size", s.vocab},
          {"quantization_config",
           {{"quant_method", "mxfp4"},
            {"modules_to_not_convert",
             {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
              "lm_head"}}}}};
}

}  // namespace

void synth_fill(void* dst, std::uint64_t bytes, std::uint64_t seed, const std::string& key,
                std::uint64_t first_byte) {
  fill_range(dst, bytes, fill_kind::blocks, key_hash(seed, key), first_byte);
}

synth_shape synth_preset(const synth_options& o) {
  synth_shape s{};
  if (o.preset == "tiny")
    s = {2, 4, 64, 64, 4, 2, 16, 256};
  else if (o.preset == "gpt-oss-20b")
    s = {24, 32, 2880, 2880, 64, 8, 64, 201088};
  else if (o.preset == "gpt-oss-120b")
    s = {36, 128, 2880, 2880, 64, 8, 64, 201088};
  else
    throw usage_error("unknown preset '" + o.preset +
                      "' (expected tiny, gpt-oss-20b or gpt-oss-120b)");
  if (o.layers >= 0) s.layers = static_cast<std::uint64_t>(o.layers);
  if (o.experts > 0) s.experts = static_cast<std::uint64_t>(o.experts);
  if (o.hidden) s.hidden = o.hidden;
  if (o.intermediate) s.intermediate = o.intermediate;
  if (o.vocab) s.vocab = o.vocab;
  if (s.hidden % 32 || s.intermediate % 32 || s.hidden == 0 || s.intermediate == 0)
    throw usage_error("synth: hidden and intermediate sizes must be positive multiples of 32");
  if (o.layers > 1000 || o.experts > 4096)
    throw usage_error("synth: --layers at most 1000 and --experts at most 4096");
  return s;
}

synth_report synthesize(const synth_options& o) {
  if (o.out.empty()) throw usage_error("synth needs --out DIR");
  const synth_shape shape = synth_preset(o);
  const auto tensors = model_tensors(shape, o.edge_scales);
  std::uint64_t total = 0;
  for (const auto& t : tensors) total += t.bytes();

  // The official 20b has 3 shards and the 120b 15 (about 4.6 GB each); tiny gets 3 so that
  // every test sees pairs straddling shards.
  std::size_t count =
      o.shards > 0 ? static_cast<std::size_t>(o.shards)
      : o.preset == "tiny"
          ? 3
          : std::max<std::size_t>(1, (total + (4600ull << 20) - 1) / (4600ull << 20));
  count = std::min(count, tensors.size());
  // Cut after a `_blocks` tensor once a shard's share is reached, so its scales open the next
  // shard: pairs straddle shards as in the official files.
  std::vector<std::vector<std::size_t>> shards(1);
  std::uint64_t used = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    shards.back().push_back(i);
    used += tensors[i].bytes();
    const bool is_blocks = tensors[i].name.ends_with("_blocks");
    if (shards.size() < count && used * count >= total * shards.size() && is_blocks)
      shards.emplace_back();
  }
  if (shards.back().empty()) shards.pop_back();

  fs::create_directories(o.out);
  nlohmann::json weight_map = nlohmann::json::object();
  std::vector<unsigned char> buffer(8ull << 20);
  for (std::size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s, shards.size() - 1);
    auto order = shards[s];
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      const unsigned wa = element_bits(tensors[a].type), wb = element_bits(tensors[b].type);
      return wa != wb ? wa > wb : tensors[a].name < tensors[b].name;
    });
    std::vector<tensor_layout> layouts;
    for (std::size_t i : order) {
      layouts.push_back({tensors[i].name, tensors[i].type, tensors[i].shape, tensors[i].bytes()});
      weight_map[tensors[i].name] = name;
    }
    const std::string header = make_safetensors_header(layouts, {{"format", "pt"}});
    const fs::path path = o.out / name;
    file f = file::create(path);
    f.write_exact(header.data(), header.size(), 0);
    std::uint64_t at = header.size();
    for (std::size_t i : order) {
      const auto& t = tensors[i];
      if (!o.holes) {
        const std::uint64_t base = key_hash(o.seed, t.name);
        for (std::uint64_t done = 0; done < t.bytes(); done += buffer.size()) {
          const std::uint64_t n = std::min<std::uint64_t>(buffer.size(), t.bytes() - done);
          fill_range(buffer.data(), n, t.fill, base, done);
          f.write_exact(buffer.data(), n, at + done);
        }
      }
      at += t.bytes();
    }
    if (o.holes && ::ftruncate(f.fd(), static_cast<off_t>(at)) != 0)
      throw io_error("cannot extend " + path.string(), errno);
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(o.out / "model.safetensors.index.json", index.dump(2) + "\n");
  write_file_atomic(o.out / "config.json", make_config(shape).dump(2) + "\n");
  const nlohmann::json generation = {
      {"bos_token_id", token_id(shape, 199998)},
      {"eos_token_id", {token_id(shape, 200002), token_id(shape, 199999)}},
      {"pad_token_id", token_id(shape, 199999)}};
  write_file_atomic(o.out / "generation_config.json", generation.dump(2) + "\n");
  write_file_atomic(o.out / "tokenizer_config.json",
                    "{\n  \"model_max_length\": 131072,\n  \"tokenizer_class\": "
                    "\"PreTrainedTokenizerFast\"\n}\n");
  return {tensors.size(), shards.size(), total, o.out};
}

}  // namespace umload
