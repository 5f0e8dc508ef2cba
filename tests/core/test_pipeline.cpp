// The streaming pipeline through load: decoded output equals the oracle for every layout and
// dtype, the same digest whatever the slots, I/O mode, threads or CPU path, expert-parallel
// slices that add up to the whole, and failures (EIO, short reads, NaN scales) that surface as
// errors rather than results.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "kernels/cpu_decode.hpp"
#include "kernels/error.hpp"
#include "platform/profiles.hpp"
#include "src/file.hpp"
#include "src/loader.hpp"
#include "src/model_map.hpp"
#include "src/synth.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

load_options host_options() {
  load_options o;
  o.device = "cpu";
  o.digest = true;
  return o;
}

std::vector<std::byte> read_tensor(const checkpoint& ckpt, const tensor_ref& ref,
                                   std::uint64_t offset, std::uint64_t bytes) {
  std::vector<std::byte> data(bytes);
  file::open_read(ckpt.shard_path(ref.shard))
      .read_exact(data.data(), bytes, ref.file_offset + offset);
  return data;
}

// Every output of a load equals the source (dense) or the scalar oracle (experts).
void expect_matches_oracle(const fs::path& src, const weight_set& weights, layout order,
                           output_dtype dt) {
  const auto ckpt = open_checkpoint(src);
  const auto map = build_model_map(ckpt);
  std::size_t checked = 0;
  for (const auto& g : map.groups) {
    for (const auto& ref : g.dense) {
      const auto* t = weights.find(ref.name());
      ASSERT_NE(t, nullptr) << ref.name();
      const auto want = read_tensor(ckpt, ref, 0, ref.bytes());
      ASSERT_EQ(t->bytes, want.size());
      EXPECT_EQ(std::memcmp(t->data, want.data(), want.size()), 0) << ref.name();
      ++checked;
    }
    for (const auto& p : g.pairs) {
      const auto* t = weights.find(p.base);
      ASSERT_NE(t, nullptr) << p.base;
      const auto blocks = read_tensor(ckpt, p.blocks, 0, p.blocks.bytes());
      const auto scales = read_tensor(ckpt, p.scales, 0, p.scales.bytes());
      std::vector<std::byte> want(p.values() * element_bytes(dt));
      decode_job job;
      job.blocks = reinterpret_cast<const std::uint8_t*>(blocks.data());
      job.scales = reinterpret_cast<const std::uint8_t*>(scales.data());
      job.out = want.data();
      job.experts = p.experts;
      job.rows = p.rows;
      job.groups = p.groups;
      job.order = order;
      job.dtype = dt;
      cpu::decode_scalar(job);
      ASSERT_EQ(t->bytes, want.size());
      EXPECT_EQ(std::memcmp(t->data, want.data(), want.size()), 0) << p.base;
      const std::vector<std::uint64_t> shape =
          order == layout::hf ? std::vector<std::uint64_t>{p.experts, p.in_features(), p.rows}
                              : std::vector<std::uint64_t>{p.experts, p.rows, p.in_features()};
      EXPECT_EQ(t->shape, shape);
      ++checked;
    }
  }
  EXPECT_EQ(checked, weights.tensors().size());
}

class load_layouts : public ::testing::TestWithParam<std::tuple<layout, output_dtype>> {};

TEST_P(load_layouts, host_load_equals_the_oracle) {
  temp_dir dir;
  synth_tiny(dir / "m", 2, 4, true);
  auto [order, dt] = GetParam();
  auto o = host_options();
  o.pipeline.order = order;
  o.pipeline.dtype = dt;
  const auto r = load_checkpoint(dir / "m", o);
  expect_matches_oracle(dir / "m", *r.weights, order, dt);
  EXPECT_EQ(r.report.device, "cpu");
  EXPECT_GT(r.report.pipeline.quantized_bytes, 0u);
}

INSTANTIATE_TEST_SUITE_P(all, load_layouts,
                         ::testing::Combine(::testing::Values(layout::hf, layout::native),
                                            ::testing::Values(output_dtype::bf16,
                                                              output_dtype::f32)),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_" +
                                  to_string(std::get<1>(info.param));
                         });

