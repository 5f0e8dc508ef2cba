// The public API of src/umload.hpp: torchrun defaults, open/plan/load, views, DLPack export and
// the lifetime its deleter carries, and the docs' example program (built, run, and identical to
// the text docs/api.md shows).
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "src/synth.hpp"
#include "src/umload.hpp"

namespace umload::test {
namespace {

namespace fs = std::filesystem;

class temp_dir {
 public:
  temp_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ =
        fs::temp_directory_path() / ("umload-api-" + std::string(info ? info->name() : "suite") +
                                     "-" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

fs::path synth_tiny(const fs::path& out, bool holes = false, const std::string& preset = "tiny") {
  synth_options o;
  o.preset = preset;
  o.holes = holes;
  o.out = out;
  synthesize(o);
  return out;
}

platform::defaults env_of(std::map<std::string, std::string> vars) {
  return platform::read_defaults([vars](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(api_defaults, shard_follows_torchrun_variables) {
  const auto env = env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}});
  const shard s = resolve_shard({}, env);
  EXPECT_EQ(s.rank, 3);
  EXPECT_EQ(s.world_size, 4);
  // An explicit world size without a rank is a single process: rank 0.
  EXPECT_EQ(resolve_shard({.rank = std::nullopt, .world_size = 2}, env).rank, 0);
  EXPECT_EQ(resolve_shard({.rank = 1, .world_size = std::nullopt}, env).world_size, 4);
  const shard none = resolve_shard({}, env_of({}));
  EXPECT_EQ(none.rank, 0);
  EXPECT_EQ(none.world_size, 1);
  EXPECT_THROW(resolve_shard({.rank = 4, .world_size = 4}, env), usage_error);
  EXPECT_THROW(resolve_shard({}, env_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}})), usage_error);
}

TEST(api_defaults, request_becomes_load_options) {
  load_request r;
  r.device = "cpu";
  r.order = layout::native;
  r.dtype = output_dtype::f32;
  r.digest = true;
  r.platform.profile = "gh200";
  const auto o = to_load_options(r, env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}}));
  EXPECT_EQ(o.device.what, device_request::kind::cpu);
  EXPECT_EQ(o.pipeline.order, layout::native);
  EXPECT_EQ(o.pipeline.dtype, output_dtype::f32);
  EXPECT_EQ(o.pipeline.rank, 1);
  EXPECT_EQ(o.pipeline.world_size, 2);
  EXPECT_TRUE(o.digest);
  EXPECT_EQ(o.platform.profile, "gh200");
}

class api_load : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new temp_dir();
    ckpt_ = synth_tiny(*dir_ / "tiny");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static load_request cpu_request() {
    load_request r;
    r.device = "cpu";
    r.digest = true;
    return r;
  }
  static inline temp_dir* dir_ = nullptr;
  static inline fs::path ckpt_;
};

TEST_F(api_load, open_and_inspect) {
  const auto m = model::open(ckpt_);
  ASSERT_TRUE(m.config().has_value());
  EXPECT_EQ(m.config()->num_local_experts, 4u);
  EXPECT_EQ(m.map().pair_count(), 4u);
  const auto stored = m.stored_tensors();
  EXPECT_EQ(stored.size(), m.files().tensors.size());
  const auto outputs = m.outputs(cpu_request());
  EXPECT_EQ(outputs.size(), 37u);
  EXPECT_THROW(model::open(*dir_ / "absent"), io_error);
}

TEST_F(api_load, outputs_of_a_rank) {
  auto r = cpu_request();
  r.sharding = {.rank = 1, .world_size = 2};
  for (const auto& out : model::open(ckpt_).outputs(r)) {
    if (out.name.find(".mlp.experts.") != std::string::npos) {
      EXPECT_EQ(out.shape[0], 2u) << out.name;
      EXPECT_EQ(out.expert_begin, 2u) << out.name;
    } else if (out.name.find(".mlp.router.") != std::string::npos) {
      EXPECT_EQ(out.shape[0], 4u) << out.name;
    }
  }
  r.sharding = {.rank = 0, .world_size = 3};
  EXPECT_THROW(model::open(ckpt_).outputs(r), usage_error);
}

TEST_F(api_load, load_equals_the_loader_and_never_prints) {
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const auto via_api = model::open(ckpt_).load(cpu_request());
  std::fflush(stdout);
  std::fflush(stderr);
  EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  load_options o;
  o.device = "cpu";
  o.digest = true;
  const auto direct = load_checkpoint(ckpt_, o);
  EXPECT_EQ(via_api.report.digest, direct.report.digest);
  EXPECT_EQ(via_api.weights->tensors().size(), 37u);
}

TEST_F(api_load, progress_reaches_the_totals) {
  auto r = cpu_request();
  progress_event last;
  int calls = 0;
  r.on_progress = [&](const progress_event& e) {
    last = e;
    ++calls;
  };
  const auto result = model::open(ckpt_).load(r);
  EXPECT_GT(calls, 0);
  EXPECT_EQ(last.bytes_done, last.bytes_total);
  EXPECT_EQ(last.bytes_total, result.weights->bytes());
  EXPECT_EQ(last.tensors_done, last.tensors_total);
}

