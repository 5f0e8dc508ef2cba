// Inputs and oracle outputs for the CUDA tests: random codes, scales that run through all 256
// bytes, and cpu::decode_scalar's result for the same job.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_decode.hpp"
#include "kernels/decode_job.hpp"
#include "src/backend.hpp"

namespace umload::test {

struct mxfp4_shape {
  std::uint64_t experts, rows, groups;
  std::uint64_t blocks() const { return experts * rows * groups; }
  std::uint64_t values() const { return blocks() * 32; }
  std::string name() const {
    return std::to_string(experts) + "x" + std::to_string(rows) + "x" + std::to_string(groups);
  }
};

struct mxfp4_data {
  std::vector<std::uint8_t> blocks;
  std::vector<std::uint8_t> scales;
};

// Every scale byte appears once per 256 blocks (shuffled); codes are uniform random.
inline mxfp4_data random_data(const mxfp4_shape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  mxfp4_data d;
  d.blocks.resize(s.blocks() * 16);
  d.scales.resize(s.blocks());
  for (auto& b : d.blocks) b = static_cast<std::uint8_t>(rng());
  std::vector<std::uint8_t> all(256);
  for (unsigned i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
  for (std::uint64_t i = 0; i < s.blocks(); ++i) {
    if (i % 256 == 0) std::shuffle(all.begin(), all.end(), rng);
    d.scales[i] = all[i % 256];
  }
  return d;
}

// Realistic scales (near 127) and a few edge blocks: every byte value of codes, scale 0, 254, 255.
inline mxfp4_data clustered_data(const mxfp4_shape& s, std::uint64_t seed) {
  mxfp4_data d = random_data(s, seed);
  std::mt19937_64 rng(seed ^ 0x5bd1e995u);
  for (auto& sc : d.scales) sc = static_cast<std::uint8_t>(118 + rng() % 12);
  const std::uint8_t edge[] = {0, 1, 253, 254, 255};
  for (std::size_t i = 0; i < sizeof(edge) && i < d.scales.size(); ++i)
    d.scales[i * 7 % d.scales.size()] = edge[i];
  for (std::size_t i = 0; i < 256 && i < d.blocks.size(); ++i)
    d.blocks[i] = static_cast<std::uint8_t>(i);
  return d;
}

inline decode_job job_for(const mxfp4_shape& s, layout order, output_dtype dtype) {
  decode_job job;
  job.experts = s.experts;
  job.rows = s.rows;
  job.groups = s.groups;
  job.order = order;
  job.dtype = dtype;
  return job;
}

// The oracle's output bytes for `data` (blocks and scales from the given pointers).
inline std::vector<std::uint8_t> oracle(decode_job job, const std::uint8_t* blocks,
                                        const std::uint8_t* scales) {
  std::vector<std::uint8_t> out(job.out_bytes());
  job.blocks = blocks;
  job.scales = scales;
  job.out = out.data();
  cpu::decode_scalar(job);
  return out;
}

// Index of the first differing element, or -1.
inline std::int64_t first_difference(const std::vector<std::uint8_t>& a,
                                     const std::vector<std::uint8_t>& b, unsigned element) {
  if (a.size() != b.size()) return 0;
  const auto it = std::mismatch(a.begin(), a.end(), b.begin());
  if (it.first == a.end()) return -1;
  return (it.first - a.begin()) / element;
}

// One decode item of `job`'s shape staged in `slot` as the pipeline stages it (blocks, then
// scales `scales_at` bytes in), writing to `out`.
inline staged_item staged_decode(decode_job job, const mxfp4_data& d, std::byte* slot,
                                 std::byte* out, std::size_t scales_at) {
  std::memcpy(slot, d.blocks.data(), job.block_bytes());
  std::memcpy(slot + scales_at, d.scales.data(), job.scale_bytes());
  job.blocks = reinterpret_cast<const std::uint8_t*>(slot);
  job.scales = reinterpret_cast<const std::uint8_t*>(slot + scales_at);
  job.out = out;
  staged_item item;
  item.what = staged_item::kind::decode;
  item.staged = slot;
  item.staged_bytes = job.block_bytes() + job.scale_bytes();
  item.job = job;
  item.destination = out;
  return item;
}

inline std::uint64_t fresh_seed() {
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) | device();
}

}  // namespace umload::test
