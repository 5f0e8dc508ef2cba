// AVX2 block-FP8 decode, compiled with its own -m flags (and -ffp-contract=off) and called only
// when the CPU has AVX2. 16 values per step, as two halves of 8:
//  - the codes widen to dwords and become F32 bits in integer arithmetic, as
//    fp8::e4m3_to_f32_bits does: a normal code's magnitude bits shifted to bit 20 plus 120 << 23
//    (the exponent bias moved from 7 to 127); the 8 subnormal magnitudes (exponent 0) come from
//    an 8-entry table (vpermd); the code's sign goes to bit 31, NaN codes are the magnitude 0x7F.
//    No floating-point operation sees a subnormal code (some CPUs take a slow path on them);
//  - one multiply by the column's scale, then every NaN becomes fp8::f32_nan, and BF16 output
//    rounds to nearest even in integer arithmetic (bf16_of_f32_bits) before a saturating pack.
// The row's last values (fewer than 16) take the scalar core.
#include "kernels/fp8_cpu_detail.hpp"

#if defined(__x86_64__)

#include <immintrin.h>

#include <cstring>

namespace umload::fp8::cpu::detail {

namespace {

// F32 bits of the 8 subnormal magnitudes 0 .. 7 (times 2^-9).
inline __m256i subnormal_table() {
  return _mm256_setr_epi32(
      static_cast<int>(e4m3_to_f32_bits(0)), static_cast<int>(e4m3_to_f32_bits(1)),
      static_cast<int>(e4m3_to_f32_bits(2)), static_cast<int>(e4m3_to_f32_bits(3)),
      static_cast<int>(e4m3_to_f32_bits(4)), static_cast<int>(e4m3_to_f32_bits(5)),
      static_cast<int>(e4m3_to_f32_bits(6)), static_cast<int>(e4m3_to_f32_bits(7)));
}

// F32 bits of code * scale for 8 codes (the low 8 bytes of `bytes`) and 8 scales; NaN canonical.
inline __m256i product_bits(__m128i bytes, __m256 scales, __m256i subnormals) {
  const __m256i x = _mm256_cvtepu8_epi32(bytes);
  const __m256i magnitude = _mm256_and_si256(x, _mm256_set1_epi32(0x7F));
  const __m256i normal =
      _mm256_add_epi32(_mm256_slli_epi32(magnitude, 20), _mm256_set1_epi32(120 << 23));
  const __m256i subnormal = _mm256_permutevar8x32_epi32(subnormals, magnitude);
  const __m256i exponent_zero = _mm256_cmpeq_epi32(
      _mm256_and_si256(magnitude, _mm256_set1_epi32(0x78)), _mm256_setzero_si256());
  const __m256i sign =
      _mm256_and_si256(_mm256_slli_epi32(x, 24), _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256i widened =
      _mm256_or_si256(_mm256_blendv_epi8(normal, subnormal, exponent_zero), sign);
  const __m256 product = _mm256_mul_ps(_mm256_castsi256_ps(widened), scales);
  const __m256 nan =
      _mm256_or_ps(_mm256_cmp_ps(product, product, _CMP_UNORD_Q),
                   _mm256_castsi256_ps(_mm256_cmpeq_epi32(magnitude, _mm256_set1_epi32(0x7F))));
  return _mm256_castps_si256(_mm256_blendv_ps(
      product, _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(f32_nan))), nan));
}

// BF16 bits (in the low half of each dword) of F32 bits that are not NaN, or bf16_nan for NaN.
inline __m256i bf16_bits(__m256i bits) {
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(
      _mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i nan = _mm256_cmpeq_epi32(bits, _mm256_set1_epi32(static_cast<int>(f32_nan)));
  return _mm256_blendv_epi8(rounded, _mm256_set1_epi32(bf16_nan), nan);
}

template <bool Stream>
inline void store(void* dst, __m256i v) {
  if constexpr (Stream)
    _mm256_stream_si256(static_cast<__m256i*>(dst), v);
  else
    _mm256_storeu_si256(static_cast<__m256i*>(dst), v);
}

template <typename Out, bool Stream>
void rows(const decode_job& job, std::uint64_t row_begin, std::uint64_t row_end) {
  const std::uint64_t cols = job.geometry.cols;
  row_scales scales;
  Out* out = static_cast<Out*>(job.out);
  const __m256i subnormals = subnormal_table();
  for (std::uint64_t row = row_begin; row < row_end; ++row) {
    const float* s = scales.for_row(job, row);
    const std::uint8_t* codes = job.codes + row * cols;
    Out* dst = out + row * cols;
    std::uint64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + c));
      const __m256i low = product_bits(bytes, _mm256_loadu_ps(s + c), subnormals);
      const __m256i high =
          product_bits(_mm_unpackhi_epi64(bytes, bytes), _mm256_loadu_ps(s + c + 8), subnormals);
      if constexpr (sizeof(Out) == 2) {
        // packus interleaves the 128-bit lanes: [l0..3 h0..3 | l4..7 h4..7]; put them in order.
        const __m256i packed = _mm256_packus_epi32(bf16_bits(low), bf16_bits(high));
        store<Stream>(dst + c, _mm256_permute4x64_epi64(packed, 0xD8));
      } else {
        store<Stream>(dst + c, low);
        store<Stream>(dst + c + 8, high);
      }
    }
    for (; c < cols; ++c) {
      Out value;
      if constexpr (sizeof(Out) == 2)
        value = decode_bf16(codes[c], s[c]);
      else
        value = decode_f32(codes[c], s[c]);
      std::memcpy(dst + c, &value, sizeof value);
    }
  }
  if constexpr (Stream) _mm_sfence();
}

template <typename Out>
void dispatch(const decode_job& job, std::uint64_t begin, std::uint64_t end, piece_options o) {
  if (o.stream && rows_aligned(job, 32))
    rows<Out, true>(job, begin, end);
  else
    rows<Out, false>(job, begin, end);
}

}  // namespace

rows_kernel avx2_rows() { return by_dtype<dispatch<std::uint16_t>, dispatch<std::uint32_t>>(); }

}  // namespace umload::fp8::cpu::detail

#else  // not x86-64: the dispatcher never selects this path; keep the symbol.

namespace umload::fp8::cpu::detail {
rows_kernel avx2_rows() { return portable_rows(); }
}  // namespace umload::fp8::cpu::detail

#endif
