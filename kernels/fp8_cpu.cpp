#include "kernels/fp8_cpu.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/arith.hpp"
#include "kernels/cpu_team.hpp"
#include "kernels/error.hpp"
#include "kernels/fp8_cpu_detail.hpp"

namespace umload::fp8::cpu {

namespace detail {

namespace {

// Output may sit at any byte offset: stores go through memcpy.
template <typename Out>
inline void store(Out* dst, Out value) {
  std::memcpy(dst, &value, sizeof(Out));
}

template <typename Out>
inline Out decode_one(unsigned code, float scale) {
  if constexpr (sizeof(Out) == 2)
    return decode_bf16(code, scale);
  else
    return decode_f32(code, scale);
}

// The results of every code under each block's scale of one scale row, built when a row starts a
// new scale row: the decode of a value is then one load.
template <typename Out>
class block_tables {
 public:
  const Out* for_row(const decode_job& job, std::uint64_t row) {
    const block_geometry& g = job.geometry;
    const std::uint64_t scale_row = row / g.rows * g.scale_rows() + row % g.rows / g.block_rows;
    if (scale_row != current_) {
      tables_.resize(g.scale_cols() * 256);
      for (std::uint64_t b = 0; b < g.scale_cols(); ++b) {
        const float scale = scale_at(job.scales, scale_row * g.scale_cols() + b);
        for (unsigned code = 0; code < 256; ++code)
          tables_[b * 256 + code] = decode_one<Out>(code, scale);
      }
      current_ = scale_row;
    }
    return tables_.data();
  }

 private:
  std::vector<Out> tables_;
  std::uint64_t current_ = ~std::uint64_t{0};
};

// Tables pay off where a block holds many values per code: 128 x 128 blocks reuse each entry 64
// times. Narrow or small blocks decode value by value.
inline bool tables_pay_off(const block_geometry& g) {
  return g.block_cols >= 32 && g.block_rows * g.block_cols >= 4096;
}

template <typename Out>
void portable(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end,
              piece_options) {
  const std::uint64_t cols = job.geometry.cols;
  Out* out = static_cast<Out*>(job.out);
  if (tables_pay_off(job.geometry)) {
    block_tables<Out> tables;
    const std::uint64_t width = job.geometry.block_cols;
    for (std::uint64_t row = row_begin; row < row_end; ++row) {
      const Out* t = tables.for_row(job, row);
      const std::uint8_t* codes = job.codes + row * cols;
      Out* dst = out + row * cols;
      for (std::uint64_t c0 = 0; c0 < cols; c0 += width, t += 256) {
        const std::uint64_t c1 = std::min(cols, c0 + width);
        for (std::uint64_t c = c0; c < c1; ++c) store<Out>(dst + c, t[codes[c]]);
      }
    }
    return;
  }
  row_scales scales;
  for (std::uint64_t row = row_begin; row < row_end; ++row) {
    const float* s = scales.for_row(job, row);
    const std::uint8_t* codes = job.codes + row * cols;
    Out* dst = out + row * cols;
    for (std::uint64_t c = 0; c < cols; ++c) store<Out>(dst + c, decode_one<Out>(codes[c], s[c]));
  }
}

}  // namespace

rows_kernel portable_rows() { return by_dtype<portable<std::uint16_t>, portable<std::uint32_t>>(); }

namespace {

rows_kernel kernel_for(isa path) {
  switch (path) {
    case isa::avx512: return avx512_rows();
    case isa::avx2: return avx2_rows();
    default: return portable_rows();
  }
}

void check(const decode_job& job, isa path) {
  const auto supported = umload::cpu::supported_isas();
  if (std::find(supported.begin(), supported.end(), path) == supported.end())
    throw usage_error("fp8 decode path '" + std::string(umload::cpu::to_string(path)) +
                      "' is not supported by this CPU");
  if (!job.geometry.valid())
    throw usage_error("fp8 decode: block size " + std::to_string(job.geometry.block_rows) + "x" +
                      std::to_string(job.geometry.block_cols) + " has a zero side");
  if (job.dtype != output_dtype::bf16 && job.dtype != output_dtype::f32)
    throw usage_error("fp8 decode: output dtype must be bf16 or f32, got " +
                      std::string(to_string(job.dtype)));
}

void run_rows(const decode_job& job, isa path, std::uint64_t begin, std::uint64_t end,
              piece_options options) {
  if (path == isa::scalar) {
    const std::uint64_t cols = job.geometry.cols;
    for (std::uint64_t row = begin; row < end; ++row) {
      const std::uint64_t m = row / job.geometry.rows, r = row % job.geometry.rows;
      for (std::uint64_t c = 0; c < cols; ++c) {
        const float scale = scale_at(job.scales, job.geometry.scale_index(m, r, c));
        const unsigned code = job.codes[row * cols + c];
        if (job.dtype == output_dtype::bf16)
          store<std::uint16_t>(static_cast<std::uint16_t*>(job.out) + row * cols + c,
                               decode_bf16(code, scale));
        else
          store<std::uint32_t>(static_cast<std::uint32_t*>(job.out) + row * cols + c,
                               decode_f32(code, scale));
      }
    }
    return;
  }
  kernel_for(path)(job, begin, end, options);
}

piece_options options_for(const decode_job& job) {
  return piece_options{job.out_bytes() >= stream_threshold_bytes};
}

}  // namespace

}  // namespace detail

void decode_scalar(const decode_job& job) {
  const detail::exact_float_mode mode;
  detail::check(job, isa::scalar);
  detail::run_rows(job, isa::scalar, 0, job.geometry.total_rows(), {});
}

void decode_rows(const decode_job& job, isa path, std::uint64_t row_begin, std::uint64_t row_end) {
  detail::check(job, path);
  if (row_begin > row_end || row_end > job.geometry.total_rows())
    throw usage_error("fp8 decode: rows [" + std::to_string(row_begin) + ", " +
                      std::to_string(row_end) + ") outside the job's " +
                      std::to_string(job.geometry.total_rows()) + " rows");
  if (row_begin == row_end || job.geometry.cols == 0) return;
  const detail::exact_float_mode mode;
  detail::run_rows(job, path, row_begin, row_end, detail::options_for(job));
}

void decode(const decode_job& job, isa path, int threads, const team_hooks& hooks) {
  detail::check(job, path);
  if (threads < 0)
    throw usage_error("fp8 decode threads must be >= 0 (0: all available), got " +
                      std::to_string(threads));
  if (job.values() == 0) return;
  const int workers = path == isa::scalar ? 1 : threads > 0 ? threads : omp_get_max_threads();
  const std::uint64_t rows = job.geometry.total_rows();
  const detail::piece_options options = detail::options_for(job);
  // Enough pieces per thread to even out a shared machine, each still large (a 7168 x 2048
  // expert gives 16 pieces of 448 rows, 900 KiB of output each, on 2 threads), handed out
  // dynamically because the cores may be shared with other work.
  const std::uint64_t target = static_cast<std::uint64_t>(workers) * 8;
  const std::uint64_t per_piece = std::max<std::uint64_t>(1, ceil_div(rows, target));
  // Each thread's share runs in the exact float mode.
  umload::cpu::detail::parallel_pieces<detail::exact_float_mode>(
      ceil_div(rows, per_piece), workers, hooks, [&](std::uint64_t i) {
        const std::uint64_t begin = i * per_piece;
        detail::run_rows(job, path, begin, std::min(rows, begin + per_piece), options);
      });
}

}  // namespace umload::fp8::cpu
