// The CUDA backend: staging slots (pinned, or pageable where the plan does not pin), decode
// kernels from kernels/cuda_decode.hpp, outputs in device memory (or advised host memory on
// coherent machines).
//
// Discrete strategy: each decode item's blocks and scales are copied on a copy stream into one of
// two device scratch slots; the decode kernel runs on a compute stream after that copy's event.
// process() returns once the copy is done, so the staging slot is refilled while the kernel runs;
// a scratch slot is reused only after its kernel's event. Zero-copy strategy (integrated and
// coherent machines): the kernel reads the staging slot through its device mapping (or, with
// pageable memory access, at its host address), and process() returns when that kernel is done.
// Dense tensors are copied as they are, straight to their destination. Times come from CUDA
// events; peak device memory counts every live cudaMalloc, scratch (and the --check summaries'
// CUB scratch) included.
//
// Memory comes from one resource per kind (src/memory_cuda.hpp) and outputs are placed by
// cuda_output_memory (src/output_memory_cuda.hpp); this file holds the streams, events and
// scratch slots, and the order in which work is enqueued.
#include <cuda.h>
#include <cuda_runtime.h>

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
#include "platform/device.hpp"
#include "src/backend.hpp"
#include "src/memory.hpp"
#include "src/memory_cuda.hpp"
#include "src/output_memory_cuda.hpp"

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

// The backend's streams, and the events that time its copies. Made and destroyed with the
// backend's device current.
struct cuda_streams {
  cudaStream_t copy = nullptr;      // host-to-device copies of staged bytes
  cudaStream_t compute = nullptr;   // decode kernels, read-backs, summaries
  cudaStream_t prefetch = nullptr;  // fault-ins and prefetches of host_managed memory
  cudaEvent_t copy_start = nullptr;
  cudaEvent_t copied = nullptr;

  void create() {
    UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
    UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
    UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&prefetch, cudaStreamNonBlocking));
    copy_start = make_event();
    copied = make_event();
  }
  // Every stream the backend owns: what synchronize() and the release paths wait for.
  std::array<cudaStream_t, 3> owned() const { return {copy, compute, prefetch}; }
  void destroy() noexcept {
    for (cudaEvent_t e : {copy_start, copied})
      if (e) cudaEventDestroy(e);
    for (cudaStream_t s : owned())
      if (s) cudaStreamDestroy(s);
    copy_start = copied = nullptr;
    copy = compute = prefetch = nullptr;
  }
  // Waits for everything enqueued on the backend's streams: copies, decodes, read-backs,
  // summaries, fault-ins and prefetches of host_managed memory.
  void synchronize() const {
    for (cudaStream_t s : owned()) UMLOAD_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  // Release paths: work in flight may still read or write the memory about to go.
  void synchronize_all() noexcept {
    for (cudaStream_t s : owned())
      if (s) UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(s));
  }
  // Waits for the copies enqueued since copy_start was recorded; returns their seconds.
  double copies_done() {
    UMLOAD_CUDA_CHECK(cudaEventRecord(copied, copy));
    UMLOAD_CUDA_CHECK(cudaEventSynchronize(copied));
    return elapsed_ms(copy_start, copied) / 1e3;
  }
};

void launch_decode(const decode_job& job, cudaStream_t stream) {
  if (detail::take_injected_decode_failure())
    throw cuda_error("cuda::decode: injected launch failure (test hook)");
  cuda::decode(job, stream);
}

// A device scratch slot (discrete strategy): a decode item's blocks and scales are copied in, and
// its kernel reads them there.
struct scratch_slot {
  void* device = nullptr;
  std::size_t bytes = 0;
  cudaEvent_t decode_start = nullptr;
  cudaEvent_t decoded = nullptr;
  bool busy = false;   // a copy into or a kernel reading this slot was enqueued, not retired
  bool timed = false;  // decode_start and decoded bracket a kernel (not a failed launch)
};

