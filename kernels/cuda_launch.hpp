// What the CUDA kernels' launch code shares (cuda_decode.cu: MXFP4; fp8_cuda.cu: block FP8): the
// sink through which the per-thread work (cuda_tile.hpp, fp8_tile.hpp) stores to device memory,
// and the size of a persistent grid. For .cu files only: it needs nvcc.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>

#include "kernels/cuda_check.hpp"

namespace umload::detail {

// Stores of the per-thread work to device memory: `store_vec` writes 16 bytes at an index the
// work has checked to be 16-byte aligned.
template <typename Out>
struct device_sink {
  Out* out;
  __device__ void store_vec(std::uint64_t index, const std::uint32_t w[4]) {
    *reinterpret_cast<uint4*>(out + index) = make_uint4(w[0], w[1], w[2], w[3]);
  }
  __device__ void store(std::uint64_t index, Out value) { out[index] = value; }
};

// Blocks of `threads` threads for a persistent grid of `Kernel`: as many as fit on the device at
// once, at most one per work piece. The count is cached per kernel and device: a pipeline
// launches once per staged item, and items can be short enough for the queries to show.
template <auto Kernel>
unsigned persistent_blocks(unsigned threads, std::uint64_t pieces) {
  static std::array<std::atomic<int>, 64> resident_by_device{};
  int device = 0;
  UMLOAD_CUDA_CHECK(cudaGetDevice(&device));
  int resident = device < 64 ? resident_by_device[device].load(std::memory_order_relaxed) : 0;
  if (resident == 0) {
    int multiprocessors = 0;
    UMLOAD_CUDA_CHECK(
        cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    int per_multiprocessor = 0;
    UMLOAD_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, Kernel, threads, 0));
    resident = std::max(1, multiprocessors * std::max(1, per_multiprocessor));
    if (device < 64) resident_by_device[device].store(resident, std::memory_order_relaxed);
  }
  return static_cast<unsigned>(std::min<std::uint64_t>(static_cast<std::uint64_t>(resident),
                                                       std::max<std::uint64_t>(pieces, 1)));
}

}  // namespace umload::detail
