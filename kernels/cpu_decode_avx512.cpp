// AVX-512 (F, BW, VL, DQ) decode, compiled with its own -m flags and called only when the CPU has
// them (supported_isas). Values come from the shared decode table, never from arithmetic:
//  - a block's 16 BF16 values (32 bytes) are broadcast to both halves of a zmm, so vpermw, which
//    reads 5 index bits, returns table[code] whatever bit 4 holds;
//  - the 16 packed bytes widen to dwords; byte | byte << 12 puts the low nibble in the even word
//    and the high nibble in the odd word: one vpermw decodes the block in checkpoint order.
// hf tiles (32 rows x 32 inputs) are transposed before the lookup where the CPU has AVX512-VBMI:
// the tile's 512 packed bytes go through four stages of two-source byte permutes (vpermt2b), which
// leave, for each packed byte position, the 32 rows' bytes one per word. The 32 rows of an output
// row then carry 32 different scales, which one vpermw cannot look up; but for scales inside
// rescalable_scales every table row is row 127 with the exponent moved (rescale_bf16, proven
// against decode_bf16 in the tests), so each output row is a vpermw on row 127 and a masked add of
// the rows' exponent steps. Tiles with a scale outside that range, row tails and CPUs without VBMI
// decode each row with its own table row and transpose the 16-bit values in registers instead, by
// swapping row and column index bits one at a time (blends and lane shuffles).
#include "kernels/cpu_decode_detail.hpp"

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>

namespace umload::cpu::detail {

namespace {

inline __m512i decode_block(const std::uint16_t* row, const std::uint8_t* block) {
  const __m512i values =
      _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row)));
  const __m512i bytes =
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
  const __m512i codes = _mm512_or_si512(bytes, _mm512_slli_epi32(bytes, 12));
  return _mm512_permutexvar_epi16(codes, values);
}

// F32 bits of BF16 words 0..15 / 16..31: the BF16 bits in the high half of each dword.
inline __m512i widen_low(__m512i words) {
  return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(words)), 16);
}
inline __m512i widen_high(__m512i words) {
  return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(words, 1)), 16);
}

template <bool Stream>
inline void store(void* dst, __m512i v) {
  if constexpr (Stream)
    _mm512_stream_si512(static_cast<__m512i*>(dst), v);
  else
    _mm512_storeu_si512(dst, v);
}

template <typename Out, bool Stream>
void native_rows(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end) {
  const auto& t = table();
  Out* out = static_cast<Out*>(job.out);
  for (std::uint64_t b = row_begin * job.groups; b < row_end * job.groups; ++b) {
    const __m512i words = decode_block(t.bf16[job.scales[b]], job.blocks + b * mxfp4::block_bytes);
    Out* dst = out + b * mxfp4::block_values;
    if constexpr (sizeof(Out) == 2) {
      store<Stream>(dst, words);
    } else {
      store<Stream>(dst, widen_low(words));
      store<Stream>(dst + 16, widen_high(words));
    }
  }
  if constexpr (Stream) _mm_sfence();
}

// Swaps bit D of the row index with bit D of the column (word) index between rows a (bit D
// clear) and b (bit D set): afterwards a holds a's words where the column bit is clear and b's
// lower partner words where it is set, and b the converse.
template <int D>
inline void swap_bit(__m512i& a, __m512i& b) {
  __m512i na, nb;
  if constexpr (D == 1) {
    na = _mm512_mask_blend_epi16(0xAAAAAAAAu, a, _mm512_slli_epi32(b, 16));
    nb = _mm512_mask_blend_epi16(0x55555555u, b, _mm512_srli_epi32(a, 16));
  } else if constexpr (D == 2) {
    na = _mm512_mask_shuffle_epi32(a, 0xAAAA, b, static_cast<_MM_PERM_ENUM>(0x80));
    nb = _mm512_mask_shuffle_epi32(b, 0x5555, a, static_cast<_MM_PERM_ENUM>(0x31));
  } else if constexpr (D == 4) {
    na = _mm512_unpacklo_epi64(a, b);
    nb = _mm512_unpackhi_epi64(a, b);
  } else if constexpr (D == 8) {
    na = _mm512_mask_shuffle_i64x2(a, 0xCC, b, b, 0x80);
    nb = _mm512_mask_shuffle_i64x2(b, 0x33, a, a, 0x31);
  } else {
    static_assert(D == 16);
    na = _mm512_shuffle_i64x2(a, b, 0x44);
    nb = _mm512_shuffle_i64x2(a, b, 0xEE);
  }
  a = na;
  b = nb;
}

