// AVX-512 (F, BW, VL, DQ) block-FP8 decode, compiled with its own -m flags (and
// -ffp-contract=off) and called only when the CPU has them. The arithmetic is the AVX2 path's
// (kernels/fp8_cpu_avx2.cpp says why it is exact), 16 values per step with vpermd on a 16-entry
// table for the subnormal codes, mask registers for the NaN fix-up, vpmovdw for the BF16 pack, and
// masked loads and stores for the row's last values, so no value takes a scalar path.
//
// BF16 output on CPUs with AVX512-VBMI, where the block width is a multiple of 64 (128 in every
// public checkpoint), takes a table path instead: for each block of a scale row, the 256 BF16
// results of that block's scale are computed once by the arithmetic above (a 128 x 128 block reuses
// them 64 times per code), kept as a 256-byte table of low bytes and one of high bytes, and each
// 64 codes are looked up with two-source byte permutes (vpermt2b reads 7 index bits; the code's
// bit 7 picks between two of them). No value is computed twice, and every value is a table entry
// built by the proven arithmetic, so the two paths write the same bits.
#include "kernels/fp8_cpu_detail.hpp"

#if defined(__x86_64__)

#include <immintrin.h>

#include <vector>

namespace umload::fp8::cpu::detail {

namespace {

// F32 bits of the 8 subnormal magnitudes 0 .. 7 (times 2^-9), twice (vpermd reads 4 index bits).
inline __m512i subnormal_table() {
  alignas(64) std::uint32_t t[16];
  for (unsigned m = 0; m < 16; ++m) t[m] = e4m3_to_f32_bits(m % 8);
  return _mm512_load_si512(t);
}

// F32 bits of code * scale for 16 codes and 16 scales, every NaN as f32_nan; `nan` gets the
// NaN lanes.
inline __m512i product_bits(__m128i bytes, __m512 scales, __m512i subnormals, __mmask16& nan) {
  const __m512i x = _mm512_cvtepu8_epi32(bytes);
  const __m512i magnitude = _mm512_and_si512(x, _mm512_set1_epi32(0x7F));
  const __m512i normal =
      _mm512_add_epi32(_mm512_slli_epi32(magnitude, 20), _mm512_set1_epi32(120 << 23));
  const __mmask16 exponent_zero = _mm512_testn_epi32_mask(magnitude, _mm512_set1_epi32(0x78));
  const __m512i widened = _mm512_or_si512(
      _mm512_mask_permutexvar_epi32(normal, exponent_zero, magnitude, subnormals),
      _mm512_and_si512(_mm512_slli_epi32(x, 24), _mm512_set1_epi32(static_cast<int>(0x80000000u))));
  const __m512 product = _mm512_mul_ps(_mm512_castsi512_ps(widened), scales);
  nan = _mm512_cmp_ps_mask(product, product, _CMP_UNORD_Q) |
        _mm512_cmpeq_epi32_mask(magnitude, _mm512_set1_epi32(0x7F));
  return _mm512_mask_blend_epi32(nan, _mm512_castps_si512(product),
                                 _mm512_set1_epi32(static_cast<int>(f32_nan)));
}

// BF16 bits of 16 F32 values, packed to 16 words.
inline __m256i bf16_words(__m512i bits, __mmask16 nan) {
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, _mm512_set1_epi32(bf16_nan)));
}

template <typename Out, bool Stream>
void rows(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end) {
  const std::uint64_t cols = job.geometry.cols;
  row_scales scales;
  Out* out = static_cast<Out*>(job.out);
  const __m512i subnormals = subnormal_table();
  for (std::uint64_t row = row_begin; row < row_end; ++row) {
    const float* s = scales.for_row(job, row);
    const std::uint8_t* codes = job.codes + row * cols;
    Out* dst = out + row * cols;
    for (std::uint64_t c = 0; c < cols; c += 16) {
      const bool full = c + 16 <= cols;
      const __mmask16 lanes =
          full ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (cols - c)) - 1);
      const __m128i bytes = full ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + c))
                                 : _mm_maskz_loadu_epi8(lanes, codes + c);
      const __m512 sc = full ? _mm512_loadu_ps(s + c) : _mm512_maskz_loadu_ps(lanes, s + c);
      __mmask16 nan;
      const __m512i bits = product_bits(bytes, sc, subnormals, nan);
      if constexpr (sizeof(Out) == 2) {
        const __m256i words = bf16_words(bits, nan);
        if (!full)
          _mm256_mask_storeu_epi16(dst + c, lanes, words);
        else if constexpr (Stream)
          _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + c), words);
        else
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), words);
      } else {
        if (!full)
          _mm512_mask_storeu_epi32(dst + c, lanes, bits);
        else if constexpr (Stream)
          _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + c), bits);
        else
          _mm512_storeu_si512(dst + c, bits);
      }
    }
  }
  if constexpr (Stream) _mm_sfence();
}

#define UMLOAD_VBMI __attribute__((target("avx512vbmi")))

// The BF16 results of one block's scale for all 256 codes: low bytes and high bytes.
struct block_table {
  __m512i low[4], high[4];
};

