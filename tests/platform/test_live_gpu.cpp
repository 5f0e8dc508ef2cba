// The live CUDA query on a machine with a GPU: what it reads must be self-consistent and the GPU
// must be found in the live hwloc topology by its PCI bus id. Skips without a device; the values
// printed are what docs/platforms.md lists as unconfirmed for the profiles.
#include <gtest/gtest.h>

#include <cstdio>

#include "platform/platform.hpp"

namespace up = umload::platform;

TEST(LiveGpu, AttributesAndLocality) {
  const auto query = up::make_cuda_device_query();
  const up::device_info d = query->query(0);
  if (!d.present) GTEST_SKIP() << "no usable GPU: " << d.absence_reason;
  EXPECT_GE(d.device_count, 1);
  EXPECT_GE(d.compute_major, 7);
  EXPECT_GT(d.sm_count, 0);
  EXPECT_GT(d.total_memory, 0u);
  EXPECT_FALSE(d.pci_bus_id.empty());
  for (int v : {d.integrated, d.pageable_memory_access, d.concurrent_managed_access,
                d.pageable_uses_host_page_tables}) {
    EXPECT_TRUE(v == 0 || v == 1) << v;
  }
  const auto c = up::classify(d);
  EXPECT_NE(c.model, up::memory_model::host);
  const auto info = up::detect_platform({});
  EXPECT_EQ(info.model, c.model);
  EXPECT_TRUE(info.topology.gpu.found) << info.topology.gpu.reason;
  std::printf("%s\n", up::to_json(info).dump(2).c_str());
}