template <int D>
inline void swap_stage(__m512i (&x)[16]) {
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i)
    if ((i & D) == 0) swap_bit<D>(x[i], x[i | D]);
}

// One output row of a tile: the words of rows r0 .. r0 + 31 of one input column, as BF16 or F32.
// A row tail (nrows < 32) stores only its first nrows words.
template <typename Out, bool Stream>
inline void store_column(Out* dst, __m512i words, unsigned nrows) {
  const bool full = nrows == tile_rows;
  const __mmask32 row_mask = full ? ~__mmask32{0} : (__mmask32{1} << nrows) - 1;
  if constexpr (sizeof(Out) == 2) {
    if (full)
      store<Stream>(dst, words);
    else
      _mm512_mask_storeu_epi16(dst, row_mask, words);
  } else {
    if (full) {
      store<Stream>(dst, widen_low(words));
      store<Stream>(dst + 16, widen_high(words));
    } else {
      _mm512_mask_storeu_epi32(dst, static_cast<__mmask16>(row_mask), widen_low(words));
      _mm512_mask_storeu_epi32(dst + 16, static_cast<__mmask16>(row_mask >> 16), widen_high(words));
    }
  }
}

// Where one tile is read and written: row r's block at blocks + r * block_stride, its scale in
// scales[r]; input column k's output row at out + k * out_stride.
template <typename Out>
struct tile_io {
  const std::uint8_t* blocks;
  std::uint64_t block_stride;
  const std::uint8_t* scales;
  Out* out;
  std::uint64_t out_stride;
  unsigned nrows;
};

// Any tile: each row decoded with its own table row, then the 32 x 32 words transposed.
template <typename Out, bool Stream>
__attribute__((always_inline)) inline void hf_tile_words(const tile_io<Out>& io) {
  const auto& t = table();
  __m512i halves[2][16];
  // Two halves of 16 rows each get bits 0..3 swapped while they fit in registers; bit 4 pairs
  // row i with row i + 16 at store time.
  for (unsigned h = 0; h < 2; ++h) {
    __m512i x[16];
#pragma GCC unroll 16
    for (unsigned i = 0; i < 16; ++i) {
      const unsigned r = h * 16 + i;
      x[i] = r < io.nrows ? decode_block(t.bf16[io.scales[r]], io.blocks + r * io.block_stride)
                          : _mm512_setzero_si512();
    }
    swap_stage<1>(x);
    swap_stage<2>(x);
    swap_stage<4>(x);
    swap_stage<8>(x);
#pragma GCC unroll 16
    for (unsigned i = 0; i < 16; ++i) halves[h][i] = x[i];
  }
#pragma GCC unroll 4
  for (unsigned i = 0; i < 16; ++i) {
    __m512i low = halves[0][i], high = halves[1][i];
    swap_bit<16>(low, high);
    // low is input column i of the block, high column i + 16; word w is row r0 + w.
    store_column<Out, Stream>(io.out + i * io.out_stride, low, io.nrows);
    store_column<Out, Stream>(io.out + (i + 16) * io.out_stride, high, io.nrows);
  }
}

