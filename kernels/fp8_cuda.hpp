// The CUDA block-FP8 decode's host API. No CUDA header leaks from here: streams are passed as
// void* (a cudaStream_t), and every pointer in a job must be addressable by the current device.
//
//   umload::fp8::cuda::decode(job, stream);  // enqueue; returns at once
//
// The kernel computes exactly what fp8::cpu::decode_scalar computes (kernels/fp8_tile.hpp says
// how). Errors throw umload::cuda_error or usage_error. Declared for every build; defined only
// when CUDA is enabled.
#pragma once

#include "kernels/fp8.hpp"

namespace umload::fp8::cuda {

// Enqueues the decode of `job` on `stream` (nullptr: the legacy default stream) of the current
// device. An empty job launches nothing.
void decode(const decode_job& job, void* stream);

}  // namespace umload::fp8::cuda
