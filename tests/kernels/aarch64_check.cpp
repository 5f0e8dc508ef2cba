// The CPU kernels built for aarch64 (Grace, GB10) and run under qemu: every path that CPU has
// (scalar, portable) must equal the scalar oracle. Built and run by ctest only where an aarch64
// cross compiler and qemu-aarch64 are installed (g++-aarch64-linux-gnu, qemu-user).
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/cpu_decode.hpp"
#include "kernels/mxfp4.hpp"
int main() {
  using namespace umload;
  const unsigned E = 2, R = 37, G = 3;
  std::vector<std::uint8_t> blocks(E * R * G * 16), scales(E * R * G);
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = (i * 2654435761u) >> 24;
  for (size_t i = 0; i < scales.size(); ++i) scales[i] = i % 256;
  int bad = 0;
  for (auto order : {layout::hf, layout::native})
    for (auto dt : {output_dtype::bf16, output_dtype::f32}) {
      decode_job job;
      job.blocks = blocks.data();
      job.scales = scales.data();
      job.experts = E;
      job.rows = R;
      job.groups = G;
      job.order = order;
      job.dtype = dt;
      std::vector<std::uint8_t> a(job.out_bytes()), b(job.out_bytes());
      job.out = a.data();
      cpu::decode_scalar(job);
      for (auto path : cpu::supported_isas()) {
        job.out = b.data();
        cpu::decode(job, path, 2);
        bad += std::memcmp(a.data(), b.data(), a.size()) != 0;
      }
    }
  std::printf("aarch64: %zu paths, %d mismatches\n", cpu::supported_isas().size(), bad);
  return bad;
}
