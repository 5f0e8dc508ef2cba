#include "src/memory.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "kernels/arith.hpp"
#include "kernels/error.hpp"
#include "platform/binding.hpp"

namespace umload {

namespace {

constexpr std::size_t page_bytes = 4096;
constexpr std::size_t huge_page = 2u << 20;

[[noreturn]] void refuse(std::size_t bytes, const char* what, int err) {
  throw budget_error("cannot allocate " + std::to_string(bytes) + " bytes of " + what + ": " +
                     std::strerror(err));
}

void* map_anonymous(std::size_t length) {
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) refuse(length, "host memory", errno);
  return p;
}

}  // namespace

void* host_memory_resource::allocate(std::size_t bytes) { return allocate_on(bytes, -1, nullptr); }

void* host_memory_resource::allocate_on(std::size_t bytes, int numa_node,
                                        std::vector<std::string>* actions) {
  if (bytes == 0) return nullptr;
  const std::size_t length = round_up(bytes, page_bytes);
  std::byte* p = nullptr;
  if (length < huge_page) {
    p = static_cast<std::byte*>(map_anonymous(length));
  } else {
    auto* base = static_cast<std::byte*>(map_anonymous(length + huge_page));
    p = reinterpret_cast<std::byte*>(round_up(reinterpret_cast<std::uintptr_t>(base), huge_page));
    if (p > base) ::munmap(base, static_cast<std::size_t>(p - base));
    const std::size_t tail = static_cast<std::size_t>((base + length + huge_page) - (p + length));
    if (tail) ::munmap(p + length, tail);
    ::madvise(p, length, MADV_HUGEPAGE);  // advisory: ignored where THP is off
  }
  if (numa_node >= 0) {
    const std::string bound = bind_host_memory(p, length, numa_node);
    if (actions) actions->push_back("numa-bind " + bound);
  }
  return p;
}

void host_memory_resource::deallocate(void* p, std::size_t bytes) noexcept {
  if (p) ::munmap(p, round_up(bytes, page_bytes));
}

std::string bind_host_memory(void* p, std::size_t bytes, int numa_node) {
  const auto r = platform::bind_memory(p, bytes, numa_node);
  return std::string(platform::to_string(r.outcome)) + ": " + r.detail;
}

std::string populate_for_write(void* p, std::size_t bytes) noexcept {
  if (p == nullptr || bytes == 0) return "nothing to fault in";
  return ::madvise(p, bytes, MADV_POPULATE_WRITE) == 0 ? "populate-write"
                                                       : "populate-write refused";
}

void* aligned_host_resource::allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  const std::size_t length = round_up(bytes, page_bytes);
  void* p = std::aligned_alloc(page_bytes, length);
  if (!p) refuse(length, "page-aligned host memory", ENOMEM);
  return p;
}

void aligned_host_resource::deallocate(void* p, std::size_t) noexcept { std::free(p); }

void* tracking_adaptor::allocate(std::size_t bytes) {
  void* p = upstream_.allocate(bytes);
  count(bytes);
  return p;
}

void tracking_adaptor::deallocate(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  upstream_.deallocate(p, bytes);
  uncount(bytes);
}

void tracking_adaptor::count(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  live_ += bytes;
  peak_ = std::max(peak_, live_);
}

void tracking_adaptor::uncount(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  live_ -= std::min(live_, bytes);
}

std::uint64_t tracking_adaptor::live_bytes() const {
  std::lock_guard lock(mutex_);
  return live_;
}

std::uint64_t tracking_adaptor::peak_bytes() const {
  std::lock_guard lock(mutex_);
  return peak_;
}

void limiting_adaptor::charge(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  const std::uint64_t shared = shares_with_ ? shares_with_->live_bytes() : 0;
  if (live_ + shared + bytes > limit_)
    throw budget_error(
        what_ + ": " + std::to_string(bytes) + " more bytes would pass the limit of " +
        std::to_string(limit_) + " (" + std::to_string(live_) + " held" +
        (shares_with_ ? " + " + std::to_string(shared) + " held beside it" : std::string()) + ")");
  live_ += bytes;
}

void limiting_adaptor::discharge(std::uint64_t bytes) noexcept {
  std::lock_guard lock(mutex_);
  live_ -= std::min(live_, bytes);
}

void* limiting_adaptor::allocate(std::size_t bytes) {
  charge(bytes);
  try {
    return upstream_.allocate(bytes);
  } catch (...) {
    discharge(bytes);
    throw;
  }
}

void limiting_adaptor::deallocate(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  upstream_.deallocate(p, bytes);
  discharge(bytes);
}

std::uint64_t limiting_adaptor::live_bytes() const {
  std::lock_guard lock(mutex_);
  return live_;
}

}  // namespace umload
