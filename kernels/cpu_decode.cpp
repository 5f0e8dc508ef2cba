#include "kernels/cpu_decode.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu_decode_detail.hpp"
#include "kernels/error.hpp"
#include "kernels/mxfp4.hpp"

namespace umload::cpu {

namespace detail {

const mxfp4::decode_table& table() {
  static const mxfp4::decode_table built = [] {
    mxfp4::decode_table t{};
    mxfp4::fill_decode_table(t);
    return t;
  }();
  return built;
}

namespace {

// One block of 32 values from its table row, in the checkpoint's order.
template <typename Out>
void decode_block(const std::uint16_t* row, const std::uint8_t* block, Out* out) {
  for (int i = 0; i < mxfp4::block_bytes; ++i) {
    const std::uint8_t b = block[i];
    if constexpr (sizeof(Out) == 2) {
      out[2 * i] = row[b & 0xF];
      out[2 * i + 1] = row[b >> 4];
    } else {
      out[2 * i] = static_cast<std::uint32_t>(row[b & 0xF]) << 16;
      out[2 * i + 1] = static_cast<std::uint32_t>(row[b >> 4]) << 16;
    }
  }
}

template <typename Out>
void portable_tiles(const decode_job& job, std::uint64_t tile_begin, std::uint64_t tile_end) {
  const auto& t = table();
  const std::uint64_t per_expert = tiles_per_expert(job);
  const std::uint64_t in = job.groups * mxfp4::block_values;
  Out* out = static_cast<Out*>(job.out);
  Out tile[tile_rows][mxfp4::block_values];
  for (std::uint64_t tile_index = tile_begin; tile_index < tile_end; ++tile_index) {
    const std::uint64_t e = tile_index / per_expert;
    const std::uint64_t r0 = (tile_index % per_expert) * tile_rows;
    const std::uint64_t nrows = std::min(tile_rows, job.rows - r0);
    const std::uint64_t first_block = (e * job.rows + r0) * job.groups;
    if (job.order == layout::native) {
      for (std::uint64_t r = 0; r < nrows; ++r)
        for (std::uint64_t g = 0; g < job.groups; ++g) {
          const std::uint64_t b = first_block + r * job.groups + g;
          decode_block(t.bf16[job.scales[b]], job.blocks + b * mxfp4::block_bytes,
                       out + (e * job.rows + r0 + r) * in + g * mxfp4::block_values);
        }
      continue;
    }
    // hf: decode a tile of rows x 32 inputs, then write it transposed, one output row
    // (input column k) of nrows contiguous values at a time.
    Out* expert_out = out + e * in * job.rows;
    for (std::uint64_t g = 0; g < job.groups; ++g) {
      for (std::uint64_t r = 0; r < nrows; ++r) {
        const std::uint64_t b = first_block + r * job.groups + g;
        decode_block(t.bf16[job.scales[b]], job.blocks + b * mxfp4::block_bytes, tile[r]);
      }
      for (int j = 0; j < mxfp4::block_values; ++j) {
        Out* dst = expert_out + (g * mxfp4::block_values + j) * job.rows + r0;
        for (std::uint64_t r = 0; r < nrows; ++r) dst[r] = tile[r][j];
      }
    }
  }
}

}  // namespace

void decode_tiles_portable(const decode_job& job, std::uint64_t tile_begin,
                           std::uint64_t tile_end) {
  if (job.dtype == out_dtype::bf16)
    portable_tiles<std::uint16_t>(job, tile_begin, tile_end);
  else
    portable_tiles<std::uint32_t>(job, tile_begin, tile_end);
}

}  // namespace detail

std::string_view to_string(isa i) {
  switch (i) {
    case isa::scalar: return "scalar";
    case isa::portable: return "portable";
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
  }
  return "unknown";
}

bool parse_isa(std::string_view text, isa& out) {
  for (isa i : {isa::scalar, isa::portable, isa::avx2, isa::avx512})
    if (text == to_string(i)) {
      out = i;
      return true;
    }
  return false;
}

std::vector<isa> supported_isas() {
  std::vector<isa> paths{isa::scalar, isa::portable};
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) paths.push_back(isa::avx2);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    paths.push_back(isa::avx512);
#endif
  return paths;
}

isa best_isa() { return supported_isas().back(); }

void decode_scalar(const decode_job& job) {
  const std::uint64_t in = job.groups * mxfp4::block_values;
  for (std::uint64_t e = 0; e < job.experts; ++e)
    for (std::uint64_t r = 0; r < job.rows; ++r)
      for (std::uint64_t k = 0; k < in; ++k) {
        const std::uint64_t b = (e * job.rows + r) * job.groups + k / mxfp4::block_values;
        const unsigned code = mxfp4::code_at(job.blocks + b * mxfp4::block_bytes,
                                             static_cast<unsigned>(k % mxfp4::block_values));
        const std::uint64_t index = job.order == layout::native ? (e * job.rows + r) * in + k
                                                                : (e * in + k) * job.rows + r;
        if (job.dtype == out_dtype::bf16)
          static_cast<std::uint16_t*>(job.out)[index] = mxfp4::decode_bf16(code, job.scales[b]);
        else
          static_cast<std::uint32_t*>(job.out)[index] = mxfp4::decode_f32(code, job.scales[b]);
      }
}

void decode(const decode_job& job, isa path, int threads) {
  const auto supported = supported_isas();
  if (std::find(supported.begin(), supported.end(), path) == supported.end())
    throw usage_error("decode path '" + std::string(to_string(path)) +
                      "' is not supported by this CPU");
  if (job.values() == 0) return;
  if (path == isa::scalar) {
    decode_scalar(job);
    return;
  }
  auto* run = path == isa::avx512 ? detail::decode_tiles_avx512
              : path == isa::avx2 ? detail::decode_tiles_avx2
                                  : detail::decode_tiles_portable;
  const std::int64_t tiles = static_cast<std::int64_t>(job.experts * detail::tiles_per_expert(job));
  const int workers = threads > 0 ? threads : omp_get_max_threads();
  // Contiguous chunks of tiles per thread keep each thread's writes sequential.
  const std::int64_t chunk = std::max<std::int64_t>(1, (tiles + workers * 4 - 1) / (workers * 4));
#pragma omp parallel for num_threads(workers) schedule(dynamic, 1)
  for (std::int64_t t0 = 0; t0 < tiles; t0 += chunk)
    run(job, static_cast<std::uint64_t>(t0), static_cast<std::uint64_t>(std::min(tiles, t0 + chunk)));
}

std::int64_t find_nan_scale(const std::uint8_t* scales, std::size_t count) {
  const void* hit = std::memchr(scales, mxfp4::nan_scale, count);
  return hit ? static_cast<const std::uint8_t*>(hit) - scales : -1;
}

}  // namespace umload::cpu
