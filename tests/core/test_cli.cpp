// The command line as a user meets it: exit codes for each error kind (docs/cli.md), JSON
// reports, bounded memory of convert and load measured in a fresh process, and faults while
// writing (a full disk) that leave no output behind.
#include <gtest/gtest.h>

#include "src/backend.hpp"
#include "tests/core/fixtures.hpp"

namespace umload::test {
namespace {

TEST(cli, exit_codes_follow_the_documented_table) {
  temp_dir dir;
  synth_tiny(dir / "m");
  EXPECT_EQ(run_cli("inspect " + (dir / "m").string()).status, 0);
  EXPECT_EQ(run_cli("nonsense").status, 2);
  EXPECT_EQ(run_cli("load " + (dir / "m").string() + " --dtype f16").status, 2);
  EXPECT_EQ(run_cli("inspect " + (dir / "missing").string()).status, 4);
  write_bytes(dir / "bad.safetensors", "xx");
  const auto bad = run_cli("inspect " + (dir / "bad.safetensors").string());
  EXPECT_EQ(bad.status, 3);
  EXPECT_NE(bad.err.find("bad.safetensors"), std::string::npos) << bad.err;
  EXPECT_EQ(
      run_cli("convert " + (dir / "m").string() + " --out " + (dir / "m" / "x").string()).status,
      2);
  synth_tiny(dir / "other", 2, 4, false, 9);
  EXPECT_EQ(
      run_cli("convert " + (dir / "m").string() + " --out " + (dir / "other").string()).status, 7);
  if (!cuda_available()) {
    EXPECT_EQ(run_cli("load " + (dir / "m").string() + " --device cuda").status, 6);
  }
  EXPECT_EQ(run_cli("convert " + (dir / "m").string() + " --out " + (dir / "o").string() +
                    " --memory-budget 1K")
                .status,
            5);
}

TEST(cli, convert_decodes_where_asked_and_a_missing_gpu_leaves_no_output) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const auto convert = [&](const std::string& out, const std::string& options) {
    return run_cli("convert --json " + options + " " + (dir / "m").string() + " --out " +
                   (dir / out).string());
  };
  // A refused run names the problem and leaves no destination behind.
  const auto refused = [&](const std::string& out, const std::string& options, int status,
                           const std::string& says) {
    const auto r = convert(out, options);
    EXPECT_EQ(r.status, status) << options;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir / out)) << options;
  };
  refused("a", "--device gpu0", 2, "gpu0");
  const auto cpu = convert("c", "--device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.err;
  EXPECT_EQ(cpu.json()["device"], "cpu");
  EXPECT_EQ(cpu.json()["backend"], "host");
  EXPECT_EQ(cpu.json()["peak_device_bytes"], 0);
  if (cuda_available())
    GTEST_SKIP() << "a CUDA device is present (tests/cuda covers convert there)";
  refused("g", "--device cuda", 6, "no usable CUDA GPU");
  const auto automatic = convert("auto", "");
  ASSERT_EQ(automatic.status, 0) << automatic.err;
  EXPECT_EQ(automatic.json()["device"], "cpu");
}

TEST(cli, inspect_reports_pairs_sizes_and_problems) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const auto ok = run_cli("inspect --json " + (dir / "m").string());
  ASSERT_EQ(ok.status, 0) << ok.err;
  const auto j = ok.json();
  EXPECT_EQ(j["pair_count"], 4);
  EXPECT_EQ(j["shards"].size(), 3u);
  EXPECT_TRUE(j["problems"].empty());
  EXPECT_EQ(j["bf16_bytes_after_decode"].get<std::uint64_t>(),
            j["dense_bytes"].get<std::uint64_t>() + 2ull * (4 * 128 * 64 + 4 * 64 * 64) * 2);
  edit_json(dir / "m" / "config.json", [](nlohmann::json& c) { c["model_type"] = "llama"; });
  const auto bad = run_cli("inspect --json " + (dir / "m").string());
  EXPECT_EQ(bad.status, 3);
  EXPECT_EQ(bad.json()["problems"].size(), 1u);
}