TEST(pipeline, digest_does_not_depend_on_slots_io_threads_or_cpu_path) {
  temp_dir dir;
  synth_tiny(dir / "m", 3, 8, true);
  const std::string reference = load_checkpoint(dir / "m", host_options()).report.digest;
  ASSERT_EQ(reference.rfind("sha256:", 0), 0u);
  for (std::size_t slot : {std::size_t{5000}, std::size_t{20000}, std::size_t{1} << 20})
    for (io_mode io : {io_mode::direct, io_mode::buffered})
      for (int slots : {2, 5}) {
        auto o = host_options();
        o.pipeline.slot_bytes = slot;
        o.staging_from_plan = false;
        o.pipeline.io = io;
        o.pipeline.slots = slots;
        o.pipeline.readers = slots - 1;
        o.threads = slots == 2 ? 1 : 2;
        const auto r = load_checkpoint(dir / "m", o);
        EXPECT_EQ(r.report.digest, reference) << "slot " << slot << " io " << to_string(io);
        if (slot == 5000) {
          EXPECT_GT(r.report.pipeline.items, 40u);
        }
      }
  for (auto path : cpu::supported_isas()) {
    auto o = host_options();
    o.isa = path;
    EXPECT_EQ(load_checkpoint(dir / "m", o).report.digest, reference) << cpu::to_string(path);
  }
}

TEST(pipeline, every_profile_runs_its_own_strategy_with_the_same_digest) {
  temp_dir dir;
  synth_tiny(dir / "m", 2, 8, true);
  const std::string reference = load_checkpoint(dir / "m", host_options()).report.digest;
  std::set<std::string> strategies;
  for (const auto& name : platform::profile_names()) {
    auto o = host_options();
    o.platform.profile = name;
    const auto r = load_checkpoint(dir / "m", o);
    EXPECT_EQ(r.report.digest, reference) << name;
    EXPECT_EQ(r.report.platform, "profile " + name);
    EXPECT_EQ(r.report.host_stands_in, name != "host") << name;
    strategies.insert(r.report.memory_model + "/" + std::to_string(r.report.pipeline.direct_io) +
                      "/" + std::to_string(r.report.pipeline.slot_bytes));
    if (r.report.memory_model == "integrated") {
      EXPECT_TRUE(r.report.pipeline.direct_io) << name;  // no page cache beside the one pool
    }
  }
  EXPECT_GE(strategies.size(), 3u);  // the plans really differ
}

TEST(pipeline, a_plan_that_does_not_fit_stops_before_loading) {
  temp_dir dir;
  synth_tiny(dir / "m");
  auto o = host_options();
  o.platform.profile = "h100-sxm";
  o.platform.device_memory_bytes = 4096;
  try {
    load_checkpoint(dir / "m", o);
    FAIL();
  } catch (const budget_error& e) {
    EXPECT_EQ(e.code(), exit_code::budget);
  }
}

TEST(pipeline, digest_lines_follow_the_documented_rule) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const auto r = load_checkpoint(dir / "m", host_options());
  std::vector<std::pair<std::string, std::string>> lines;
  for (const auto& t : r.weights->tensors()) {
    EXPECT_EQ(t.digest, "sha256:" + sha256_hex(t.data, t.bytes));
    lines.emplace_back(t.name, t.digest.substr(7));
  }
  std::sort(lines.begin(), lines.end());
  std::string text;
  for (const auto& [n, h] : lines) text += n + " " + h + "\n";
  EXPECT_EQ(r.report.digest, "sha256:" + sha256_hex(text.data(), text.size()));
}

TEST(pipeline, check_counts_non_finite_values_of_decoded_tensors) {
  temp_dir dir;
  synth_tiny(dir / "m", 2, 4, true);  // scales 253 and 254 overflow to +-inf
  auto o = host_options();
  o.check = true;
  const auto r = load_checkpoint(dir / "m", o);
  std::uint64_t total = 0;
  for (const auto& t : r.weights->tensors()) {
    if (t.name.find("_bias") != std::string::npos ||
        t.name.find(".mlp.experts.") == std::string::npos) {
      EXPECT_FALSE(t.checksum.has_value()) << t.name;  // only decoded tensors are checked
      continue;
    }
    ASSERT_TRUE(t.non_finite.has_value()) << t.name;
    const auto* bits = reinterpret_cast<const std::uint16_t*>(t.data);
    std::uint64_t expected = 0;
    for (std::uint64_t i = 0; i < t.bytes / 2; ++i) expected += (bits[i] & 0x7F80) == 0x7F80;
    EXPECT_EQ(*t.non_finite, expected) << t.name;
    EXPECT_GT(expected, 0u) << t.name;
    total += expected;
  }
  EXPECT_EQ(r.report.non_finite, total);
}

