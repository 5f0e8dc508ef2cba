#include "kernels/cpu_decode.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/arith.hpp"
#include "kernels/cpu_decode_detail.hpp"
#include "kernels/cpu_team.hpp"
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

const split_table& byte_tables() {
  static const split_table built = [] {
    split_table s{};
    const auto& t = table();
    for (int scale = 0; scale < 256; ++scale)
      for (int code = 0; code < 16; ++code) {
        s.low[scale][code] = static_cast<std::uint8_t>(t.bf16[scale][code] & 0xFF);
        s.high[scale][code] = static_cast<std::uint8_t>(t.bf16[scale][code] >> 8);
      }
    return s;
  }();
  return built;
}

namespace {

// Output may sit at any byte offset (a caller's buffer, a slice of a tensor): stores go through
// memcpy, which is defined for any alignment and compiles to the same plain move on x86 and Arm.
template <typename Out>
inline void store(Out* dst, Out value) {
  std::memcpy(dst, &value, sizeof(Out));
}

// One block of 32 values from its table row, in the checkpoint's order.
template <typename Out>
void decode_block(const std::uint16_t* row, const std::uint8_t* block, Out* out) {
  for (int i = 0; i < mxfp4::block_bytes; ++i) {
    const std::uint8_t b = block[i];
    if constexpr (sizeof(Out) == 2) {
      store<Out>(out + 2 * i, row[b & 0xF]);
      store<Out>(out + 2 * i + 1, row[b >> 4]);
    } else {
      store<Out>(out + 2 * i, static_cast<std::uint32_t>(row[b & 0xF]) << 16);
      store<Out>(out + 2 * i + 1, static_cast<std::uint32_t>(row[b >> 4]) << 16);
    }
  }
}

template <typename Out>
void portable_native(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end,
                     piece_options) {
  const auto& t = table();
  Out* out = static_cast<Out*>(job.out);
  const std::uint64_t in = job.groups * mxfp4::block_values;
  for (std::uint64_t row = row_begin; row < row_end; ++row)
    for (std::uint64_t g = 0; g < job.groups; ++g) {
      const std::uint64_t b = row * job.groups + g;
      decode_block(t.bf16[job.scales[b]], job.blocks + b * mxfp4::block_bytes,
                   out + row * in + g * mxfp4::block_values);
    }
}

// Decodes a tile of up to tile_rows rows x 32 inputs, then writes it transposed: one output row
// (input column k) of nrows contiguous values at a time.
template <typename Out>
void portable_hf(const decode_job& job, std::uint64_t e, std::uint64_t group_begin,
                 std::uint64_t group_end, std::uint64_t row_begin, std::uint64_t row_end,
                 piece_options) {
  const auto& t = table();
  Out tile[tile_rows][mxfp4::block_values];
  for (std::uint64_t g = group_begin; g < group_end; ++g) {
    Out* out = static_cast<Out*>(job.out) + (e * job.groups + g) * mxfp4::block_values * job.rows;
    for (std::uint64_t r0 = row_begin; r0 < row_end; r0 += tile_rows) {
      const std::uint64_t nrows = std::min(tile_rows, row_end - r0);
      for (std::uint64_t r = 0; r < nrows; ++r) {
        const std::uint64_t b = (e * job.rows + r0 + r) * job.groups + g;
        decode_block(t.bf16[job.scales[b]], job.blocks + b * mxfp4::block_bytes, tile[r]);
      }
      for (int j = 0; j < mxfp4::block_values; ++j) {
        Out* dst = out + j * job.rows + r0;
        for (std::uint64_t r = 0; r < nrows; ++r) store(dst + r, tile[r][j]);
      }
    }
  }
}

}  // namespace

path_kernels portable_kernels() {
  return {[](const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
            if (job.dtype == output_dtype::bf16)
              portable_native<std::uint16_t>(job, begin, end, o);
            else
              portable_native<std::uint32_t>(job, begin, end, o);
          },
          [](const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
             std::uint64_t group_end, std::uint64_t begin, std::uint64_t end, piece_options o) {
            if (job.dtype == output_dtype::bf16)
              portable_hf<std::uint16_t>(job, expert, group_begin, group_end, begin, end, o);
            else
              portable_hf<std::uint32_t>(job, expert, group_begin, group_end, begin, end, o);
          }};
}

