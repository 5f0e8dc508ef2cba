// AVX-512 (F, BW, VL, DQ) decode, compiled with its own -m flags and called only when the CPU has
// them (supported_isas). Values come from the shared decode table, never from arithmetic:
//  - a block's 16 BF16 values (32 bytes) are broadcast to both halves of a zmm, so vpermw, which
//    reads 5 index bits, returns table[code] whatever bit 4 holds;
//  - the 16 packed bytes widen to dwords; byte | byte << 12 puts the low nibble in the even word
//    and the high nibble in the odd word: one vpermw decodes the block in checkpoint order.
// hf tiles (32 rows x 32 inputs) are transposed in registers by swapping row and column index
// bits one at a time (blends and lane shuffles), so every store is 32 consecutive rows.
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

// Rows [row_begin, row_end) of one column block (expert * groups + group): 32 output rows.
template <typename Out, bool Stream>
void hf_column_block(const decode_job& job, std::uint64_t column_block, std::uint64_t row_begin,
                     std::uint64_t row_end) {
  const auto& t = table();
  const std::uint64_t e = column_block / job.groups;
  const std::uint64_t g = column_block % job.groups;
  const std::uint64_t block_stride = job.groups * mxfp4::block_bytes;
  const std::uint8_t* blocks = job.blocks + ((e * job.rows) * job.groups + g) * mxfp4::block_bytes;
  const std::uint8_t* scales = job.scales + (e * job.rows) * job.groups + g;
  Out* out = static_cast<Out*>(job.out) + column_block * mxfp4::block_values * job.rows;
  __m512i halves[2][16];
  for (std::uint64_t r0 = row_begin; r0 < row_end; r0 += tile_rows) {
    const unsigned nrows = static_cast<unsigned>(std::min(tile_rows, row_end - r0));
    // Two halves of 16 rows each get bits 0..3 swapped while they fit in registers; bit 4 pairs
    // row i with row i + 16 at store time.
    for (unsigned h = 0; h < 2; ++h) {
      __m512i x[16];
#pragma GCC unroll 16
      for (unsigned i = 0; i < 16; ++i) {
        const std::uint64_t r = r0 + h * 16 + i;
        x[i] = h * 16 + i < nrows
                   ? decode_block(t.bf16[scales[r * job.groups]], blocks + r * block_stride)
                   : _mm512_setzero_si512();
      }
      swap_stage<1>(x);
      swap_stage<2>(x);
      swap_stage<4>(x);
      swap_stage<8>(x);
#pragma GCC unroll 16
      for (unsigned i = 0; i < 16; ++i) halves[h][i] = x[i];
    }
    const bool full = nrows == tile_rows;
    const __mmask32 row_mask = full ? ~__mmask32{0} : (__mmask32{1} << nrows) - 1;
#pragma GCC unroll 4
    for (unsigned i = 0; i < 16; ++i) {
      __m512i low = halves[0][i], high = halves[1][i];
      swap_bit<16>(low, high);
      // low is input column i of the block, high column i + 16; word w is row r0 + w.
      Out* dst_low = out + i * job.rows + r0;
      Out* dst_high = out + (i + 16) * job.rows + r0;
      if constexpr (sizeof(Out) == 2) {
        if (full) {
          store<Stream>(dst_low, low);
          store<Stream>(dst_high, high);
        } else {
          _mm512_mask_storeu_epi16(dst_low, row_mask, low);
          _mm512_mask_storeu_epi16(dst_high, row_mask, high);
        }
      } else {
        if (full) {
          store<Stream>(dst_low, widen_low(low));
          store<Stream>(dst_low + 16, widen_high(low));
          store<Stream>(dst_high, widen_low(high));
          store<Stream>(dst_high + 16, widen_high(high));
        } else {
          const auto m0 = static_cast<__mmask16>(row_mask);
          const auto m1 = static_cast<__mmask16>(row_mask >> 16);
          _mm512_mask_storeu_epi32(dst_low, m0, widen_low(low));
          _mm512_mask_storeu_epi32(dst_low + 16, m1, widen_high(low));
          _mm512_mask_storeu_epi32(dst_high, m0, widen_low(high));
          _mm512_mask_storeu_epi32(dst_high + 16, m1, widen_high(high));
        }
      }
    }
  }
}

template <typename Out, bool Stream>
void hf_piece(const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
              std::uint64_t group_end, std::uint64_t row_begin, std::uint64_t row_end) {
  for (std::uint64_t g = group_begin; g < group_end; ++g)
    hf_column_block<Out, Stream>(job, expert * job.groups + g, row_begin, row_end);
  if constexpr (Stream) _mm_sfence();
}

bool aligned64(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 63) == 0; }

template <typename Out>
void native_entry(const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
  // Every block's output starts at a multiple of 64 bytes from the base.
  if (o.stream && aligned64(job.out))
    native_rows<Out, true>(job, begin, end);
  else
    native_rows<Out, false>(job, begin, end);
}

template <typename Out>
void hf_entry(const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
              std::uint64_t group_end, std::uint64_t begin, std::uint64_t end, piece_options o) {
  // Full tiles start at a multiple of 64 bytes when each output row is a multiple of 64 bytes.
  if (o.stream && aligned64(job.out) && (job.rows * sizeof(Out)) % 64 == 0 &&
      (begin * sizeof(Out)) % 64 == 0)
    hf_piece<Out, true>(job, expert, group_begin, group_end, begin, end);
  else
    hf_piece<Out, false>(job, expert, group_begin, group_end, begin, end);
}

}  // namespace

path_kernels avx512_kernels() {
  return {[](const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
            if (job.dtype == out_dtype::bf16)
              native_entry<std::uint16_t>(job, begin, end, o);
            else
              native_entry<std::uint32_t>(job, begin, end, o);
          },
          [](const decode_job& job, std::uint64_t expert, std::uint64_t group_begin,
             std::uint64_t group_end, std::uint64_t begin, std::uint64_t end, piece_options o) {
            if (job.dtype == out_dtype::bf16)
              hf_entry<std::uint16_t>(job, expert, group_begin, group_end, begin, end, o);
            else
              hf_entry<std::uint32_t>(job, expert, group_begin, group_end, begin, end, o);
          }};
}

}  // namespace umload::cpu::detail

#else  // not x86-64: the dispatcher never selects this path; keep the symbol.

namespace umload::cpu::detail {
path_kernels avx512_kernels() { return portable_kernels(); }
}  // namespace umload::cpu::detail

#endif
