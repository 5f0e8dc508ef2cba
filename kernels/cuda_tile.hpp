// The CUDA decode kernels' per-thread work and index math, written once as host-device functions.
//
// kernels/cuda_decode.cu launches these; tests/cuda/tile_math_test.cpp runs the very same
// functions on the host over every thread of every tile of a grid, with a sink that counts writes,
// so the index math is checked without a GPU. Nothing here includes a CUDA header.
//
// Decoding 8 codes at a time (decode_word): the decode table (split_table_row, 16 bytes per scale)
// holds the low and high bytes of mxfp4::decode_bf16(m, scale) for the 8 magnitudes m = 0..7, and
// byte permutes (__byte_perm on the GPU) pick them for 4 codes per instruction. A code's sign bit
// is ORed in as decode_bf16(8, s) ^ decode_bf16(0, s), which is 0x8000 for every scale except the
// NaN scale 255. Every value is therefore a decode_bf16 result; the tile-math test checks
// decode_word against decode_bf16 for every byte at every nibble position and every scale.
//
// Two kernels:
//   native [E, rows, G*32]: the output is the blocks' own order, so the work is a flat map; one
//     unit = 4 input bytes for bf16 (8 values) or 2 for f32 (4 values), always 16 output bytes, so
//     a warp's stores are one contiguous 512-byte run.
//   hf [E, G*32, rows]: a tile of 128 rows x 4 groups of one expert; each of 128 threads decodes
//   two
//     adjacent rows x two adjacent groups (four 16-byte loads, 32 contiguous bytes per row) into a
//     shared-memory tile laid out [k][row pair] (32-bit words of two rows), then the block writes
//     the tile as 16-byte chunks of consecutive rows: 128 k-rows of 256 (bf16) or 512 (f32)
//     contiguous bytes. Edge tiles and unaligned outputs fall back to element stores.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/arith.hpp"
#include "kernels/decode_job.hpp"
#include "kernels/mxfp4.hpp"

// Fixed-count loops over register arrays must unroll on the GPU, or the arrays go to local memory.
#if defined(__CUDA_ARCH__)
#define UMLOAD_UNROLL _Pragma("unroll")
#else
#define UMLOAD_UNROLL
#endif

