// The CUDA decode kernels' host API. No CUDA header leaks from here: streams are passed as void*
// (a cudaStream_t), and every pointer in a job must be addressable by the current device (device
// memory, mapped pinned memory, or host memory on coherent machines).
//
//   umload::cuda::decode(job, stream);                 // enqueue; returns at once
//   scratch of summarize_scratch_bytes(n) device bytes, from the caller's allocator:
//   auto s = umload::cuda::summarize(out, n, dtype, scratch, bytes, stream);  // waits for it
//
// The kernels compute exactly what cpu::decode_scalar computes (kernels/cuda_tile.hpp says how).
// Errors throw umload::cuda_error. Declared for every build; defined only when CUDA is enabled.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cuda_tile.hpp"
#include "kernels/decode_job.hpp"

namespace umload::cuda {

// Enqueues the decode of `job` on `stream` (nullptr: the legacy default stream) of the current
// device. An empty job launches nothing.
void decode(const decode_job& job, void* stream);

// Device bytes of scratch that summarize() needs for `values` elements. The caller allocates
// them, so that they count in its peak device bytes.
std::size_t summarize_scratch_bytes(std::uint64_t values);

// Count of non-finite values and checksum of an output tensor of `values` elements, computed on
// the device with cub::DeviceReduce (same numbers as cuda_tile::summarize_host) in `scratch`
// (device memory of at least summarize_scratch_bytes(values)). Synchronizes `stream`.
cuda_tile::output_summary summarize(const void* out, std::uint64_t values, output_dtype dtype,
                                    void* scratch, std::size_t scratch_bytes, void* stream);

}  // namespace umload::cuda
