// The plan as the loader's orders: for every built-in profile, `load --json` lists the plan's
// placements in the plan's order, each with what was actually done, and says which orders a host
// standing in for the device could only simulate. Reader threads are bound to the plan's cpuset;
// spilled tensors are prefetched in the plan's order.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "platform/profiles.hpp"
#include "src/loader.hpp"
#include "src/planning.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

load_options on_profile(const std::string& profile) {
  load_options o;
  o.device = "cpu";
  o.platform.profile = profile;
  return o;
}

nlohmann::json plan_json(const fs::path& dir, const load_options& o) {
  const checkpoint ckpt = open_checkpoint(dir);
  return platform::to_json(
      plan_checkpoint(build_model_map(ckpt), o.pipeline, choose_platform(o.platform), o.platform));
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

TEST(orders, load_report_sets_every_placement_beside_the_plan_for_every_profile) {
  temp_dir dir;
  synth_tiny(dir / "m", 2, 8, true);
  for (const auto& name : platform::profile_names()) {
    SCOPED_TRACE(name);
    const auto o = on_profile(name);
    const nlohmann::json plan = plan_json(dir / "m", o);
    const auto r = load_checkpoint(dir / "m", o);
    const nlohmann::json load = to_json(r.report, r.weights.get());
    ASSERT_EQ(load["placements"].size(), plan["placements"].size());
    for (std::size_t i = 0; i < plan["placements"].size(); ++i) {
      const auto& want = plan["placements"][i];
      const auto& got = load["placements"][i];
      EXPECT_EQ(got["tensor"], want["tensor"]);
      EXPECT_EQ(got["location"], want["location"]) << want["tensor"];
      if (want.contains("numa_node") && want["numa_node"] >= 0) {
        EXPECT_EQ(got["numa_node"], want["numa_node"]);
      }
      // No GPU here: the host holds every tensor, and says what it could not do.
      EXPECT_EQ(got["actual"], "host");
      if (want["location"] == "host-managed") {
        const auto simulated = got["simulated"].get<std::vector<std::string>>();
        EXPECT_NE(std::find(simulated.begin(), simulated.end(), "advise accessed-by device"),
                  simulated.end());
      }
      if (want["location"] == "device") {
        EXPECT_EQ(got["simulated"][0], "device memory (host memory stands in)");
      }
      // Every destination is faulted in ahead of its decode, or says the decode came first.
      if (want["bytes"] > 0) {
        const auto actions = got["actions"].get<std::vector<std::string>>();
        EXPECT_TRUE(std::any_of(actions.begin(), actions.end(), [](const std::string& a) {
          return starts_with(a, "fault-in");
        })) << want["tensor"];
      }
    }
    const auto& actions = load["actions"];
    EXPECT_EQ(actions["simulated"].empty(), !r.report.host_stands_in);
    if (plan["reader_cpuset"].get<std::string>().empty()) {
      EXPECT_TRUE(starts_with(actions["reader_cpuset"], "not bound"));
    } else {
      const std::string got = actions["reader_cpuset"];
      EXPECT_TRUE(starts_with(got, "bound") || starts_with(got, "not-here") ||
                  starts_with(got, "refused"))
          << got;
    }
    EXPECT_EQ(actions["page_cache"], "dropped as it went and at the end");
  }
}

TEST(orders, reader_threads_are_bound_to_the_cpuset_the_plan_names) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const checkpoint ckpt = open_checkpoint(dir / "m");
  const model_map map = build_model_map(ckpt);
  auto engine = make_host_backend(1, cpu::isa::scalar);
  struct discard final : output_sink {
    std::vector<std::byte> buffer = std::vector<std::byte>(64 << 20);
    std::byte* destination(std::size_t, std::uint64_t, std::uint64_t) override {
      return buffer.data();
    }
    void commit(std::size_t, std::uint64_t, std::uint64_t) override {}
  } sink;
  pipeline_options o;
  o.readers = 2;
  const auto outputs = plan_outputs(map, o);
  o.reader_cpuset = "0";
  const std::string here = run_pipeline(ckpt, outputs, o, *engine, sink).reader_binding;
  // Containers may refuse sched_setaffinity; either way the report says which.
  EXPECT_TRUE(starts_with(here, "bound: cpuset 0 (2 of 2") || starts_with(here, "refused")) << here;
  o.reader_cpuset = "4000-4095";
  const std::string missing = run_pipeline(ckpt, outputs, o, *engine, sink).reader_binding;
  EXPECT_TRUE(starts_with(missing, "not-here: cpuset 4000-4095")) << missing;
  o.reader_cpuset.clear();
  EXPECT_EQ(run_pipeline(ckpt, outputs, o, *engine, sink).reader_binding, "");
}

// A coherent plan whose device memory holds only the dense tensors spills the experts; the weight
// set's prefetch walks them in the plan's order, layer by layer (simulated: no GPU here).
TEST(orders, prefetch_moves_spilled_tensors_of_the_asked_layers_in_plan_order) {
  temp_dir dir;
  synth_tiny(dir / "m", 3, 8, false);
  auto o = on_profile("gh200");
  o.platform.device_memory_bytes = (std::uint64_t{1} << 30) + (256u << 10);
  const checkpoint ckpt = open_checkpoint(dir / "m");
  const auto plan =
      plan_checkpoint(build_model_map(ckpt), o.pipeline, choose_platform(o.platform), o.platform);
  ASSERT_TRUE(plan.fits) << plan.message;
  ASSERT_FALSE(plan.orders.prefetch.empty()) << "nothing spilled";
  const auto r = load_checkpoint(dir / "m", o);
  const auto issued = r.weights->prefetch({1, 2});
  std::vector<std::string> expected;
  for (const auto& name : plan.orders.prefetch)
    for (const auto& p : plan.orders.placements)
      if (p.tensor == name && (p.layer == 1 || p.layer == 2))
        expected.push_back(name + ": simulated: no device (host backend)");
  EXPECT_FALSE(expected.empty());
  EXPECT_EQ(issued, expected);
  EXPECT_TRUE(r.weights->prefetch({}).empty());
}

TEST(orders, keeping_the_page_cache_is_reported) {
  temp_dir dir;
  synth_tiny(dir / "m");
  auto o = on_profile("host");
  o.pipeline.keep_page_cache = true;
  const auto r = load_checkpoint(dir / "m", o);
  EXPECT_EQ(to_json(r.report)["actions"]["page_cache"], "kept (--keep-cache)");
}

}  // namespace
}  // namespace umload::test
