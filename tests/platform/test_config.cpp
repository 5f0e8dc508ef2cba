#include <gtest/gtest.h>

#include <map>

#include "kernels/error.hpp"
#include "platform/config.hpp"

namespace up = umload::platform;

namespace {
up::env_lookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}
}  // namespace

TEST(Defaults, EmptyEnvironment) {
  const auto d = up::read_defaults(env_of({}));
  EXPECT_FALSE(d.profile);
  EXPECT_FALSE(d.topology);
  EXPECT_EQ(d.meminfo_path, "/proc/meminfo");
  EXPECT_EQ(d.io, umload::io_mode::automatic);
  EXPECT_EQ(d.device(), 0);
  EXPECT_FALSE(d.rank);
}

TEST(Defaults, ReadsEveryVariable) {
  const auto d = up::read_defaults(env_of({{"UMLOAD_PROFILE", "gh200"},
                                           {"UMLOAD_TOPOLOGY", "/tmp/t.xml"},
                                           {"UMLOAD_MEMINFO", "/tmp/meminfo"},
                                           {"UMLOAD_CGROUP", "none"},
                                           {"UMLOAD_IO", "buffered"},
                                           {"UMLOAD_STAGING_SLOT_SIZE", "32M"},
                                           {"UMLOAD_STAGING_SLOTS", "3"},
                                           {"UMLOAD_DEVICE_MEMORY", "80G"},
                                           {"UMLOAD_HOST_MEMORY", "1.5GiB"},
                                           {"RANK", "1"},
                                           {"WORLD_SIZE", "4"},
                                           {"LOCAL_RANK", "1"}}));
  EXPECT_EQ(*d.profile, "gh200");
  EXPECT_EQ(*d.topology, "/tmp/t.xml");
  EXPECT_EQ(d.meminfo_path, "/tmp/meminfo");
  EXPECT_TRUE(d.cgroup_disabled);
  EXPECT_EQ(d.io, umload::io_mode::buffered);
  EXPECT_EQ(*d.staging_slot_bytes, 32ull << 20);
  EXPECT_EQ(*d.staging_slots, 3);
  EXPECT_EQ(*d.device_memory_bytes, 80ull << 30);
  EXPECT_EQ(*d.host_memory_bytes, 3ull << 29);
  EXPECT_EQ(*d.rank, 1);
  EXPECT_EQ(*d.world_size, 4);
  EXPECT_EQ(d.device(), 1);  // LOCAL_RANK picks the GPU
}

TEST(Defaults, DeviceWinsOverLocalRank) {
  const auto d = up::read_defaults(env_of({{"UMLOAD_DEVICE", "3"}, {"LOCAL_RANK", "1"}}));
  EXPECT_EQ(d.device(), 3);
}

TEST(Defaults, EmptyValueIsUnset) {
  const auto d = up::read_defaults(env_of({{"UMLOAD_PROFILE", ""}, {"UMLOAD_IO", ""}}));
  EXPECT_FALSE(d.profile);
  EXPECT_EQ(d.io, umload::io_mode::automatic);
}

TEST(Defaults, UnknownValuesAreErrors) {
  const std::vector<std::map<std::string, std::string>> bad{
      {{"UMLOAD_PROFILE", "h300"}},
      {{"UMLOAD_IO", "mmap"}},
      {{"UMLOAD_STAGING_SLOT_SIZE", "lots"}},
      {{"UMLOAD_STAGING_SLOT_SIZE", "1000"}},  // not a multiple of 4 KiB
      {{"UMLOAD_STAGING_SLOTS", "0"}},
      {{"UMLOAD_STAGING_SLOTS", "two"}},
      {{"UMLOAD_DEVICE", "-1"}},
      {{"UMLOAD_DEVICE_MEMORY", "80Q"}},
      {{"RANK", "4"}, {"WORLD_SIZE", "4"}},
      {{"RANK", "0"}},
      {{"WORLD_SIZE", "0"}},
  };
  for (const auto& vars : bad) {
    EXPECT_THROW(up::read_defaults(env_of(vars)), umload::usage_error) << vars.begin()->first;
  }
}

TEST(Defaults, MessageNamesTheVariable) {
  try {
    up::read_defaults(env_of({{"UMLOAD_IO", "mmap"}}));
    FAIL();
  } catch (const umload::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("UMLOAD_IO"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("mmap"), std::string::npos);
  }
}

TEST(Defaults, EveryVariableIsDocumentedOnce) {
  const auto& vars = up::environment_variables();
  EXPECT_GE(vars.size(), 13u);
  for (std::size_t i = 0; i < vars.size(); ++i) {
    for (std::size_t j = i + 1; j < vars.size(); ++j) EXPECT_NE(vars[i].name, vars[j].name);
  }
}