TEST(pipeline, keep_loads_the_mxfp4_pairs_as_stored) {
  temp_dir dir;
  synth_tiny(dir / "m");
  auto o = host_options();
  o.pipeline.dtype = output_dtype::keep;
  const auto r = load_checkpoint(dir / "m", o);
  const auto ckpt = open_checkpoint(dir / "m");
  EXPECT_EQ(r.weights->tensors().size(), ckpt.tensors.size());
  for (const auto& t : r.weights->tensors()) {
    const auto& ref = ckpt.tensor(t.name);
    const auto want = read_tensor(ckpt, ref, 0, ref.bytes());
    EXPECT_EQ(std::memcmp(t.data, want.data(), want.size()), 0) << t.name;
  }
  EXPECT_EQ(r.report.pipeline.quantized_bytes, 0u);
}

TEST(pipeline, expert_parallel_slices_add_up_to_the_whole) {
  temp_dir dir;
  synth_tiny(dir / "m", 2, 8);
  auto whole_options = host_options();
  whole_options.pipeline.io = io_mode::buffered;
  const auto whole = load_checkpoint(dir / "m", whole_options);
  const std::uint64_t quantized = whole.report.pipeline.quantized_bytes;
  std::uint64_t expert_bias_bytes = 0;
  for (const auto& [name, ref] : open_checkpoint(dir / "m").tensors)
    if (name.find(".mlp.experts.") != std::string::npos && name.ends_with("_bias"))
      expert_bias_bytes += ref.bytes();
  for (int world : {2, 4}) {
    std::uint64_t read_total = 0;
    for (int rank = 0; rank < world; ++rank) {
      auto o = host_options();
      o.pipeline.rank = rank;
      o.pipeline.world_size = world;
      o.pipeline.io = io_mode::buffered;
      const auto part = load_checkpoint(dir / "m", o);
      read_total += part.report.pipeline.bytes_read;
      // Each rank reads its share of the experts and all of the rest.
      EXPECT_EQ(part.report.pipeline.quantized_bytes * world, quantized);
      EXPECT_EQ(whole.report.pipeline.bytes_read - part.report.pipeline.bytes_read,
                quantized - part.report.pipeline.quantized_bytes +
                    expert_bias_bytes * (world - 1) / world);
      for (const auto& t : part.weights->tensors()) {
        const auto* full = whole.weights->find(t.name);
        ASSERT_NE(full, nullptr);
        if (t.name.find(".mlp.experts.") == std::string::npos) {
          ASSERT_EQ(t.bytes, full->bytes) << t.name;
          EXPECT_EQ(std::memcmp(t.data, full->data, t.bytes), 0) << t.name;
          continue;
        }
        // Experts are the leading dimension in every layout: rank r holds a contiguous share.
        ASSERT_EQ(t.bytes * world, full->bytes) << t.name;
        EXPECT_EQ(t.shape[0] * world, full->shape[0]);
        EXPECT_EQ(std::memcmp(t.data, full->data + rank * t.bytes, t.bytes), 0)
            << t.name << " rank " << rank;
      }
    }
    EXPECT_GT(read_total, whole.report.pipeline.bytes_read);  // shared tensors read by every rank
  }
}

TEST(pipeline, experts_that_do_not_divide_are_refused) {
  temp_dir dir;
  synth_tiny(dir / "m", 1, 6);
  auto o = host_options();
  o.pipeline.world_size = 4;
  try {
    load_checkpoint(dir / "m", o);
    FAIL();
  } catch (const usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("do not divide evenly over world size 4"),
              std::string::npos);
  }
}

TEST(pipeline, injected_eio_is_an_error_not_a_result) {
  temp_dir dir;
  synth_tiny(dir / "m");
  for (std::uint64_t after : {0ull, 1000ull, 50000ull}) {
    detail::inject_read_fault(after, EIO);
    auto o = host_options();
    o.pipeline.io = io_mode::buffered;
    EXPECT_THROW(load_checkpoint(dir / "m", o), io_error) << after;
    detail::clear_read_fault();
  }
}

TEST(pipeline, injected_short_read_names_the_file) {
  temp_dir dir;
  synth_tiny(dir / "m");
  detail::inject_read_fault(30000, 0);
  try {
    load_checkpoint(dir / "m", host_options());
    detail::clear_read_fault();
    FAIL();
  } catch (const io_error& e) {
    detail::clear_read_fault();
    EXPECT_NE(std::string(e.what()).find("short read from"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(".safetensors"), std::string::npos) << e.what();
  }
}

TEST(pipeline, file_truncated_after_open_is_detected) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const auto ckpt = open_checkpoint(dir / "m");
  const auto map = build_model_map(ckpt);
  auto options = host_options().pipeline;
  const auto outputs = plan_outputs(map, options);
  // The file shrinks between reading headers and reading data, as a concurrent writer would do.
  ASSERT_EQ(
      ::truncate(ckpt.shard_path(1).c_str(), static_cast<off_t>(ckpt.shards[1].file_size / 2)), 0);
  auto engine = make_host_backend(1, cpu::isa::portable);
  discard_sink sink;
  EXPECT_THROW(run_pipeline(ckpt, outputs, options, *engine, sink), io_error);
}

