// Where decoding runs. The pipeline reads quantized bytes into staging slots and hands each filled
// slot to a backend, which turns it into output bytes at a destination the backend can address:
// host memory for the host backend; device (or, on coherent and integrated machines, host)
// memory for the CUDA backend. Both call the same decode core (kernels/mxfp4.hpp).
//
// A backend holds streams, events, scratch slots and process/synchronize/read_back; the memory it
// hands out comes from one small resource per kind (src/memory.hpp, src/memory_cuda.hpp). It
// carries out the placement orders of a plan for each output (memory kind, NUMA node, advice)
// and says what it did, so the load report can set planned and actual side by side.
//
//   auto placed = engine->place_output(bytes, {memory_kind::host_managed, 1});
//   placed.actions;   // {"numa-bind bound: NUMA node 1", "advise preferred-location host-numa:1",
//   ...}
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu_decode.hpp"
#include "kernels/cuda_tile.hpp"
#include "kernels/decode_job.hpp"

namespace umload {

// One staged unit of work: the bytes of a run of experts (blocks then scales), or a range of a
// tensor copied as it is.
struct staged_item {
  enum class kind : std::uint8_t { decode, copy } what = kind::copy;
  const std::byte* staged = nullptr;  // in a staging slot the backend allocated
  std::size_t staged_bytes = 0;
  decode_job job;                    // for decode: job.blocks/scales point into `staged`
  std::byte* destination = nullptr;  // for copy: where staged bytes go; decode: job.out
};

struct backend_stats {
  double copy_seconds = 0;    // host-to-device transfers (CUDA) or copies of dense tensors (host)
  double decode_seconds = 0;  // decode work
  std::uint64_t peak_device_bytes = 0;  // device memory this backend held at most, scratch included
  std::string staging;  // how staging slots were placed ("pinned, NUMA node 1 bound", "pageable")
  std::string decode_binding;  // what the CPU decode threads got ("bound: cpuset 5-9 (...)"), or ""
};

// Where one output goes, as the plan orders it.
struct output_request {
  memory_kind where = memory_kind::host;
  int numa_node = -1;  // host and host_managed: bind to this NUMA node before first touch
  // host_managed: cudaMemAdviseSetPreferredLocation (the host, or its NUMA node) and
  // cudaMemAdviseSetAccessedBy (this backend's device).
  bool prefer_host = true;
  bool accessed_by_device = true;
};

// An output's memory and what was done to place it, in words for the load report.
struct placed_output {
  std::byte* data = nullptr;
  std::vector<std::string> actions;  // "numa-bind bound: NUMA node 0", "advise accessed-by cuda:0"
  std::vector<std::string> simulated;  // orders a host standing in for a device could not carry out
};

class backend {
 public:
  virtual ~backend() = default;
  virtual std::string_view name() const = 0;

  // Staging memory for one slot (pinned host memory for CUDA). Released with release_staging.
  virtual std::byte* allocate_staging(std::size_t bytes) = 0;
  virtual void release_staging(std::byte* p, std::size_t bytes) noexcept = 0;

  // Memory for one whole output tensor, placed as `request` orders. Released with release_output.
  // Throws budget_error when the memory cannot be had.
  virtual placed_output place_output(std::size_t bytes, const output_request& request) = 0;
  std::byte* allocate_output(std::size_t bytes, memory_kind where) {
    return place_output(bytes, {where}).data;
  }
  virtual void release_output(std::byte* p, std::size_t bytes, memory_kind where) noexcept = 0;

  // Faults an output's pages in where it was placed, ahead of the decode that writes it (the
  // plan's prefetch schedule during a load): host memory with MADV_POPULATE_WRITE on its bound
  // node; host_managed memory with cudaMemPrefetchAsync to its host node. Safe to call from a
  // thread of its own while the pipeline runs. Returns what was done, in words.
  virtual std::string fault_in(std::byte* p, std::size_t bytes, const output_request& request) = 0;

  // Moves a host_managed output toward the device ahead of its use, on `stream` (a cudaStream_t
  // of this backend's device; nullptr: a stream of the backend's own). Returns what was done; a
  // host backend standing in for a device returns "simulated: ...".
  virtual std::string prefetch_to_device(const std::byte* p, std::size_t bytes, void* stream) = 0;

  // Processes one staged item. Returns once the staging slot may be refilled; the output may
  // still be in flight until synchronize().
  virtual void process(const staged_item& item) = 0;
  // Waits for all work the backend enqueued on the streams it owns: copies, decodes, and the
  // fault-ins and prefetches issued on its own stream (not those on a caller's stream).
  virtual void synchronize() = 0;

  // Copies `bytes` of an output allocation back to host memory (digests, tests). The default
  // serves host memory; a device backend overrides it.
  virtual void read_back(void* host_dst, const std::byte* src, std::size_t bytes,
                         memory_kind where) {
    (void)where;
    std::memcpy(host_dst, src, bytes);
  }

  // Count of non-finite values and an order-sensitive checksum of a decoded output, computed
  // where the data lives (CUB on the device for device memory). The default serves host memory.
  virtual cuda_tile::output_summary summarize(const std::byte* data, std::uint64_t values,
                                              output_dtype dtype, memory_kind where) {
    (void)where;
    return cuda_tile::summarize_host(data, values, dtype);
  }

  virtual backend_stats stats() const = 0;
};

// The host backend: the CPU kernels over `threads` threads (0: all, or as many as `decode_cpuset`
// has CPUs on this machine), with the given path. With a cpuset (hwloc list; the plan's decode
// order), every thread of each decode, the caller's included, is bound to it for that decode and
// put back on its own binding after it; stats().decode_binding says what was done.
std::unique_ptr<backend> make_host_backend(int threads, cpu::isa path,
                                           std::string_view decode_cpuset = {});

struct cuda_backend_options {
  int ordinal = 0;
  // Integrated and coherent machines: kernels read the staging slot directly, with no device
  // copy of quantized bytes. Discrete: each slot is copied to a device scratch slot.
  bool zero_copy_staging = false;
  // Staging slots in pinned, device-mapped host memory (the plan's staging order). False: in
  // pageable host memory, copied to the scratch slots through the driver's own buffers;
  // stats().staging then says "pageable". Zero-copy staging from pageable memory needs pageable
  // memory access (ATS, HMM): without it make_cuda_backend throws usage_error.
  bool pinned_staging = true;
  // NUMA node to bind staging memory to (the GPU-local node); -1 leaves it to the OS.
  int staging_numa_node = -1;
};

// The CUDA backend. In builds without CUDA this throws cuda_error "built without CUDA"; on a
// machine without a usable GPU it throws cuda_error too.
std::unique_ptr<backend> make_cuda_backend(const cuda_backend_options& options);

// True when this build has CUDA and a device can be used (no driver, no device: false).
bool cuda_available();
int cuda_device_count();

namespace detail {
// Test hook: the next `count` decodes the CUDA backend enqueues fail with cuda_error after their
// input copy was enqueued, as a failed kernel launch would. No effect without CUDA.
void inject_decode_failures(int count);
bool take_injected_decode_failure();
// Test hook: how many of a CUDA backend's device scratch slots hold a copy or kernel that was
// enqueued and not yet retired, read from the backend's own record without waiting on the device;
// -1 for any other backend, and without CUDA.
int busy_scratch_slots(const backend& engine);
}  // namespace detail

}  // namespace umload
