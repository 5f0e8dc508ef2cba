// The host backend: CPU kernels decoding straight into host memory.
#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/error.hpp"
#include "src/backend.hpp"

namespace umload {

namespace {

constexpr std::size_t page_alignment = 4096;
constexpr std::size_t huge_page = 2u << 20;

constexpr std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

class host_backend final : public backend {
 public:
  host_backend(int threads, cpu::isa path) : threads_(threads), path_(path) {}

  std::string_view name() const override { return "host"; }

  std::byte* allocate_staging(std::size_t bytes) override { return allocate(bytes); }
  void release_staging(std::byte* p, std::size_t) noexcept override { std::free(p); }

  std::byte* allocate_output(std::size_t bytes, memory_kind) override {
    // Anonymous mappings give whole tensors back to the OS on release, whatever the allocator.
    // Large ones are 2 MiB aligned and asked for transparent huge pages: first-touch faults on
    // 4 KiB pages otherwise cost more system time than the decode itself.
    if (bytes == 0) return nullptr;
    const std::size_t length = round_up(bytes, page_alignment);
    if (length < huge_page) {
      void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) refuse(length, "an output tensor");
      return static_cast<std::byte*>(p);
    }
    void* raw = ::mmap(nullptr, length + huge_page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) refuse(length + huge_page, "an output tensor");
    auto* base = static_cast<std::byte*>(raw);
    auto* aligned =
        reinterpret_cast<std::byte*>(round_up(reinterpret_cast<std::uintptr_t>(base), huge_page));
    if (aligned > base) ::munmap(base, static_cast<std::size_t>(aligned - base));
    const std::size_t tail =
        static_cast<std::size_t>((base + length + huge_page) - (aligned + length));
    if (tail) ::munmap(aligned + length, tail);
    ::madvise(aligned, length, MADV_HUGEPAGE);  // advisory: ignored where THP is off
    return aligned;
  }
  void release_output(std::byte* p, std::size_t bytes, memory_kind) noexcept override {
    if (p) ::munmap(p, round_up(bytes, page_alignment));
  }

  void process(const staged_item& item) override {
    const auto t0 = std::chrono::steady_clock::now();
    if (item.what == staged_item::kind::decode) {
      cpu::decode(item.job, path_, threads_);
      decode_seconds_ +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } else {
      if (item.staged_bytes) std::memcpy(item.destination, item.staged, item.staged_bytes);
      copy_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }

  void synchronize() override {}

  backend_stats stats() const override { return {copy_seconds_, decode_seconds_, 0}; }

 private:
  static std::byte* allocate(std::size_t bytes) {
    void* p = std::aligned_alloc(page_alignment, round_up(bytes, page_alignment));
    if (!p) refuse(round_up(bytes, page_alignment), "a staging slot");
    return static_cast<std::byte*>(p);
  }

  [[noreturn]] static void refuse(std::size_t bytes, const char* what) {
    throw budget_error("cannot allocate " + std::to_string(bytes) + " bytes of host memory for " +
                       what);
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
