// The CUDA decode kernels' host API. No CUDA header leaks from here: streams are passed as void*
// (a cudaStream_t), and every pointer in a job must be addressable by the current device (device
// memory, mapped pinned memory, or host memory on coherent machines).
//
//   umload::cuda::decode(job, stream);                 // enqueue; returns at once
//   auto s = umload::cuda::summarize(out, n, dtype, stream);  // CUB check; waits for the result
//
// The kernels compute exactly what cpu::decode_scalar computes (kernels/cuda_tile.hpp says how).
// Errors throw umload::cuda_error. Declared for every build; defined only when CUDA is enabled.
#pragma once

#include <cstdint>

#include "kernels/cuda_tile.hpp"
#include "kernels/decode_job.hpp"

namespace umload::cuda {

// Enqueues the decode of `job` on `stream` (nullptr: the legacy default stream) of the current
// device. An empty job launches nothing.
void decode(const decode_job& job, void* stream);

// Count of non-finite values and checksum of an output tensor of `values` elements, computed on
// the device with cub::DeviceReduce (same numbers as cuda_tile::summarize_host). Synchronizes
// `stream`.
cuda_tile::output_summary summarize(const void* out, std::uint64_t values, out_dtype dtype,
                                    void* stream);

}  // namespace umload::cuda