// The decode kernels' side of the backend: the scratch slots, used in turn, and the decode time
// their events measure. A slot is reused only after the kernel that read it. The zero-copy
// strategy uses the first slot's events alone, to time its kernels.
class scratch_ring {
 public:
  void create_events() {
    for (auto& slot : slots_) {
      slot.decode_start = make_event();
      slot.decoded = make_event();
    }
  }
  void destroy_events() noexcept {
    for (auto& slot : slots_) {
      if (slot.decode_start) cudaEventDestroy(slot.decode_start);
      if (slot.decoded) cudaEventDestroy(slot.decoded);
      slot.decode_start = slot.decoded = nullptr;
    }
  }
  void release(memory_resource& device) noexcept {
    for (auto& slot : slots_) {
      device.deallocate(slot.device, slot.bytes);
      slot.device = nullptr;
      slot.bytes = 0;
    }
  }

  // Discrete: copies the job's blocks and scales into the next scratch slot on the copy stream
  // and decodes them there on the compute stream, after the copy. Returns once the staging slot
  // may be refilled (its bytes are on the device, or, from pageable memory, in the driver's own
  // buffers), with the copy's seconds; the kernel may still run.
  double decode_via_scratch(const decode_job& job, cuda_streams& s, memory_resource& device,
                            std::size_t largest_staging_slot) {
    if (job.values() == 0) return 0;
    const std::size_t scales_at = round_up(job.block_bytes(), scratch_alignment);
    scratch_slot& slot = next(scales_at + job.scale_bytes(), largest_staging_slot, device);
    auto* base = static_cast<std::uint8_t*>(slot.device);
    // Busy from the first enqueued copy on: if anything below throws, the slot's event still
    // covers the copy into it, so a later growth waits before it frees the memory.
    slot.busy = true;
    slot.timed = false;
    UMLOAD_CUDA_CHECK(cudaEventRecord(s.copy_start, s.copy));
    UMLOAD_CUDA_CHECK(
        cudaMemcpyAsync(base, job.blocks, job.block_bytes(), cudaMemcpyHostToDevice, s.copy));
    UMLOAD_CUDA_CHECK(cudaMemcpyAsync(base + scales_at, job.scales, job.scale_bytes(),
                                      cudaMemcpyHostToDevice, s.copy));
    UMLOAD_CUDA_CHECK(cudaEventRecord(s.copied, s.copy));
    UMLOAD_CUDA_CHECK(cudaEventRecord(slot.decoded, s.copy));
    UMLOAD_CUDA_CHECK(cudaStreamWaitEvent(s.compute, s.copied, 0));

    decode_job on_device = job;
    on_device.blocks = base;
    on_device.scales = base + scales_at;
    UMLOAD_CUDA_CHECK(cudaEventRecord(slot.decode_start, s.compute));
    launch_decode(on_device, s.compute);
    // Recorded again after the kernel, which waits for the copy: the event covers both.
    UMLOAD_CUDA_CHECK(cudaEventRecord(slot.decoded, s.compute));
    slot.timed = true;

    UMLOAD_CUDA_CHECK(cudaEventSynchronize(s.copied));
    return elapsed_ms(s.copy_start, s.copied) / 1e3;
  }

  // Zero-copy: decodes a job whose blocks and scales the device reads in place, and returns when
  // the kernel is done (it reads the staging slot until it ends).
  void decode_in_place(const decode_job& on_device, cudaStream_t compute) {
    scratch_slot& timing = slots_[0];
    UMLOAD_CUDA_CHECK(cudaEventRecord(timing.decode_start, compute));
    launch_decode(on_device, compute);
    UMLOAD_CUDA_CHECK(cudaEventRecord(timing.decoded, compute));
    timing.busy = true;
    timing.timed = true;
    retire(timing);
  }

  void retire_all() {
    for (auto& slot : slots_) retire(slot);
  }
  int busy() const {
    return static_cast<int>(
        std::count_if(slots_.begin(), slots_.end(), [](const scratch_slot& s) { return s.busy; }));
  }
  double decode_seconds() const { return decode_seconds_; }

