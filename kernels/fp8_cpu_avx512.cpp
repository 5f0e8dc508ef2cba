// AVX-512 (F, BW, VL, DQ) block-FP8 decode, compiled with its own -m flags (and
// -ffp-contract=off) and called only when the CPU has them. The arithmetic is the AVX2 path's
// (kernels/fp8_cpu_avx2.cpp says why it is exact), 16 values per step with vpermd on a 16-entry
// table for the subnormal codes, mask registers for the NaN fix-up, vpmovdw for the BF16 pack, and
// masked loads and stores for the row's last values, so no value takes a scalar path.
#include "kernels/fp8_cpu_detail.hpp"

#if defined(__x86_64__)

#include <immintrin.h>

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

template <typename Out>
void dispatch(const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
  // Full steps of a 64-byte aligned row are 32 (BF16) or 64 (F32) bytes from an aligned start.
  if (o.stream && rows_aligned(job, 64))
    rows<Out, true>(job, begin, end);
  else
    rows<Out, false>(job, begin, end);
}

}  // namespace

rows_kernel avx512_rows() {
  return [](const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
    if (job.dtype == output_dtype::bf16)
      dispatch<std::uint16_t>(job, begin, end, o);
    else
      dispatch<std::uint32_t>(job, begin, end, o);
  };
}

}  // namespace umload::fp8::cpu::detail

#else  // not x86-64: the dispatcher never selects this path; keep the symbol.

namespace umload::fp8::cpu::detail {
rows_kernel avx512_rows() { return portable_rows(); }
}  // namespace umload::fp8::cpu::detail

#endif
