// The host backend: CPU kernels decoding straight into host memory. On a machine without a GPU it
// also stands in for a device plan: host_managed outputs are host memory bound to their node, and
// the advice and device prefetches such a plan orders are reported as simulated.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "kernels/error.hpp"
#include "platform/binding.hpp"
#include "src/backend.hpp"
#include "src/memory.hpp"

namespace umload {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

class host_backend final : public backend {
 public:
  host_backend(int threads, cpu::isa path, std::string_view decode_cpuset)
      : decode_threads_(decode_cpuset),
        threads_(threads == 0 ? static_cast<int>(decode_threads_.cpus()) : threads),
        path_(path) {}

  std::string_view name() const override { return "host"; }

  std::byte* allocate_staging(std::size_t bytes) override {
    return static_cast<std::byte*>(staging_.allocate(bytes));
  }
  void release_staging(std::byte* p, std::size_t bytes) noexcept override {
    staging_.deallocate(p, bytes);
  }

  placed_output place_output(std::size_t bytes, const output_request& request) override {
    placed_output placed;
    placed.data =
        static_cast<std::byte*>(outputs_.allocate_on(bytes, request.numa_node, &placed.actions));
    if (request.where == memory_kind::host_managed) {
      if (request.prefer_host)
        placed.simulated.push_back("advise preferred-location host" +
                                   (request.numa_node >= 0
                                        ? "-numa:" + std::to_string(request.numa_node)
                                        : std::string()));
      if (request.accessed_by_device) placed.simulated.push_back("advise accessed-by device");
    } else if (request.where == memory_kind::device) {
      placed.simulated.push_back("device memory (host memory stands in)");
    }
    return placed;
  }

  void release_output(std::byte* p, std::size_t bytes, memory_kind) noexcept override {
    outputs_.deallocate(p, bytes);
  }

  std::string fault_in(std::byte* p, std::size_t bytes, const output_request&) override {
    return populate_for_write(p, bytes);
  }

  std::string prefetch_to_device(const std::byte*, std::size_t, void*) override {
    return "simulated: no device (host backend)";
  }

  void process(const staged_item& item) override {
    const auto t0 = clock_type::now();
    if (item.what == staged_item::kind::decode) {
      cpu::decode(item.job, path_, threads_, hooks_);
      decode_seconds_ += seconds_since(t0);
    } else {
      if (item.staged_bytes) std::memcpy(item.destination, item.staged, item.staged_bytes);
      copy_seconds_ += seconds_since(t0);
    }
  }

  void synchronize() override {}

  backend_stats stats() const override {
    return {copy_seconds_, decode_seconds_, 0, "pageable host memory", decode_threads_.summary()};
  }

 private:
  platform::thread_binder decode_threads_;
  const cpu::team_hooks hooks_{[](void* b) { static_cast<platform::thread_binder*>(b)->enter(); },
                               [](void* b) { static_cast<platform::thread_binder*>(b)->leave(); },
                               &decode_threads_};
  int threads_;
  cpu::isa path_;
  aligned_host_resource staging_;
  host_memory_resource outputs_;
  double copy_seconds_ = 0;
  double decode_seconds_ = 0;
};

}  // namespace

std::unique_ptr<backend> make_host_backend(int threads, cpu::isa path,
                                           std::string_view decode_cpuset) {
  return std::make_unique<host_backend>(threads, path, decode_cpuset);
}

}  // namespace umload
