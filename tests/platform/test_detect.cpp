#include <gtest/gtest.h>

#include "kernels/error.hpp"
#include "platform/platform.hpp"
#include "platform/profiles.hpp"

namespace up = umload::platform;
using up::memory_model;

namespace {
std::string fixture(const std::string& name) {
  return std::string(UMLOAD_PLATFORM_FIXTURES) + "/" + name;
}

up::detect_options faked(const up::device_query& q, const std::string& topology,
                         const std::string& meminfo) {
  up::detect_options o;
  o.query = &q;
  o.topology = fixture(topology);
  o.meminfo_path = fixture(meminfo);
  o.cgroup_disabled = true;
  return o;
}
}  // namespace

TEST(Detect, IntegratedBudgetsComeFromMemAvailableNotCudaMemGetInfo) {
  auto dev = up::find_profile("dgx-spark").device;
  dev.free_memory = 20ull << 30;  // what cudaMemGetInfo says with a full page cache
  up::fixed_device_query q(dev);
  const auto info = up::detect_platform(faked(q, "spark.xml", "meminfo_spark.txt"));
  EXPECT_EQ(info.model, memory_model::integrated);
  EXPECT_TRUE(info.memory.single_pool);
  EXPECT_EQ(info.memory.host_bytes, 119000000ull * 1024);
  EXPECT_EQ(info.memory.device_bytes, 119000000ull * 1024);  // min(pool, MemAvailable)
  EXPECT_TRUE(info.topology.gpu.found);
  bool noted = false;
  for (const auto& n : info.notes) noted |= n.find("cudaMemGetInfo") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(Detect, DiscreteTrustsCudaMemGetInfo) {
  auto dev = up::find_profile("h100-pcie").device;
  dev.free_memory = 70ull << 30;
  dev.pageable_memory_access = 0;  // the proprietary kernel modules: no HMM
  up::fixed_device_query q(dev);
  const auto info = up::detect_platform(faked(q, "two_socket.xml", "meminfo_hugepages.txt"));
  EXPECT_EQ(info.model, memory_model::discrete);
  EXPECT_EQ(info.memory.device_bytes, 70ull << 30);
  EXPECT_EQ(info.topology.gpu.numa_node, 1);
  EXPECT_NE(info.memory.host_source.find("huge pages"), std::string::npos);
}

TEST(Detect, CoherentUsesDeviceTotal) {
  auto dev = up::find_profile("gh200").device;
  dev.free_memory = 10ull << 30;
  up::fixed_device_query q(dev);
  const auto info = up::detect_platform(faked(q, "gh200_like.xml", "meminfo_hugepages.txt"));
  EXPECT_EQ(info.model, memory_model::coherent);
  EXPECT_EQ(info.memory.device_bytes, dev.total_memory);
  EXPECT_EQ(info.topology.gpu.memory_numa_node, 1);
}

TEST(Detect, NoGpuIsHost) {
  up::device_info none;
  none.absence_reason = "no CUDA driver: cudaGetDeviceCount returned cudaErrorInsufficientDriver";
  up::fixed_device_query q(none);
  const auto info = up::detect_platform(faked(q, "two_socket.xml", "meminfo_old_kernel.txt"));
  EXPECT_EQ(info.model, memory_model::host);
  EXPECT_NE(info.reason.find("cudaErrorInsufficientDriver"), std::string::npos);
  EXPECT_EQ(info.memory.device_bytes, 0u);
  EXPECT_NE(info.memory.host_source.find("no MemAvailable"), std::string::npos);
  const auto j = up::to_json(info);
  EXPECT_EQ(j["memory_model"], "host");
}

TEST(Detect, LiveOnThisMachineNeverThrows) {
  up::detect_options o;
  o.topology.reset();
  up::platform_info info;
  ASSERT_NO_THROW(info = up::detect_platform(o));
  if (!info.device.present) {
    EXPECT_EQ(info.model, memory_model::host);
  }
  EXPECT_GE(info.topology.pus, 1u);
  EXPECT_FALSE(up::describe(info).empty());
}

// The one device-count probe and the live query agree: a count with no reason, or no device and
// why (no driver, no device, the stub library, a build without CUDA).
TEST(Detect, TheDeviceCountProbeAndTheLiveQueryAgree) {
  const up::cuda_devices devices = up::probe_cuda_devices();
  const up::device_info first = up::make_cuda_device_query()->query(0);
  EXPECT_EQ(first.device_count, devices.count);
  if (devices.count == 0) {
    EXPECT_FALSE(devices.absence_reason.empty());
    EXPECT_EQ(first.absence_reason, devices.absence_reason);
    EXPECT_FALSE(first.present);
  } else {
    EXPECT_TRUE(devices.absence_reason.empty()) << devices.absence_reason;
  }
}

TEST(Detect, UserGivenFilesMustExist) {
  up::device_info none;
  up::fixed_device_query q(none);
  auto o = faked(q, "two_socket.xml", "meminfo_old_kernel.txt");
  o.meminfo_path = "/nonexistent/meminfo";
  EXPECT_THROW(up::detect_platform(o), umload::io_error);
  o = faked(q, "missing.xml", "meminfo_old_kernel.txt");
  EXPECT_THROW(up::detect_platform(o), umload::io_error);
}

TEST(Detect, ProfilesByName) {
  for (const auto& name : up::profile_names()) {
    up::detect_options o;
    o.profile = name;
    const auto info = up::detect_platform(o);
    EXPECT_EQ(info.profile, name);
    EXPECT_FALSE(info.sources.empty()) << name;
    const auto j = up::to_json(info);
    EXPECT_TRUE(j.contains("memory_model"));
    if (info.model != memory_model::host) {
      EXPECT_GT(info.memory.device_bytes, 0u) << name;
    }
  }
  up::detect_options bad;
  bad.profile = "h300";
  EXPECT_THROW(up::detect_platform(bad), umload::usage_error);
}

TEST(Detect, ProfileWithAnotherTopology) {
  const auto info = up::profile_platform("h100-pcie", fixture("two_socket.xml"));
  EXPECT_TRUE(info.topology.gpu.found);
  EXPECT_EQ(info.topology.gpu.cpuset, "8-15");
}

TEST(Detect, DeriveMemoryRespectsTheCgroup) {
  up::meminfo m;
  m.available = 100ull << 30;
  up::cgroup_limit limit{"/sys/fs/cgroup/job", 8ull << 30, 2ull << 30};
  const auto figures = up::derive_memory(memory_model::host, {}, m, limit);
  EXPECT_EQ(figures.host_bytes, 6ull << 30);
  EXPECT_NE(figures.host_source.find("cgroup"), std::string::npos);
}