TEST(cli, convert_peak_rss_stays_within_the_budget_on_a_larger_checkpoint) {
  temp_dir dir;
  ASSERT_EQ(run_cli("synth --preset tiny --layers 4 --experts 32 --hidden 512 --intermediate 512 "
                    "--vocab 1024 --out " +
                    (dir / "m").string())
                .status,
            0);
  // On the CPU: a CUDA context's own host memory would come on top of the budget.
  const auto r = run_cli("convert --json --device cpu --memory-budget 32M " + (dir / "m").string() +
                         " --out " + (dir / "d").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = r.json();
  const std::uint64_t budget = 32ull << 20;
  EXPECT_GT(j["output_bytes"].get<std::uint64_t>(),
            4 * budget);  // the model is larger than the budget
  EXPECT_LE(j["peak_rss_bytes"].get<std::uint64_t>(), budget + (64ull << 20));
}

// The writer's chunks count against the budget like the staging slots: at a small budget the
// conversion still queues at least two chunks for the writer, stays within budget + 64 MiB, and
// writes the same bytes as at the default budget.
TEST(cli, convert_at_a_small_budget_queues_chunks_within_it_and_writes_the_same_bytes) {
  temp_dir dir;
  ASSERT_EQ(run_cli("synth --preset tiny --layers 3 --experts 32 --hidden 512 --intermediate 512 "
                    "--vocab 1024 --out " +
                    (dir / "m").string())
                .status,
            0);
  const std::uint64_t budget = 12ull << 20;
  const auto r = run_cli("convert --json --device cpu --memory-budget 12M " + (dir / "m").string() +
                         " --out " + (dir / "small").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = r.json();
  EXPECT_GE(j["chunks"].get<std::uint64_t>(), 2u);
  EXPECT_LE(j["slots"].get<std::uint64_t>() * j["slot_bytes"].get<std::uint64_t>() +
                j["chunks"].get<std::uint64_t>() * j["chunk_bytes"].get<std::uint64_t>(),
            budget);
  EXPECT_GT(j["output_bytes"].get<std::uint64_t>(), 4 * budget);
  EXPECT_LE(j["peak_rss_bytes"].get<std::uint64_t>(), budget + (64ull << 20));
  EXPECT_EQ(
      j["direct_write_bytes"].get<std::uint64_t>() + j["buffered_write_bytes"].get<std::uint64_t>(),
      [&] {
        std::uint64_t n = 0;
        for (const auto& e : fs::directory_iterator(dir / "small"))
          if (e.path().filename().string().rfind("model-", 0) == 0) n += e.file_size();
        return n;
      }());
  const auto big = run_cli("convert --json --device cpu " + (dir / "m").string() + " --out " +
                           (dir / "big").string());
  ASSERT_EQ(big.status, 0) << big.err;
  EXPECT_TRUE(file_digests(dir / "small") == file_digests(dir / "big"));
}

TEST(cli, cpu_load_peak_rss_is_output_plus_staging_not_the_quantized_model) {
  temp_dir dir;
  ASSERT_EQ(run_cli("synth --preset tiny --layers 6 --experts 32 --hidden 512 --intermediate 512 "
                    "--vocab 1024 --out " +
                    (dir / "m").string())
                .status,
            0);
  const auto r =
      run_cli("load --json --device cpu --slot-size 4M --slots 3 " + (dir / "m").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = r.json();
  const std::uint64_t output = j["bytes_produced"];
  const std::uint64_t staging =
      j["slot_bytes"].get<std::uint64_t>() * j["slots"].get<std::uint64_t>();
  const std::uint64_t quantized = j["quantized_bytes"];
  EXPECT_GT(quantized, 4 * staging);  // the quantized model is far larger than the ring
  EXPECT_LE(j["peak_rss_bytes"].get<std::uint64_t>(), output + staging + (48ull << 20));
  EXPECT_LT(j["peak_rss_bytes"].get<std::uint64_t>(), output + quantized);
}

TEST(cli, load_json_reports_every_stage) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const auto r = run_cli("load --json --digest --device cpu " + (dir / "m").string() +
                         " --report " + (dir / "report.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = r.json();
  for (const char* key : {"device", "strategy", "seconds", "read_seconds", "copy_seconds",
                          "decode_seconds", "bytes_read", "bytes_produced", "peak_rss_bytes",
                          "page_cache_bytes_after", "digest", "tensors"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["tensors"].size(), 3u + 2 * 17);  // 41 stored, each pair becomes one tensor
  EXPECT_EQ(nlohmann::json::parse(read_bytes(dir / "report.json")), j);
}

// The timing block: measured from the backend's creation, allocations included, with its parts,
// which add up to at most the total (they are laps of one clock; the total also covers what falls
// between them). `seconds` stays the pipeline's, as before. The text report says the same.
TEST(cli, load_reports_its_timing_from_the_backend_with_the_parts) {
  temp_dir dir;
  synth_tiny(dir / "m");
  const auto r = run_cli("load --json --check --device cpu " + (dir / "m").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = r.json();
  ASSERT_TRUE(j.contains("timing"));
  const auto& t = j["timing"];
  double parts = 0;
  for (const char* key :
       {"backend_seconds", "allocate_seconds", "pipeline_seconds", "finish_seconds"}) {
    ASSERT_TRUE(t.contains(key)) << key;
    EXPECT_GE(t[key].get<double>(), 0.0) << key;
    parts += t[key].get<double>();
  }
  ASSERT_TRUE(t.contains("total_seconds"));
  EXPECT_EQ(t.size(), 5u);
  EXPECT_GE(t["total_seconds"].get<double>(), parts - 1e-9);
  EXPECT_EQ(t["pipeline_seconds"], j["seconds"]);
  const auto text = run_cli("load --device cpu " + (dir / "m").string());
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("  timing       "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("s from the backend's creation: backend "), std::string::npos);
}

TEST(cli, full_disk_while_converting_leaves_no_output) {
  temp_dir dir;
  ASSERT_EQ(
      run_cli("synth --preset tiny --layers 4 --experts 16 --out " + (dir / "m").string()).status,
      0);
  const std::string before = read_bytes(dir / "m" / "model-00001-of-00002.safetensors");
  // RLIMIT_FSIZE of 512 KiB: writes past it fail with EFBIG, as on a full disk.
  const std::string cmd = "bash -c 'ulimit -f 512; exec " + std::string(UMLOAD_CLI) +
                          " convert --shard-size 4M " + (dir / "m").string() + " --out " +
                          (dir / "d").string() + "' >/dev/null 2>" + (dir / "err").string();
  const int raw = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(raw), 4) << read_bytes(dir / "err");
  EXPECT_NE(read_bytes(dir / "err").find("write failed"), std::string::npos)
      << read_bytes(dir / "err");
  // The run made the folder: a failed run removes it again, with everything it wrote there.
  EXPECT_FALSE(fs::exists(dir / "d"));
  EXPECT_EQ(read_bytes(dir / "m" / "model-00001-of-00002.safetensors"), before);
}

TEST(cli, demo_runs_and_checks_its_result) {
  temp_dir dir;
  const auto r = run_cli("demo --dir " + dir.path().string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("equal the scalar oracle bit for bit"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace umload::test
