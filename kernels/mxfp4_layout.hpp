// How one MXFP4 weight is stored: the one definition of which stored tensors form it (the
// `_blocks`/`_scales` pairing), of the shapes the two must have and of the shape it decodes to.
// Pure functions of names and shapes, below platform/ and src/ so that the scheme (src/schemes/
// mxfp4.cpp) and the derivation of outputs (platform/outputs.cpp) read the same rule.
//
//   if (auto p = umload::mxfp4::part_of("model.layers.0.mlp.experts.down_proj_blocks"))
//     ... p->base == "model.layers.0.mlp.experts.down_proj", p->kind == part_kind::blocks
//   umload::mxfp4::part_name(p->base, part_kind::scales);   // "..._scales"
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/mxfp4.hpp"
#include "kernels/vocabulary.hpp"

namespace umload::mxfp4 {

// The payload (packed E2M1 codes) and the scales (E8M0 bytes) of one weight.
enum class part_kind : std::uint8_t { blocks, scales };

inline constexpr std::string_view blocks_suffix = "_blocks";
inline constexpr std::string_view scales_suffix = "_scales";

constexpr std::string_view suffix_of(part_kind k) {
  return k == part_kind::blocks ? blocks_suffix : scales_suffix;
}

struct stored_part {
  std::string_view base;  // the logical weight's name: the stored name less its suffix
  part_kind kind = part_kind::blocks;
};

// The weight a stored tensor named `name` is a part of; nullopt when the name is no part's.
constexpr std::optional<stored_part> part_of(std::string_view name) {
  for (const part_kind k : {part_kind::blocks, part_kind::scales}) {
    const std::string_view suffix = suffix_of(k);
    if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix)
      return stored_part{name.substr(0, name.size() - suffix.size()), k};
  }
  return std::nullopt;
}

// The stored name of a weight's part: part_name("x", part_kind::scales) == "x_scales".
inline std::string part_name(std::string_view base, part_kind k) {
  return std::string(base) + std::string(suffix_of(k));
}

// Blocks [E, rows, G, 16] and scales [E, rows, G], none of E, rows, G zero: one weight of E
// experts, each decoding to rows x G*32 values.
inline bool is_pair(const std::vector<std::uint64_t>& blocks,
                    const std::vector<std::uint64_t>& scales) {
  return blocks.size() == 4 && blocks[3] == static_cast<std::uint64_t>(block_bytes) &&
         scales.size() == 3 && scales[0] == blocks[0] && scales[1] == blocks[1] &&
         scales[2] == blocks[2] && blocks[0] > 0 && blocks[1] > 0 && blocks[2] > 0;
}

// One expert's geometry, from the blocks' shape (is_pair holds).
inline expert_geometry geometry_of(const std::vector<std::uint64_t>& blocks) {
  return {blocks[1], blocks[2]};
}

// The decoded shape of `experts` experts: hf [E, G*32, rows], native [E, rows, G*32].
inline std::vector<std::uint64_t> decoded_shape(std::uint64_t experts, const expert_geometry& g,
                                                umload::layout l) {
  return l == umload::layout::hf ? std::vector<std::uint64_t>{experts, g.in_features(), g.rows}
                                 : std::vector<std::uint64_t>{experts, g.rows, g.in_features()};
}

}  // namespace umload::mxfp4
