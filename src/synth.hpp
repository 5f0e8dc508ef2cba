// Synthetic GPT-OSS checkpoints: the exact layout of the official ones (names, dtypes, shapes,
// 0-based shard names, pairs that straddle shards, index, config) filled from a seeded generator.
// The real weights cannot be downloaded where umload is tested, so demos, tests and benchmarks
// use these.
//
//   umload::synth_options o;  o.preset = "gpt-oss-20b";  o.layers = 2;  o.out = "/tmp/ckpt";
//   umload::synthesize(o);
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace umload {

struct synth_shape {
  std::uint64_t layers, experts, hidden, intermediate, heads, kv_heads, head_dim, vocab;
};

struct synth_options {
  std::string preset = "tiny";     // tiny | gpt-oss-20b | gpt-oss-120b
  int layers = -1;                 // override the preset's layer count
  int experts = -1;                // override the preset's expert count
  std::uint64_t hidden = 0;        // override hidden_size (a multiple of 32; 0: the preset's)
  std::uint64_t intermediate = 0;  // override intermediate_size (a multiple of 32)
  std::uint64_t vocab = 0;         // override vocab_size
  std::uint64_t seed = 1;
  bool edge_scales = false;  // scales cycle through every byte 0..254
  bool holes = false;        // write headers only; data stay holes (sparse files)
  int shards = 0;            // 0: the preset's count
  std::filesystem::path out;
};

struct synth_report {
  std::size_t tensors = 0;
  std::size_t shards = 0;
  std::uint64_t tensor_bytes = 0;
  std::filesystem::path directory;
};

// The preset's shape with overrides applied; throws usage_error for an unknown preset.
synth_shape synth_preset(const synth_options& options);

synth_report synthesize(const synth_options& options);

// Deterministic fill for tests that build their own files: `bytes` bytes derived from (seed, key).
void synth_fill(void* dst, std::uint64_t bytes, std::uint64_t seed, const std::string& key,
                std::uint64_t first_byte = 0);

}  // namespace umload