TEST_F(api_load, views_are_contiguous_row_major) {
  const auto result = model::open(ckpt_).load(cpu_request());
  const auto* t = result.weights->find("model.layers.0.mlp.experts.gate_up_proj");
  ASSERT_NE(t, nullptr);
  const tensor_view v = view(*t);
  EXPECT_EQ(std::vector<std::uint64_t>(v.shape.begin(), v.shape.end()),
            (std::vector<std::uint64_t>{4, 64, 128}));
  EXPECT_EQ(v.strides, (std::vector<std::int64_t>{64 * 128, 128, 1}));
  EXPECT_EQ(v.type, dtype::BF16);
  EXPECT_EQ(v.where, memory_kind::host);
  EXPECT_EQ(v.device, -1);
  EXPECT_EQ(v.data, t->data);
  EXPECT_EQ(v.bytes, 4u * 64 * 128 * 2);
  EXPECT_TRUE(contiguous_strides(std::vector<std::uint64_t>{}).empty());
}

TEST_F(api_load, dlpack_describes_each_dtype) {
  for (const auto dt : {output_dtype::bf16, output_dtype::f32, output_dtype::keep}) {
    auto r = cpu_request();
    r.dtype = dt;
    const auto result = model::open(ckpt_).load(r);
    for (const auto& t : result.weights->tensors()) {
      DLManagedTensor* dl = to_dlpack(result.weights, t);
      const DLTensor& d = dl->dl_tensor;
      EXPECT_EQ(d.data, t.data);
      EXPECT_EQ(d.device.device_type, kDLCPU);
      EXPECT_EQ(d.byte_offset, 0u);
      ASSERT_EQ(d.ndim, static_cast<int>(t.shape.size()));
      for (int i = 0; i < d.ndim; ++i) EXPECT_EQ(d.shape[i], static_cast<std::int64_t>(t.shape[i]));
      const auto strides = contiguous_strides(t.shape);
      for (int i = 0; i < d.ndim; ++i) EXPECT_EQ(d.strides[i], strides[i]);
      EXPECT_EQ(d.dtype.lanes, 1);
      switch (t.type) {
        case dtype::BF16:
          EXPECT_EQ(d.dtype.code, kDLBfloat);
          EXPECT_EQ(d.dtype.bits, 16);
          break;
        case dtype::F32:
          EXPECT_EQ(d.dtype.code, kDLFloat);
          EXPECT_EQ(d.dtype.bits, 32);
          break;
        case dtype::U8:
          EXPECT_EQ(d.dtype.code, kDLUInt);
          EXPECT_EQ(d.dtype.bits, 8);
          break;
        default: ADD_FAILURE() << t.name << " has an unexpected dtype";
      }
      dl->deleter(dl);
    }
  }
}

TEST_F(api_load, dlpack_deleter_keeps_the_weight_set_alive) {
  auto result = model::open(ckpt_).load(cpu_request());
  const std::string name = "model.layers.1.mlp.experts.down_proj";
  const auto* t = result.weights->find(name);
  ASSERT_NE(t, nullptr);
  const std::vector<std::byte> want(t->data, t->data + t->bytes);
  std::weak_ptr<weight_set> watch = result.weights;

  DLManagedTensor* a = to_dlpack(result.weights, name);
  DLManagedTensor* b = to_dlpack(result.weights, *t);
  result.weights.reset();
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(std::memcmp(a->dl_tensor.data, want.data(), want.size()), 0);
  a->deleter(a);
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(std::memcmp(b->dl_tensor.data, want.data(), want.size()), 0);
  b->deleter(b);
  EXPECT_TRUE(watch.expired());
}

TEST_F(api_load, dlpack_refuses_what_it_cannot_describe) {
  const auto one = model::open(ckpt_).load(cpu_request());
  const auto other = model::open(ckpt_).load(cpu_request());
  EXPECT_THROW(to_dlpack(one.weights, "no.such.tensor"), usage_error);
  EXPECT_THROW(to_dlpack(one.weights, other.weights->tensors().front()), usage_error);
  EXPECT_THROW(to_dlpack(nullptr, "model.norm.weight"), usage_error);
  for (const auto dt :
       {dtype::BOOL, dtype::F8_E4M3, dtype::F8_E5M2, dtype::F8_E8M0, dtype::F4, dtype::C64})
    EXPECT_THROW(dlpack_dtype(dt), usage_error) << to_string(dt);
#if defined(DLPACK_MAJOR_VERSION) && (DLPACK_MAJOR_VERSION > 1 || DLPACK_MINOR_VERSION >= 1)
  EXPECT_EQ(dlpack_dtype(dtype::F8_E4M3FNUZ).code, kDLFloat8_e4m3fnuz);
  EXPECT_EQ(dlpack_dtype(dtype::F8_E5M2FNUZ).code, kDLFloat8_e5m2fnuz);
#else
  for (const auto dt : {dtype::F8_E4M3FNUZ, dtype::F8_E5M2FNUZ}) {
    try {
      (void)dlpack_dtype(dt);
      ADD_FAILURE() << "exported " << to_string(dt) << " without a DLPack type code";
    } catch (const usage_error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(to_string(dt)) + " has no type code"),
                std::string::npos)
          << e.what();
    }
  }