// The tables of one scale row (one per block), built when a row starts a new scale row.
class row_tables {
 public:
  const block_table* for_row(const decode_job& job, std::uint64_t row) {
    const block_geometry& g = job.geometry;
    const std::uint64_t scale_row = row / g.rows * g.scale_rows() + row % g.rows / g.block_rows;
    if (scale_row != current_) {
      tables_.resize(g.scale_cols());
      for (std::uint64_t b = 0; b < g.scale_cols(); ++b)
        build(scale_at(job.scales, scale_row * g.scale_cols() + b), tables_[b]);
      current_ = scale_row;
    }
    return tables_.data();
  }

 private:
  static void build(float scale, block_table& t) {
    const __m512i subnormals = subnormal_table();
    const __m512 s = _mm512_set1_ps(scale);
    alignas(64) std::uint16_t words[256];
    for (unsigned c = 0; c < 256; c += 16) {
      const __m128i codes =
          _mm_add_epi8(_mm_set1_epi8(static_cast<char>(c)),
                       _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
      __mmask16 nan;
      const __m512i bits = product_bits(codes, s, subnormals, nan);
      _mm256_store_si256(reinterpret_cast<__m256i*>(words + c), bf16_words(bits, nan));
    }
    for (unsigned q = 0; q < 4; ++q) {
      const __m512i first = _mm512_load_si512(words + 64 * q);
      const __m512i second = _mm512_load_si512(words + 64 * q + 32);
      t.low[q] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(first)),
                                    _mm512_cvtepi16_epi8(second), 1);
      t.high[q] = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(first, 8))),
          _mm512_cvtepi16_epi8(_mm512_srli_epi16(second, 8)), 1);
    }
  }

  std::vector<block_table> tables_;  // 64-byte aligned: C++17 aligned new
  std::uint64_t current_ = ~std::uint64_t{0};
};

// 64 codes through one block's tables: BF16 values 0..31 in `first`, 32..63 in `second`.
UMLOAD_VBMI inline void look_up(const block_table& t, __m512i codes, __m512i& first,
                                __m512i& second) {
  const __mmask64 upper = _mm512_movepi8_mask(codes);  // bit 7: codes 128..255
  const __m512i low =
      _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(t.low[0], codes, t.low[1]),
                             _mm512_permutex2var_epi8(t.low[2], codes, t.low[3]));
  const __m512i high =
      _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(t.high[0], codes, t.high[1]),
                             _mm512_permutex2var_epi8(t.high[2], codes, t.high[3]));
  // The byte unpacks interleave within 128-bit lanes: lane k of `a` holds values 16k .. 16k + 7,
  // of `b` 16k + 8 .. 16k + 15.
  const __m512i a = _mm512_unpacklo_epi8(low, high);
  const __m512i b = _mm512_unpackhi_epi8(low, high);
  first = _mm512_permutex2var_epi64(a, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), b);
  second = _mm512_permutex2var_epi64(a, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), b);
}

template <bool Stream>
UMLOAD_VBMI void table_rows(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end) {
  const std::uint64_t cols = job.geometry.cols;
  const std::uint64_t chunks_per_block = job.geometry.block_cols / 64;
  row_tables tables;
  auto* out = static_cast<std::uint16_t*>(job.out);
  for (std::uint64_t row = row_begin; row < row_end; ++row) {
    const block_table* t = tables.for_row(job, row);
    const std::uint8_t* codes = job.codes + row * cols;
    std::uint16_t* dst = out + row * cols;
    for (std::uint64_t c = 0, chunk = 0; c < cols; c += 64, ++chunk) {
      const block_table& table = t[chunk / chunks_per_block];
      __m512i first, second;
      if (c + 64 <= cols) {
        look_up(table, _mm512_loadu_si512(codes + c), first, second);
        if constexpr (Stream) {
          _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + c), first);
          _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + c + 32), second);
        } else {
          _mm512_storeu_si512(dst + c, first);
          _mm512_storeu_si512(dst + c + 32, second);
        }
      } else {
        const __mmask64 lanes = (~__mmask64{0}) >> (64 - (cols - c));
        look_up(table, _mm512_maskz_loadu_epi8(lanes, codes + c), first, second);
        _mm512_mask_storeu_epi16(dst + c, static_cast<__mmask32>(lanes), first);
        _mm512_mask_storeu_epi16(dst + c + 32, static_cast<__mmask32>(lanes >> 32), second);
      }
    }
  }
  if constexpr (Stream) _mm_sfence();
}

bool has_vbmi() {
  static const bool vbmi = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") != 0;
  }();
  return vbmi;
}

template <typename Out>
void dispatch(const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
  // Full steps of a 64-byte aligned row are 32 (BF16) or 64 (F32) bytes from an aligned start.
  const bool stream = o.stream && rows_aligned(job, 64);
  if constexpr (sizeof(Out) == 2) {
    if (job.geometry.block_cols % 64 == 0 && has_vbmi()) {
      if (stream)
        table_rows<true>(job, begin, end);
      else
        table_rows<false>(job, begin, end);
      return;
    }
  }
  if (stream)
    rows<Out, true>(job, begin, end);
  else
    rows<Out, false>(job, begin, end);
}

}  // namespace

rows_kernel avx512_rows() { return by_dtype<dispatch<std::uint16_t>, dispatch<std::uint32_t>>(); }

}  // namespace umload::fp8::cpu::detail

#else  // not x86-64: the dispatcher never selects this path; keep the symbol.

namespace umload::fp8::cpu::detail {
rows_kernel avx512_rows() { return portable_rows(); }
}  // namespace umload::fp8::cpu::detail

#endif