// Byte permutes of the code transpose (vpermt2b: index bit 6 picks the second source). A full
// tile's packed byte i of row r moves through these layouts:
//   pairs:  16 registers of 2 rows (row r >> 1), byte (r & 1) * 16 + i (upper half unused)
//   rows4:  8 registers of 4 rows (r >> 2), byte (r & 3) * 16 + i
//   rows8:  8 registers of 8 rows x 8 packed bytes (r >> 3, i >> 3), byte (r & 7) * 8 + (i & 7)
//   rows16: 8 registers of 16 rows x 4 packed bytes (r >> 4, i >> 2), byte (r & 15) * 4 + (i & 3)
//   rows32: 8 registers of 32 rows x 2 packed bytes (i >> 1), byte 2 * r + (i & 1)
// Word r of rows32 register m then holds row r's codes of input columns 4m .. 4m + 3 in its four
// nibbles, lowest first.
struct code_permute_bytes {
  alignas(64) std::uint8_t rows4[64];
  alignas(64) std::uint8_t rows8[2][64];        // by i >> 3
  alignas(64) std::uint8_t rows16[2][64];       // by (i >> 2) & 1
  alignas(64) std::uint8_t rows32[2][64];       // by (i >> 1) & 1
  alignas(64) std::uint8_t scales32[2][64];     // rows32 for scales, by (i >> 1) & 1
  alignas(64) std::uint16_t values_at_127[32];  // table row 127, twice (vpermw reads 5 bits)
};

const code_permute_bytes& code_permutes() {
  static const code_permute_bytes built = [] {
    code_permute_bytes p{};
    for (unsigned pos = 0; pos < 64; ++pos) {
      // rows4: row r (0..3 within the register), byte i, from pair r >> 1.
      {
        const unsigned r = pos / 16, i = pos % 16;
        p.rows4[pos] = static_cast<std::uint8_t>((r >> 1) * 64 + (r & 1) * 16 + i);
      }
      for (unsigned half = 0; half < 2; ++half) {
        // rows8 register with packed bytes half * 8 .. + 7: row r (0..7), from rows4 r >> 2.
        const unsigned r = pos / 8, i = half * 8 + pos % 8;
        p.rows8[half][pos] = static_cast<std::uint8_t>((r >> 2) * 64 + (r & 3) * 16 + i);
      }
      for (unsigned odd = 0; odd < 2; ++odd) {
        // rows16 register with packed bytes 4d .. 4d + 3, d & 1 == odd: row r (0..15), from
        // rows8 r >> 3 (both hold packed bytes (d >> 1) * 8 .. + 7).
        const unsigned r = pos / 4, i8 = odd * 4 + pos % 4;
        p.rows16[odd][pos] = static_cast<std::uint8_t>((r >> 3) * 64 + (r & 7) * 8 + i8);
      }
      for (unsigned odd = 0; odd < 2; ++odd) {
        // rows32 register of packed bytes 2m, 2m + 1, m & 1 == odd: row r (0..31), byte i & 1,
        // from rows16 r >> 4 (both hold packed bytes 4 (m >> 1) .. + 3).
        const unsigned r = pos / 2, i4 = odd * 2 + pos % 2;
        p.rows32[odd][pos] = static_cast<std::uint8_t>((r >> 4) * 64 + (r & 15) * 4 + i4);
      }
      for (unsigned odd = 0; odd < 2; ++odd) {
        // The same for 32 rows x 16 scale bytes (i: the group): byte i & 1 first, rows in order,
        // so that each half of the register is one group's 32 scales.
        const unsigned r = pos % 32, i4 = odd * 2 + pos / 32;
        p.scales32[odd][pos] = static_cast<std::uint8_t>((r >> 4) * 64 + (r & 15) * 4 + i4);
      }
    }
    for (unsigned k = 0; k < 32; ++k) p.values_at_127[k] = table().bf16[mxfp4::scale_bias][k % 16];
    return p;
  }();
  return built;
}

#define UMLOAD_VBMI __attribute__((target("avx512vbmi")))

// The permutes and the lookup constants, loaded once per piece.
struct code_tile_constants {
  __m512i rows4, rows8[2], rows16[2], rows32[2], scales32[2];
  __m512i values_at_127;
};

