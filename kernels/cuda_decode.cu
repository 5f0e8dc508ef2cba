// The CUDA decode kernels: thin launch wrappers around the per-thread work in cuda_tile.hpp (which
// a host test runs over whole grids). Grids are persistent: one wave of resident blocks strides
// over the work, so each block builds the 4 KiB decode table in shared memory once.
#include <cuda_runtime.h>
#include <thrust/iterator/counting_iterator.h>

#include <cub/device/device_reduce.cuh>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_decode.hpp"
#include "kernels/cuda_launch.hpp"
#include "kernels/error.hpp"

namespace umload::cuda {
namespace {

using namespace cuda_tile;

__device__ void fill_table(split_table_row* table) {
  for (unsigned s = threadIdx.x; s < 256; s += blockDim.x) table[s] = make_split_table_row(s);
}

using umload::detail::device_sink;
using umload::detail::persistent_blocks;

template <typename Out>
__global__ void __launch_bounds__(native_threads)
    native_kernel(native_grid g, const std::uint8_t* __restrict__ blocks,
                  const std::uint8_t* __restrict__ scales, Out* __restrict__ out) {
  __shared__ split_table_row table[256];
  fill_table(table);
  __syncthreads();
  device_sink<Out> sink{out};
  const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
  for (std::uint64_t unit = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       unit < g.units; unit += stride)
    native_unit<Out>(g, unit, blocks, scales, table, sink);
}

template <typename Out>
__global__ void __launch_bounds__(hf_threads)
    hf_kernel(hf_grid g, const std::uint8_t* __restrict__ blocks,
              const std::uint8_t* __restrict__ scales, Out* __restrict__ out) {
  __shared__ split_table_row table[256];
  __shared__ alignas(16) std::uint32_t tile_words[hf_tile_words];  // read back as 16-byte chunks
  fill_table(table);
  __syncthreads();
  device_sink<Out> sink{out};
  const std::uint64_t tiles = g.tiles();
  for (std::uint64_t index = blockIdx.x; index < tiles; index += gridDim.x) {
    const hf_tile t = hf_tile_at(g, index);
    hf_decode_to_tile(g, t, threadIdx.x, blocks, scales, table, tile_words);
    __syncthreads();
    hf_store_tile<Out>(g, t, threadIdx.x, tile_words, sink);
    __syncthreads();
  }
}

template <typename Out>
void launch(const decode_job& job, cudaStream_t stream) {
  const auto* blocks = job.blocks;
  const auto* scales = job.scales;
  auto* out = static_cast<Out*>(job.out);
  if (job.order == layout::native) {
    const native_grid g = plan_native(job);
    const unsigned grid = persistent_blocks<native_kernel<Out>>(
        native_threads, (g.units + native_threads - 1) / native_threads);
    UMLOAD_CUDA_CLEAR_ERROR();
    native_kernel<Out><<<grid, native_threads, 0, stream>>>(g, blocks, scales, out);
    UMLOAD_CUDA_CHECK_LAUNCH();
    return;
  }
  const hf_grid g = plan_hf(job);
  const unsigned grid = persistent_blocks<hf_kernel<Out>>(hf_threads, g.tiles());
  UMLOAD_CUDA_CLEAR_ERROR();
  hf_kernel<Out><<<grid, hf_threads, 0, stream>>>(g, blocks, scales, out);
  UMLOAD_CUDA_CHECK_LAUNCH();
}

struct summary_of_value {
  const void* out;
  bool f32;
  __device__ output_summary operator()(std::uint64_t index) const {
    const std::uint32_t bits = f32 ? static_cast<const std::uint32_t*>(out)[index]
                                   : static_cast<const std::uint16_t*>(out)[index];
    return summary_term(index, bits, f32);
  }
};

struct combine_summaries {
  __device__ output_summary operator()(const output_summary& a, const output_summary& b) const {
    return combine(a, b);
  }
};

}  // namespace

void decode(const decode_job& job, void* stream) {
  if (job.values() == 0) return;
  if (job.blocks == nullptr || job.scales == nullptr || job.out == nullptr)
    throw usage_error("cuda::decode: job has a null blocks, scales or out pointer");
  const auto s = static_cast<cudaStream_t>(stream);
  if (job.dtype == output_dtype::bf16)
    launch<std::uint16_t>(job, s);
  else
    launch<std::uint32_t>(job, s);
}

namespace {

// CUB's temporary storage for a reduction over `values` elements (a size query: no launch).
std::size_t reduce_bytes(std::uint64_t values, cudaStream_t s) {
  const thrust::counting_iterator<std::uint64_t> indices(0);
  std::size_t temp_bytes = 0;
  UMLOAD_CUDA_CHECK(cub::DeviceReduce::TransformReduce(
      nullptr, temp_bytes, indices, static_cast<output_summary*>(nullptr),
      static_cast<std::int64_t>(values), combine_summaries{}, summary_of_value{nullptr, false},
      output_summary{}, s));
  return temp_bytes;
}

constexpr std::size_t result_bytes = 256;  // the result, then CUB's storage at an aligned offset

}  // namespace

std::size_t summarize_scratch_bytes(std::uint64_t values) {
  return values == 0 ? 0 : result_bytes + reduce_bytes(values, nullptr);
}

output_summary summarize(const void* out, std::uint64_t values, output_dtype dtype, void* scratch,
                         std::size_t scratch_bytes, void* stream) {
  if (values == 0) return output_summary{};
  const auto s = static_cast<cudaStream_t>(stream);
  std::size_t temp_bytes = reduce_bytes(values, s);
  if (scratch == nullptr || scratch_bytes < result_bytes + temp_bytes)
    throw usage_error("cuda::summarize: scratch of " + std::to_string(scratch_bytes) + " bytes, " +
                      std::to_string(result_bytes + temp_bytes) + " needed");
  auto* result = static_cast<output_summary*>(scratch);
  void* temp = static_cast<std::uint8_t*>(scratch) + result_bytes;
  const thrust::counting_iterator<std::uint64_t> indices(0);
  const summary_of_value transform{out, dtype == output_dtype::f32};
  UMLOAD_CUDA_CLEAR_ERROR();
  UMLOAD_CUDA_CHECK(cub::DeviceReduce::TransformReduce(
      temp, temp_bytes, indices, result, static_cast<std::int64_t>(values), combine_summaries{},
      transform, output_summary{}, s));
  UMLOAD_CUDA_CHECK_LAUNCH();
  output_summary host{};
  UMLOAD_CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(host), cudaMemcpyDeviceToHost, s));
  UMLOAD_CUDA_CHECK(cudaStreamSynchronize(s));
  return host;
}

}  // namespace umload::cuda
