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
// scratch included.
#include <cuda.h>
#include <cuda_runtime.h>
#include <hwloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>

#include "kernels/cuda_check.hpp"
#include "kernels/cuda_decode.hpp"
#include "kernels/error.hpp"
#include "src/backend.hpp"

namespace umload {

namespace {

constexpr std::size_t page_bytes = 4096;
constexpr std::size_t scratch_alignment = 256;
constexpr int scratch_slots = 2;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

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
  explicit cuda_backend(const cuda_backend_options& options) : options_(options) {
    const device_scope scope(options_.ordinal);
    int pageable = 0;
    UMLOAD_CUDA_CHECK(
        cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, options_.ordinal));
    pageable_access_ = pageable != 0;
    int managed = 0, registrable = 0;
    UMLOAD_CUDA_CHECK(
        cudaDeviceGetAttribute(&managed, cudaDevAttrConcurrentManagedAccess, options_.ordinal));
    UMLOAD_CUDA_CHECK(
        cudaDeviceGetAttribute(&registrable, cudaDevAttrHostRegisterSupported, options_.ordinal));
    concurrent_managed_access_ = managed != 0;
    host_register_ = registrable != 0;  // else NUMA-bound staging falls back to cudaHostAlloc
    if (!pageable_access_ && concurrent_managed_access_) {
      // cudaMallocManaged does not lower cudaMemGetInfo's free count, so the guard on managed
      // memory is kept here, over every allocation: managed and device bytes together never
      // pass what the card had free when the backend was made.
      std::size_t free_bytes = 0, total_bytes = 0;
      UMLOAD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
      managed_limit_bytes_ = free_bytes;
    }
    try {
      UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
      UMLOAD_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_stream_, cudaStreamNonBlocking));
      copy_start_ = make_event();
      copied_ = make_event();
      for (auto& slot : scratch_) {
        slot.decode_start = make_event();
        slot.decoded = make_event();
      }
      if (options_.staging_numa_node >= 0) load_topology();
    } catch (...) {
      destroy();
      throw;
    }
  }

  ~cuda_backend() override {
    // Errors here cannot be reported: the library never throws from a destructor.
    const device_scope scope(options_.ordinal, std::nothrow);
    if (copy_stream_) cudaStreamSynchronize(copy_stream_);
    if (compute_stream_) cudaStreamSynchronize(compute_stream_);
    for (auto& slot : scratch_)
      if (slot.device) cudaFree(slot.device);
    for (auto& [base, slot] : staging_) free_staging(base, slot);
    destroy();
  }

  cuda_backend(const cuda_backend&) = delete;
  cuda_backend& operator=(const cuda_backend&) = delete;

  std::string_view name() const override { return "cuda"; }

  std::byte* allocate_staging(std::size_t bytes) override {
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    const std::size_t length = round_up(std::max<std::size_t>(bytes, 1), page_bytes);
    staging_slot slot;
    slot.bytes = length;
    void* p = nullptr;
    if (topology_ && host_register_) {
      // Bind before pinning: pages land on the GPU-local node when first touched, and pinned
      // pages do not move afterwards.
      p = map_host(length, "a staging slot");
      bind_to_node(p, length);
      std::memset(p, 0, length);
      const cudaError_t status =
          cudaHostRegister(p, length, cudaHostRegisterPortable | cudaHostRegisterMapped);
      if (status != cudaSuccess) {
        ::munmap(p, length);
        detail::cuda_check(status, "cudaHostRegister(staging slot)", __FILE__, __LINE__);
      }
      slot.registered = true;
    } else {
      const cudaError_t status =
          cudaHostAlloc(&p, length, cudaHostAllocPortable | cudaHostAllocMapped);
      if (status == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        throw budget_error("cudaHostAlloc of a " + std::to_string(length) +
                           "-byte pinned staging slot failed: not enough pinned host memory "
                           "(lower UMLOAD_STAGING_SLOT_SIZE or UMLOAD_STAGING_SLOTS)");
      }
      detail::cuda_check(status, "cudaHostAlloc(staging slot)", __FILE__, __LINE__);
    }
    const cudaError_t mapped = cudaHostGetDevicePointer(&slot.device, p, 0);
    if (mapped != cudaSuccess) {
      free_staging(p, slot);
      detail::cuda_check(mapped, "cudaHostGetDevicePointer(staging slot)", __FILE__, __LINE__);
    }
    staging_.emplace(p, slot);
    largest_staging_ = std::max(largest_staging_, length);
    return static_cast<std::byte*>(p);
  }

  void release_staging(std::byte* p, std::size_t) noexcept override {
    std::lock_guard lock(mutex_);
    const auto it = staging_.find(p);
    if (it == staging_.end()) return;
    const device_scope scope(options_.ordinal, std::nothrow);
    // A slot may still feed a copy or a zero-copy kernel: let those finish first.
    cudaStreamSynchronize(copy_stream_);
    if (options_.zero_copy_staging) cudaStreamSynchronize(compute_stream_);
    free_staging(it->first, it->second);
    staging_.erase(it);
  }

  std::byte* allocate_output(std::size_t bytes, memory_kind where) override {
    if (bytes == 0) return nullptr;
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    switch (where) {
      case memory_kind::device: return static_cast<std::byte*>(device_alloc(bytes));
      case memory_kind::host: return static_cast<std::byte*>(map_host(bytes, "an output tensor"));
      case memory_kind::host_managed: return static_cast<std::byte*>(host_managed_alloc(bytes));
    }
    throw usage_error("cuda backend: unknown memory kind");
  }

  void release_output(std::byte* p, std::size_t bytes, memory_kind where) noexcept override {
    if (p == nullptr) return;
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal, std::nothrow);
    // Work in flight may still write this tensor.
    cudaStreamSynchronize(copy_stream_);
    cudaStreamSynchronize(compute_stream_);
    switch (where) {
      case memory_kind::device: device_free(p, bytes); return;
      case memory_kind::host: ::munmap(p, bytes); return;
      case memory_kind::host_managed: release_host_managed(p, bytes); return;
    }
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

  cuda_tile::output_summary summarize(const std::byte* data, std::uint64_t values, out_dtype dtype,
                                      memory_kind where) override {
    if (where != memory_kind::device) return cuda_tile::summarize_host(data, values, dtype);
    std::lock_guard lock(mutex_);
    const device_scope scope(options_.ordinal);
    // CUB's scratch comes from this backend's device memory, so it counts in the peak.
    const std::size_t bytes = cuda::summarize_scratch_bytes(values);
    void* scratch = bytes ? device_alloc(bytes) : nullptr;
    try {
      const auto summary = cuda::summarize(data, values, dtype, scratch, bytes, compute_stream_);
      device_free(scratch, bytes);
      return summary;
    } catch (...) {
      cudaStreamSynchronize(compute_stream_);
      device_free(scratch, bytes);
      throw;
    }
  }

  backend_stats stats() const override {
    std::lock_guard lock(mutex_);
    return {copy_seconds_, decode_seconds_, peak_device_bytes_};
  }

 private:
  struct staging_slot {
    std::size_t bytes = 0;
    void* device = nullptr;   // the slot as the device addresses it
    bool registered = false;  // mmap + cudaHostRegister (NUMA-bound) rather than cudaHostAlloc
  };

  struct scratch_slot {
    void* device = nullptr;
    std::size_t bytes = 0;
    cudaEvent_t decode_start = nullptr;
    cudaEvent_t decoded = nullptr;
    bool busy = false;   // a copy into or a kernel reading this slot was enqueued, not retired
    bool timed = false;  // decode_start and decoded bracket a kernel (not a failed launch)
  };

  void destroy() noexcept {
    for (auto& slot : scratch_) {
      if (slot.decode_start) cudaEventDestroy(slot.decode_start);
      if (slot.decoded) cudaEventDestroy(slot.decoded);
      slot.decode_start = slot.decoded = nullptr;
    }
    if (copy_start_) cudaEventDestroy(copy_start_);
    if (copied_) cudaEventDestroy(copied_);
    if (copy_stream_) cudaStreamDestroy(copy_stream_);
    if (compute_stream_) cudaStreamDestroy(compute_stream_);
    copy_start_ = copied_ = nullptr;
    copy_stream_ = compute_stream_ = nullptr;
    if (topology_) hwloc_topology_destroy(topology_);
    topology_ = nullptr;
  }

  void load_topology() {
    if (hwloc_topology_init(&topology_) != 0 || hwloc_topology_load(topology_) != 0)
      throw io_error("hwloc: cannot load this machine's topology to bind staging memory", errno);
    numa_node_ = hwloc_get_numanode_obj_by_os_index(
        topology_, static_cast<unsigned>(options_.staging_numa_node));
    if (numa_node_ == nullptr)
      throw usage_error("staging NUMA node " + std::to_string(options_.staging_numa_node) +
                        " does not exist on this machine (it has " +
                        std::to_string(hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_NUMANODE)) +
                        " NUMA nodes)");
  }

  void bind_to_node(void* p, std::size_t length) {
    if (hwloc_set_area_membind(topology_, p, length, numa_node_->nodeset, HWLOC_MEMBIND_BIND,
                               HWLOC_MEMBIND_BYNODESET) == 0)
      return;
    // Binding is a placement hint: kernels without NUMA support (ENOSYS) and containers whose
    // seccomp policy refuses mbind (EPERM) leave the slot where first touch puts it.
    const int err = errno;
    if (err == ENOSYS || err == EPERM || err == EXDEV) return;
    ::munmap(p, length);
    throw io_error("hwloc_set_area_membind of a staging slot to NUMA node " +
                       std::to_string(options_.staging_numa_node) + ": " + std::strerror(err),
                   err);
  }

  void free_staging(void* p, const staging_slot& slot) noexcept {
    if (slot.registered) {
      cudaHostUnregister(p);
      ::munmap(p, slot.bytes);
    } else {
      cudaFreeHost(p);
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

  // Anonymous host memory, or a budget error that says how much and why not.
  static void* map_host(std::size_t bytes, const char* what) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      throw budget_error(std::string("cannot map ") + std::to_string(bytes) +
                         " bytes of host memory for " + what + ": " + std::strerror(err));
    }
    return p;
  }

  void* device_alloc(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      std::size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      throw budget_error("cudaMalloc of " + std::to_string(bytes) + " bytes on device " +
                         std::to_string(options_.ordinal) +
                         " failed: " + std::to_string(free_bytes) + " of " +
                         std::to_string(total_bytes) + " bytes free, " +
                         std::to_string(live_device_bytes_) + " held by this loader");
    }
    detail::cuda_check(status, "cudaMalloc", __FILE__, __LINE__);
    live_device_bytes_ += bytes;
    peak_device_bytes_ = std::max(peak_device_bytes_, live_device_bytes_);
    return p;
  }

  void device_free(void* p, std::size_t bytes) noexcept {
    if (p && cudaFree(p) == cudaSuccess)
      live_device_bytes_ -= std::min<std::uint64_t>(bytes, live_device_bytes_);
  }

  // Host memory the GPU reads in place: preferred location host, accessed by this device. With
  // pageable memory access (ATS, HMM) ordinary anonymous memory takes the advice; otherwise it
  // must be managed memory, which is never asked beyond what the device has free.
  void* host_managed_alloc(std::size_t bytes) {
    void* p = nullptr;
    if (pageable_access_) {
      p = map_host(bytes, "a host_managed output tensor");
    } else {
      if (!concurrent_managed_access_)
        throw usage_error("host_managed output: device " + std::to_string(options_.ordinal) +
                          " has neither pageable nor concurrent managed memory access, so it "
                          "cannot be advised to read host memory in place; use a discrete plan "
                          "(--platform discrete)");
      if (managed_live_bytes_ + live_device_bytes_ + bytes > managed_limit_bytes_)
        throw budget_error("host_managed output of " + std::to_string(bytes) + " bytes on device " +
                           std::to_string(options_.ordinal) +
                           ": it has no pageable memory access, and managed memory is not asked "
                           "beyond the " +
                           std::to_string(managed_limit_bytes_) +
                           " bytes it had free (this loader holds " +
                           std::to_string(managed_live_bytes_) + " bytes of managed and " +
                           std::to_string(live_device_bytes_) + " of device memory)");
      UMLOAD_CUDA_CHECK(cudaMallocManaged(&p, bytes, cudaMemAttachGlobal));
      managed_live_bytes_ += bytes;
      peak_device_bytes_ = std::max(peak_device_bytes_, live_device_bytes_ + managed_live_bytes_);
    }
    try {
      cudaMemLocation host{};
      host.type = cudaMemLocationTypeHost;
      host.id = 0;
      cudaMemLocation device{};
      device.type = cudaMemLocationTypeDevice;
      device.id = options_.ordinal;
      UMLOAD_CUDA_CHECK(cudaMemAdvise(p, bytes, cudaMemAdviseSetPreferredLocation, host));
      UMLOAD_CUDA_CHECK(cudaMemAdvise(p, bytes, cudaMemAdviseSetAccessedBy, device));
    } catch (...) {
      release_host_managed(p, bytes);
      throw;
    }
    return p;
  }

  void release_host_managed(void* p, std::size_t bytes) noexcept {
    if (pageable_access_) {
      ::munmap(p, bytes);
    } else if (cudaFree(p) == cudaSuccess) {
      managed_live_bytes_ -= std::min<std::uint64_t>(bytes, managed_live_bytes_);
    }
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
      device_free(slot.device, slot.bytes);
      slot.device = nullptr;
      slot.bytes = 0;
      const std::size_t bytes = round_up(std::max(need, largest_staging_), scratch_alignment);
      slot.device = device_alloc(bytes);
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
    auto it = staging_.upper_bound(const_cast<std::uint8_t*>(p));
    if (it != staging_.begin()) {
      --it;
      const auto* base = static_cast<const std::uint8_t*>(it->first);
      if (p >= base && p + bytes <= base + it->second.bytes)
        return static_cast<const std::uint8_t*>(it->second.device) + (p - base);
    }
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
  bool concurrent_managed_access_ = false;
  bool host_register_ = false;
  mutable std::mutex mutex_;
  cudaStream_t copy_stream_ = nullptr;
  cudaStream_t compute_stream_ = nullptr;
  cudaEvent_t copy_start_ = nullptr;
  cudaEvent_t copied_ = nullptr;
  std::array<scratch_slot, scratch_slots> scratch_{};
  int next_scratch_ = 0;
  std::map<void*, staging_slot> staging_;
  std::size_t largest_staging_ = 0;
  hwloc_topology_t topology_ = nullptr;
  hwloc_obj_t numa_node_ = nullptr;
  std::uint64_t live_device_bytes_ = 0;
  std::uint64_t managed_live_bytes_ = 0;
  std::uint64_t managed_limit_bytes_ = 0;
  std::uint64_t peak_device_bytes_ = 0;
  double copy_seconds_ = 0;
  double decode_seconds_ = 0;
};

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
