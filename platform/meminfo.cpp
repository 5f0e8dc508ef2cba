#include "platform/meminfo.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kernels/error.hpp"

namespace umload::platform {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

std::optional<std::string> read_text_if_present(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::uint64_t meminfo::available_bytes() const {
  if (available) return *available;
  if (free) return *free + buffers.value_or(0) + cached.value_or(0);
  return 0;
}

std::uint64_t meminfo::huge_pages_free_bytes() const {
  return huge_pages_free.value_or(0) * huge_page_size.value_or(0);
}

meminfo parse_meminfo(std::string_view text, std::string_view source) {
  meminfo m;
  struct field {
    std::string_view key;
    std::optional<std::uint64_t> meminfo::*member;
    bool is_count;
  };
  static constexpr field fields[] = {
      {"MemTotal", &meminfo::total, false},
      {"MemFree", &meminfo::free, false},
      {"MemAvailable", &meminfo::available, false},
      {"Buffers", &meminfo::buffers, false},
      {"Cached", &meminfo::cached, false},
      {"HugePages_Total", &meminfo::huge_pages_total, true},
      {"HugePages_Free", &meminfo::huge_pages_free, true},
      {"Hugepagesize", &meminfo::huge_page_size, false},
  };
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    ++line_no;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    for (const auto& f : fields) {
      if (key != f.key) continue;
      std::string_view rest = trim(line.substr(colon + 1));
      std::uint64_t value = 0;
      auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
      std::string_view unit = trim(std::string_view(ptr, rest.data() + rest.size() - ptr));
      const bool unit_ok = f.is_count ? unit.empty() : (unit.empty() || unit == "kB");
      if (ec != std::errc{} || ptr == rest.data() || !unit_ok) {
        throw format_error(std::string(source) + ":" + std::to_string(line_no) + ": field " +
                           std::string(key) + " has value '" + std::string(rest) +
                           "', expected a number" + (f.is_count ? "" : " of kB"));
      }
      if (!f.is_count && unit == "kB") {
        if (__builtin_mul_overflow(value, std::uint64_t{1024}, &value)) {
          throw format_error(std::string(source) + ": field " + std::string(key) +
                             " overflows 64 bits");
        }
      }
      m.*(f.member) = value;
    }
  }
  return m;
}

meminfo read_meminfo(const std::filesystem::path& path) {
  auto text = read_text_if_present(path);
  if (!text) {
    const int err = errno;
    throw io_error("cannot read " + path.string() + ": " + std::strerror(err), err);
  }
  return parse_meminfo(*text, path.string());
}

std::optional<std::uint64_t> parse_cgroup_memory_max(std::string_view text,
                                                     std::string_view source) {
  text = trim(text);
  if (text == "max") return std::nullopt;
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || text.empty()) {
    throw format_error(std::string(source) + ": expected a byte count or 'max', found '" +
                       std::string(text) + "'");
  }
  return value;
}

std::optional<std::filesystem::path> cgroup_dir_from(std::string_view proc_self_cgroup,
                                                     const std::filesystem::path& root) {
  while (!proc_self_cgroup.empty()) {
    const std::size_t eol = proc_self_cgroup.find('\n');
    std::string_view line = proc_self_cgroup.substr(0, eol);
    proc_self_cgroup =
        eol == std::string_view::npos ? std::string_view{} : proc_self_cgroup.substr(eol + 1);
    if (line.substr(0, 3) == "0::") {
      std::string_view rel = trim(line.substr(3));
      while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
      return rel.empty() ? root : root / std::filesystem::path(rel);
    }
  }
  return std::nullopt;
}

std::optional<cgroup_limit> read_cgroup_limit(const std::filesystem::path& leaf,
                                              const std::filesystem::path& root) {
  std::optional<cgroup_limit> tightest;
  const auto root_norm = root.lexically_normal();
  for (auto dir = leaf.lexically_normal();; dir = dir.parent_path()) {
    if (auto max_text = read_text_if_present(dir / "memory.max")) {
      std::optional<std::uint64_t> max;
      try {
        max = parse_cgroup_memory_max(*max_text, (dir / "memory.max").string());
      } catch (const format_error&) {
        max.reset();
      }
      if (max) {
        cgroup_limit here{dir, *max, 0};
        if (auto cur = read_text_if_present(dir / "memory.current")) {
          try {
            here.current =
                parse_cgroup_memory_max(*cur, (dir / "memory.current").string()).value_or(0);
          } catch (const format_error&) {
            here.current = 0;
          }
        }
        if (!tightest || here.remaining() < tightest->remaining()) tightest = here;
      }
    }
    if (dir == root_norm || dir == dir.parent_path() ||
        dir.string().size() <= root_norm.string().size()) {
      break;
    }
  }
  return tightest;
}

}  // namespace umload::platform
