// What one decode call covers: a run of whole experts of one MXFP4 expert tensor, and where its
// decoded values go. CPU and CUDA kernels take the same job, so the pipeline can hand any slice of
// a tensor to either backend.
#pragma once

#include <cstdint>

#include "kernels/mxfp4.hpp"
#include "kernels/vocabulary.hpp"

namespace umload {

struct decode_job {
  const std::uint8_t* blocks = nullptr;  // [experts][rows][groups][16]
  const std::uint8_t* scales = nullptr;  // [experts][rows][groups]
  void* out = nullptr;                   // see layout
  std::uint64_t experts = 0;
  std::uint64_t rows = 0;    // output features (2I for gate_up, H for down)
  std::uint64_t groups = 0;  // input features / 32
  layout order = layout::hf;
  output_dtype dtype = output_dtype::bf16;

  // A job over `experts` whole experts of this geometry; the caller points blocks, scales, out.
  static decode_job of(const mxfp4::expert_geometry& g, std::uint64_t experts, layout order,
                       output_dtype dtype) {
    decode_job job;
    job.experts = experts;
    job.rows = g.rows;
    job.groups = g.groups;
    job.order = order;
    job.dtype = dtype;
    return job;
  }

  mxfp4::expert_geometry geometry() const { return {rows, groups}; }
  std::uint64_t values() const { return experts * geometry().values(); }
  std::uint64_t block_bytes() const { return experts * geometry().blocks(); }
  std::uint64_t scale_bytes() const { return experts * geometry().scales(); }
  std::uint64_t out_bytes() const { return experts * geometry().output(element_bytes(dtype)); }
};

}  // namespace umload