 private:
  // The next slot in turn, retired and holding at least `need` bytes. A slot that grows is sized
  // to `at_least` (the largest staging slot), so that it grows at most once in a normal run.
  scratch_slot& next(std::size_t need, std::size_t at_least, memory_resource& device) {
    scratch_slot& slot = slots_[next_];
    next_ = (next_ + 1) % slots_.size();
    retire(slot);
    if (slot.bytes < need) {
      device.deallocate(slot.device, slot.bytes);
      slot.device = nullptr;
      slot.bytes = 0;
      const std::size_t bytes = round_up(std::max(need, at_least), scratch_alignment);
      slot.device = device.allocate(bytes);
      slot.bytes = bytes;
    }
    return slot;
  }

  // Waits for a slot's kernel (or, after a failed launch, its copy) and books its time.
  void retire(scratch_slot& slot) {
    if (!slot.busy) return;
    UMLOAD_CUDA_CHECK(cudaEventSynchronize(slot.decoded));
    if (slot.timed) decode_seconds_ += elapsed_ms(slot.decode_start, slot.decoded) / 1e3;
    slot.busy = false;
  }

  std::array<scratch_slot, scratch_slots> slots_{};
  std::size_t next_ = 0;
  double decode_seconds_ = 0;
};

// Staging slots as the options order: pinned (NUMA-bound and registered where the device can
// register host memory, else cudaHostAlloc), or pageable.
std::unique_ptr<staging_resource> make_staging(const cuda_backend_options& options,
                                               bool pageable_access) {
  if (options.pinned_staging)
    return std::make_unique<pinned_memory_resource>(
        options.staging_numa_node,
        device_attribute(options.ordinal, cudaDevAttrHostRegisterSupported) != 0);
  if (options.zero_copy_staging && !pageable_access)
    throw usage_error(
        "cuda backend: zero-copy staging from pageable memory needs pageable "
        "memory access (ATS or HMM), which device " +
        std::to_string(options.ordinal) +
        " lacks; pin the staging slots or copy them through device scratch");
  return std::make_unique<pageable_staging_resource>(options.staging_numa_node);
}

class cuda_backend final : public backend {
 public:
  explicit cuda_backend(const cuda_backend_options& options) : options_(options) {
    const device_scope scope(options_.ordinal);
    outputs_ = std::make_unique<cuda_output_memory>(options_.ordinal);
    staging_ = make_staging(options_, outputs_->pageable_access());
    try {
      streams_.create();
      scratch_.create_events();
    } catch (...) {
      destroy();
      throw;
    }
  }

