// What this measures: the two limits a GPU load runs against, and how close the decode kernels
// come to the first.
//   device copy     cudaMemcpyAsync device to device, 1 GiB; bytes read + written. The ceiling
//                   for any kernel that reads its input once and writes its output once.
//   pinned H2D      cudaMemcpyAsync from cudaHostAlloc'd memory, 1 GiB. The ceiling of a
//                   discrete-GPU load from the page cache (every quantized byte crosses once).
//   decode kernels  umload::cuda::decode on gpt-oss-20b expert tensors (E=32; gate_up 5760 rows,
//                   down 2880 rows, 90 groups), hf and native, bf16 (and f32 for down); bytes =
//                   blocks + scales read + output written. Target: >= 80% of device copy.
//   output check    cuda::summarize (CUB) over the gate_up bf16 output; bytes = output read.
// Each number is the median of event-timed repetitions after warm-ups, on random codes with
// scales near 127 (real checkpoints' range). Prints a table, then one `result` line per row for
// bench/gpu_check.sh. Without a usable device it says so and exits 0.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_decode.hpp"

namespace {

using namespace umload;

struct row {
  std::string name;
  double bytes;
  double ms;
};

double median_ms(cudaStream_t stream, int warmups, int reps, const std::function<void()>& work) {
  cudaEvent_t start, stop;
  UMLOAD_CUDA_CHECK(cudaEventCreate(&start));
  UMLOAD_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmups; ++i) work();
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    UMLOAD_CUDA_CHECK(cudaEventRecord(start, stream));
    work();
    UMLOAD_CUDA_CHECK(cudaEventRecord(stop, stream));
    UMLOAD_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    UMLOAD_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  UMLOAD_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

int run() {
  int count = 0;
  const cudaError_t probe = cudaGetDeviceCount(&count);
  if (probe != cudaSuccess || count == 0) {
    std::printf("umload_gpu_bench: no usable CUDA device (%s); nothing measured\n",
                probe == cudaSuccess ? "0 devices" : cudaGetErrorName(probe));
    return 0;
  }
  UMLOAD_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop{};
  UMLOAD_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / double(1ull << 30));
  cudaStream_t stream;
  UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<row> rows;

  const std::size_t copy_bytes = 1ull << 30;
  {
    void* a = device_alloc(copy_bytes);
    void* b = device_alloc(copy_bytes);
    UMLOAD_CUDA_CHECK(cudaMemsetAsync(a, 0x3C, copy_bytes, stream));
    const double ms = median_ms(stream, 3, 15, [&] {
      UMLOAD_CUDA_CHECK(cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice, stream));
    });
    rows.push_back({"device_copy", 2.0 * copy_bytes, ms});
    void* host = nullptr;
    UMLOAD_CUDA_CHECK(cudaHostAlloc(&host, copy_bytes, cudaHostAllocDefault));
    std::fill_n(static_cast<char*>(host), copy_bytes, 1);
    const double h2d = median_ms(stream, 2, 10, [&] {
      UMLOAD_CUDA_CHECK(cudaMemcpyAsync(a, host, copy_bytes, cudaMemcpyHostToDevice, stream));
    });
    rows.push_back({"pinned_h2d", double(copy_bytes), h2d});
    UMLOAD_CUDA_CHECK(cudaFreeHost(host));
    UMLOAD_CUDA_CHECK(cudaFree(a));
    UMLOAD_CUDA_CHECK(cudaFree(b));
  }

  struct shape {
    const char* name;
    std::uint64_t experts, rows, groups;
  };
  const shape shapes[] = {{"gate_up", 32, 5760, 90}, {"down", 32, 2880, 90}};
  for (const shape& s : shapes) {
    decode_job job;
    job.experts = s.experts;
    job.rows = s.rows;
    job.groups = s.groups;
    std::vector<std::uint8_t> blocks(job.block_bytes()), scales(job.scale_bytes());
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (auto& b : blocks) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<std::uint8_t>(x >> 24);
    }
    for (auto& sc : scales) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      sc = static_cast<std::uint8_t>(118 + (x >> 40) % 12);
    }
    auto* d_blocks = static_cast<std::uint8_t*>(device_alloc(blocks.size()));
    auto* d_scales = static_cast<std::uint8_t*>(device_alloc(scales.size()));
    UMLOAD_CUDA_CHECK(cudaMemcpy(d_blocks, blocks.data(), blocks.size(), cudaMemcpyHostToDevice));
    UMLOAD_CUDA_CHECK(cudaMemcpy(d_scales, scales.data(), scales.size(), cudaMemcpyHostToDevice));
    job.blocks = d_blocks;
    job.scales = d_scales;
    for (output_dtype dtype : {output_dtype::bf16, output_dtype::f32}) {
      if (dtype == output_dtype::f32 && std::string(s.name) != "down") continue;
      job.dtype = dtype;
      void* out = device_alloc(job.out_bytes());
      job.out = out;
      for (layout order : {layout::hf, layout::native}) {
        job.order = order;
        const double ms = median_ms(stream, 3, 20, [&] { cuda::decode(job, stream); });
        rows.push_back(
            {std::string("decode_") + to_string(order) + "_" + to_string(dtype) + "_" + s.name,
             double(job.block_bytes() + job.scale_bytes() + job.out_bytes()), ms});
      }
      if (dtype == output_dtype::bf16 && std::string(s.name) == "gate_up") {
        const std::size_t scratch_bytes = cuda::summarize_scratch_bytes(job.values());
        void* scratch = device_alloc(scratch_bytes);
        const double ms = median_ms(stream, 1, 5, [&] {
          cuda::summarize(out, job.values(), dtype, scratch, scratch_bytes, stream);
        });
        UMLOAD_CUDA_CHECK(cudaFree(scratch));
        rows.push_back({"output_check_bf16_gate_up", double(job.out_bytes()), ms});
      }
      UMLOAD_CUDA_CHECK(cudaFree(out));
    }
    UMLOAD_CUDA_CHECK(cudaFree(d_blocks));
    UMLOAD_CUDA_CHECK(cudaFree(d_scales));
  }
  UMLOAD_CUDA_CHECK(cudaStreamDestroy(stream));

  const double copy_gbps = rows[0].bytes / (rows[0].ms * 1e6);
  std::printf("\n%-28s %12s %10s %10s %12s\n", "measurement", "GB moved", "ms", "GB/s",
              "% dev copy");
  for (const row& r : rows) {
    const double gbps = r.bytes / (r.ms * 1e6);
    std::printf("%-28s %12.3f %10.3f %10.1f %11.1f%%\n", r.name.c_str(), r.bytes / 1e9, r.ms, gbps,
                100.0 * gbps / copy_gbps);
  }
  std::printf("\n");
  for (const row& r : rows)
    std::printf("result name=%s bytes=%.0f ms=%.4f gbps=%.2f\n", r.name.c_str(), r.bytes, r.ms,
                r.bytes / (r.ms * 1e6));
  return 0;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "umload_gpu_bench: %s\n", e.what());
    return 1;
  }
}
