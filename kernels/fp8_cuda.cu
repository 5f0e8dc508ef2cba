// The CUDA block-FP8 kernel: a thin launch wrapper around the per-unit work in fp8_tile.hpp (which
// a host test runs over whole grids). The grid is persistent: one wave of resident blocks strides
// over the units.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/cuda_check.hpp"
#include "kernels/error.hpp"
#include "kernels/fp8_cuda.hpp"
#include "kernels/fp8_tile.hpp"

namespace umload::fp8::cuda {
namespace {

template <typename Out>
struct device_sink {
  Out* out;
  __device__ void store_vec(std::uint64_t index, const std::uint32_t w[4]) {
    *reinterpret_cast<uint4*>(out + index) = make_uint4(w[0], w[1], w[2], w[3]);
  }
  __device__ void store(std::uint64_t index, Out value) { out[index] = value; }
};

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

// Blocks for a persistent grid: as many as fit on the device at once, at most one per unit run.
template <typename Kernel>
unsigned persistent_blocks(Kernel kernel, std::uint64_t units) {
  int device = 0;
  UMLOAD_CUDA_CHECK(cudaGetDevice(&device));
  int multiprocessors = 0;
  UMLOAD_CUDA_CHECK(
      cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  int per_multiprocessor = 0;
  UMLOAD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel,
                                                                  fp8_tile::threads, 0));
  const std::uint64_t resident =
      static_cast<std::uint64_t>(std::max(1, multiprocessors * std::max(1, per_multiprocessor)));
  const std::uint64_t needed = (units + fp8_tile::threads - 1) / fp8_tile::threads;
  return static_cast<unsigned>(std::max<std::uint64_t>(1, std::min(resident, needed)));
}

template <typename Out>
void launch(const decode_job& job, cudaStream_t stream) {
  const fp8_tile::grid g = fp8_tile::plan(job);
  const unsigned blocks = persistent_blocks(decode_kernel<Out>, g.units);
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