void set_scale_byte(const fs::path& dir, const std::string& tensor, std::uint64_t index,
                    unsigned char value) {
  const auto ckpt = open_checkpoint(dir);
  const auto& ref = ckpt.tensor(tensor);
  const int fd = ::open(ckpt.shard_path(ref.shard).c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, &value, 1, static_cast<off_t>(ref.file_offset + index)), 1);
  ::close(fd);
}

TEST(pipeline, scale_255_is_refused_with_tensor_and_position) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const std::string scales = "model.layers.1.mlp.experts.down_proj_scales";  // [4, 64, 2]
  set_scale_byte(dir / "m", scales, 2 * 64 * 2 + 5 * 2 + 1, 255);  // expert 2, row 5, group 1
  try {
    load_checkpoint(dir / "m", host_options());
    FAIL();
  } catch (const format_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tensor '" + scales + "'"), std::string::npos) << what;
    EXPECT_NE(what.find("expert 2, row 5, group 1"), std::string::npos) << what;
    EXPECT_NE(what.find("--allow-nan-scales"), std::string::npos) << what;
  }
  auto o = host_options();
  o.pipeline.allow_nan_scales = true;
  o.pipeline.order = layout::native;
  const auto r = load_checkpoint(dir / "m", o);
  const auto* t = r.weights->find("model.layers.1.mlp.experts.down_proj");
  ASSERT_NE(t, nullptr);
  const auto* values = reinterpret_cast<const std::uint16_t*>(t->data);
  const std::uint64_t row_start = (2 * 64 + 5) * 64;  // native [E, rows, 64]
  for (int k = 0; k < 32; ++k) EXPECT_NE(values[row_start + k], 0x7FC0u) << k;
  for (int k = 32; k < 64; ++k) EXPECT_EQ(values[row_start + k], 0x7FC0u) << k;
}

TEST(pipeline, direct_io_is_used_where_the_filesystem_allows_it) {
  temp_dir dir;
  synth_tiny(dir / "m");
  auto o = host_options();
  o.pipeline.io = io_mode::direct;
  const auto r = load_checkpoint(dir / "m", o);
  const int probe = ::open((dir / "m" / "config.json").c_str(), O_RDONLY | O_DIRECT);
  EXPECT_EQ(r.report.pipeline.direct_io, probe >= 0);
  if (probe >= 0) ::close(probe);
}

TEST(pipeline, direct_io_falls_back_where_refused) {
  // As on tmpfs before Linux 6.6 or filesystems without O_DIRECT: buffered reads, same result.
  temp_dir dir;
  synth_tiny(dir / "m");
  auto o = host_options();
  o.pipeline.io = io_mode::buffered;
  const auto buffered = load_checkpoint(dir / "m", o);
  detail::refuse_direct_io(true);
  o.pipeline.io = io_mode::direct;
  const auto fallback = load_checkpoint(dir / "m", o);
  detail::refuse_direct_io(false);
  EXPECT_FALSE(fallback.report.pipeline.direct_io);
  EXPECT_EQ(fallback.report.digest, buffered.report.digest);
}

TEST(pipeline, page_cache_is_left_clean) {
  temp_dir dir;
  synth_tiny(dir / "m", 2, 16);
  ::sync();  // written pages must be clean before they can be dropped
  const auto ckpt = open_checkpoint(dir / "m");
  for (io_mode io : {io_mode::buffered, io_mode::direct}) {
    auto o = host_options();
    o.pipeline.io = io;
    const auto r = load_checkpoint(dir / "m", o);
    EXPECT_LT(r.report.page_cache_bytes_after, ckpt.file_bytes() / 10) << to_string(io);
  }
  auto keep = host_options();
  keep.pipeline.io = io_mode::buffered;
  keep.pipeline.keep_page_cache = true;
  EXPECT_GT(load_checkpoint(dir / "m", keep).report.page_cache_bytes_after, ckpt.file_bytes() / 2);
}

TEST(pipeline, staging_slot_smaller_than_one_expert_is_a_budget_error) {
  temp_dir dir;
  synth_tiny(dir / "m");
  auto o = host_options();
  o.pipeline.slot_bytes = 100;
  o.staging_from_plan = false;
  EXPECT_THROW(load_checkpoint(dir / "m", o), budget_error);
}

}  // namespace
}  // namespace umload::test
