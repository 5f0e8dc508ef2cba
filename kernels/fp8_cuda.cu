// The CUDA block-FP8 kernel: a thin launch wrapper around the per-unit work in fp8_tile.hpp (which
// a host test runs over whole grids). The grid is persistent: one wave of resident blocks strides
// over the units.
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_launch.hpp"
#include "kernels/error.hpp"
#include "kernels/fp8_cuda.hpp"
#include "kernels/fp8_tile.hpp"

namespace umload::fp8::cuda {
namespace {

using umload::detail::device_sink;
using umload::detail::persistent_blocks;

template <typename Out>
__global__ void __launch_bounds__(fp8_tile::threads)
    decode_kernel(fp8_tile::grid g, const std::uint8_t* __restrict__ codes,
                  const void* __restrict__ scales, Out* __restrict__ out) {
  device_sink<Out> sink{out};
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t unit = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       unit < g.units; unit += stride)
    fp8_tile::decode_unit<Out>(g, unit, codes, scales, sink);
}

template <typename Out>
void launch(const decode_job& job, cudaStream_t stream) {
  const fp8_tile::grid g = fp8_tile::plan(job);
  const unsigned blocks = persistent_blocks<decode_kernel<Out>>(
      fp8_tile::threads, (g.units + fp8_tile::threads - 1) / fp8_tile::threads);
  UMLOAD_CUDA_CLEAR_ERROR();
  decode_kernel<Out><<<blocks, fp8_tile::threads, 0, stream>>>(g, job.codes, job.scales,
                                                               static_cast<Out*>(job.out));
  UMLOAD_CUDA_CHECK_LAUNCH();
}

}  // namespace

void decode(const decode_job& job, void* stream) {
  if (!job.geometry.valid())
    throw usage_error("fp8 cuda::decode: block size " + std::to_string(job.geometry.block_rows) +
                      "x" + std::to_string(job.geometry.block_cols) + " has a zero side");
  if (job.dtype != output_dtype::bf16 && job.dtype != output_dtype::f32)
    throw usage_error("fp8 cuda::decode: output dtype must be bf16 or f32, got " +
                      std::string(to_string(job.dtype)));
  if (job.values() == 0) return;
  if (job.codes == nullptr || job.scales == nullptr || job.out == nullptr)
    throw usage_error("fp8 cuda::decode: job has a null codes, scales or out pointer");
  const auto s = static_cast<cudaStream_t>(stream);
  if (job.dtype == output_dtype::bf16)
    launch<std::uint16_t>(job, s);
  else
    launch<std::uint32_t>(job, s);
}

}  // namespace umload::fp8::cuda
