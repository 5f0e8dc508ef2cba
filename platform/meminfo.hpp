// Host memory as Linux reports it: /proc/meminfo (MemAvailable and huge pages) and the cgroup v2
// memory limit of this process. On integrated machines these are the only honest figures: the
// CUDA pool is host memory, and cudaMemGetInfo counts the page cache as used.
//
//   meminfo m = read_meminfo("/proc/meminfo");        // path injectable for tests
//   std::uint64_t avail = m.available_bytes();
//   auto limit = read_cgroup_limit(own_cgroup_dir(), "/sys/fs/cgroup");
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace umload::platform {

// The /proc/meminfo fields umload uses, in bytes (huge page counts are counts). A field the
// file does not have stays empty.
struct meminfo {
  std::optional<std::uint64_t> total;             // MemTotal
  std::optional<std::uint64_t> free;              // MemFree
  std::optional<std::uint64_t> available;         // MemAvailable (Linux >= 3.14)
  std::optional<std::uint64_t> buffers;           // Buffers
  std::optional<std::uint64_t> cached;            // Cached (page cache)
  std::optional<std::uint64_t> huge_pages_total;  // HugePages_Total (count)
  std::optional<std::uint64_t> huge_pages_free;   // HugePages_Free (count)
  std::optional<std::uint64_t> huge_page_size;    // Hugepagesize (bytes)

  // MemAvailable; without it, the kernel's old estimate MemFree + Buffers + Cached; else 0.
  std::uint64_t available_bytes() const;
  bool available_is_estimate() const { return !available.has_value(); }
  // Memory held in free huge pages (HugePages_Free * Hugepagesize), not part of MemAvailable.
  std::uint64_t huge_pages_free_bytes() const;
  bool huge_pages_configured() const { return huge_pages_total.value_or(0) > 0; }
};

// Parses the text of /proc/meminfo. Lines it does not know are skipped; a known line whose
// number does not parse is a format_error naming `source` and the line.
meminfo parse_meminfo(std::string_view text, std::string_view source = "/proc/meminfo");

// The whole text of a small /proc or /sys file, or nullopt when it cannot be read.
std::optional<std::string> read_text_if_present(const std::filesystem::path& path);

// Reads and parses a meminfo file. Throws io_error when it cannot be read.
meminfo read_meminfo(const std::filesystem::path& path);

// A cgroup v2 memory limit: the tightest of the cgroup and its ancestors.
struct cgroup_limit {
  std::filesystem::path dir;  // the cgroup whose memory.max binds
  std::uint64_t max = 0;      // memory.max
  std::uint64_t current = 0;  // memory.current
  std::uint64_t remaining() const { return max > current ? max - current : 0; }
};

// memory.max text: a number, or "max" (no limit, nullopt). format_error otherwise.
std::optional<std::uint64_t> parse_cgroup_memory_max(std::string_view text,
                                                     std::string_view source);

// This process's cgroup v2 directory, from the text of /proc/self/cgroup ("0::/path"), under
// `root`. nullopt on cgroup v1 or when the line is absent.
std::optional<std::filesystem::path> cgroup_dir_from(std::string_view proc_self_cgroup,
                                                     const std::filesystem::path& root);

// Walks from `leaf` up to `root` and returns the limit with the least room left, or nullopt when
// no level sets memory.max. Unreadable files count as "no limit at that level".
std::optional<cgroup_limit> read_cgroup_limit(const std::filesystem::path& leaf,
                                              const std::filesystem::path& root);

}  // namespace umload::platform
