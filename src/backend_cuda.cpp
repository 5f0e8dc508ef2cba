// The CUDA backend: pinned staging slots, decode kernels from kernels/cuda_decode.hpp, outputs in
// device memory (or advised host memory on coherent machines).
//
// Discrete strategy: each decode item's blocks and scales are copied on a copy stream into one of
// two device scratch slots; the decode kernel runs on a compute stream after that copy's event.
// process() returns once the copy is done, so the pinned slot is refilled while the kernel runs;
// a scratch slot is reused only after its kernel's event. Zero-copy strategy (integrated and
// coherent machines): the kernel reads the pinned slot through its device mapping, and process()
// returns when that kernel is done. Dense tensors are copied as they are, straight to their
// destination. Times come from CUDA events; peak device memory counts every live cudaMalloc,
// scratch (and the --check summaries' CUB scratch) included.
//
// Memory comes from one resource per kind (src/memory_cuda.hpp); this file holds the streams,
// events and scratch slots, and the order in which work is enqueued.
#include <cuda.h>
#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "kernels/arith.hpp"
#include "kernels/cuda_check.hpp"
#include "kernels/cuda_decode.hpp"
#include "kernels/error.hpp"
#include "src/backend.hpp"
#include "src/memory.hpp"
#include "src/memory_cuda.hpp"

namespace umload {

namespace {

constexpr std::size_t scratch_alignment = 256;
constexpr int scratch_slots = 2;

// Events are timed only after they are known complete.
float elapsed_ms(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0;
  UMLOAD_CUDA_CHECK(cudaEventElapsedTime(&ms, from, to));
  return ms;
}

cudaEvent_t make_event() {
  cudaEvent_t e = nullptr;
  UMLOAD_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

// Whether device `ordinal`'s primary context is active, asked of the driver through the
// runtime's entry-point lookup (no link against libcuda, so builds still run without a driver).
// True when the driver cannot be asked.
bool primary_context_active(int ordinal) noexcept {
  using device_get_fn = CUresult(CUDAAPI*)(CUdevice*, int);
  using context_state_fn = CUresult(CUDAAPI*)(CUdevice, unsigned int*, int*);
  struct entry_points {
    device_get_fn device_get = nullptr;
    context_state_fn context_state = nullptr;
  };
  static const entry_points driver = [] {
    entry_points e;
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuDeviceGet", &p, 2000, cudaEnableDefault, &found) ==
            cudaSuccess &&
        found == cudaDriverEntryPointSuccess)
      e.device_get = reinterpret_cast<device_get_fn>(p);
    if (cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &p, 7000, cudaEnableDefault,
                                         &found) == cudaSuccess &&
        found == cudaDriverEntryPointSuccess)
      e.context_state = reinterpret_cast<context_state_fn>(p);
    (void)cudaGetLastError();
    return e;
  }();
  if (driver.device_get == nullptr || driver.context_state == nullptr) return true;
  CUdevice device = 0;
  unsigned int flags = 0;
  int active = 0;
  if (driver.device_get(&device, ordinal) != CUDA_SUCCESS) return true;
  if (driver.context_state(device, &flags, &active) != CUDA_SUCCESS) return true;
  return active != 0;
}

// Makes `ordinal` the calling thread's current device for one call and gives the caller's device
// back afterwards: frameworks such as PyTorch read the current device, and a load onto cuda:1
// must not move the caller's later work there. A caller's device whose primary context was never
// made is not restored: setting it would create a context there (memory on a GPU the process
// never used, and a refusal on GPUs in exclusive-process mode).
class device_scope {
 public:
  explicit device_scope(int ordinal) {
    read_previous(ordinal);
    if (previous_ != ordinal) UMLOAD_CUDA_CHECK(cudaSetDevice(ordinal));
  }
  // Release paths, which cannot report: best effort.
  device_scope(int ordinal, std::nothrow_t) noexcept {
    read_previous(ordinal);
    if (previous_ != ordinal && cudaSetDevice(ordinal) != cudaSuccess) {
      (void)cudaGetLastError();
      restore_ = false;
    }
  }
  ~device_scope() {
    if (restore_ && cudaSetDevice(previous_) != cudaSuccess) (void)cudaGetLastError();
  }
  device_scope(const device_scope&) = delete;
  device_scope& operator=(const device_scope&) = delete;

 private:
  void read_previous(int ordinal) noexcept {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      (void)cudaGetLastError();
      previous_ = -1;
    }
    restore_ = previous_ >= 0 && previous_ != ordinal && primary_context_active(previous_);
  }
  int previous_ = -1;
  bool restore_ = false;
};

