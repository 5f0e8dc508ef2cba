// AVX2 decode, compiled with its own -m flags and called only when the CPU has AVX2
// (supported_isas). Values come from the shared decode table, never from arithmetic: the
// scale's 16 BF16 values are held as two 16-byte tables (low bytes, high bytes; byte_tables()),
// vpshufb looks up both with the block's 32 nibble codes, and unpacking the two results yields
// the BF16 words in checkpoint order. hf tiles (32 rows x 32 inputs) are decoded into an L1
// buffer and transposed as four 16 x 16 word blocks in registers, so every store is 16
// consecutive rows.
#include "kernels/cpu_decode_detail.hpp"

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace umload::cpu::detail {

namespace {

// The block's BF16 values 0..15 in `first`, 16..31 in `second`.
inline void decode_block(const split_table& tables, unsigned scale, const std::uint8_t* block,
                         __m256i& first, __m256i& second) {
  const __m256i low_bytes = _mm256_broadcastsi128_si256(
      _mm_load_si128(reinterpret_cast<const __m128i*>(tables.low[scale])));
  const __m256i high_bytes = _mm256_broadcastsi128_si256(
      _mm_load_si128(reinterpret_cast<const __m128i*>(tables.high[scale])));
  const __m256i bytes =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
  // Lane 0 gets packed bytes 0..3 and 8..11, lane 1 bytes 4..7 and 12..15, so that after the
  // nibble interleave and the final word unpacks each output register is 16 values in order.
  const __m256i spread = _mm256_shuffle_epi8(
      bytes, _mm256_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1,  //
                              4, 5, 6, 7, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1));
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i low = _mm256_and_si256(spread, nibble);
  const __m256i high = _mm256_and_si256(_mm256_srli_epi16(spread, 4), nibble);
  // Lane 0: codes of values 0..7 and 16..23; lane 1: 8..15 and 24..31.
  const __m256i codes = _mm256_unpacklo_epi8(low, high);
  const __m256i value_low = _mm256_shuffle_epi8(low_bytes, codes);
  const __m256i value_high = _mm256_shuffle_epi8(high_bytes, codes);
  first = _mm256_unpacklo_epi8(value_low, value_high);
  second = _mm256_unpackhi_epi8(value_low, value_high);
}

// F32 bits of BF16 words 0..7 / 8..15.
inline __m256i widen_low(__m256i words) {
  return _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(words)), 16);
}
inline __m256i widen_high(__m256i words) {
  return _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(words, 1)), 16);
}

template <bool Stream>
inline void store(void* dst, __m256i v) {
  if constexpr (Stream)
    _mm256_stream_si256(static_cast<__m256i*>(dst), v);
  else
    _mm256_storeu_si256(static_cast<__m256i*>(dst), v);
}

// 16 BF16 words to `dst` as BF16 or F32.
template <typename Out, bool Stream>
inline void store_words(Out* dst, __m256i words) {
  if constexpr (sizeof(Out) == 2) {
    store<Stream>(dst, words);
  } else {
    store<Stream>(dst, widen_low(words));
    store<Stream>(dst + 8, widen_high(words));
  }
}

template <typename Out, bool Stream>
void native_rows(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end) {
  const auto& tables = byte_tables();
  Out* out = static_cast<Out*>(job.out);
  for (std::uint64_t b = row_begin * job.groups; b < row_end * job.groups; ++b) {
    __m256i first, second;
    decode_block(tables, job.scales[b], job.blocks + b * mxfp4::block_bytes, first, second);
    Out* dst = out + b * mxfp4::block_values;
    store_words<Out, Stream>(dst, first);
    store_words<Out, Stream>(dst + 16, second);
  }
  if constexpr (Stream) _mm_sfence();
}

// Swaps bit D of the row index with bit D of the column (word) index between rows a (bit D
// clear) and b (bit D set).
template <int D>
inline void swap_bit(__m256i& a, __m256i& b) {
  __m256i na, nb;
  if constexpr (D == 1) {
    na = _mm256_blend_epi16(a, _mm256_slli_epi32(b, 16), 0xAA);
    nb = _mm256_blend_epi16(b, _mm256_srli_epi32(a, 16), 0x55);
  } else if constexpr (D == 2) {
    na = _mm256_blend_epi32(a, _mm256_slli_epi64(b, 32), 0xAA);
    nb = _mm256_blend_epi32(b, _mm256_srli_epi64(a, 32), 0x55);
  } else if constexpr (D == 4) {
    na = _mm256_unpacklo_epi64(a, b);
    nb = _mm256_unpackhi_epi64(a, b);
  } else {
    static_assert(D == 8);
    na = _mm256_permute2x128_si256(a, b, 0x20);
    nb = _mm256_permute2x128_si256(a, b, 0x31);
  }
  a = na;
  b = nb;
}

