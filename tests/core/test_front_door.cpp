// One front door: a request from the command line and the same request through the C++ API give
// the same load (device, plan, digest), including "auto" with a host-only plan; the device text
// is parsed once and matched against the machine (a fixed device stands in for a GPU here).
#include <gtest/gtest.h>

#include "kernels/error.hpp"
#include "platform/device.hpp"
#include "src/umload.hpp"
#include "tests/core/fixtures.hpp"

namespace umload {
namespace {

using test::run_cli;
using test::temp_dir;

platform::defaults env_of(std::map<std::string, std::string> vars) {
  return platform::read_defaults([vars](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(std::string(name));
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  });
}

// A machine with `count` GPUs, as a test describes it.
platform::fixed_device_query gpus(int count) {
  platform::device_info d;
  d.present = count > 0;
  d.device_count = count;
  d.name = "test GPU";
  if (!d.present) d.absence_reason = "no GPU in this test";
  return platform::fixed_device_query(d);
}

TEST(front_door, device_text_is_parsed_once) {
  EXPECT_EQ(device_request("auto").what, device_request::kind::automatic);
  EXPECT_EQ(device_request("cpu").what, device_request::kind::cpu);
  EXPECT_EQ(device_request("cuda").ordinal, std::nullopt);
  EXPECT_EQ(device_request("cuda:2").ordinal, 2);
  EXPECT_EQ(device_request("cuda:2").text(), "cuda:2");
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:1x", "", "CPU"})
    EXPECT_THROW(device_request{bad}, usage_error) << bad;
}

TEST(front_door, device_follows_the_machine_and_local_rank) {
  const auto env = env_of({{"LOCAL_RANK", "1"}});
  const auto two = gpus(2), none = gpus(0);
  EXPECT_EQ(choose_device("cuda", env, two).ordinal, 1);
  EXPECT_EQ(
      choose_device("cuda", env_of({{"LOCAL_RANK", "1"}, {"UMLOAD_DEVICE", "0"}}), two).ordinal, 0);
  const auto automatic = choose_device("auto", env, two);
  EXPECT_TRUE(automatic.cuda && automatic.automatic);
  EXPECT_FALSE(choose_device("auto", env, none).cuda);
  EXPECT_FALSE(choose_device("cpu", env, two).cuda);
  EXPECT_THROW(choose_device("cuda:5", env, two), usage_error);
  EXPECT_THROW(choose_device("cuda", env, none), cuda_error);
}

TEST(front_door, host_only_plan_moves_auto_to_the_cpu_and_refuses_an_explicit_gpu) {
  platform::placement_plan host_plan;
  host_plan.model = platform::memory_model::host;
  const auto two = gpus(2);
  const auto env = env_of({});
  const auto settled = settle_device(choose_device("auto", env, two), host_plan, "live");
  EXPECT_FALSE(settled.cuda);
  EXPECT_THROW(settle_device(choose_device("cuda", env, two), host_plan, "live"), usage_error);
  platform::placement_plan gpu_plan;
  gpu_plan.model = platform::memory_model::discrete;
  EXPECT_TRUE(settle_device(choose_device("auto", env, two), gpu_plan, "live").cuda);
}

class front_door_load : public ::testing::Test {
 protected:
  void SetUp() override { ckpt_ = test::synth_tiny(dir_ / "tiny"); }
  temp_dir dir_;
  std::filesystem::path ckpt_;
};

TEST_F(front_door_load, auto_with_a_host_only_plan_loads_on_the_cpu_on_a_gpu_machine) {
  load_request r;
  r.platform.memory_model = "host";
  r.digest = true;
  load_options o = to_load_options(r, env_of({}));
  const auto gpu = gpus(1);
  o.query = &gpu;  // a GPU is "usable": auto picks it, then the host-only plan moves the load
  const auto m = model::open(ckpt_);
  const auto result = load_checkpoint(m.files(), m.map(), o);
  EXPECT_EQ(result.report.device, "cpu");
  EXPECT_EQ(result.report.memory_model, "host");
  r.device = "cuda";
  o = to_load_options(r, env_of({}));
  o.query = &gpu;
  EXPECT_THROW(load_checkpoint(m.files(), m.map(), o), usage_error);
}

// The same request from the command line and from the C++ API.
TEST_F(front_door_load, cli_and_api_give_the_same_load) {
  struct request_case {
    std::string flags;
    load_request request;
  };
  std::vector<request_case> cases(4);
  cases[0].flags = "--device auto --platform host";
  cases[0].request.platform.memory_model = "host";
  cases[1].flags = "--device cpu --dtype f32 --layout native";
  cases[1].request.device = "cpu";
  cases[1].request.dtype = output_dtype::f32;
  cases[1].request.order = layout::native;
  cases[2].flags = "--device auto --profile gh200 --rank 1 --world-size 2";
  cases[2].request.platform.profile = "gh200";
  cases[2].request.sharding = {.rank = 1, .world_size = 2};
  cases[3].flags = "--device cpu --dtype keep --io buffered --slots 3 --slot-size 1M";
  cases[3].request.device = "cpu";
  cases[3].request.dtype = output_dtype::keep;
  cases[3].request.io = io_mode::buffered;
  cases[3].request.slots = 3;
  cases[3].request.slot_bytes = 1 << 20;
  const auto m = model::open(ckpt_);
  for (auto& c : cases) {
    SCOPED_TRACE(c.flags);
    const auto cli = run_cli("load " + ckpt_.string() + " --json --digest " + c.flags);
    ASSERT_EQ(cli.status, 0) << cli.err;
    const auto j = cli.json();
    c.request.digest = true;
    const auto api = to_json(m.load(c.request).report);
    for (const char* key : {"digest", "device", "memory_model", "platform", "strategy",
                            "tensors_loaded", "bytes_produced", "slots", "slot_bytes"})
      EXPECT_EQ(j[key], api[key]) << key;
  }
}

}  // namespace
}  // namespace umload