  ~cuda_backend() override {
    // Errors here cannot be reported: the library never throws from a destructor.
    const device_scope scope(options_.ordinal, std::nothrow);
    streams_.synchronize_all();
    scratch_.release(outputs_->device());
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
    UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(streams_.copy));
    if (options_.zero_copy_staging)
      UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(streams_.compute));
    staging_->deallocate(p, bytes);
  }

  placed_output place_output(std::size_t bytes, const output_request& request) override {
    if (bytes == 0) return {};
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    return outputs_->place(bytes, request);
  }

  void release_output(std::byte* p, std::size_t bytes, memory_kind where) noexcept override {
    if (p == nullptr) return;
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal, std::nothrow);
    streams_.synchronize_all();  // work in flight may still write this tensor
    outputs_->release(p, bytes, where);
  }

  std::string fault_in(std::byte* p, std::size_t bytes, const output_request& request) override {
    // Host and device memory need no stream: they are faulted in without the backend's lock.
    if (request.where != memory_kind::host_managed || p == nullptr || bytes == 0)
      return outputs_->fault_in(p, bytes, request, nullptr);
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    return outputs_->fault_in(p, bytes, request, streams_.prefetch);
  }

  std::string prefetch_to_device(const std::byte* p, std::size_t bytes, void* stream) override {
    if (p == nullptr || bytes == 0) return "nothing to prefetch";
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    const cudaMemLocation where = device_location(options_.ordinal);
    const auto s = stream ? static_cast<cudaStream_t>(stream) : streams_.prefetch;
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
    const decode_job& job = item.job;
    outputs_->require_reachable(job.out, job.out_bytes());
    if (!options_.zero_copy_staging) {
      copy_seconds_ +=
          scratch_.decode_via_scratch(job, streams_, outputs_->device(), staging_->largest_slot());
    } else if (job.values() != 0) {
      decode_job on_device = job;
      on_device.blocks = device_view(job.blocks, job.block_bytes());
      on_device.scales = device_view(job.scales, job.scale_bytes());
      scratch_.decode_in_place(on_device, streams_.compute);
    }
  }

  void synchronize() override {
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    streams_.synchronize();
    scratch_.retire_all();
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
    UMLOAD_CUDA_CHECK(cudaStreamSynchronize(streams_.copy));
    UMLOAD_CUDA_CHECK(
        cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, streams_.compute));
    UMLOAD_CUDA_CHECK(cudaStreamSynchronize(streams_.compute));
  }

  cuda_tile::output_summary summarize(const std::byte* data, std::uint64_t values,
                                      output_dtype dtype, memory_kind where) override {
    if (where != memory_kind::device) return cuda_tile::summarize_host(data, values, dtype);
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    // CUB's scratch comes from this backend's device memory, so it counts in the peak.
    memory_resource& device = outputs_->device();
    const std::size_t bytes = cuda::summarize_scratch_bytes(values);
    void* scratch = device.allocate(bytes);
    try {
      const auto summary = cuda::summarize(data, values, dtype, scratch, bytes, streams_.compute);
      device.deallocate(scratch, bytes);
      return summary;
    } catch (...) {
      UMLOAD_CUDA_BEST_EFFORT(cudaStreamSynchronize(streams_.compute));
      device.deallocate(scratch, bytes);
      throw;
    }
  }

  int busy_scratch_slots() const {
    std::lock_guard lock(mutex_);
    return scratch_.busy();
  }

  backend_stats stats() const override {
    std::lock_guard lock(mutex_);
    return {copy_seconds_,
            scratch_.decode_seconds(),
            outputs_->peak_device_bytes(),
            staging_->describe(),
            {}};
  }

 private:
  void destroy() noexcept {
    scratch_.destroy_events();
    streams_.destroy();
  }

  void copy_item(const staged_item& item) {
    if (item.staged_bytes == 0) return;
    if (item.destination == nullptr || item.staged == nullptr)
      throw usage_error("cuda backend: copy item without source or destination");
    UMLOAD_CUDA_CHECK(cudaEventRecord(streams_.copy_start, streams_.copy));
    UMLOAD_CUDA_CHECK(cudaMemcpyAsync(item.destination, item.staged, item.staged_bytes,
                                      cudaMemcpyDefault, streams_.copy));
    copy_seconds_ += streams_.copies_done();
  }

  // The device's address of host bytes in a staging slot; on machines with pageable memory access
  // any host address serves as it is.
  const std::uint8_t* device_view(const std::uint8_t* p, std::size_t bytes) const {
    if (const void* mapped = staging_->device_view(p, bytes))
      return static_cast<const std::uint8_t*>(mapped);
    if (outputs_->pageable_access()) return p;
    throw usage_error(
        "cuda backend: zero-copy staging needs the item's bytes in a staging slot "
        "of this backend");
  }

  cuda_backend_options options_;
  std::unique_ptr<cuda_output_memory> outputs_;  // device, host and host_managed outputs
  std::unique_ptr<staging_resource> staging_;
  mutable std::mutex mutex_;
  cuda_streams streams_;
  scratch_ring scratch_;
  double copy_seconds_ = 0;
};

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
int busy_scratch_slots(const backend& engine) {
  const auto* cuda = dynamic_cast<const cuda_backend*>(&engine);
  return cuda ? cuda->busy_scratch_slots() : -1;
}
}  // namespace detail

std::unique_ptr<backend> make_cuda_backend(const cuda_backend_options& options) {
  const platform::cuda_devices devices = platform::probe_cuda_devices();
  const int count = devices.count;
  if (count == 0) throw cuda_error("no usable CUDA device: " + devices.absence_reason);
  if (options.ordinal < 0 || options.ordinal >= count)
    throw usage_error("CUDA device " + std::to_string(options.ordinal) + " does not exist (" +
                      std::to_string(count) + " device" + (count == 1 ? "" : "s") + ")");
  return std::make_unique<cuda_backend>(options);
}

bool cuda_available() { return cuda_device_count() > 0; }

int cuda_device_count() { return platform::probe_cuda_devices().count; }

}  // namespace umload