UMLOAD_VBMI inline code_tile_constants load_code_tile_constants() {
  const auto& p = code_permutes();
  code_tile_constants c;
  c.rows4 = _mm512_load_si512(p.rows4);
  for (int k = 0; k < 2; ++k) c.rows8[k] = _mm512_load_si512(p.rows8[k]);
  for (int k = 0; k < 2; ++k) c.rows16[k] = _mm512_load_si512(p.rows16[k]);
  for (int k = 0; k < 2; ++k) c.rows32[k] = _mm512_load_si512(p.rows32[k]);
  for (int k = 0; k < 2; ++k) c.scales32[k] = _mm512_load_si512(p.scales32[k]);
  c.values_at_127 = _mm512_load_si512(p.values_at_127);
  return c;
}

// The first four levels of the transpose: 32 rows of 16 bytes, row r read by load(b + r *
// stride, r), to the rows16 layout.
template <typename Load>
UMLOAD_VBMI inline void transpose_to_rows16(const code_tile_constants& c, const std::uint8_t* b,
                                            std::uint64_t stride, Load load, __m512i (&rows16)[8]) {
  __m512i rows4[8];
#pragma GCC unroll 8
  for (unsigned q = 0; q < 8; ++q) {
    const auto row = [&](unsigned r) { return load(b + r * stride, 4 * q + r); };
    const __m256i first = _mm256_inserti128_si256(_mm256_castsi128_si256(row(0)), row(1), 1);
    const __m256i second = _mm256_inserti128_si256(_mm256_castsi128_si256(row(2)), row(3), 1);
    rows4[q] = _mm512_permutex2var_epi8(_mm512_zextsi256_si512(first), c.rows4,
                                        _mm512_zextsi256_si512(second));
    b += 4 * stride;
  }
  __m512i rows8[8];  // [r >> 3][i >> 3]
#pragma GCC unroll 8
  for (unsigned k = 0; k < 8; ++k)
    rows8[k] =
        _mm512_permutex2var_epi8(rows4[(k >> 1) * 2], c.rows8[k & 1], rows4[(k >> 1) * 2 + 1]);
#pragma GCC unroll 8
  for (unsigned k = 0; k < 8; ++k) {
    const unsigned h = k >> 2, d = k & 3;
    rows16[k] = _mm512_permutex2var_epi8(rows8[(2 * h) * 2 + (d >> 1)], c.rows16[d & 1],
                                         rows8[(2 * h + 1) * 2 + (d >> 1)]);
  }
}

// The scales of up to 32 rows (stride bytes apart) x up to 16 groups, transposed to
// transposed[group][row]; missing rows and groups read as 0.
UMLOAD_VBMI inline void transpose_scales(const code_tile_constants& c, const std::uint8_t* scales,
                                         std::uint64_t stride, unsigned nrows, unsigned ngroups,
                                         std::uint8_t (*transposed)[tile_rows]) {
  const __mmask16 present = static_cast<__mmask16>((1u << ngroups) - 1);
  __m512i rows16[8];
  transpose_to_rows16(
      c, scales, stride,
      [&](const std::uint8_t* row, unsigned r) {
        return r < nrows ? _mm_maskz_loadu_epi8(present, row) : _mm_setzero_si128();
      },
      rows16);
#pragma GCC unroll 8
  for (unsigned m = 0; m < 8; ++m)
    _mm512_store_si512(
        transposed[2 * m],
        _mm512_permutex2var_epi8(rows16[m >> 1], c.scales32[m & 1], rows16[4 + (m >> 1)]));
}

