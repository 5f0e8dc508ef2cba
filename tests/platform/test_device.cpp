#include <gtest/gtest.h>

#include "platform/device.hpp"
#include "platform/profiles.hpp"

namespace up = umload::platform;
using up::memory_model;

namespace {
up::device_info faked(int integrated, int pageable, int host_page_tables) {
  up::device_info d;
  d.present = true;
  d.device_count = 1;
  d.integrated = integrated;
  d.pageable_memory_access = pageable;
  d.pageable_uses_host_page_tables = host_page_tables;
  return d;
}
}  // namespace

TEST(Classify, NoDeviceIsHostWithTheReason) {
  up::device_info d;
  d.absence_reason = "no CUDA driver: cudaGetDeviceCount returned cudaErrorInsufficientDriver";
  const auto c = up::classify(d);
  EXPECT_EQ(c.model, memory_model::host);
  EXPECT_NE(c.reason.find("cudaErrorInsufficientDriver"), std::string::npos);
}

TEST(Classify, DocumentedProcedure) {
  EXPECT_EQ(up::classify(faked(0, 0, 0)).model, memory_model::discrete);
  EXPECT_EQ(up::classify(faked(0, 1, 0)).model, memory_model::discrete_hmm);
  EXPECT_EQ(up::classify(faked(0, 1, 1)).model, memory_model::coherent);
  EXPECT_EQ(up::classify(faked(1, 1, 1)).model, memory_model::integrated);
  EXPECT_EQ(up::classify(faked(1, 0, 0)).model, memory_model::integrated);
  // An attribute the query could not read (-1) is not a "yes".
  EXPECT_EQ(up::classify(faked(-1, -1, -1)).model, memory_model::discrete);
}

TEST(Classify, EveryProfile) {
  const std::map<std::string, memory_model> expected{
      {"h100-pcie", memory_model::discrete_hmm},
      {"h100-sxm", memory_model::discrete_hmm},
      {"h200", memory_model::discrete_hmm},
      {"gh200", memory_model::coherent},
      {"gh200-144g", memory_model::coherent},
      {"gb200", memory_model::coherent},
      {"dgx-spark", memory_model::integrated},
      {"dgx-spark-121g", memory_model::integrated},
      {"host", memory_model::host},
  };
  const auto names = up::profile_names();
  ASSERT_EQ(names.size(), expected.size());
  for (const auto& name : names) {
    const auto p = up::find_profile(name);
    const auto c = up::classify(up::fixed_device_query(p.device).query(0));
    EXPECT_EQ(c.model, expected.at(name)) << name;
    EXPECT_FALSE(c.reason.empty()) << name;
  }
}

TEST(Classify, ModelNamesRoundTrip) {
  for (auto m : {memory_model::host, memory_model::discrete, memory_model::discrete_hmm,
                 memory_model::coherent, memory_model::integrated}) {
    EXPECT_EQ(up::parse_memory_model(up::to_string(m)), m);
  }
  EXPECT_EQ(up::to_string(memory_model::discrete_hmm), "discrete-hmm");
  EXPECT_FALSE(up::parse_memory_model("unified"));
}

TEST(FixedQuery, OrdinalOutOfRangeIsAbsentNotAnError) {
  up::fixed_device_query q(faked(0, 0, 0));
  EXPECT_TRUE(q.query(0).present);
  const auto d = q.query(3);
  EXPECT_FALSE(d.present);
  EXPECT_NE(d.absence_reason.find("does not exist"), std::string::npos);
}

TEST(LiveQuery, NeverThrowsWithoutAGpu) {
  // On machines without a driver (or builds without CUDA) this is present=false with a reason;
  // on a GPU machine it describes device 0. Either way it does not throw.
  const auto q = up::make_cuda_device_query();
  up::device_info d;
  ASSERT_NO_THROW(d = q->query(0));
  if (!d.present) {
    EXPECT_FALSE(d.absence_reason.empty());
  }
  EXPECT_FALSE(q->query(100000).present);
}

TEST(Attributes, UnconfirmedValuesAreMarked) {
  const auto p = up::find_profile("dgx-spark");
  bool saw_integrated = false;
  for (const auto& a : up::attributes(p.device)) {
    if (a.name == "Integrated") {
      saw_integrated = true;
      EXPECT_EQ(a.number, 18);
      EXPECT_EQ(a.value, 1);
      EXPECT_TRUE(a.confirmed);
    }
    if (a.name == "PageableMemoryAccessUsesHostPageTables") {
      EXPECT_FALSE(a.confirmed);
    }
  }
  EXPECT_TRUE(saw_integrated);
}
