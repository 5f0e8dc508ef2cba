// Internal to the CPU kernels: the per-path entry points the dispatcher calls, each decoding the
// row tiles [tile_begin, tile_end) of a job. A tile is tile_rows consecutive rows of one expert
// (the last tile of an expert may be shorter); tiles write disjoint output, so threads split them.
#pragma once

#include <cstdint>

#include "kernels/decode_job.hpp"
#include "kernels/mxfp4.hpp"

namespace umload::cpu::detail {

inline constexpr std::uint64_t tile_rows = 32;

inline std::uint64_t tiles_per_expert(const decode_job& job) {
  return (job.rows + tile_rows - 1) / tile_rows;
}

// The decode table, built once from mxfp4::decode_bf16.
const mxfp4::decode_table& table();

void decode_tiles_portable(const decode_job& job, std::uint64_t tile_begin, std::uint64_t tile_end);
void decode_tiles_avx2(const decode_job& job, std::uint64_t tile_begin, std::uint64_t tile_end);
void decode_tiles_avx512(const decode_job& job, std::uint64_t tile_begin, std::uint64_t tile_end);

}  // namespace umload::cpu::detail
