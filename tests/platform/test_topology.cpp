#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "kernels/error.hpp"
#include "platform/profiles.hpp"
#include "platform/topology.hpp"

namespace up = umload::platform;

namespace {
up::topology_source fixture(const std::string& name) {
  return up::topology_source::parse(std::string(UMLOAD_PLATFORM_FIXTURES) + "/" + name);
}
}  // namespace

TEST(Topology, GpuMemoryNumaNode) {
  const auto t = up::load_topology(fixture("gh200_like.xml"), "00000009:01:00.0");
  ASSERT_EQ(t.numa_nodes.size(), 2u);
  const auto* cpu = t.node(0);
  const auto* hbm = t.node(1);
  ASSERT_TRUE(cpu && hbm);
  EXPECT_FALSE(cpu->gpu_memory);
  EXPECT_EQ(cpu->cpus, 8u);
  EXPECT_EQ(cpu->memory_bytes, 480'000'000'000u);
  EXPECT_TRUE(hbm->gpu_memory);
  EXPECT_EQ(hbm->subtype, "GPUMemory");
  EXPECT_EQ(hbm->cpus, 0u);
  EXPECT_EQ(hbm->memory_bytes, 96'000'000'000u);
  EXPECT_EQ(hbm->pci_bus_id, "0009:01:00.0");
  EXPECT_EQ(t.cpu_memory_bytes(), 480'000'000'000u);
  ASSERT_TRUE(t.gpu.found) << t.gpu.reason;
  EXPECT_EQ(t.gpu.pci_bus_id, "0009:01:00.0");
  EXPECT_EQ(t.gpu.numa_node, 0);  // the CPU node, never the HBM node
  EXPECT_EQ(t.gpu.memory_numa_node, 1);
  EXPECT_EQ(t.gpu.cpuset, "0-7");
}

TEST(Topology, SingleNodeSpark) {
  const auto t = up::load_topology(fixture("spark.xml"), "000f:01:00.0");
  ASSERT_EQ(t.numa_nodes.size(), 1u);
  EXPECT_EQ(t.numa_nodes[0].memory_bytes, 128'520'671'232u);
  EXPECT_EQ(t.numa_nodes[0].cpus, 20u);
  EXPECT_EQ(t.packages, 1u);
  EXPECT_EQ(t.cores, 20u);
  ASSERT_TRUE(t.gpu.found);
  EXPECT_EQ(t.gpu.numa_node, 0);
  EXPECT_EQ(t.gpu.memory_numa_node, -1);
  EXPECT_EQ(t.gpu.cpuset, "0-19");
}

TEST(Topology, TwoSocketGpuOnSocketOne) {
  const auto t = up::load_topology(fixture("two_socket.xml"), "0000:CA:00.0");
  ASSERT_EQ(t.numa_nodes.size(), 2u);
  EXPECT_EQ(t.packages, 2u);
  EXPECT_EQ(t.pus, 16u);
  ASSERT_TRUE(t.gpu.found) << t.gpu.reason;
  EXPECT_EQ(t.gpu.numa_node, 1);
  EXPECT_EQ(t.gpu.local_numa_nodes, std::vector<int>{1});
  EXPECT_EQ(t.gpu.cpuset, t.node(1)->cpuset);  // socket 1's cpuset
  EXPECT_EQ(t.gpu.cpuset, "8-15");
  EXPECT_EQ(t.nvidia_gpus, std::vector<std::string>{"0000:ca:00.0"});
}

TEST(Topology, UnknownGpuIsReportedNotThrown) {
  const auto t = up::load_topology(fixture("two_socket.xml"), "0000:17:00.0");
  EXPECT_FALSE(t.gpu.found);
  EXPECT_NE(t.gpu.reason.find("0000:17:00.0"), std::string::npos);
  const auto bad = up::load_topology(fixture("two_socket.xml"), "not-a-bus-id");
  EXPECT_FALSE(bad.gpu.found);
}

TEST(Topology, Synthetic) {
  const auto t = up::load_topology(
      up::topology_source::parse("synthetic:pack:2 numa:1(memory=1GB) core:3 pu:2"));
  EXPECT_EQ(t.packages, 2u);
  EXPECT_EQ(t.cores, 6u);
  EXPECT_EQ(t.pus, 12u);
  ASSERT_EQ(t.numa_nodes.size(), 2u);
  EXPECT_EQ(t.numa_nodes[1].cpuset, "6-11");
  EXPECT_EQ(t.numa_nodes[1].memory_bytes, 1'000'000'000u);
}

TEST(Topology, Errors) {
  EXPECT_THROW(up::load_topology(up::topology_source::parse("synthetic:pack:x")),
               umload::usage_error);
  EXPECT_THROW(up::load_topology(fixture("no_such_file.xml")), umload::io_error);
  up::topology_source junk;
  junk.what = up::topology_source::kind::xml_text;
  junk.value = "<topology version=\"3.0\"></topology>";
  junk.label = "junk";
  EXPECT_THROW(up::load_topology(junk), umload::format_error);
}

TEST(Topology, LiveLoads) {
  const auto t = up::load_topology(up::topology_source::live());
  EXPECT_GE(t.pus, 1u);
  EXPECT_GE(t.numa_nodes.size(), 1u);
}

// Where /sys is missing (containers, chroots) hwloc would print a critical error on stderr; the
// library stays silent and says what is missing in the topology's notes. HWLOC_FSROOT pointed at
// an empty folder makes hwloc's Linux backend see a machine without /sys.
TEST(Topology, LiveWithoutSysfsIsSilentAndSaysSo) {
  const auto empty =
      std::filesystem::temp_directory_path() / ("umload-no-sysfs-" + std::to_string(::getpid()));
  std::filesystem::create_directories(empty);
  const char* before = std::getenv("HWLOC_FSROOT");
  const std::string saved = before ? before : "";
  setenv("HWLOC_FSROOT", empty.c_str(), 1);
  ::testing::internal::CaptureStderr();
  const auto t = up::load_topology(up::topology_source::live());
  const std::string err = ::testing::internal::GetCapturedStderr();
  if (before)
    setenv("HWLOC_FSROOT", saved.c_str(), 1);
  else
    unsetenv("HWLOC_FSROOT");
  std::filesystem::remove(empty);
  EXPECT_EQ(err, "");
  EXPECT_GE(t.pus, 1u);
  ASSERT_EQ(t.notes.size(), 1u);
  EXPECT_NE(t.notes[0].find("no sysfs CPU topology"), std::string::npos) << t.notes[0];
  // With /sys there, nothing is missing and nothing is said.
  if (!before && std::filesystem::exists("/sys/devices/system/cpu")) {
    EXPECT_TRUE(up::load_topology(up::topology_source::live()).notes.empty());
  }
}

TEST(Topology, EveryProfileLocatesItsGpu) {
  for (const auto& name : up::profile_names()) {
    const auto p = up::find_profile(name);
    const auto t = up::load_topology(p.topology, p.device.present ? p.device.pci_bus_id : "");
    EXPECT_GE(t.numa_nodes.size(), 1u) << name;
    if (!p.device.present) continue;
    EXPECT_TRUE(t.gpu.found) << name << ": " << t.gpu.reason;
    EXPECT_GE(t.gpu.numa_node, 0) << name;
    EXPECT_FALSE(t.gpu.cpuset.empty()) << name;
    if (p.device.numa_config == 1) {
      EXPECT_EQ(t.gpu.memory_numa_node, p.device.numa_id) << name;
    }
  }
}

TEST(PciBusId, Parse) {
  unsigned d, b, v, f;
  ASSERT_TRUE(up::parse_pci_bus_id("00000009:01:00.0", d, b, v, f));
  EXPECT_EQ(d, 9u);
  EXPECT_EQ(b, 1u);
  ASSERT_TRUE(up::parse_pci_bus_id("0000:CA:1f.7", d, b, v, f));
  EXPECT_EQ(b, 0xcau);
  EXPECT_EQ(v, 0x1fu);
  EXPECT_EQ(f, 7u);
  EXPECT_FALSE(up::parse_pci_bus_id("0000:ca:00", d, b, v, f));
  EXPECT_FALSE(up::parse_pci_bus_id("0000:ca:00.0x", d, b, v, f));
  EXPECT_FALSE(up::parse_pci_bus_id("", d, b, v, f));
}

TEST(CpuKinds, SparkProfileHasHwlocsTwoKindsFastestLast) {
  const auto p = up::find_profile("dgx-spark");
  const auto t = up::load_topology(p.topology, p.device.pci_bus_id);
  ASSERT_EQ(t.cpu_kinds.size(), 2u);
  EXPECT_EQ(t.cpu_kinds[0].cpuset, "0-4,10-14");  // Cortex-A725
  EXPECT_EQ(t.cpu_kinds[1].cpuset, "5-9,15-19");  // Cortex-X925
  EXPECT_EQ(t.cpu_kinds[0].efficiency, 0);
  EXPECT_EQ(t.cpu_kinds[1].efficiency, 1);
  EXPECT_EQ(t.cpu_kinds[1].pus, 10u);
  const auto& infos = t.cpu_kinds[1].infos;
  EXPECT_NE(std::find(infos.begin(), infos.end(),
                      std::make_pair(std::string("CPUPart"), std::string("0xd85"))),
            infos.end());
}

TEST(CpuKinds, ReadersGoToTheFastKindNextToTheGpu) {
  const auto p = up::find_profile("dgx-spark");
  const auto t = up::load_topology(p.topology, p.device.pci_bus_id);
  const auto c = up::choose_worker_cpus(t, true);
  EXPECT_EQ(c.cpuset, "5-9,15-19");
  EXPECT_NE(c.reason.find("most performant of 2 CPU kinds"), std::string::npos) << c.reason;
  EXPECT_NE(c.reason.find("0xd85"), std::string::npos) << c.reason;
  EXPECT_NE(c.reason.find("0-4,10-14"), std::string::npos) << c.reason;  // what was left out
}

TEST(CpuKinds, SyntheticTwoKindFixtureFromXml) {
  const auto t = up::load_topology(fixture("two_kinds.xml"), "0000:01:00.0");
  ASSERT_EQ(t.cpu_kinds.size(), 2u);
  EXPECT_EQ(t.cpu_kinds[1].cpuset, "4-7");
  const auto near = up::choose_worker_cpus(t, true);
  EXPECT_EQ(near.cpuset, "4-7");
  EXPECT_NE(near.reason.find("IntelCore"), std::string::npos) << near.reason;
  // Without a GPU the whole machine is the start, and the fast kind still wins.
  EXPECT_EQ(up::choose_worker_cpus(t, false).cpuset, "4-7");
}

TEST(CpuKinds, FastKindAwayFromTheGpuKeepsTheGpuLocalCpus) {
  // Socket 1 holds the GPU; the fast kind lives only on socket 0.
  const auto base = up::load_topology(fixture("two_socket.xml"), "0000:ca:00.0");
  auto t = base;
  t.cpu_kinds = {{"8-15", 8, 0, {{"CoreType", "slow"}}}, {"0-7", 8, 1, {{"CoreType", "fast"}}}};
  const auto c = up::choose_worker_cpus(t, true);
  EXPECT_EQ(c.cpuset, "8-15");
  EXPECT_NE(c.reason.find("has none of them"), std::string::npos) << c.reason;
  // Half the GPU's socket is fast: only that half.
  t.cpu_kinds = {{"0-11", 12, 0, {}}, {"12-15", 4, 1, {}}};
  EXPECT_EQ(up::choose_worker_cpus(t, true).cpuset, "12-15");
}

TEST(CpuKinds, OneKindOrUnrankedKindsChangeNothing) {
  const auto t = up::load_topology(fixture("two_socket.xml"), "0000:ca:00.0");
  EXPECT_TRUE(t.cpu_kinds.size() <= 1u);
  const auto near = up::choose_worker_cpus(t, true);
  EXPECT_EQ(near.cpuset, "8-15");
  EXPECT_EQ(up::choose_worker_cpus(t, false).cpuset, "");  // no GPU, one kind: no binding
  auto unranked = t;
  unranked.cpu_kinds = {{"0-7", 8, -1, {}}, {"8-15", 8, -1, {}}};
  const auto u = up::choose_worker_cpus(unranked, true);
  EXPECT_EQ(u.cpuset, "8-15");
  EXPECT_NE(u.reason.find("could not rank"), std::string::npos) << u.reason;
  auto lost = t;
  lost.gpu.found = false;
  EXPECT_EQ(up::choose_worker_cpus(lost, true).cpuset, "");
}
