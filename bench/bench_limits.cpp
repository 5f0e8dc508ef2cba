// The machine's limits that the decode and the loader are judged against, measured with the same
// tool and in the same session as their benchmarks.
//
// What it measures:
//   BM_memset   glibc memset of a 256 MiB buffer, split over 1..N threads: the rate at which
//               output memory can be written at all (the CPU decode's upper bound).
//   BM_memset_fresh  memset of 1 GiB of fresh memory, mapped for each iteration the way the
//               loader maps its outputs (anonymous, 2 MiB aligned, MADV_HUGEPAGE): what writing
//               output costs when the kernel must first supply and zero its pages, as it must for
//               a load's outputs. Unmapping is not timed.
//   BM_stream_fill  the same buffer filled with 16-byte non-temporal stores (x86-64 only): the
//               write bandwidth without read-for-ownership, which the decode's streamed stores
//               can approach and glibc's memset may not.
//   BM_memcpy   glibc memcpy of 256 MiB over 1..N threads; bytes_per_second counts bytes copied,
//               rw_bytes_per_second bytes read plus written.
//   BM_file_read/page_cache  read(2) of a 1 GiB file that is already in the page cache, 8 MiB
//               at a time: the cost of getting checkpoint bytes into a loader's buffer.
//   BM_file_read/cold        the same after POSIX_FADV_DONTNEED on the file: the storage device
//               (virtual disks may still be cached by the host).
// The file lives in $UMLOAD_BENCH_DIR (default /tmp) and is removed at exit.
// Buffers are faulted in before timing.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t buffer_bytes = std::uint64_t{256} << 20;
constexpr std::uint64_t file_bytes = std::uint64_t{1} << 30;
constexpr std::uint64_t read_chunk = std::uint64_t{8} << 20;

struct aligned_free {
  void operator()(void* p) const { std::free(p); }
};
using buffer = std::unique_ptr<std::uint8_t, aligned_free>;

buffer allocate(std::uint64_t bytes) {
  auto* p = static_cast<std::uint8_t*>(std::aligned_alloc(4096, bytes));
  if (!p) throw std::bad_alloc();
  std::memset(p, 1, bytes);
  return buffer(p);
}

// [begin, end) of thread t's share of n bytes, page-aligned.
std::pair<std::uint64_t, std::uint64_t> share(std::uint64_t n) {
  const auto threads = static_cast<std::uint64_t>(omp_get_num_threads());
  const auto t = static_cast<std::uint64_t>(omp_get_thread_num());
  const std::uint64_t chunk = (n / threads + 4095) / 4096 * 4096;
  const std::uint64_t begin = std::min(n, t * chunk);
  return {begin, std::min(n, begin + chunk)};
}

void BM_memset(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  static buffer dst = allocate(buffer_bytes);
  int value = 0;
  for (auto _ : state) {
    ++value;
#pragma omp parallel num_threads(threads)
    {
      const auto [begin, end] = share(buffer_bytes);
      std::memset(dst.get() + begin, value, end - begin);
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buffer_bytes));
  state.counters["threads"] = threads;
}

void BM_memset_fresh(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  constexpr std::uint64_t bytes = std::uint64_t{1} << 30;
  constexpr std::uint64_t huge = std::uint64_t{2} << 20;
  int value = 0;
  for (auto _ : state) {
    void* raw =
        ::mmap(nullptr, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      state.SkipWithError("mmap of 1 GiB failed");
      return;
    }
    auto* p = reinterpret_cast<std::uint8_t*>((reinterpret_cast<std::uintptr_t>(raw) + huge - 1) /
                                              huge * huge);
    ::madvise(p, bytes, MADV_HUGEPAGE);
    ++value;
#pragma omp parallel num_threads(threads)
    {
      const auto [begin, end] = share(bytes);
      std::memset(p + begin, value, end - begin);
    }
    benchmark::ClobberMemory();
    state.PauseTiming();
    ::munmap(raw, bytes + huge);
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["threads"] = threads;
}

#if defined(__x86_64__)
void BM_stream_fill(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  static buffer dst = allocate(buffer_bytes);
  int value = 0;
  for (auto _ : state) {
    ++value;
#pragma omp parallel num_threads(threads)
    {
      const auto [begin, end] = share(buffer_bytes);
      const __m128i v = _mm_set1_epi8(static_cast<char>(value));
      for (std::uint64_t i = begin; i < end; i += 64) {
        auto* p = reinterpret_cast<__m128i*>(dst.get() + i);
        _mm_stream_si128(p, v);
        _mm_stream_si128(p + 1, v);
        _mm_stream_si128(p + 2, v);
        _mm_stream_si128(p + 3, v);
      }
      _mm_sfence();
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buffer_bytes));
  state.counters["threads"] = threads;
}
#endif

void BM_memcpy(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  static buffer src = allocate(buffer_bytes);
  static buffer dst = allocate(buffer_bytes);
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      const auto [begin, end] = share(buffer_bytes);
      std::memcpy(dst.get() + begin, src.get() + begin, end - begin);
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buffer_bytes));
  state.counters["rw_bytes_per_second"] =
      benchmark::Counter(2.0 * buffer_bytes, benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1024);
  state.counters["threads"] = threads;
}

// A 1 GiB file of non-zero bytes, written once per process.
class bench_file {
 public:
  bench_file() {
    const char* dir = std::getenv("UMLOAD_BENCH_DIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/umload_bench_limits_XXXXXX";
    fd_ = mkstemp(path_.data());
    if (fd_ < 0) return;
    std::vector<std::uint8_t> chunk(read_chunk, 0x5A);
    for (std::uint64_t done = 0; done < file_bytes; done += chunk.size())
      if (write(fd_, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
        close(fd_);
        fd_ = -1;
        return;
      }
    fsync(fd_);
  }
  ~bench_file() {
    if (fd_ >= 0) close(fd_);
    unlink(path_.c_str());
  }
  int fd() const { return fd_; }

 private:
  std::string path_;
  int fd_ = -1;
};

void BM_file_read(benchmark::State& state, bool cold) {
  static bench_file file;
  static buffer dst = allocate(read_chunk);
  if (file.fd() < 0) {
    state.SkipWithError("cannot create the 1 GiB bench file (set UMLOAD_BENCH_DIR)");
    return;
  }
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      posix_fadvise(file.fd(), 0, 0, POSIX_FADV_DONTNEED);
      state.ResumeTiming();
    }
    for (std::uint64_t offset = 0; offset < file_bytes; offset += read_chunk) {
      const ssize_t got = pread(file.fd(), dst.get(), read_chunk, static_cast<off_t>(offset));
      if (got != static_cast<ssize_t>(read_chunk)) {
        state.SkipWithError("short read from the bench file");
        return;
      }
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * file_bytes));
}

void thread_args(benchmark::internal::Benchmark* b) {
  const int max_threads = omp_get_max_threads();
  for (int t = 1; t <= max_threads; t *= 2) b->Arg(t);
  if ((max_threads & (max_threads - 1)) != 0) b->Arg(max_threads);
  b->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_memset)->Apply(thread_args);
BENCHMARK(BM_memset_fresh)->Apply(thread_args);
#if defined(__x86_64__)
BENCHMARK(BM_stream_fill)->Apply(thread_args);
#endif
BENCHMARK(BM_memcpy)->Apply(thread_args);
BENCHMARK_CAPTURE(BM_file_read, page_cache, false)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_file_read, cold, true)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
