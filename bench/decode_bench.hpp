// What the CPU decode benchmarks (bench_decode.cpp: MXFP4; bench_fp8.cpp: block FP8) share: page-
// aligned buffers faulted in before timing, one output buffer reused by every case, the memset
// limit on the same threads, the thread counts, the counters, the case settings and main().
#pragma once

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "kernels/cpu_decode.hpp"

namespace umload::bench {

struct aligned_free {
  void operator()(void* p) const { std::free(p); }
};
using buffer = std::unique_ptr<std::uint8_t, aligned_free>;

inline buffer allocate(std::uint64_t bytes) {
  const std::uint64_t rounded = (bytes + 4095) / 4096 * 4096;
  auto* p = static_cast<std::uint8_t*>(std::aligned_alloc(4096, rounded));
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded);  // fault the pages in before timing
  return buffer(p);
}

// One output buffer reused by every case (the largest one), so that its pages stay faulted in.
inline std::uint8_t* output_buffer(std::uint64_t bytes) {
  static buffer out;
  static std::uint64_t capacity = 0;
  if (bytes > capacity) {
    out.reset();
    out = allocate(bytes);
    capacity = bytes;
  }
  return out.get();
}

// bytes_per_second counts the output bytes (what a loader delivers); rw_bytes_per_second adds
// the `in_bytes` read per iteration.
inline void set_counters(benchmark::State& state, std::uint64_t in_bytes, std::uint64_t out_bytes,
                         int threads) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out_bytes));
  state.counters["rw_bytes_per_second"] = benchmark::Counter(
      static_cast<double>(in_bytes) + static_cast<double>(out_bytes),
      benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1024);
  state.counters["threads"] = threads;
}

// The limit: memset of `bytes` of the output buffer on state.range(0) threads, each filling its
// own page-aligned chunk.
inline void memset_output(benchmark::State& state, std::uint64_t bytes) {
  const int threads = static_cast<int>(state.range(0));
  std::uint8_t* out = output_buffer(bytes);
  int value = 0;
  for (auto _ : state) {
    ++value;
#pragma omp parallel num_threads(threads)
    {
      const auto n = static_cast<std::uint64_t>(omp_get_num_threads());
      const auto t = static_cast<std::uint64_t>(omp_get_thread_num());
      const std::uint64_t chunk = (bytes / n + 4095) / 4096 * 4096;
      const std::uint64_t begin = std::min(bytes, t * chunk);
      std::memset(out + begin, value, std::min(bytes, begin + chunk) - begin);
    }
    benchmark::ClobberMemory();
  }
  set_counters(state, 0, bytes, threads);
}

inline double fastest(const std::vector<double>& v) {
  return *std::min_element(v.begin(), v.end());
}

// Arguments {threads, experts} for 1, 2, 4, ... threads and all of them.
inline void thread_args(benchmark::internal::Benchmark* b, std::int64_t experts) {
  const int max_threads = omp_get_max_threads();
  for (int t = 1; t <= max_threads; t *= 2) b->Args({t, experts});
  if ((max_threads & (max_threads - 1)) != 0) b->Args({max_threads, experts});
}

// Every case: arguments named {threads, experts}, real time, the fastest repetition as "min",
// times in milliseconds.
inline void case_settings(benchmark::internal::Benchmark* b) {
  b->ArgNames({"threads", "experts"})
      ->UseRealTime()
      ->ComputeStatistics("min", fastest)
      ->Unit(benchmark::kMillisecond);
}

// The benchmark's main(): Google Benchmark's flags, then the cases `register_cases` adds, with
// the CPU's best decode path in the context.
inline int run(int argc, char** argv, void (*register_cases)()) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_cases();
  benchmark::AddCustomContext("best_isa", std::string(cpu::to_string(cpu::best_isa())));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace umload::bench