namespace umload::cuda_tile {

// ---------------------------------------------------------------------------------------------
// Decoding through the split table.

// Bytes m of lo0:lo1 and hi0:hi1 are the low and high bytes of decode_bf16(m, scale), m = 0..7.
struct alignas(16) split_table_row {
  std::uint32_t lo0, lo1, hi0, hi1;
};

UMLOAD_HOST_DEVICE split_table_row make_split_table_row(unsigned scale) {
  split_table_row row{0, 0, 0, 0};
  for (unsigned m = 0; m < 8; ++m) {
    const std::uint32_t v = mxfp4::decode_bf16(m, scale);
    const unsigned shift = 8u * (m & 3u);
    if (m < 4) {
      row.lo0 |= (v & 0xFFu) << shift;
      row.hi0 |= (v >> 8) << shift;
    } else {
      row.lo1 |= (v & 0xFFu) << shift;
      row.hi1 |= (v >> 8) << shift;
    }
  }
  return row;
}

// Both halves' sign bits for codes 8..15 at this scale: 0x80008000, or 0 for the NaN scale.
UMLOAD_HOST_DEVICE std::uint32_t sign_mask(unsigned scale) {
  const std::uint32_t s = mxfp4::decode_bf16(8u, scale) ^ mxfp4::decode_bf16(0u, scale);
  return s | (s << 16);
}

// __byte_perm: result byte n is byte (s >> 4n) & 7 of the 8 bytes y:x (x is bytes 0..3).
UMLOAD_HOST_DEVICE std::uint32_t byte_perm(std::uint32_t x, std::uint32_t y, std::uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const std::uint64_t bytes = (static_cast<std::uint64_t>(y) << 32) | x;
  std::uint32_t r = 0;
  for (unsigned n = 0; n < 4; ++n) {
    const unsigned pick = (s >> (4 * n)) & 7u;
    r |= static_cast<std::uint32_t>((bytes >> (8 * pick)) & 0xFFu) << (8 * n);
  }
  return r;
#endif
}

// 8 codes (nibble i of `packed` is value i's code, low nibble first as in the checkpoint) to 8
// BF16 values: out[q] holds value 2q in its low half and value 2q + 1 in its high half.
UMLOAD_HOST_DEVICE void decode_word(const split_table_row& row, std::uint32_t signs,
                                    std::uint32_t packed, std::uint32_t out[4]) {
  const std::uint32_t sel_low = packed & 0x7777u;           // magnitudes of values 0..3
  const std::uint32_t sel_high = (packed >> 16) & 0x7777u;  // magnitudes of values 4..7
  const std::uint32_t lo_a = byte_perm(row.lo0, row.lo1, sel_low);
  const std::uint32_t hi_a = byte_perm(row.hi0, row.hi1, sel_low);
  const std::uint32_t lo_b = byte_perm(row.lo0, row.lo1, sel_high);
  const std::uint32_t hi_b = byte_perm(row.hi0, row.hi1, sel_high);
  // Code sign bits sit at bit 4i + 3; value 2q's goes to bit 15 of out[q], value 2q + 1's to 31.
  const std::uint32_t s = packed & 0x88888888u;
  out[0] = byte_perm(lo_a, hi_a, 0x5140u) |
           ((((s << 12) & 0x8000u) | ((s << 24) & 0x80000000u)) & signs);
  out[1] =
      byte_perm(lo_a, hi_a, 0x7362u) | ((((s << 4) & 0x8000u) | ((s << 16) & 0x80000000u)) & signs);
  out[2] =
      byte_perm(lo_b, hi_b, 0x5140u) | ((((s >> 4) & 0x8000u) | ((s << 8) & 0x80000000u)) & signs);
  out[3] = byte_perm(lo_b, hi_b, 0x7362u) | ((((s >> 12) & 0x8000u) | (s & 0x80000000u)) & signs);
}

// ---------------------------------------------------------------------------------------------
// Loads. `aligned` says the address suits the wide load; the byte path serves staged bytes at any
// offset. Both assemble the same little-endian words.

UMLOAD_HOST_DEVICE std::uint32_t load_u32(const std::uint8_t* p, bool aligned) {
#if defined(__CUDA_ARCH__)
  if (aligned) return *reinterpret_cast<const std::uint32_t*>(p);
#else
  (void)aligned;
#endif
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

UMLOAD_HOST_DEVICE std::uint32_t load_u16(const std::uint8_t* p, bool aligned) {
#if defined(__CUDA_ARCH__)
  if (aligned) return *reinterpret_cast<const std::uint16_t*>(p);
#else
  (void)aligned;
#endif
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8);
}

struct block_words {
  std::uint32_t w[4];
};

// The widest load an address allows, in bytes: 16, 8, 4, or 1 (any offset). Blocks staged by
// direct I/O start where the tensor's file offset puts them in a page, often only 8-byte
// aligned; every block of a run shares its first block's alignment (blocks are 16 bytes).
UMLOAD_HOST_DEVICE unsigned load_width(std::uintptr_t address) {
  return address % 16 == 0 ? 16u : address % 8 == 0 ? 8u : address % 4 == 0 ? 4u : 1u;
}

// N (2 or 4) consecutive words from an N*4-byte aligned address, as one wide load on the GPU.
template <int N>
UMLOAD_HOST_DEVICE void load_words(const std::uint32_t* p, std::uint32_t* w) {
#if defined(__CUDA_ARCH__)
  if constexpr (N == 4) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    w[0] = v.x;
    w[1] = v.y;
    w[2] = v.z;
    w[3] = v.w;
  } else {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    w[0] = v.x;
    w[1] = v.y;
  }
#else
  for (int i = 0; i < N; ++i) w[i] = p[i];
#endif
}

// One 16-byte block of codes, in loads as wide as `width` (from load_width) allows.
UMLOAD_HOST_DEVICE block_words load_block(const std::uint8_t* p, unsigned width) {
  block_words b;
#if defined(__CUDA_ARCH__)
  const auto* words = reinterpret_cast<const std::uint32_t*>(p);
  if (width == 16) {
    load_words<4>(words, b.w);
    return b;
  }
  if (width == 8) {
    load_words<2>(words, b.w);
    load_words<2>(words + 2, b.w + 2);
    return b;
  }
  if (width == 4) {
    for (int i = 0; i < 4; ++i) b.w[i] = words[i];
    return b;
  }
#else
  (void)width;
#endif
  for (int i = 0; i < 4; ++i) b.w[i] = load_u32(p + 4 * i, false);
  return b;
}

