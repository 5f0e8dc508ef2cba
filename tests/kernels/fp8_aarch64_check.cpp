// The block-FP8 CPU kernels built for aarch64 (Grace, GB10) and run under qemu: every path that
// CPU has (scalar, portable) must equal the scalar oracle, and the oracle the exactly rounded
// product (computed in double: the product of a 4-bit and a 24-bit significand is exact there)
// for all 256 codes under edge and random scales. Built and run by ctest only where an aarch64
// cross compiler and qemu-aarch64 are installed (g++-aarch64-linux-gnu, qemu-user).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/fp8.hpp"
#include "kernels/fp8_cpu.hpp"

namespace {

std::uint32_t exact_product(unsigned code, float scale) {
  if (umload::fp8::is_nan_code(code) || std::isnan(scale)) return umload::fp8::f32_nan;
  const unsigned e = (code >> 3) & 0xF, m = code & 7;
  const double magnitude = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, static_cast<int>(e) - 10);
  const double product = ((code & 0x80) ? -magnitude : magnitude) * static_cast<double>(scale);
  if (std::isnan(product)) return umload::fp8::f32_nan;
  const float rounded = static_cast<float>(product);
  std::uint32_t bits;
  std::memcpy(&bits, &rounded, 4);
  return bits;
}

}  // namespace

int main() {
  using namespace umload;
  const std::uint32_t edges[] = {0x00000000u, 0x80000000u, 0x7F800000u, 0x7FC00000u, 0x00000001u,
                                 0x007FFFFFu, 0x7F7FFFFFu, 0x3F800000u, 0x0B800000u, 0x03800000u};
  std::mt19937 rng(22);
  int bad = 0;
  // Row and column edge blocks; the second shape's 128 x 128 blocks take the portable path's
  // lookup tables, the first's small blocks its value-by-value loop.
  for (const fp8::block_geometry g :
       {fp8::block_geometry{2, 40, 300, 16, 64}, fp8::block_geometry{1, 160, 200, 128, 128}}) {
    std::vector<std::uint8_t> codes(g.values());
    std::vector<float> scales(g.scales());
    for (std::size_t i = 0; i < codes.size(); ++i)
      codes[i] = static_cast<std::uint8_t>(i * 7 + i / 300);
    for (std::size_t i = 0; i < scales.size(); ++i) {
      const std::uint32_t b = i < std::size(edges) ? edges[i] : rng();
      std::memcpy(&scales[i], &b, 4);
    }
    for (auto dtype : {output_dtype::bf16, output_dtype::f32}) {
      fp8::decode_job job;
      job.codes = codes.data();
      job.scales = scales.data();
      job.geometry = g;
      job.dtype = dtype;
      std::vector<std::uint8_t> a(job.out_bytes()), b(job.out_bytes());
      job.out = a.data();
      fp8::cpu::decode_scalar(job);
      for (auto path : cpu::supported_isas()) {
        job.out = b.data();
        fp8::cpu::decode(job, path, 2);
        bad += std::memcmp(a.data(), b.data(), a.size()) != 0;
      }
    }
  }
  for (std::uint32_t i = 0; i < 20000; ++i) {
    std::uint32_t s = i < std::size(edges) ? edges[i] : rng();
    float scale;
    std::memcpy(&scale, &s, 4);
    for (unsigned code = 0; code < 256; ++code) {
      bad += fp8::decode_f32(code, scale) != exact_product(code, scale);
      bad += fp8::decode_bf16(code, scale) != fp8::bf16_of_f32_bits(exact_product(code, scale));
    }
  }
  std::printf("aarch64 fp8: %zu paths, %d mismatches\n", cpu::supported_isas().size(), bad);
  return bad != 0;
}