#endif
  EXPECT_EQ(dlpack_dtype(dtype::I64).code, kDLInt);
  EXPECT_EQ(dlpack_dtype(dtype::I64).bits, 64);
  EXPECT_EQ(dlpack_dtype(dtype::F16).code, kDLFloat);
  EXPECT_EQ(dlpack_dtype(dtype::U16).bits, 16);
}

TEST(api_dlpack, devices) {
  loaded_tensor t;
  t.where = memory_kind::device;
  t.device = 2;
  EXPECT_EQ(dlpack_device(t).device_type, kDLCUDA);
  EXPECT_EQ(dlpack_device(t).device_id, 2);
  t.where = memory_kind::host_managed;
  EXPECT_EQ(dlpack_device(t).device_type, kDLCUDAManaged);
  EXPECT_EQ(dlpack_device(t, managed_export::cuda).device_type, kDLCUDA);
  EXPECT_EQ(dlpack_device(t).device_id, 2);
  t.where = memory_kind::host;
  t.device = -1;
  EXPECT_EQ(dlpack_device(t).device_type, kDLCPU);
  EXPECT_EQ(dlpack_device(t).device_id, 0);
}

TEST(api_plan, gpt_oss_120b_bf16_fits_four_h100_sxm) {
  temp_dir dir;
  const auto m = model::open(synth_tiny(dir / "gpt-oss-120b", true, "gpt-oss-120b"));
  plan_request r;
  r.platform.profile = "h100-sxm";
  r.sharding = {.rank = std::nullopt, .world_size = 1};
  EXPECT_FALSE(m.plan(r).fits);
  for (int rank = 0; rank < 4; ++rank) {
    r.sharding = {.rank = rank, .world_size = 4};
    const auto p = m.plan(r);
    EXPECT_TRUE(p.fits) << p.message;
    EXPECT_EQ(p.model, platform::memory_model::discrete_hmm);
  }
}

TEST(api_platform, profile_and_live) {
  platform_choice choice;
  choice.profile = "dgx-spark";
  EXPECT_EQ(detect_platform(choice).model, platform::memory_model::integrated);
  choice.profile = "no-such-machine";
  EXPECT_THROW(detect_platform(choice), usage_error);
  const auto live = detect_platform();
  EXPECT_EQ(live.device.present, live.model != platform::memory_model::host);
}

TEST(api_convert, dense_checkpoint_loads_the_same) {
  temp_dir dir;
  const auto src = synth_tiny(dir / "tiny");
  convert_request c;
  const auto report = convert(src, dir / "bf16", c);
  EXPECT_EQ(report.tensors, 37u);
  load_request r;
  r.device = "cpu";
  r.digest = true;
  EXPECT_EQ(model::open(src).load(r).report.digest,
            model::open(dir / "bf16").load(r).report.digest);
  c.dtype = output_dtype::keep;
  EXPECT_THROW(convert(src, dir / "keep", c), usage_error);
}

// docs/api.md shows tests/api/example.cpp verbatim between these markers; they must not drift.
TEST(api_docs, example_in_docs_is_the_tested_program) {
  const std::string doc = read_text(UMLOAD_API_DOC);
  const std::string source = read_text(UMLOAD_API_EXAMPLE_SOURCE);
  const std::string open = "<!-- example: tests/api/example.cpp -->\n```cpp\n";
  const auto begin = doc.find(open);
  ASSERT_NE(begin, std::string::npos) << "docs/api.md lacks the example marker";
  const auto end = doc.find("```\n", begin + open.size());
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(doc.substr(begin + open.size(), end - begin - open.size()), source)
      << "docs/api.md's example differs from tests/api/example.cpp: copy the file into the docs";
}

TEST(api_docs, example_program_runs) {
  temp_dir dir;
  const auto ckpt = synth_tiny(dir / "tiny");
  const std::string command = std::string(UMLOAD_API_EXAMPLE) + " " + ckpt.string() + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) out += buffer.data();
  const int status = ::pclose(pipe);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("4 MXFP4 expert pairs"), std::string::npos) << out;
  EXPECT_NE(out.find("loaded 37 tensors"), std::string::npos) << out;
  EXPECT_NE(
      out.find("model.layers.0.mlp.experts.gate_up_proj: [4, 64, 128], strides [8192, 128, 1]"),
      std::string::npos)
      << out;
  EXPECT_NE(out.find("DLPack: ndim 3, dtype code 4 bits 16"), std::string::npos) << out;

  const std::string bad =
      std::string(UMLOAD_API_EXAMPLE) + " " + (dir / "absent").string() + " >/dev/null 2>&1";
  const int missing = std::system(bad.c_str());
  EXPECT_EQ(WEXITSTATUS(missing), static_cast<int>(exit_code::io));
}

}  // namespace
}  // namespace umload::test