// BF16 bits widened to F32 bits, both halves of a word.
UMLOAD_HOST_DEVICE std::uint32_t widen_low(std::uint32_t w) { return w << 16; }
UMLOAD_HOST_DEVICE std::uint32_t widen_high(std::uint32_t w) { return w & 0xFFFF0000u; }

// ---------------------------------------------------------------------------------------------
// native: a flat map over units of 16 output bytes.
//
// A sink receives the stores: store_vec(index, w) writes 16 bytes (4 words) at element `index`
// of the output, store(index, value) one element. The kernel's sink writes device memory; the
// tile-math test's sink records every write.

inline constexpr unsigned native_threads = 256;

struct native_grid {
  std::uint64_t units = 0;     // blocks * 16 / unit_bytes
  unsigned unit_bytes = 4;     // input bytes per unit: 4 (bf16) or 2 (f32)
  bool aligned_blocks = true;  // blocks address suits unit_bytes-wide loads
  bool vector_out = true;      // output address is 16-byte aligned
};

inline native_grid plan_native(const decode_job& job) {
  native_grid g;
  g.unit_bytes = job.dtype == output_dtype::bf16 ? 4u : 2u;
  g.units = job.experts * job.rows * job.groups * mxfp4::block_bytes / g.unit_bytes;
  g.aligned_blocks = reinterpret_cast<std::uintptr_t>(job.blocks) % g.unit_bytes == 0;
  g.vector_out = reinterpret_cast<std::uintptr_t>(job.out) % 16 == 0;
  return g;
}

template <typename Out, typename Sink>
UMLOAD_HOST_DEVICE void native_unit(const native_grid& g, std::uint64_t unit,
                                    const std::uint8_t* blocks, const std::uint8_t* scales,
                                    const split_table_row* table, Sink& sink) {
  const std::uint64_t byte = unit * g.unit_bytes;
  const unsigned scale = scales[byte / mxfp4::block_bytes];
  const std::uint32_t packed = sizeof(Out) == 2 ? load_u32(blocks + byte, g.aligned_blocks)
                                                : load_u16(blocks + byte, g.aligned_blocks);
  std::uint32_t v[4];
  decode_word(table[scale], sign_mask(scale), packed, v);
  std::uint32_t w[4];
  if constexpr (sizeof(Out) == 2) {
    UMLOAD_UNROLL
    for (int i = 0; i < 4; ++i) w[i] = v[i];
  } else {
    w[0] = widen_low(v[0]);
    w[1] = widen_high(v[0]);
    w[2] = widen_low(v[1]);
    w[3] = widen_high(v[1]);
  }
  constexpr unsigned per_unit = 16 / sizeof(Out);
  const std::uint64_t index = unit * per_unit;
  if (g.vector_out) {
    sink.store_vec(index, w);
    return;
  }
  UMLOAD_UNROLL
  for (unsigned i = 0; i < per_unit; ++i) {
    if constexpr (sizeof(Out) == 2)
      sink.store(index + i, static_cast<Out>(i & 1u ? w[i / 2] >> 16 : w[i / 2] & 0xFFFFu));
    else
      sink.store(index + i, static_cast<Out>(w[i]));
  }
}

// ---------------------------------------------------------------------------------------------
// hf: tiles of hf_tile_rows x hf_tile_groups blocks of one expert.

inline constexpr unsigned hf_threads = 128;
inline constexpr unsigned hf_tile_rows = 128;
inline constexpr unsigned hf_tile_groups = 4;
inline constexpr unsigned hf_row_pairs = hf_tile_rows / 2;  // shared-tile words per k-row
inline constexpr unsigned hf_tile_k = hf_tile_groups * mxfp4::block_values;
inline constexpr unsigned hf_tile_words = hf_tile_k * hf_row_pairs;  // 8192 words = 32 KiB
static_assert(hf_row_pairs * (hf_tile_groups / 2) == hf_threads,
              "one thread per 2 rows x 2 groups");

struct hf_grid {
  std::uint64_t experts = 0, rows = 0, groups = 0;
  std::uint64_t row_tiles = 0, group_tiles = 0;
  unsigned block_width = 16;  // widest load the blocks address allows (load_width)
  bool vector_out = true;     // output address and output rows (rows * element) 16-byte aligned

