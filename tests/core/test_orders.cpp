// The plan as the loader's orders: for every built-in profile, `load --json` lists the plan's
// placements in the plan's order, each with what was actually done, and says which orders a host
// standing in for the device could only simulate. Reader threads are bound to the plan's cpuset;
// spilled tensors are prefetched in the plan's order. CPU decode threads are bound to the plan's
// decode cpuset while they decode, and the caller's thread is put back afterwards.
#include <gtest/gtest.h>
#include <hwloc.h>

#include <algorithm>
#include <regex>
#include <set>

#include "platform/profiles.hpp"
#include "src/convert.hpp"
#include "src/loader.hpp"
#include "src/planning.hpp"
#include "tests/core/fixtures.hpp"
#include "tests/platform/affinity.hpp"

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
    // The host standing in gives no advice to the driver, so none can fall back.
    EXPECT_EQ(actions["fallbacks"], 0u);
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

// This machine's topology with two CPU kinds registered: `fast` the most performant, the rest
// the other kind. Written as hwloc XML to `path`.
void write_two_kind_topology(const fs::path& path, int fast) {
  hwloc_topology_t topology = nullptr;
  ASSERT_EQ(hwloc_topology_init(&topology), 0);
  ASSERT_EQ(hwloc_topology_load(topology), 0);
  hwloc_bitmap_t slow = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(topology));
  hwloc_bitmap_t quick = hwloc_bitmap_alloc();
  hwloc_bitmap_only(quick, static_cast<unsigned>(fast));
  hwloc_bitmap_andnot(slow, slow, quick);
  EXPECT_EQ(hwloc_cpukinds_register(topology, slow, 0, 0, nullptr, 0), 0);
  EXPECT_EQ(hwloc_cpukinds_register(topology, quick, 1, 0, nullptr, 0), 0);
  EXPECT_EQ(hwloc_topology_export_xml(topology, path.c_str(), 0), 0);
  hwloc_bitmap_free(slow);
  hwloc_bitmap_free(quick);
  hwloc_topology_destroy(topology);
}

// On this machine described with two CPU kinds (its last CPU the fast one), a host plan puts the
// decode threads on the fast CPU; the load binds every decode thread there (read back by each
// thread inside the decode's team), puts each back after every decode, the caller's included,
// and decodes the same bytes as a load without binding.
// This machine described with two CPU kinds, its last CPU the fast one, and a tiny checkpoint in
// dir/m; the caller pinned to its first CPU alone, so that putting it back is seen, and restored
// at the end.
class orders_on_two_kinds : public ::testing::Test {
 protected:
  void SetUp() override {
    if (all.size() < 2) GTEST_SKIP() << "needs two CPUs, has " << all.size();
    if (!pin_this_thread({all.front()})) GTEST_SKIP() << "sched_setaffinity refused here";
    before = affinity_of_this_thread();
    fast = all.back();
    synth_tiny(dir / "m", 2, 8, true);
    write_two_kind_topology(dir / "two_kinds.xml", fast);
  }

  const affinity_guard at_end;
  const std::vector<int>& all = at_end.before;
  std::vector<int> before;
  int fast = -1;
  temp_dir dir;
};

TEST_F(orders_on_two_kinds,
       decode_threads_run_on_the_planned_fast_cpus_and_the_caller_is_put_back) {
  load_options o;
  o.device = "cpu";
  o.threads = 3;  // a team: the caller and two more
  o.digest = true;
  o.platform.topology = (dir / "two_kinds.xml").string();
  const checkpoint ckpt = open_checkpoint(dir / "m");
  const auto plan =
      plan_checkpoint(build_model_map(ckpt), o.pipeline, choose_platform(o.platform), o.platform);
  ASSERT_EQ(plan.model, platform::memory_model::host);
  EXPECT_EQ(plan.orders.decode_cpuset, std::to_string(fast));
  EXPECT_NE(plan.decode_cpuset_reason.find("most performant of 2 CPU kinds"), std::string::npos)
      << plan.decode_cpuset_reason;

  const auto bound = load_checkpoint(dir / "m", o);
  EXPECT_EQ(affinity_of_this_thread(), before) << "the caller's binding is put back";
  const std::string got = to_json(bound.report)["actions"]["decode_cpuset"];
  if (starts_with(got, "refused")) GTEST_SKIP() << "binding refused here: " << got;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(got, m,
                                std::regex("^bound: cpuset ([0-9]+) \\(([0-9]+) threads; ([0-9]+) "
                                           "of ([0-9]+) entries bound, ([0-9]+) read back equal, "
                                           "([0-9]+) put back after\\)$")))
      << got;
  EXPECT_EQ(m[1], std::to_string(fast));
  EXPECT_EQ(m[2], "3") << "the caller and its team of two";
  EXPECT_EQ(m[3], m[4]);
  EXPECT_EQ(m[3], m[5]);
  EXPECT_EQ(m[3], m[6]);
  EXPECT_NE(m[3], "0");

  load_options plain = o;
  plain.platform = {};
  plain.platform.profile = "host";
  const auto unbound = load_checkpoint(dir / "m", plain);
  EXPECT_TRUE(starts_with(to_json(unbound.report)["actions"]["decode_cpuset"], "not bound: "));
  EXPECT_EQ(bound.report.digest, unbound.report.digest);
}

// convert chooses its CPUs as load's plan does: on this machine described with two CPU kinds,
// its reader and decode threads run on the fast CPU, the caller is put back, and the files are
// the same bytes as a convert on the machine as it is (one kind: nothing bound).
TEST_F(orders_on_two_kinds, convert_threads_run_on_the_fast_cpus_and_write_the_same_files) {
  convert_options o;
  o.device = "cpu";
  o.threads = 2;
  o.topology = (dir / "two_kinds.xml").string();
  const auto bound = convert_checkpoint(dir / "m", dir / "bound", o);
  EXPECT_EQ(affinity_of_this_thread(), before) << "the caller's binding is put back";
  EXPECT_EQ(bound.cpuset, std::to_string(fast));
  EXPECT_NE(bound.cpuset_reason.find("most performant of 2 CPU kinds"), std::string::npos)
      << bound.cpuset_reason;
  if (starts_with(bound.decode_binding, "refused")) GTEST_SKIP() << bound.decode_binding;
  EXPECT_TRUE(starts_with(bound.decode_binding, "bound: cpuset " + std::to_string(fast) + " "))
      << bound.decode_binding;
  EXPECT_TRUE(starts_with(bound.pipeline.reader_binding, "bound: cpuset " + std::to_string(fast)))
      << bound.pipeline.reader_binding;

  o.topology = "synthetic:pack:1 pu:" + std::to_string(all.size());
  const auto plain = convert_checkpoint(dir / "m", dir / "plain", o);
  EXPECT_EQ(plain.cpuset, "");
  EXPECT_EQ(plain.decode_binding, "");
  std::size_t shards = 0;
  for (const auto& entry : fs::directory_iterator(dir / "plain")) {
    const auto name = entry.path().filename();
    if (name.extension() != ".safetensors") continue;
    EXPECT_EQ(read_bytes(dir / "bound" / name), read_bytes(entry.path())) << name;
    ++shards;
  }
  EXPECT_GT(shards, 0u);
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
  for (const std::size_t i : plan.orders.prefetch) {
    const auto& p = plan.orders.placements[i];
    EXPECT_EQ(p.where, memory_kind::host_managed) << p.tensor;
    if (p.layer == 1 || p.layer == 2)
      expected.push_back(p.tensor + ": simulated: no device (host backend)");
  }
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
