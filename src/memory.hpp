// Memory for the backends, split the way rmm splits it: one small resource per kind of memory,
// and what cuts across kinds (live and peak bytes, a ceiling) as adaptors that wrap any resource.
// Every allocation failure is a budget_error that says how much was asked and what for.
//
//   host_memory_resource host;                       // anonymous mappings, THP when large
//   tracking_adaptor tracked(device);                // live and peak bytes of `device`
//   limiting_adaptor managed_guard(managed, limit, "managed memory", &tracked);
//   void* p = managed_guard.allocate(bytes);         // budget_error past the limit
//
// The CUDA resources (pinned, device, managed) are in src/memory_cuda.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace umload {

class memory_resource {
 public:
  virtual ~memory_resource() = default;
  // Throws budget_error when the memory cannot be had. Zero bytes gives nullptr.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* p, std::size_t bytes) noexcept = 0;
};

// Anonymous host mappings: whole tensors go back to the OS on release, whatever the allocator.
// Large ones are 2 MiB aligned and asked for transparent huge pages (first-touch faults on 4 KiB
// pages otherwise cost more system time than the decode itself). With a NUMA node, pages are
// bound to it before anything touches them.
class host_memory_resource final : public memory_resource {
 public:
  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) noexcept override;
  // Maps `bytes` bound to `numa_node` (-1: first touch decides). With a node, `actions` (when
  // given) receives what the bind did: "numa-bind bound: NUMA node 1", "numa-bind not-here: ...".
  void* allocate_on(std::size_t bytes, int numa_node, std::vector<std::string>* actions);
};

// Binds the pages of [p, p + bytes) to `numa_node` before first touch and says what was done:
// "bound: NUMA node 1", "not-here: ..." (platform::bind_memory; nothing is thrown).
std::string bind_host_memory(void* p, std::size_t bytes, int numa_node);

// Faults host pages in for writing ahead of their first use (MADV_POPULATE_WRITE; on a bound
// mapping they land on its node). Advisory: kernels before 5.14 refuse it, and first touch does
// the same. Returns "populate-write", "populate-write refused" or "nothing to fault in".
std::string populate_for_write(void* p, std::size_t bytes) noexcept;

// Page-aligned heap memory (host staging slots).
class aligned_host_resource final : public memory_resource {
 public:
  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) noexcept override;
};

// Live and peak bytes of what it wraps. Thread-safe.
class tracking_adaptor final : public memory_resource {
 public:
  explicit tracking_adaptor(memory_resource& upstream) : upstream_(upstream) {}
  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) noexcept override;
  std::uint64_t live_bytes() const;
  std::uint64_t peak_bytes() const;
  // Counts `bytes` live for a while (memory another party holds for us, e.g. a library's
  // scratch) so the peak shows it; give it back with uncount.
  void count(std::uint64_t bytes);
  void uncount(std::uint64_t bytes);

 private:
  memory_resource& upstream_;
  mutable std::mutex mutex_;
  std::uint64_t live_ = 0;
  std::uint64_t peak_ = 0;
};

// Refuses, with a budget_error, an allocation that would take its own live bytes (plus, when
// given, those of `shares_with`) past `limit`. The guard for memory whose use the system does not
// report (managed memory does not lower cudaMemGetInfo's free count).
class limiting_adaptor final : public memory_resource {
 public:
  limiting_adaptor(memory_resource& upstream, std::uint64_t limit, std::string what,
                   const tracking_adaptor* shares_with = nullptr)
      : upstream_(upstream), limit_(limit), what_(std::move(what)), shares_with_(shares_with) {}
  void* allocate(std::size_t bytes) override;
  void deallocate(void* p, std::size_t bytes) noexcept override;
  // Counts `bytes` against the limit without allocating (for an allocation made another way,
  // e.g. with per-call options), or throws budget_error; discharge gives them back.
  void charge(std::uint64_t bytes);
  void discharge(std::uint64_t bytes) noexcept;
  std::uint64_t live_bytes() const;
  std::uint64_t limit() const { return limit_; }

 private:
  memory_resource& upstream_;
  std::uint64_t limit_;
  std::string what_;
  const tracking_adaptor* shares_with_;
  mutable std::mutex mutex_;
  std::uint64_t live_ = 0;
};

}  // namespace umload