  UMLOAD_HOST_DEVICE std::uint64_t tiles() const { return experts * row_tiles * group_tiles; }
};

inline hf_grid plan_hf(const decode_job& job) {
  hf_grid g;
  g.experts = job.experts;
  g.rows = job.rows;
  g.groups = job.groups;
  g.row_tiles = ceil_div(job.rows, hf_tile_rows);
  g.group_tiles = ceil_div(job.groups, hf_tile_groups);
  g.block_width = load_width(reinterpret_cast<std::uintptr_t>(job.blocks));
  g.vector_out = reinterpret_cast<std::uintptr_t>(job.out) % 16 == 0 &&
                 (job.rows * element_bytes(job.dtype)) % 16 == 0;
  return g;
}

struct hf_tile {
  std::uint64_t expert = 0, row0 = 0, group0 = 0;
  unsigned nrows = 0, ngroups = 0;
};

// Row tiles vary fastest, so blocks running at the same time write neighbouring parts of the same
// output rows.
UMLOAD_HOST_DEVICE hf_tile hf_tile_at(const hf_grid& g, std::uint64_t index) {
  hf_tile t;
  const std::uint64_t row_tile = index % g.row_tiles;
  const std::uint64_t rest = index / g.row_tiles;
  t.expert = rest / g.group_tiles;
  t.row0 = row_tile * hf_tile_rows;
  t.group0 = (rest % g.group_tiles) * hf_tile_groups;
  const std::uint64_t rows_left = g.rows - t.row0;
  const std::uint64_t groups_left = g.groups - t.group0;
  t.nrows = static_cast<unsigned>(rows_left < hf_tile_rows ? rows_left : hf_tile_rows);
  t.ngroups = static_cast<unsigned>(groups_left < hf_tile_groups ? groups_left : hf_tile_groups);
  return t;
}

// Phase 1: thread `thread` decodes rows row0 + 2p, +1 and groups group0 + 2gp, +1 of the tile into
// tile_words[k][p] (k = local input column, p = row pair; low half = even row).
UMLOAD_HOST_DEVICE void hf_decode_to_tile(const hf_grid& g, const hf_tile& t, unsigned thread,
                                          const std::uint8_t* blocks, const std::uint8_t* scales,
                                          const split_table_row* table, std::uint32_t* tile_words) {
  const unsigned p = thread % hf_row_pairs;
  const unsigned gp = thread / hf_row_pairs;
  if (2 * p >= t.nrows) return;
  const bool has_b = 2 * p + 1 < t.nrows;
  const std::uint64_t row_a = (t.expert * g.rows + t.row0 + 2 * p) * g.groups;

  // All loads first, so that they are in flight together.
  block_words a[2], b[2];
  unsigned scale_a[2] = {0, 0}, scale_b[2] = {0, 0};
  UMLOAD_UNROLL
  for (unsigned i = 0; i < 2; ++i) {
    const unsigned local = 2 * gp + i;
    a[i] = block_words{{0, 0, 0, 0}};
    b[i] = block_words{{0, 0, 0, 0}};
    if (local < t.ngroups) {
      const std::uint64_t block_a = row_a + t.group0 + local;
      a[i] = load_block(blocks + block_a * mxfp4::block_bytes, g.block_width);
      scale_a[i] = scales[block_a];
      if (has_b) {
        const std::uint64_t block_b = block_a + g.groups;
        b[i] = load_block(blocks + block_b * mxfp4::block_bytes, g.block_width);
        scale_b[i] = scales[block_b];
      }
    }
  }

  UMLOAD_UNROLL
  for (unsigned i = 0; i < 2; ++i) {
    const unsigned local = 2 * gp + i;
    if (local < t.ngroups) {
      const split_table_row row_a_table = table[scale_a[i]];
      const split_table_row row_b_table = table[scale_b[i]];
      const std::uint32_t signs_a = sign_mask(scale_a[i]);
      const std::uint32_t signs_b = sign_mask(scale_b[i]);
      UMLOAD_UNROLL
      for (unsigned w = 0; w < 4; ++w) {
        std::uint32_t va[4], vb[4];
        decode_word(row_a_table, signs_a, a[i].w[w], va);
        decode_word(row_b_table, signs_b, b[i].w[w], vb);
        const unsigned k = local * mxfp4::block_values + 8 * w;
        UMLOAD_UNROLL
        for (unsigned q = 0; q < 4; ++q) {
          tile_words[(k + 2 * q) * hf_row_pairs + p] = byte_perm(va[q], vb[q], 0x5410u);
          tile_words[(k + 2 * q + 1) * hf_row_pairs + p] = byte_perm(va[q], vb[q], 0x7632u);
        }
      }
    }
  }
}

