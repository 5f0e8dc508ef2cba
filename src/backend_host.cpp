// The host backend: CPU kernels decoding straight into host memory.
#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/error.hpp"
#include "src/backend.hpp"

namespace umload {

namespace {

constexpr std::size_t page_alignment = 4096;

class host_backend final : public backend {
 public:
  host_backend(int threads, cpu::isa path) : threads_(threads), path_(path) {}

  std::string_view name() const override { return "host"; }

  std::byte* allocate_staging(std::size_t bytes) override { return allocate(bytes); }
  void release_staging(std::byte* p, std::size_t) noexcept override { std::free(p); }

  std::byte* allocate_output(std::size_t bytes, memory_kind) override {
    // Anonymous mappings give whole tensors back to the OS on release, whatever the allocator.
    if (bytes == 0) return nullptr;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return static_cast<std::byte*>(p);
  }
  void release_output(std::byte* p, std::size_t bytes, memory_kind) noexcept override {
    if (p) ::munmap(p, bytes);
  }

  void process(const staged_item& item) override {
    const auto t0 = std::chrono::steady_clock::now();
    if (item.what == staged_item::kind::decode) {
      cpu::decode(item.job, path_, threads_);
      decode_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } else {
      if (item.staged_bytes) std::memcpy(item.destination, item.staged, item.staged_bytes);
      copy_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }

  void synchronize() override {}

  backend_stats stats() const override { return {copy_seconds_, decode_seconds_, 0}; }

 private:
  static std::byte* allocate(std::size_t bytes) {
    void* p = std::aligned_alloc(page_alignment, (bytes + page_alignment - 1) / page_alignment * page_alignment);
    if (!p) throw std::bad_alloc();
    return static_cast<std::byte*>(p);
  }

  int threads_;
  cpu::isa path_;
  double copy_seconds_ = 0;
  double decode_seconds_ = 0;
};

}  // namespace

std::unique_ptr<backend> make_host_backend(int threads, cpu::isa path) {
  return std::make_unique<host_backend>(threads, path);
}

}  // namespace umload