template <int D>
inline void swap_stage(__m256i (&x)[16]) {
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i)
    if ((i & D) == 0) swap_bit<D>(x[i], x[i | D]);
}

// Rows [row_begin, row_end) of one column block (expert * groups + group): 32 output rows.
template <typename Out, bool Stream>
void hf_column_block(const decode_job& job, std::uint64_t column_block, std::uint64_t row_begin,
                     std::uint64_t row_end) {
  const auto& tables = byte_tables();
  const std::uint64_t e = column_block / job.groups;
  const std::uint64_t g = column_block % job.groups;
  const std::uint64_t block_stride = job.groups * mxfp4::block_bytes;
  const std::uint8_t* blocks = job.blocks + ((e * job.rows) * job.groups + g) * mxfp4::block_bytes;
  const std::uint8_t* scales = job.scales + (e * job.rows) * job.groups + g;
  Out* out = static_cast<Out*>(job.out) + column_block * mxfp4::block_values * job.rows;
  alignas(32) __m256i tile[tile_rows][2];               // [row][column half], 16 words each
  alignas(32) __m256i columns[mxfp4::block_values][2];  // [column][row half]
  const bool large = job.out_bytes() >= stream_threshold_bytes;
  for (std::uint64_t r0 = row_begin; r0 < row_end; r0 += tile_rows) {
    const unsigned nrows = static_cast<unsigned>(std::min(tile_rows, row_end - r0));
    // A tile reads 16 bytes per row at a stride of groups * 16 bytes, which the hardware
    // prefetchers do not follow: without help every tile of every fourth group would wait on 32
    // reads from memory. Fetch the rows' lines eight groups ahead into L2; every fourth group is
    // enough, as a line holds four groups' blocks. Small jobs (input in cache) skip it.
    if (large && g % 4 == 0) {
      const std::uint8_t* ahead = blocks + r0 * block_stride + 8 * mxfp4::block_bytes;
      for (unsigned r = 0; r < nrows; ++r, ahead += block_stride)
        _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T1);
    }
    for (unsigned i = 0; i < tile_rows; ++i) {
      const std::uint64_t r = r0 + i;
      if (i < nrows)
        decode_block(tables, scales[r * job.groups], blocks + r * block_stride, tile[i][0],
                     tile[i][1]);
      else
        tile[i][0] = tile[i][1] = _mm256_setzero_si256();
    }
    // Transpose the four 16 x 16 blocks; columns[k][h] is input column k, rows h * 16 .. + 15.
    for (unsigned h = 0; h < 2; ++h)
      for (unsigned c = 0; c < 2; ++c) {
        __m256i x[16];
#pragma GCC unroll 16
        for (unsigned i = 0; i < 16; ++i) x[i] = tile[h * 16 + i][c];
        swap_stage<1>(x);
        swap_stage<2>(x);
        swap_stage<4>(x);
        swap_stage<8>(x);
#pragma GCC unroll 16
        for (unsigned j = 0; j < 16; ++j) columns[c * 16 + j][h] = x[j];
      }
    // Both halves of a column back to back, so that streamed stores fill whole cache lines.
    if (nrows == tile_rows) {
      for (unsigned k = 0; k < mxfp4::block_values; ++k) {
        Out* dst = out + k * job.rows + r0;
        store_words<Out, Stream>(dst, columns[k][0]);
        store_words<Out, Stream>(dst + 16, columns[k][1]);
      }
    } else {
      for (unsigned k = 0; k < mxfp4::block_values; ++k) {
        alignas(32) Out staged[tile_rows];
        store_words<Out, false>(staged, columns[k][0]);
        store_words<Out, false>(staged + 16, columns[k][1]);
        std::memcpy(out + k * job.rows + r0, staged, nrows * sizeof(Out));
      }
    }
  }
}

// The path as make_path_kernels takes it: native rows, and hf as one column block per group.
struct avx2_path {
  static constexpr std::uint64_t store_alignment = 32;
  template <typename Out, bool Stream>
  static void native(const decode_job& job, std::uint64_t begin, std::uint64_t end) {
    native_rows<Out, Stream>(job, begin, end);
  }
  template <typename Out, bool Stream>
  static void hf(const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
                 std::uint64_t group_end, std::uint64_t row_begin, std::uint64_t row_end) {
    for (std::uint64_t g = group_begin; g < group_end; ++g)
      hf_column_block<Out, Stream>(job, expert * job.groups + g, row_begin, row_end);
    if constexpr (Stream) _mm_sfence();
  }
};

}  // namespace

path_kernels avx2_kernels() { return make_path_kernels<avx2_path>(); }

}  // namespace umload::cpu::detail

#else  // not x86-64: the dispatcher never selects this path; keep the symbol.

namespace umload::cpu::detail {
path_kernels avx2_kernels() { return portable_kernels(); }
}  // namespace umload::cpu::detail

#endif
