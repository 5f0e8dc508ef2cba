#include <gtest/gtest.h>

#include <numeric>

#include "kernels/error.hpp"
#include "platform/plan.hpp"
#include "platform/profiles.hpp"

namespace up = umload::platform;
using umload::memory_kind;
using umload::output_dtype;
using up::gpt_oss_preset;
using up::memory_model;

namespace {

up::model_demand demand(gpt_oss_preset p, output_dtype d, int rank = 0, int world = 1) {
  up::demand_options o;
  o.dtype = d;
  o.rank = rank;
  o.world_size = world;
  return up::gpt_oss_demand(p, o);
}

up::placement_plan plan(const std::string& profile, gpt_oss_preset p, output_dtype d, int world = 1,
                        const up::budgets& b = {}) {
  return up::make_plan(up::profile_platform(profile), demand(p, d, 0, world), b);
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void expect_consistent(const up::placement_plan& p) {
  std::uint64_t sum = 0;
  for (const auto& pl : p.orders.placements) sum += pl.bytes;
  EXPECT_EQ(sum, p.output_bytes);
  EXPECT_EQ(p.device_resident_bytes + p.host_resident_bytes, p.output_bytes);
  EXPECT_EQ(p.peak_device_bytes, p.device_resident_bytes + p.device_scratch_bytes);
  EXPECT_EQ(p.peak_host_bytes, p.host_resident_bytes + p.staging_bytes);
  EXPECT_EQ(p.staging_bytes,
            p.orders.staging.slot_bytes * static_cast<std::uint64_t>(p.orders.staging.slots));
  EXPECT_EQ(p.fits, p.message.empty()) << p.message;
}

constexpr std::uint64_t bf16_20b = 41'829'514'368;
constexpr std::uint64_t bf16_120b = 233'658'313'344;

}  // namespace

TEST(Plan, TwentyBBf16FitsH100SxmAtTotalPlusStaging) {
  const auto p = plan("h100-sxm", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  expect_consistent(p);
  EXPECT_TRUE(p.fits) << p.message;
  EXPECT_EQ(p.model, memory_model::discrete_hmm);  // PageableMemoryAccess=1: HMM, same policy
  EXPECT_EQ(p.orders.io, umload::io_mode::direct);
  EXPECT_TRUE(p.orders.staging.pinned);
  EXPECT_TRUE(p.device_scratch);
  EXPECT_EQ(p.peak_device_bytes, bf16_20b + p.staging_bytes);
  EXPECT_EQ(p.peak_host_bytes, p.staging_bytes);
  for (const auto& pl : p.orders.placements)
    EXPECT_EQ(pl.where, umload::memory_kind::device) << pl.tensor;
  // Staging and readers next to the GPU: GPU 0 of a DGX H100 sits on socket 0.
  const auto platform = up::profile_platform("h100-sxm");
  EXPECT_EQ(p.orders.staging.numa_node, 0);
  EXPECT_EQ(p.orders.reader_cpuset, platform.topology.node(0)->cpuset);
  EXPECT_TRUE(p.orders.prefetch.empty());
}

TEST(Plan, GpuOnSocketOneStagesOnNodeOne) {
  const auto p = plan("h100-pcie", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.orders.staging.numa_node, 1);
  EXPECT_EQ(p.orders.reader_cpuset, up::profile_platform("h100-pcie").topology.node(1)->cpuset);
}

TEST(Plan, OneTwentyBBf16FitsNoSingleH100AndSaysWhatWould) {
  for (const std::string profile : {"h100-pcie", "h100-sxm"}) {
    const auto p = plan(profile, gpt_oss_preset::gpt_oss_120b, output_dtype::bf16);
    expect_consistent(p);
    EXPECT_FALSE(p.fits) << profile;
    EXPECT_TRUE(has(p.message, "does not fit")) << p.message;
    EXPECT_TRUE(has(p.message, profile)) << p.message;
    EXPECT_TRUE(has(p.message, "device memory")) << p.message;
    EXPECT_TRUE(has(p.message, "--dtype keep")) << p.message;
    EXPECT_TRUE(has(p.message, "keep MXFP4")) << p.message;
    EXPECT_TRUE(has(p.message, "--world-size 4")) << p.message;
    bool keep = false, ranks = false;
    for (const auto& s : p.would_fit) {
      EXPECT_TRUE(s.fits);
      keep |= s.dtype == output_dtype::keep && s.world_size == 1;
      ranks |= s.dtype == output_dtype::bf16 && s.world_size == 4;
    }
    EXPECT_TRUE(keep && ranks) << p.message;
  }
}

TEST(Plan, OneTwentyBBf16FitsNoSpark) {
  const auto p = plan("dgx-spark", gpt_oss_preset::gpt_oss_120b, output_dtype::bf16);
  expect_consistent(p);
  EXPECT_FALSE(p.fits);
  EXPECT_TRUE(has(p.message, "dgx-spark")) << p.message;
  EXPECT_TRUE(has(p.message, "one memory pool")) << p.message;
  EXPECT_TRUE(has(p.message, "--dtype keep")) << p.message;
  EXPECT_THROW(up::require_fits(p), umload::budget_error);
  try {
    up::require_fits(p);
  } catch (const umload::budget_error& e) {
    EXPECT_EQ(std::string(e.what()), p.message);
    EXPECT_EQ(e.code(), umload::exit_code::budget);
  }
}

TEST(Plan, OneTwentyBBf16FitsFourH100SxmRanks) {
  const auto whole = demand(gpt_oss_preset::gpt_oss_120b, output_dtype::bf16);
  std::uint64_t shared = 0, experts = 0;
  for (const auto& t : whole.tensors) (t.sharded ? experts : shared) += t.bytes_output;
  for (int rank = 0; rank < 4; ++rank) {
    const auto p =
        up::make_plan(up::profile_platform("h100-sxm"),
                      demand(gpt_oss_preset::gpt_oss_120b, output_dtype::bf16, rank, 4), {});
    expect_consistent(p);
    EXPECT_TRUE(p.fits) << p.message;
    EXPECT_EQ(p.peak_device_bytes, shared + experts / 4 + p.staging_bytes);
  }
}

TEST(Plan, Gh200SpillsOneTwentyBBf16ByThePredictedShare) {
  const auto platform = up::profile_platform("gh200");
  const auto p =
      up::make_plan(platform, demand(gpt_oss_preset::gpt_oss_120b, output_dtype::bf16), {});
  expect_consistent(p);
  EXPECT_TRUE(p.fits) << p.message;
  EXPECT_EQ(p.model, memory_model::coherent);
  EXPECT_TRUE(p.orders.staging.zero_copy);
  EXPECT_EQ(p.device_scratch_bytes, 0u);
  const std::uint64_t room = platform.memory.device_bytes - p.device_reserve_bytes;
  EXPECT_LE(p.device_resident_bytes, room);
  std::uint64_t smallest_spilled = UINT64_MAX;
  std::vector<std::size_t> spilled;
  for (std::size_t i = 0; i < p.orders.placements.size(); ++i) {
    const auto& pl = p.orders.placements[i];
    if (pl.where == umload::memory_kind::device) continue;
    EXPECT_EQ(pl.where, umload::memory_kind::host_managed);
    EXPECT_EQ(pl.numa_node, 0);  // Grace's LPDDR5X, never the HBM node
    EXPECT_TRUE(pl.preferred_location_host);
    EXPECT_TRUE(pl.accessed_by_device);
    EXPECT_TRUE(pl.kind == up::tensor_kind::expert_weight ||
                pl.kind == up::tensor_kind::expert_bias)
        << pl.tensor;  // embeddings, attention and routers all stay in HBM
    smallest_spilled = std::min(smallest_spilled, pl.bytes);
    spilled.push_back(i);
  }
  ASSERT_FALSE(spilled.empty());
  EXPECT_GT(p.device_resident_bytes + smallest_spilled, room);  // HBM is as full as it can be
  EXPECT_EQ(p.host_resident_bytes, bf16_120b - p.device_resident_bytes);
  EXPECT_DOUBLE_EQ(p.spill_fraction,
                   static_cast<double>(p.host_resident_bytes) / static_cast<double>(bf16_120b));
  EXPECT_GT(p.spill_fraction, 0.55);
  EXPECT_LT(p.spill_fraction, 0.65);
  EXPECT_EQ(p.orders.prefetch, spilled);  // hints for the spilled part, in order of use
  EXPECT_EQ(p.orders.staging.numa_node, 0);
  EXPECT_EQ(p.orders.io, umload::io_mode::direct);
  // The 144 GB part spills less.
  const auto big = plan("gh200-144g", gpt_oss_preset::gpt_oss_120b, output_dtype::bf16);
  EXPECT_TRUE(big.fits);
  EXPECT_LT(big.host_resident_bytes, p.host_resident_bytes);
}

TEST(Plan, Gh200HoldsTwentyBWithoutSpilling) {
  const auto p = plan("gh200", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.host_resident_bytes, 0u);
  EXPECT_TRUE(p.orders.prefetch.empty());
}

TEST(Plan, IntegratedUsesDirectIoAndOneCopy) {
  for (auto preset : {gpt_oss_preset::gpt_oss_20b, gpt_oss_preset::gpt_oss_120b}) {
    for (auto dtype : {output_dtype::bf16, output_dtype::keep}) {
      const auto p = plan("dgx-spark", preset, dtype);
      expect_consistent(p);
      EXPECT_EQ(p.model, memory_model::integrated);
      EXPECT_EQ(p.orders.io, umload::io_mode::direct);
      EXPECT_TRUE(p.orders.drop_page_cache);  // what direct reads' buffered fallbacks cached
      EXPECT_TRUE(p.single_pool);
      EXPECT_FALSE(p.device_scratch);
      EXPECT_EQ(p.host_resident_bytes, 0u);  // never a second copy
      EXPECT_EQ(p.peak_device_bytes, p.output_bytes);
      EXPECT_EQ(p.peak_host_bytes, p.staging_bytes);
      EXPECT_LE(p.staging_bytes, 64ull << 20);  // a small ring
      for (const auto& pl : p.orders.placements) EXPECT_EQ(pl.where, umload::memory_kind::device);
    }
  }
  EXPECT_TRUE(plan("dgx-spark", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16).fits);
  EXPECT_TRUE(plan("dgx-spark", gpt_oss_preset::gpt_oss_120b, output_dtype::keep).fits);
}

TEST(Plan, HostProfile) {
  const auto p = plan("host", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  expect_consistent(p);
  EXPECT_TRUE(p.fits) << p.message;
  EXPECT_EQ(p.model, memory_model::host);
  EXPECT_EQ(p.orders.io, umload::io_mode::buffered);
  EXPECT_TRUE(p.orders.drop_page_cache);
  EXPECT_EQ(p.peak_device_bytes, 0u);
  EXPECT_EQ(p.peak_host_bytes, bf16_20b + p.staging_bytes);
  EXPECT_TRUE(p.orders.reader_cpuset.empty());
  for (const auto& pl : p.orders.placements) EXPECT_EQ(pl.where, umload::memory_kind::host);
  const auto big = plan("host", gpt_oss_preset::gpt_oss_120b, output_dtype::bf16);
  EXPECT_FALSE(big.fits);
  EXPECT_TRUE(has(big.message, "host memory")) << big.message;
  // 120b kept as MXFP4 (60.8 GiB) does not fit 60 GiB either: more ranks do.
  EXPECT_TRUE(has(big.message, "--world-size")) << big.message;
}

TEST(Plan, EveryProfileEveryShape) {
  for (const auto& profile : up::profile_names()) {
    for (auto preset : {gpt_oss_preset::gpt_oss_20b, gpt_oss_preset::gpt_oss_120b}) {
      for (auto dtype : {output_dtype::bf16, output_dtype::keep, output_dtype::f32}) {
        up::placement_plan p;
        ASSERT_NO_THROW(p = plan(profile, preset, dtype)) << profile;
        expect_consistent(p);
        EXPECT_EQ(p.orders.placements.size(), demand(preset, dtype).tensors.size());
        if (dtype == output_dtype::keep && profile != "host") {
          EXPECT_TRUE(p.fits) << profile << p.message;
        }
      }
    }
    // Every machine with a GPU, and the host profile, holds 20b in BF16.
    EXPECT_TRUE(plan(profile, gpt_oss_preset::gpt_oss_20b, output_dtype::bf16).fits) << profile;
  }
}

TEST(Plan, BudgetsOverride) {
  up::budgets b;
  b.device_memory_bytes = 40ull << 30;
  const auto p = plan("h100-sxm", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16, 1, b);
  EXPECT_FALSE(p.fits);
  EXPECT_TRUE(has(p.message, "--device-memory")) << p.message;
  EXPECT_EQ(p.device_capacity_bytes, 40ull << 30);

  up::budgets io;
  io.io = umload::io_mode::buffered;
  const auto q = plan("h100-sxm", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16, 1, io);
  EXPECT_EQ(q.orders.io, umload::io_mode::buffered);
  EXPECT_TRUE(q.orders.drop_page_cache);

  up::budgets small;
  small.staging_slot_bytes = 4ull << 20;
  small.staging_slots = 2;
  const auto r = plan("h100-sxm", gpt_oss_preset::gpt_oss_120b, output_dtype::keep, 1, small);
  EXPECT_EQ(r.orders.staging.slots, 2);
  EXPECT_GE(r.orders.staging.slot_bytes, 5760ull * 90 * 16);  // one expert's gate_up blocks
  EXPECT_EQ(r.orders.staging.slot_bytes % (2ull << 20), 0u);
}

// Convert's staging: two slots and two chunks within the budget, slots capped at 32 MiB, each
// chunk the decoded bytes of the largest item; a budget below one expert does not fit.
TEST(Plan, BoundedStagingHoldsSlotsAndChunksToTheBudget) {
  for (const auto dtype : {output_dtype::bf16, output_dtype::f32}) {
    const auto d = demand(gpt_oss_preset::gpt_oss_20b, dtype);
    const std::uint64_t one_expert = d.largest_stage_unit();
    ASSERT_EQ(one_expert, 5760ull * 90 * 17);  // gate_up's blocks and scales of one expert
    for (const std::uint64_t budget : {256ull << 20, 1ull << 30, 4ull << 30}) {
      SCOPED_TRACE(std::to_string(budget) + " " + umload::to_string(dtype));
      const auto b = up::plan_bounded_staging(d, budget);
      ASSERT_TRUE(b.fits) << b.message;
      EXPECT_EQ(b.staging.slots, 2);
      EXPECT_EQ(b.chunks, 2);
      EXPECT_EQ(b.staging.slot_bytes % 4096, 0u);
      EXPECT_LE(b.staging.slot_bytes, 32ull << 20);
      EXPECT_GE(b.staging.slot_bytes, one_expert);
      // A chunk holds the decoded bytes of a full slot of experts of any tensor, one at least.
      const std::uint64_t gate_up_out = 5760ull * 2880 * umload::element_bytes(dtype);
      EXPECT_GE(b.chunk_bytes, b.staging.slot_bytes / one_expert * gate_up_out);
      EXPECT_LE(2 * b.staging.slot_bytes + 2 * b.chunk_bytes, budget);
    }
    const auto small = up::plan_bounded_staging(d, 1000);
    EXPECT_FALSE(small.fits);
    EXPECT_TRUE(has(small.message, "one expert needs a slot of " + std::to_string(one_expert)))
        << small.message;
  }
}

TEST(Plan, ForcedModelOnHostNeedsADeviceFigure) {
  auto platform = up::with_model(up::profile_platform("host"), memory_model::discrete);
  EXPECT_EQ(platform.model, memory_model::discrete);
  const auto d = demand(gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  EXPECT_THROW(up::make_plan(platform, d, {}), umload::usage_error);
  up::budgets b;
  b.device_memory_bytes = 80ull << 30;
  const auto p = up::make_plan(platform, d, b);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.model, memory_model::discrete);
  auto hmm = up::with_model(up::profile_platform("h100-sxm"), memory_model::discrete_hmm);
  const auto q = up::make_plan(hmm, d, {});
  EXPECT_EQ(q.model, memory_model::discrete_hmm);
  for (const auto& pl : q.orders.placements) EXPECT_EQ(pl.where, umload::memory_kind::device);
}

TEST(Plan, DemandWithoutSourceStillPlans) {
  auto d = demand(gpt_oss_preset::gpt_oss_120b, output_dtype::bf16);
  d.source.clear();
  const auto p = up::make_plan(up::profile_platform("h100-sxm"), d, {});
  EXPECT_FALSE(p.fits);
  EXPECT_TRUE(has(p.message, "No alternatives")) << p.message;
}

TEST(PlanJson, KeysTheLoaderAndToolsRead) {
  const auto p = plan("gh200", gpt_oss_preset::gpt_oss_120b, output_dtype::bf16);
  const auto j = up::to_json(p);
  for (const char* key : {"fits", "memory_model", "io_mode", "peak_device_bytes", "peak_host_bytes",
                          "placements", "prefetch", "staging", "reader_cpuset", "would_fit"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["memory_model"], "coherent");
  EXPECT_EQ(j["io_mode"], "direct");
  EXPECT_EQ(j["peak_device_bytes"].get<std::uint64_t>(), p.peak_device_bytes);
  ASSERT_EQ(j["placements"].size(), p.orders.placements.size());
  bool saw_managed = false;
  for (const auto& e : j["placements"]) {
    ASSERT_TRUE(e.contains("tensor"));
    ASSERT_TRUE(e.contains("location"));
    if (e["location"] == "host-managed") {
      saw_managed = true;
      EXPECT_EQ(e["preferred_location"], "host-numa:0");
      EXPECT_EQ(e["accessed_by"], "device");
    }
  }
  EXPECT_TRUE(saw_managed);
  const auto no = up::to_json(plan("h100-sxm", gpt_oss_preset::gpt_oss_120b, output_dtype::bf16));
  EXPECT_FALSE(no["fits"].get<bool>());
  EXPECT_FALSE(no["message"].get<std::string>().empty());
}

TEST(PlanText, SaysWhatItDecided) {
  const auto text = up::describe(plan("gh200", gpt_oss_preset::gpt_oss_120b, output_dtype::bf16));
  EXPECT_TRUE(has(text, "coherent"));
  EXPECT_TRUE(has(text, "spilled to host memory"));
  EXPECT_TRUE(has(text, "predicted peak"));
}

TEST(Plan, SparkReadersOnTheCortexX925CoresAndThePlanSaysWhy) {
  const auto p = plan("dgx-spark", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  EXPECT_EQ(p.orders.reader_cpuset, "5-9,15-19");
  EXPECT_NE(p.reader_cpuset_reason.find("most performant"), std::string::npos)
      << p.reader_cpuset_reason;
  EXPECT_EQ(up::to_json(p)["reader_cpuset"], "5-9,15-19");
  EXPECT_EQ(up::to_json(p)["reader_cpuset_reason"], p.reader_cpuset_reason);
  EXPECT_TRUE(has(up::describe(p), "reader cpuset 5-9,15-19\n  reader CPUs: ")) << up::describe(p);
  // Decode on the same fast cores, where a host stands in for the GPU.
  EXPECT_EQ(p.orders.decode_cpuset, "5-9,15-19");
  EXPECT_NE(p.decode_cpuset_reason.find("the GPU decodes"), std::string::npos)
      << p.decode_cpuset_reason;
  EXPECT_EQ(up::to_json(p)["decode_cpuset"], "5-9,15-19");
  EXPECT_TRUE(has(up::describe(p), "\n  decode CPUs: " + p.decode_cpuset_reason + "\n"));
  // A one-kind machine keeps the GPU-local cpuset, and says so.
  const auto h = plan("h100-sxm", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  EXPECT_EQ(h.orders.reader_cpuset, "0-55,112-167");
  EXPECT_NE(h.reader_cpuset_reason.find("no CPU kinds reported"), std::string::npos)
      << h.reader_cpuset_reason;
}

TEST(Plan, HostOnlyMachineWithTwoKindsBindsDecodeToTheFastOnes) {
  auto platform =
      up::profile_platform("host", std::string(UMLOAD_PLATFORM_FIXTURES) + "/two_kinds.xml");
  const auto p =
      up::make_plan(platform, demand(gpt_oss_preset::gpt_oss_20b, output_dtype::bf16), {});
  EXPECT_EQ(p.model, memory_model::host);
  EXPECT_EQ(p.orders.reader_cpuset, "4-7");
  EXPECT_EQ(p.orders.staging.numa_node, -1);
  EXPECT_EQ(p.orders.decode_cpuset, "4-7");
  EXPECT_NE(p.decode_cpuset_reason.find("the caller's thread and its OpenMP team"),
            std::string::npos)
      << p.decode_cpuset_reason;
  EXPECT_NE(p.decode_cpuset_reason.find("most performant of 2 CPU kinds"), std::string::npos)
      << p.decode_cpuset_reason;
  const auto plain = plan("host", gpt_oss_preset::gpt_oss_20b, output_dtype::bf16);
  EXPECT_EQ(plain.orders.reader_cpuset, "");  // one kind, no GPU: the OS decides, as before
  EXPECT_NE(plain.reader_cpuset_reason.find("the OS places the threads"), std::string::npos);
  EXPECT_EQ(plain.orders.decode_cpuset, "");
  EXPECT_NE(plain.decode_cpuset_reason.find("the OS places the threads"), std::string::npos)
      << plain.decode_cpuset_reason;
}