// A full tile whose 32 scales are all rescalable: codes transposed, then looked up in row 127
// and moved by each row's exponent step.
template <typename Out, bool Stream>
UMLOAD_VBMI inline void hf_tile_codes(const code_tile_constants& c, const tile_io<Out>& io,
                                      __m512i steps) {
  // One pointer stepped through the rows; opaque, so that the compiler keeps one induction
  // variable instead of 32 row pointers (which it would spill).
  const std::uint8_t* b = io.blocks;
  asm("" : "+r"(b));
  __m512i rows16[8];
  transpose_to_rows16(
      c, b, io.block_stride,
      [](const std::uint8_t* row, unsigned) {
        return _mm_loadu_si128(reinterpret_cast<const __m128i*>(row));
      },
      rows16);
#pragma GCC unroll 8
  for (unsigned m = 0; m < 8; ++m) {
    const __m512i packed =
        _mm512_permutex2var_epi8(rows16[m >> 1], c.rows32[m & 1], rows16[4 + (m >> 1)]);
    // Input column 4m + n: vpermw reads the nibble shifted down (bit 4, the next nibble's lowest,
    // picks the second copy of the row); its magnitude bits say whether the step applies.
#pragma GCC unroll 4
    for (unsigned n = 0; n < 4; ++n) {
      const __m512i codes = n == 0 ? packed : _mm512_srli_epi16(packed, 4 * n);
      __m512i values = _mm512_permutexvar_epi16(codes, c.values_at_127);
      const __mmask32 nonzero =
          _mm512_test_epi16_mask(packed, _mm512_set1_epi16(static_cast<short>(7 << (4 * n))));
      values = _mm512_mask_add_epi16(values, nonzero, values, steps);
      store_column<Out, Stream>(io.out + (4 * m + n) * io.out_stride, values, tile_rows);
    }
  }
}

// Rows [row_begin, row_end) of one column block (expert * groups + group): 32 output rows.
// Codes: full tiles with rescalable scales take hf_tile_codes (the caller has VBMI). The tiles'
// scales are read from tile_scales_given (tile t's at + t * given_stride) when the caller has
// them, else gathered here.
template <typename Out, bool Stream, bool Codes>
inline void hf_column_block(const decode_job& job, const code_tile_constants* constants,
                            std::uint64_t column_block, std::uint64_t row_begin,
                            std::uint64_t row_end, const std::uint8_t* tile_scales_given,
                            std::uint64_t given_stride) {
  const std::uint64_t e = column_block / job.groups;
  const std::uint64_t g = column_block % job.groups;
  const std::uint64_t block_stride = job.groups * mxfp4::block_bytes;
  const std::uint8_t* blocks = job.blocks + ((e * job.rows) * job.groups + g) * mxfp4::block_bytes;
  const std::uint8_t* scales = job.scales + (e * job.rows) * job.groups + g;
  Out* out = static_cast<Out*>(job.out) + column_block * mxfp4::block_values * job.rows;
  const bool large = job.out_bytes() >= stream_threshold_bytes;
  // The scales of many tiles are gathered at once, so that a tile's vector load of its scales
  // does not wait on the byte stores just before it (a store-forwarding stall per tile).
  constexpr std::uint64_t gather_rows = 8 * tile_rows;
  alignas(32) std::uint8_t column_scales[gather_rows];
  for (std::uint64_t r0 = row_begin; r0 < row_end; r0 += tile_rows) {
    const std::uint64_t gathered = (r0 - row_begin) % gather_rows;
    if (!tile_scales_given && gathered == 0) {
      const std::uint64_t n = std::min(gather_rows, row_end - r0);
      for (std::uint64_t r = 0; r < n; ++r) column_scales[r] = scales[(r0 + r) * job.groups];
    }
    const std::uint8_t* tile_scales =
        tile_scales_given ? tile_scales_given + (r0 - row_begin) / tile_rows * given_stride
                          : column_scales + gathered;
    const unsigned nrows = static_cast<unsigned>(std::min(tile_rows, row_end - r0));
    const tile_io<Out> io{
        blocks + r0 * block_stride, block_stride, tile_scales, out + r0, job.rows, nrows};
    // A tile reads 16 bytes per row at a stride of groups * 16 bytes, which the hardware
    // prefetchers do not follow: without help every tile of every fourth group would wait on 32
    // reads from memory. Fetch the rows' lines eight groups ahead into L2; every fourth group is
    // enough, as a line holds four groups' blocks. Small jobs (input in cache) skip it.
    if (large && g % 4 == 0) {
      const std::uint8_t* ahead = io.blocks + 8 * mxfp4::block_bytes;
      for (unsigned r = 0; r < nrows; ++r, ahead += block_stride)
        _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T1);
    }
    if constexpr (Codes) {
      if (nrows == tile_rows) {
        const __m256i s = _mm256_load_si256(reinterpret_cast<const __m256i*>(tile_scales));
        const __mmask32 outside = _mm256_cmpgt_epu8_mask(
            _mm256_sub_epi8(s, _mm256_set1_epi8(rescalable_scales::first)),
            _mm256_set1_epi8(rescalable_scales::last - rescalable_scales::first));
        if (outside == 0) {
          // exponent_step for each row: (scale - 127) << 7.
          const __m512i steps = _mm512_slli_epi16(
              _mm512_sub_epi16(_mm512_cvtepu8_epi16(s), _mm512_set1_epi16(mxfp4::scale_bias)), 7);
          hf_tile_codes<Out, Stream>(*constants, io, steps);
          continue;
        }
      }
    }
    hf_tile_words<Out, Stream>(io);
  }
}