class cuda_backend final : public backend {
 public:
  explicit cuda_backend(const cuda_backend_options& options)
      : options_(options), device_raw_(options.ordinal), device_(device_raw_) {
    const device_scope scope(options_.ordinal);
    pageable_access_ = attribute(cudaDevAttrPageableMemoryAccess) != 0;
    const bool concurrent_managed = attribute(cudaDevAttrConcurrentManagedAccess) != 0;
    // Without host registration, NUMA-bound staging falls back to cudaHostAlloc.
    staging_ = std::make_unique<pinned_memory_resource>(
        options_.staging_numa_node, attribute(cudaDevAttrHostRegisterSupported) != 0);
    managed_ = std::make_unique<managed_memory_resource>(options_.ordinal, pageable_access_);
    if (!pageable_access_ && concurrent_managed) {
      // cudaMallocManaged does not lower cudaMemGetInfo's free count, so the guard is kept here,
      // over every allocation: managed and device bytes together never pass what the card had
      // free when the backend was made.
      std::size_t free_bytes = 0, total_bytes = 0;
      UMLOAD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
      managed_guard_ = std::make_unique<limiting_adaptor>(
          *managed_, free_bytes, "managed memory on device " + std::to_string(options_.ordinal),
          &device_);
    } else if (!pageable_access_) {
      managed_refusal_ =
          "device " + std::to_string(options_.ordinal) +
          " has neither pageable nor concurrent managed memory access, so it cannot be "
          "advised to read host memory in place; use a discrete plan (--platform discrete)";
    }
    try {
      UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
      UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_stream_, cudaStreamNonBlocking));
      UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&prefetch_stream_, cudaStreamNonBlocking));
      copy_start_ = make_event();
      copied_ = make_event();
      for (auto& slot : scratch_) {
        slot.decode_start = make_event();
        slot.decoded = make_event();
      }
    } catch (...) {
      destroy();
      throw;
    }
  }

  ~cuda_backend() override {
    // Errors here cannot be reported: the library never throws from a destructor.
    const device_scope scope(options_.ordinal, std::nothrow);
    for (cudaStream_t s : {copy_stream_, compute_stream_, prefetch_stream_})
      if (s) UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(s));
    for (auto& slot : scratch_) device_.deallocate(slot.device, slot.bytes);
    staging_.reset();
    destroy();
  }

  cuda_backend(const cuda_backend&) = delete;
  cuda_backend& operator=(const cuda_backend&) = delete;

  std::string_view name() const override { return "cuda"; }

  std::byte* allocate_staging(std::size_t bytes) override {
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    return static_cast<std::byte*>(staging_->allocate(bytes));
  }

  void release_staging(std::byte* p, std::size_t bytes) noexcept override {
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal, std::nothrow);
    // A slot may still feed a copy or a zero-copy kernel: let those finish first.
    UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(copy_stream_));
    if (options_.zero_copy_staging) UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(compute_stream_));
    staging_->deallocate(p, bytes);
  }

  placed_output place_output(std::size_t bytes, const output_request& request) override {
    placed_output placed;
    if (bytes == 0) return placed;
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    switch (request.where) {
      case memory_kind::device:
        placed.data = static_cast<std::byte*>(device_.allocate(bytes));
        break;
      case memory_kind::host: {
        std::string bound;
        placed.data = static_cast<std::byte*>(host_.allocate_on(bytes, request.numa_node, &bound));
        if (!bound.empty()) placed.actions.push_back("numa-bind " + bound);
        break;
      }
      case memory_kind::host_managed:
        placed.data = host_managed(bytes, request, placed.actions);
        break;
    }
    return placed;
  }

  void release_output(std::byte* p, std::size_t bytes, memory_kind where) noexcept override {
    if (p == nullptr) return;
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal, std::nothrow);
    // Work in flight may still write this tensor.
    for (cudaStream_t s : {copy_stream_, compute_stream_, prefetch_stream_})
      UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(s));
    switch (where) {
      case memory_kind::device: device_.deallocate(p, bytes); return;
      case memory_kind::host: host_.deallocate(p, bytes); return;
      case memory_kind::host_managed:
        managed_->deallocate(p, bytes);
        if (managed_guard_) managed_guard_->discharge(bytes);
        return;
    }
  }

  std::string fault_in(std::byte* p, std::size_t bytes, const output_request& request) override {
    if (p == nullptr || bytes == 0) return "nothing to fault in";
    switch (request.where) {
      case memory_kind::device: return "device memory: resident from cudaMalloc";
      case memory_kind::host:
        return ::madvise(p, bytes, MADV_POPULATE_WRITE) == 0 ? "populate-write"
                                                             : "populate-write refused";
      case memory_kind::host_managed: break;
    }
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    const cudaMemLocation where = host_location(request.numa_node);
    UMLOAD_CUDA_CHECK(cudaMemPrefetchAsync(p, bytes, where, 0, prefetch_stream_));
    return "prefetch " + to_string(where);
  }

  std::string prefetch_to_device(const std::byte* p, std::size_t bytes, void* stream) override {
    if (p == nullptr || bytes == 0) return "nothing to prefetch";
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    const cudaMemLocation where = device_location(options_.ordinal);
    const auto s = stream ? static_cast<cudaStream_t>(stream) : prefetch_stream_;
    UMLOAD_CUDA_CHECK(cudaMemPrefetchAsync(p, bytes, where, 0, s));
    return "prefetch " + to_string(where);
  }

  void process(const staged_item& item) override {
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    if (item.what == staged_item::kind::copy) {
      copy_item(item);
      return;
    }
    require_reachable(item.job.out, item.job.out_bytes());
    if (options_.zero_copy_staging) {
      decode_in_place(item.job);
    } else {
      decode_via_scratch(item.job);
    }
  }

  void synchronize() override {
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    UMLOAD_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
    UMLOAD_CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
    for (auto& slot : scratch_) retire(slot);
  }

  void read_back(void* host_dst, const std::byte* src, std::size_t bytes,
                 memory_kind where) override {
    if (where != memory_kind::device) {
      std::memcpy(host_dst, src, bytes);
      return;
    }
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    // Ordered after every copy and decode of this backend, whatever the caller synchronized.
    UMLOAD_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
    UMLOAD_CUDA_CHECK(
        cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, compute_stream_));
    UMLOAD_CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
  }

  cuda_tile::output_summary summarize(const std::byte* data, std::uint64_t values,
                                      output_dtype dtype, memory_kind where) override {
    if (where != memory_kind::device) return cuda_tile::summarize_host(data, values, dtype);
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    // CUB's scratch comes from this backend's device memory, so it counts in the peak.
    const std::size_t bytes = cuda::summarize_scratch_bytes(values);
    void* scratch = device_.allocate(bytes);
    try {
      const auto summary = cuda::summarize(data, values, dtype, scratch, bytes, compute_stream_);
      device_.deallocate(scratch, bytes);
      return summary;
    } catch (...) {
      UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(compute_stream_));
      device_.deallocate(scratch, bytes);
      throw;
    }
  }

  backend_stats stats() const override {
    std::lock_guard lock(mutex_);
    const std::string binding = staging_->binding();
    return {copy_seconds_, decode_seconds_, device_.peak_bytes(),
            "pinned" + (binding.empty() ? std::string() : ", NUMA " + binding)};
  }

 private:
  struct scratch_slot {
    void* device = nullptr;
    std::size_t bytes = 0;
    cudaEvent_t decode_start = nullptr;
    cudaEvent_t decoded = nullptr;
    bool busy = false;   // a copy into or a kernel reading this slot was enqueued, not retired
    bool timed = false;  // decode_start and decoded bracket a kernel (not a failed launch)
  };

  int attribute(cudaDeviceAttr what) const {
    int value = 0;
    UMLOAD_CUDA_CHECK(cudaDeviceGetAttribute(&value, what, options_.ordinal));
    return value;
  }

  void destroy() noexcept {
    for (auto& slot : scratch_) {
      if (slot.decode_start) cudaEventDestroy(slot.decode_start);
      if (slot.decoded) cudaEventDestroy(slot.decoded);
      slot.decode_start = slot.decoded = nullptr;
    }
    for (cudaEvent_t e : {copy_start_, copied_})
      if (e) cudaEventDestroy(e);
    for (cudaStream_t s : {copy_stream_, compute_stream_, prefetch_stream_})
      if (s) cudaStreamDestroy(s);
    copy_start_ = copied_ = nullptr;
    copy_stream_ = compute_stream_ = prefetch_stream_ = nullptr;
  }

  // Host memory the GPU reads in place, bound and advised as the plan says.
  std::byte* host_managed(std::size_t bytes, const output_request& request,
                          std::vector<std::string>& actions) {
    if (!managed_refusal_.empty()) throw usage_error("host_managed output: " + managed_refusal_);
    const managed_memory_resource::advice advise{request.prefer_host, request.accessed_by_device};
    const int numa_node = request.numa_node;
    if (!managed_guard_)
      return static_cast<std::byte*>(managed_->allocate_on(bytes, numa_node, advise, &actions));
    // Cumulative: managed and device bytes together stay within what the card had free.
    managed_guard_->charge(bytes);
    try {
      return static_cast<std::byte*>(managed_->allocate_on(bytes, numa_node, advise, &actions));
    } catch (...) {
      managed_guard_->discharge(bytes);
      throw;
    }
  }

  // A decode writes from the GPU: its destination must be memory the device can address. Plain
  // pageable host memory qualifies only where the device has pageable memory access (ATS, HMM).
  void require_reachable(const void* p, std::uint64_t bytes) const {
    if (pageable_access_ || p == nullptr) return;
    cudaPointerAttributes attributes{};
    UMLOAD_CUDA_CHECK(cudaPointerGetAttributes(&attributes, p));
    if (attributes.type == cudaMemoryTypeUnregistered)
      throw usage_error("cuda backend: a decode output of " + std::to_string(bytes) +
                        " bytes is in pageable host memory, which device " +
                        std::to_string(options_.ordinal) +
                        " cannot write (no pageable memory access); place it in device or "
                        "host_managed memory, or decode on the CPU");
  }
  void copy_item(const staged_item& item) {
    if (item.staged_bytes == 0) return;
    if (item.destination == nullptr || item.staged == nullptr)
      throw usage_error("cuda backend: copy item without source or destination");
    UMLOAD_CUDA_CHECK(cudaEventRecord(copy_start_, copy_stream_));
    UMLOAD_CUDA_CHECK(cudaMemcpyAsync(item.destination, item.staged, item.staged_bytes,
                                      cudaMemcpyDefault, copy_stream_));
    UMLOAD_CUDA_CHECK(cudaEventRecord(copied_, copy_stream_));
    UMLOAD_CUDA_CHECK(cudaEventSynchronize(copied_));
    copy_seconds_ += elapsed_ms(copy_start_, copied_) / 1e3;
  }

  // Waits for a scratch slot's kernel (or, after a failed launch, its copy) and books its time.
  void retire(scratch_slot& slot) {
    if (!slot.busy) return;
    UMLOAD_CUDA_CHECK(cudaEventSynchronize(slot.decoded));
    if (slot.timed) decode_seconds_ += elapsed_ms(slot.decode_start, slot.decoded) / 1e3;
    slot.busy = false;
  }

  void launch_decode(const decode_job& job) {
    if (detail::take_injected_decode_failure())
      throw cuda_error("cuda::decode: injected launch failure (test hook)");
    cuda::decode(job, compute_stream_);
  }

  void decode_via_scratch(const decode_job& job) {
    if (job.values() == 0) return;
    const std::size_t scales_at = round_up(job.block_bytes(), scratch_alignment);
    const std::size_t need = scales_at + job.scale_bytes();
    scratch_slot& slot = scratch_[next_scratch_];
    next_scratch_ = (next_scratch_ + 1) % scratch_slots;
    retire(slot);
    if (slot.bytes < need) {
      // Sized to the largest staging slot, so that it grows at most once in a normal run.
      device_.deallocate(slot.device, slot.bytes);
      slot.device = nullptr;
      slot.bytes = 0;
      const std::size_t bytes =
          round_up(std::max(need, staging_->largest_slot()), scratch_alignment);
      slot.device = device_.allocate(bytes);
      slot.bytes = bytes;
    }
    auto* base = static_cast<std::uint8_t*>(slot.device);
    // Busy from the first enqueued copy on: if anything below throws, the slot's event still
    // covers the copy into it, so a later growth waits before it frees the memory.
    slot.busy = true;
    slot.timed = false;
    UMLOAD_CUDA_CHECK(cudaEventRecord(copy_start_, copy_stream_));
    UMLOAD_CUDA_CHECK(
        cudaMemcpyAsync(base, job.blocks, job.block_bytes(), cudaMemcpyHostToDevice, copy_stream_));
    UMLOAD_CUDA_CHECK(cudaMemcpyAsync(base + scales_at, job.scales, job.scale_bytes(),
                                      cudaMemcpyHostToDevice, copy_stream_));
    UMLOAD_CUDA_CHECK(cudaEventRecord(copied_, copy_stream_));
    UMLOAD_CUDA_CHECK(cudaEventRecord(slot.decoded, copy_stream_));
    UMLOAD_CUDA_CHECK(cudaStreamWaitEvent(compute_stream_, copied_, 0));

    decode_job on_device = job;
    on_device.blocks = base;
    on_device.scales = base + scales_at;
    UMLOAD_CUDA_CHECK(cudaEventRecord(slot.decode_start, compute_stream_));
    launch_decode(on_device);
    // Recorded again after the kernel, which waits for the copy: the event covers both.
    UMLOAD_CUDA_CHECK(cudaEventRecord(slot.decoded, compute_stream_));
    slot.timed = true;

    // The pinned slot may be refilled once its bytes are on the device.
    UMLOAD_CUDA_CHECK(cudaEventSynchronize(copied_));
    copy_seconds_ += elapsed_ms(copy_start_, copied_) / 1e3;
  }

  // The device's address of host bytes in a staging slot; on machines with pageable memory access
  // any host address serves as it is.
  const std::uint8_t* device_view(const std::uint8_t* p, std::size_t bytes) const {
    if (const void* mapped = staging_->device_view(p, bytes))
      return static_cast<const std::uint8_t*>(mapped);
    if (pageable_access_) return p;
    throw usage_error(
        "cuda backend: zero-copy staging needs the item's bytes in a staging slot "
        "of this backend");
  }

  void decode_in_place(const decode_job& job) {
    if (job.values() == 0) return;
    decode_job on_device = job;
    on_device.blocks = device_view(job.blocks, job.block_bytes());
    on_device.scales = device_view(job.scales, job.scale_bytes());
    scratch_slot& timing = scratch_[0];
    UMLOAD_CUDA_CHECK(cudaEventRecord(timing.decode_start, compute_stream_));
    launch_decode(on_device);
    UMLOAD_CUDA_CHECK(cudaEventRecord(timing.decoded, compute_stream_));
    timing.busy = true;
    timing.timed = true;
    retire(timing);  // the slot is read by the kernel until it ends
  }

  cuda_backend_options options_;
  bool pageable_access_ = false;
  std::string managed_refusal_;  // why host_managed cannot be had on this device, if it cannot
  device_memory_resource device_raw_;
  tracking_adaptor device_;  // every cudaMalloc of this backend: outputs and scratch
  host_memory_resource host_;
  std::unique_ptr<pinned_memory_resource> staging_;
  std::unique_ptr<managed_memory_resource> managed_;
  std::unique_ptr<limiting_adaptor> managed_guard_;  // managed memory without pageable access
  mutable std::mutex mutex_;
  cudaStream_t copy_stream_ = nullptr;
  cudaStream_t compute_stream_ = nullptr;
  cudaStream_t prefetch_stream_ = nullptr;
  cudaEvent_t copy_start_ = nullptr;
  cudaEvent_t copied_ = nullptr;
  std::array<scratch_slot, scratch_slots> scratch_{};
  int next_scratch_ = 0;
  double copy_seconds_ = 0;
  double decode_seconds_ = 0;
};

}  // namespace

