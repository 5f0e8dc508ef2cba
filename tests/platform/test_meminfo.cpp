#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kernels/error.hpp"
#include "platform/meminfo.hpp"

namespace up = umload::platform;
namespace fs = std::filesystem;

TEST(Meminfo, HugePages) {
  const auto m = up::read_meminfo(std::string(UMLOAD_PLATFORM_FIXTURES) + "/meminfo_hugepages.txt");
  EXPECT_EQ(*m.total, 131072000ull * 1024);
  EXPECT_EQ(*m.available, 98304000ull * 1024);
  EXPECT_EQ(m.available_bytes(), 98304000ull * 1024);
  EXPECT_FALSE(m.available_is_estimate());
  EXPECT_TRUE(m.huge_pages_configured());
  EXPECT_EQ(*m.huge_pages_total, 1024u);
  EXPECT_EQ(*m.huge_pages_free, 512u);
  EXPECT_EQ(*m.huge_page_size, 2048u * 1024);
  EXPECT_EQ(m.huge_pages_free_bytes(), 512ull * 2048 * 1024);
}

TEST(Meminfo, MissingMemAvailableFallsBackToTheOldEstimate) {
  const auto m =
      up::read_meminfo(std::string(UMLOAD_PLATFORM_FIXTURES) + "/meminfo_old_kernel.txt");
  EXPECT_FALSE(m.available);
  EXPECT_TRUE(m.available_is_estimate());
  EXPECT_EQ(m.available_bytes(), (1000000ull + 200000 + 3000000) * 1024);
  EXPECT_FALSE(m.huge_pages_configured());
  EXPECT_EQ(m.huge_pages_free_bytes(), 0u);
}

TEST(Meminfo, EmptyAndUnknownLines) {
  const auto empty = up::parse_meminfo("");
  EXPECT_EQ(empty.available_bytes(), 0u);
  const auto m = up::parse_meminfo("Foo: 12 kB\nno colon here\nMemAvailable: 4 kB");
  EXPECT_EQ(*m.available, 4096u);
}

TEST(Meminfo, MalformedKnownFieldIsAFormatError) {
  EXPECT_THROW(up::parse_meminfo("MemAvailable: lots kB\n"), umload::format_error);
  EXPECT_THROW(up::parse_meminfo("MemAvailable: 12 MB\n"), umload::format_error);
  EXPECT_THROW(up::parse_meminfo("HugePages_Free: 3 kB\n"), umload::format_error);
  EXPECT_THROW(up::parse_meminfo("MemTotal: 99999999999999999999 kB\n"), umload::format_error);
}

TEST(Meminfo, UnreadableFileIsAnIoError) {
  EXPECT_THROW(up::read_meminfo("/nonexistent/meminfo"), umload::io_error);
}

TEST(Cgroup, MemoryMaxValues) {
  EXPECT_FALSE(up::parse_cgroup_memory_max("max\n", "x"));
  EXPECT_EQ(*up::parse_cgroup_memory_max("1073741824\n", "x"), 1073741824u);
  EXPECT_THROW(up::parse_cgroup_memory_max("lots", "x"), umload::format_error);
}

TEST(Cgroup, DirFromProcSelfCgroup) {
  EXPECT_EQ(*up::cgroup_dir_from("0::/user.slice/job\n", "/sys/fs/cgroup"),
            "/sys/fs/cgroup/user.slice/job");
  EXPECT_EQ(*up::cgroup_dir_from("0::/\n", "/sys/fs/cgroup"), "/sys/fs/cgroup");
  EXPECT_FALSE(up::cgroup_dir_from("4:memory:/docker/abc\n", "/sys/fs/cgroup"));  // v1
}

TEST(Cgroup, TightestLimitOnThePath) {
  const fs::path root = fs::temp_directory_path() / ("umload_cgroup_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "outer" / "inner");
  auto write = [](const fs::path& p, const std::string& s) { std::ofstream(p) << s; };
  write(root / "outer" / "memory.max", "8589934592\n");      // 8 GiB
  write(root / "outer" / "memory.current", "1073741824\n");  // 1 GiB used
  write(root / "outer" / "inner" / "memory.max", "max\n");
  write(root / "outer" / "inner" / "memory.current", "0\n");
  const auto limit = up::read_cgroup_limit(root / "outer" / "inner", root);
  ASSERT_TRUE(limit);
  EXPECT_EQ(limit->dir, root / "outer");
  EXPECT_EQ(limit->remaining(), 7ull << 30);
  write(root / "outer" / "inner" / "memory.max", "2147483648\n");
  EXPECT_EQ(up::read_cgroup_limit(root / "outer" / "inner", root)->remaining(), 2ull << 30);
  fs::remove_all(root / "outer");
  fs::create_directories(root / "free");
  EXPECT_FALSE(up::read_cgroup_limit(root / "free", root));
  fs::remove_all(root);
}