template <typename Out, bool Stream>
void hf_piece_words(const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
                    std::uint64_t group_end, std::uint64_t row_begin, std::uint64_t row_end) {
  for (std::uint64_t g = group_begin; g < group_end; ++g)
    hf_column_block<Out, Stream, false>(job, nullptr, expert * job.groups + g, row_begin, row_end,
                                        nullptr, 0);
  if constexpr (Stream) _mm_sfence();
}

template <typename Out, bool Stream>
UMLOAD_VBMI __attribute__((flatten)) void hf_piece_codes(
    const decode_job& job, std::uint64_t expert, std::uint64_t group_begin, std::uint64_t group_end,
    std::uint64_t row_begin, std::uint64_t row_end) {
  const code_tile_constants constants = load_code_tile_constants();
  // Scales for 16 groups of up to hf_piece_rows rows at a time, transposed with the same
  // permutes as the codes: [tile][group][row].
  constexpr unsigned scale_groups = 16;
  alignas(64) std::uint8_t transposed[hf_piece_rows / tile_rows][scale_groups][tile_rows];
  for (std::uint64_t r0 = row_begin; r0 < row_end; r0 += hf_piece_rows) {
    const std::uint64_t r1 = std::min(row_end, r0 + hf_piece_rows);
    for (std::uint64_t g0 = group_begin; g0 < group_end; g0 += scale_groups) {
      const auto ngroups =
          static_cast<unsigned>(std::min<std::uint64_t>(scale_groups, group_end - g0));
      for (std::uint64_t t = 0; r0 + t * tile_rows < r1; ++t) {
        const std::uint64_t first_row = r0 + t * tile_rows;
        transpose_scales(constants, job.scales + (expert * job.rows + first_row) * job.groups + g0,
                         job.groups, static_cast<unsigned>(std::min(tile_rows, r1 - first_row)),
                         ngroups, transposed[t]);
      }
      for (unsigned j = 0; j < ngroups; ++j)
        hf_column_block<Out, Stream, true>(job, &constants, expert * job.groups + g0 + j, r0, r1,
                                           transposed[0][j], scale_groups * tile_rows);
    }
  }
  if constexpr (Stream) _mm_sfence();
}

// The path as make_path_kernels takes it: native rows, and hf through the code transpose where
// the CPU has VBMI, else the word transpose.
struct avx512_path {
  static constexpr std::uint64_t store_alignment = 64;
  template <typename Out, bool Stream>
  static void native(const decode_job& job, std::uint64_t begin, std::uint64_t end) {
    native_rows<Out, Stream>(job, begin, end);
  }
  template <typename Out, bool Stream>
  static void hf(const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
                 std::uint64_t group_end, std::uint64_t row_begin, std::uint64_t row_end) {
    static const bool vbmi = [] {
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512vbmi") != 0;
    }();
    if (vbmi)
      hf_piece_codes<Out, Stream>(job, expert, group_begin, group_end, row_begin, row_end);
    else
      hf_piece_words<Out, Stream>(job, expert, group_begin, group_end, row_begin, row_end);
  }
};

}  // namespace

path_kernels avx512_kernels() { return make_path_kernels<avx512_path>(); }

}  // namespace umload::cpu::detail

#else  // not x86-64: the dispatcher never selects this path; keep the symbol.

namespace umload::cpu::detail {
path_kernels avx512_kernels() { return portable_kernels(); }
}  // namespace umload::cpu::detail

#endif
