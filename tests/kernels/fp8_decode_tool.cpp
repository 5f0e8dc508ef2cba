// Test-only: umload's block-FP8 decode as a command, so that tests/python/test_fp8_reference.py
// can hold its bits against the Python references without the scheme layer.
//
//   umload_fp8_decode_tool MATRICES ROWS COLS BLOCK_ROWS BLOCK_COLS CODES SCALES OUT DTYPE PATH
//
// CODES: MATRICES*ROWS*COLS raw F8_E4M3 bytes; SCALES: the F32 grid (little-endian); OUT gets the
// BF16 or F32 bits (DTYPE bf16 or f32) written by PATH (scalar, portable, avx2, avx512 or best).
// Exit 0 on success, 2 on bad arguments, 1 on a file error.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "kernels/fp8_cpu.hpp"

namespace {

bool read_file(const char* path, std::vector<std::uint8_t>& bytes, std::size_t expected) {
  std::FILE* f = std::fopen(path, "rb");
  if (!f) return false;
  bytes.resize(expected + 1);
  const std::size_t n = std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  bytes.resize(n);
  return n == expected;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 11) {
    std::fprintf(stderr,
                 "usage: %s MATRICES ROWS COLS BLOCK_ROWS BLOCK_COLS CODES SCALES OUT DTYPE PATH\n",
                 argv[0]);
    return 2;
  }
  try {
    umload::fp8::decode_job job;
    job.geometry = {std::stoull(argv[1]), std::stoull(argv[2]), std::stoull(argv[3]),
                    std::stoull(argv[4]), std::stoull(argv[5])};
    job.dtype = umload::parse_output_dtype(argv[9]);
    umload::cpu::isa path = umload::cpu::best_isa();
    if (std::string(argv[10]) != "best" && !umload::cpu::parse_isa(argv[10], path)) {
      std::fprintf(stderr, "unknown path '%s'\n", argv[10]);
      return 2;
    }
    if (!job.geometry.valid()) {
      std::fprintf(stderr, "block size has a zero side\n");
      return 2;
    }
    std::vector<std::uint8_t> codes, scales;
    if (!read_file(argv[6], codes, job.geometry.code_bytes())) {
      std::fprintf(stderr, "%s: expected %llu bytes of codes\n", argv[6],
                   static_cast<unsigned long long>(job.geometry.code_bytes()));
      return 1;
    }
    if (!read_file(argv[7], scales, job.geometry.scale_bytes())) {
      std::fprintf(stderr, "%s: expected %llu bytes of scales\n", argv[7],
                   static_cast<unsigned long long>(job.geometry.scale_bytes()));
      return 1;
    }
    std::vector<std::uint8_t> out(job.out_bytes());
    job.codes = codes.data();
    job.scales = scales.data();
    job.out = out.data();
    umload::fp8::cpu::decode(job, path, 0);
    std::FILE* f = std::fopen(argv[8], "wb");
    if (!f || std::fwrite(out.data(), 1, out.size(), f) != out.size() || std::fclose(f) != 0) {
      std::perror(argv[8]);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