namespace {

// cudaGetDeviceCount's status: cudaErrorInsufficientDriver without a driver, cudaErrorNoDevice
// without a GPU, cudaErrorStubLibrary with the toolkit's stub libcuda. All mean "no GPU".
cudaError_t probe(int& count) {
  count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    count = 0;
  }
  return status;
}

}  // namespace

namespace detail {
namespace {
std::atomic<int> injected_decode_failures{0};
}  // namespace
void inject_decode_failures(int count) { injected_decode_failures = count; }
bool take_injected_decode_failure() {
  int left = injected_decode_failures.load();
  while (left > 0 && !injected_decode_failures.compare_exchange_weak(left, left - 1)) {
  }
  return left > 0;
}
}  // namespace detail

std::unique_ptr<backend> make_cuda_backend(const cuda_backend_options& options) {
  int count = 0;
  const cudaError_t status = probe(count);
  if (count == 0)
    throw cuda_error(std::string("no usable CUDA device: cudaGetDeviceCount says ") +
                     (status == cudaSuccess ? "0 devices" : cudaGetErrorName(status)));
  if (options.ordinal < 0 || options.ordinal >= count)
    throw usage_error("CUDA device " + std::to_string(options.ordinal) + " does not exist (" +
                      std::to_string(count) + " device" + (count == 1 ? "" : "s") + ")");
  return std::make_unique<cuda_backend>(options);
}

bool cuda_available() { return cuda_device_count() > 0; }

int cuda_device_count() {
  int count = 0;
  probe(count);
  return count;
}

}  // namespace umload