namespace {

path_kernels kernels_for(isa path) {
  switch (path) {
    case isa::avx512: return avx512_kernels();
    case isa::avx2: return avx2_kernels();
    default: return portable_kernels();
  }
}

}  // namespace

void run(const decode_job& job, isa path, int threads, piece_options options,
         const team_hooks& hooks) {
  const path_kernels k = kernels_for(path);
  const int workers = threads > 0 ? threads : omp_get_max_threads();
  // Enough pieces per thread to even out a shared machine, each still large (a real expert
  // tensor gives thousands of pieces of hundreds of KiB).
  const std::uint64_t target = static_cast<std::uint64_t>(workers) * 8;
  if (job.order == layout::native) {
    const std::uint64_t rows = job.experts * job.rows;
    const std::uint64_t per_piece = std::max<std::uint64_t>(1, ceil_div(rows, target));
    parallel_pieces(ceil_div(rows, per_piece), workers, hooks, [&](std::uint64_t i) {
      k.native_rows(job, i * per_piece, std::min(rows, (i + 1) * per_piece), options);
    });
    return;
  }
  // hf: pieces of hf_piece_rows rows x all groups of one expert; groups are split too when that
  // leaves too few pieces for the threads (small jobs).
  const std::uint64_t row_pieces = ceil_div(job.rows, hf_piece_rows);
  const std::uint64_t group_splits =
      std::clamp<std::uint64_t>(ceil_div(target, job.experts * row_pieces), 1, job.groups);
  const std::uint64_t groups_per_piece = ceil_div(job.groups, group_splits);
  const std::uint64_t group_pieces = ceil_div(job.groups, groups_per_piece);
  parallel_pieces(job.experts * row_pieces * group_pieces, workers, hooks, [&](std::uint64_t i) {
    const std::uint64_t g0 = (i % group_pieces) * groups_per_piece;
    const std::uint64_t r0 = (i / group_pieces % row_pieces) * hf_piece_rows;
    const std::uint64_t e = i / group_pieces / row_pieces;
    k.hf_piece(job, e, g0, std::min(job.groups, g0 + groups_per_piece), r0,
               std::min(job.rows, r0 + hf_piece_rows), options);
  });
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
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
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
        const std::uint64_t index =
            job.order == layout::native ? (e * job.rows + r) * in + k : (e * in + k) * job.rows + r;
        if (job.dtype == output_dtype::bf16)
          detail::store<std::uint16_t>(static_cast<std::uint16_t*>(job.out) + index,
                                       mxfp4::decode_bf16(code, job.scales[b]));
        else
          detail::store<std::uint32_t>(static_cast<std::uint32_t*>(job.out) + index,
                                       mxfp4::decode_f32(code, job.scales[b]));
      }
}

void decode(const decode_job& job, isa path, int threads, const team_hooks& hooks) {
  const auto supported = supported_isas();
  if (std::find(supported.begin(), supported.end(), path) == supported.end())
    throw usage_error("decode path '" + std::string(to_string(path)) +
                      "' is not supported by this CPU");
  if (threads < 0)
    throw usage_error("decode threads must be >= 0 (0: all available), got " +
                      std::to_string(threads));
  if (job.values() == 0) return;
  if (path == isa::scalar) {
    const detail::hooked_share<> share(hooks);
    decode_scalar(job);
    return;
  }
  detail::run(job, path, threads,
              detail::piece_options{job.out_bytes() >= detail::stream_threshold_bytes}, hooks);
}

std::int64_t find_nan_scale(const std::uint8_t* scales, std::size_t count) {
  const void* hit = std::memchr(scales, mxfp4::nan_scale, count);
  return hit ? static_cast<const std::uint8_t*>(hit) - scales : -1;
}

}  // namespace umload::cpu