// Phase 2 (after a barrier): the block writes the tile's k-rows to out[e][group0*32 + k][row0 ...].
template <typename Out, typename Sink>
UMLOAD_HOST_DEVICE void hf_store_tile(const hf_grid& g, const hf_tile& t, unsigned thread,
                                      const std::uint32_t* tile_words, Sink& sink) {
  const std::uint64_t in = g.groups * mxfp4::block_values;
  const std::uint64_t k_base = t.expert * in + t.group0 * mxfp4::block_values;
  const unsigned nk = t.ngroups * mxfp4::block_values;
  constexpr unsigned rows_per_chunk = 16 / sizeof(Out);
  if (g.vector_out && t.nrows % rows_per_chunk == 0) {
    const unsigned chunks_per_k = t.nrows / rows_per_chunk;
    const unsigned chunks = nk * chunks_per_k;
    for (unsigned c = thread; c < chunks; c += hf_threads) {
      const unsigned k = c / chunks_per_k;
      const unsigned chunk = c % chunks_per_k;
      const std::uint32_t* src = tile_words + k * hf_row_pairs + chunk * (rows_per_chunk / 2);
      std::uint32_t w[4];
      if constexpr (sizeof(Out) == 2) {
        load_words<4>(src, w);
      } else {
        std::uint32_t pair[2];
        load_words<2>(src, pair);
        w[0] = widen_low(pair[0]);
        w[1] = widen_high(pair[0]);
        w[2] = widen_low(pair[1]);
        w[3] = widen_high(pair[1]);
      }
      sink.store_vec((k_base + k) * g.rows + t.row0 + chunk * rows_per_chunk, w);
    }
    return;
  }
  const unsigned values = nk * t.nrows;
  for (unsigned c = thread; c < values; c += hf_threads) {
    const unsigned k = c / t.nrows;
    const unsigned r = c % t.nrows;
    const std::uint32_t word = tile_words[k * hf_row_pairs + r / 2];
    const std::uint32_t bf16 = r & 1u ? word >> 16 : word & 0xFFFFu;
    sink.store((k_base + k) * g.rows + t.row0 + r,
               static_cast<Out>(sizeof(Out) == 2 ? bf16 : bf16 << 16));
  }
}

// ---------------------------------------------------------------------------------------------
// Output check: per tensor, the count of non-finite values and an order-independent checksum
// (sum mod 2^64 of a hash of each value's index and bits), so a CUB reduction on the device and a
// loop on the host give the same numbers.

struct output_summary {
  std::uint64_t non_finite = 0;
  std::uint64_t checksum = 0;
};

UMLOAD_HOST_DEVICE std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// `bits` are BF16 bits (bf16) or F32 bits (f32).
UMLOAD_HOST_DEVICE output_summary summary_term(std::uint64_t index, std::uint32_t bits, bool f32) {
  const bool non_finite = f32 ? (bits & 0x7F800000u) == 0x7F800000u : (bits & 0x7F80u) == 0x7F80u;
  return output_summary{non_finite ? 1u : 0u, mix64(index * 0x9E3779B97F4A7C15ull + bits + 1)};
}

UMLOAD_HOST_DEVICE output_summary combine(const output_summary& a, const output_summary& b) {
  return output_summary{a.non_finite + b.non_finite, a.checksum + b.checksum};
}

// The same summary computed on the host, for tests and for host outputs.
inline output_summary summarize_host(const void* out, std::uint64_t values, output_dtype dtype) {
  output_summary sum;
  for (std::uint64_t i = 0; i < values; ++i) {
    std::uint32_t bits;
    if (dtype == output_dtype::bf16)
      bits = static_cast<const std::uint16_t*>(out)[i];
    else
      bits = static_cast<const std::uint32_t*>(out)[i];
    sum = combine(sum, summary_term(i, bits, dtype == output_dtype::f32));
  }
  return sum;
}

}  // namespace umload::cuda_tile
