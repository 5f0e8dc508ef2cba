// What one decode call covers: a run of whole experts of one MXFP4 expert tensor, and where its
// decoded values go. CPU and CUDA kernels take the same job, so the pipeline can hand any slice of
// a tensor to either backend.
#pragma once

#include <cstdint>

namespace umload {

// Where the input column goes in the output.
//   hf:     [experts, in, out] = [E, G*32, rows]   (HF transformers, NeMo; the default)
//   native: [experts, out, in] = [E, rows, G*32]   (the checkpoint's own order)
enum class layout : std::uint8_t { hf, native };

enum class out_dtype : std::uint8_t { bf16, f32 };

inline const char* to_string(layout l) { return l == layout::hf ? "hf" : "native"; }
inline const char* to_string(out_dtype d) { return d == out_dtype::bf16 ? "bf16" : "f32"; }
inline unsigned element_bytes(out_dtype d) { return d == out_dtype::bf16 ? 2u : 4u; }

struct decode_job {
  const std::uint8_t* blocks = nullptr;  // [experts][rows][groups][16]
  const std::uint8_t* scales = nullptr;  // [experts][rows][groups]
  void* out = nullptr;                   // see layout
  std::uint64_t experts = 0;
  std::uint64_t rows = 0;    // output features (2I for gate_up, H for down)
  std::uint64_t groups = 0;  // input features / 32
  layout order = layout::hf;
  out_dtype dtype = out_dtype::bf16;

  std::uint64_t values() const { return experts * rows * groups * 32; }
  std::uint64_t block_bytes() const { return experts * rows * groups * 16; }
  std::uint64_t scale_bytes() const { return experts * rows * groups; }
  std::uint64_t out_bytes() const { return values() * element_bytes(dtype); }
};

}  // namespace umload
