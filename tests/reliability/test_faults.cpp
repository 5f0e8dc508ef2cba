// Faults a user meets, driven through the CLI as a subprocess: convert killed with SIGKILL at
// seeded random moments (a rerun is always bit-exact and the output never has an index while
// incomplete), a full disk at several sizes (RLIMIT_FSIZE, and a small tmpfs where a mount
// namespace can be made), write failures injected at seeded points of a conversion (nothing is
// left behind), shard files that change size during a load, and an output folder that holds
// something else. Every test proves its input untouched.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <random>

#include "kernels/error.hpp"
#include "src/backend.hpp"
#include "src/convert.hpp"
#include "src/file.hpp"
#include "src/loader.hpp"
#include "src/model_map.hpp"
#include "src/pipeline.hpp"
#include "tests/reliability/reliability.hpp"

namespace umload::test {
namespace {

constexpr const char* index_name = "model.safetensors.index.json";

// A checkpoint whose conversion takes about a second here: 12 output shards, many pipeline items,
// so random kills land in every phase (planning, shard writes, renames, small files, index).
fs::path make_source(const fs::path& dir) {
  const auto r = run_cli(
      "synth --preset tiny --layers 4 --experts 16 --hidden 256 --intermediate 256 "
      "--vocab 512 --seed 7 --out " +
      dir.string());
  EXPECT_EQ(r.status, 0) << r.err;
  return dir;
}

std::vector<std::string> convert_args(const fs::path& src, const fs::path& dst) {
  return {"convert", "--shard-size", "1M",    "--memory-budget", "16M", "--threads",
          "1",       src.string(),   "--out", dst.string()};
}

std::string join(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

// The source checkpoint under `dir`, its digests, and the digests of a clean conversion of it.
struct converted_source {
  fs::path src;
  std::map<std::string, std::string> input;
  std::map<std::string, std::string> clean;
};

converted_source convert_cleanly(const fs::path& dir) {
  converted_source c;
  c.src = make_source(dir / "src");
  c.input = file_digests(c.src);
  const auto run = run_cli(join(convert_args(c.src, dir / "clean")));
  EXPECT_EQ(run.status, 0) << run.err;
  c.clean = file_digests(dir / "clean");
  return c;
}

// What a killed or failed run may leave: no index unless everything it names is complete and
// identical to the clean conversion.
void expect_no_false_completion(const fs::path& dst,
                                const std::map<std::string, std::string>& clean,
                                const std::string& when) {
  if (!fs::exists(dst / index_name)) return;
  const auto now = file_digests(dst);
  for (const auto& [name, bytes] : clean) {
    const auto it = now.find(name);
    ASSERT_NE(it, now.end()) << when << ": index present but " << name << " missing";
    EXPECT_TRUE(it->second == bytes) << when << ": index present but " << name << " differs";
  }
}

TEST(faults, kill_9_at_random_points_then_rerun_is_bit_exact) {
  temp_dir dir;
  const fs::path src = make_source(dir / "src");
  const auto input = file_digests(src);

  const auto t0 = std::chrono::steady_clock::now();
  const auto clean_run = run_cli(join(convert_args(src, dir / "clean")));
  const double clean_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(clean_run.status, 0) << clean_run.err;
  const auto clean = file_digests(dir / "clean");
  ASSERT_TRUE(clean.count(index_name));

  std::mt19937_64 rng(20240611);
  std::uniform_real_distribution<double> when(0.0, clean_seconds * 1.1);
  int killed_while_running = 0;
  for (int round = 0; round < 10; ++round) {
    const double delay = when(rng);
    {
      cli_child child(convert_args(src, dir / "dst"));
      ASSERT_TRUE(child.started());
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      killed_while_running += child.kill_and_wait();
    }
    const std::string label =
        "round " + std::to_string(round) + ", kill after " + std::to_string(delay) + " s";
    expect_no_false_completion(dir / "dst", clean, label);
    // Every third round, and at the end, a rerun completes and equals the clean run byte for byte.
    if (round % 3 == 2 || round == 9) {
      const auto rerun = run_cli(join(convert_args(src, dir / "dst")));
      ASSERT_EQ(rerun.status, 0) << label << ": " << rerun.err;
      EXPECT_TRUE(file_digests(dir / "dst") == clean)
          << label << ": rerun differs from the clean conversion";
    }
    EXPECT_TRUE(file_digests(src) == input) << label << ": input changed";
  }
  // The kills must have hit running conversions, or the test proves nothing.
  EXPECT_GE(killed_while_running, 5);
}

TEST(faults, full_disk_at_several_sizes_leaves_nothing_then_rerun_is_bit_exact) {
  temp_dir dir;
  const auto [src, input, clean] = convert_cleanly(dir.path());
  ASSERT_FALSE(clean.empty());

  // RLIMIT_FSIZE (in KiB for ulimit -f): a write past it fails with EFBIG, as on a full disk.
  for (const int kib : {1, 64, 700}) {
    const std::string cmd = "bash -c 'ulimit -f " + std::to_string(kib) + "; exec " + UMLOAD_CLI +
                            " " + join(convert_args(src, dir / "dst")) + "' >/dev/null 2>" +
                            (dir / "err").string();
    const int raw = std::system(cmd.c_str());
    const std::string err = read_bytes(dir / "err");
    EXPECT_EQ(WEXITSTATUS(raw), 4) << kib << " KiB: " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find("write failed"), std::string::npos) << err;
    // The run made the folder, so a failed run takes it away again, with everything in it.
    EXPECT_FALSE(fs::exists(dir / "dst")) << kib << " KiB left: " << join(names_in(dir / "dst"));
    EXPECT_TRUE(file_digests(src) == input) << kib << " KiB: input changed";
  }
  ASSERT_EQ(run_cli(join(convert_args(src, dir / "dst"))).status, 0);
  EXPECT_TRUE(file_digests(dir / "dst") == clean);
}

// A real full disk: a tmpfs of a few sizes mounted in a private mount namespace (unshare -rm), the
// conversion written into it, and what the folder holds listed before the namespace goes.
TEST(faults, full_tmpfs_leaves_nothing_behind) {
  temp_dir dir;
  const fs::path src = make_source(dir / "src");
  const auto input = file_digests(src);
  const fs::path mnt = dir / "mnt";
  fs::create_directories(mnt);
  if (std::system(("unshare -rm true 2>/dev/null")) != 0)
    GTEST_SKIP() << "no mount namespace here (unshare -rm)";
  for (const std::string size : {"8k", "300k", "2m"}) {
    const std::string script = "mount -t tmpfs -o size=" + size + " tmpfs " + mnt.string() +
                               " || exit 99; " + UMLOAD_CLI + " " +
                               join(convert_args(src, mnt / "dst")) + " >/dev/null 2>" +
                               (dir / "err").string() + "; echo $? >" + (dir / "status").string() +
                               "; ls -A " + mnt.string() + " >" + (dir / "left").string();
    const int raw = std::system(("unshare -rm sh -c '" + script + "'").c_str());
    if (WEXITSTATUS(raw) == 99) GTEST_SKIP() << "tmpfs cannot be mounted here";
    const std::string err = read_bytes(dir / "err");
    EXPECT_EQ(read_bytes(dir / "status"), "4\n") << size << ": " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find("No space left on device"), std::string::npos) << size << ": " << err;
    EXPECT_EQ(read_bytes(dir / "left"), "") << size << ": the failed run left files behind";
    EXPECT_TRUE(file_digests(src) == input) << size << ": input changed";
  }
}

// Write failures (ENOSPC, EIO) injected at seeded points over a whole conversion, through the
// library: headers, shard data, renames' neighbours, the small files and the index. Each fails
// with io_error and leaves nothing; a destination that held this model's earlier conversion is
// left empty rather than half old, half new.
TEST(faults, injected_write_failure_anywhere_leaves_nothing_behind) {
  temp_dir dir;
  const auto [src, input, clean] = convert_cleanly(dir.path());
  std::uint64_t written = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir / "clean"))
    if (entry.is_regular_file()) written += entry.file_size();
  convert_options options;
  options.device = "cpu";
  options.threads = 1;
  options.memory_budget = 16ull << 20;
  options.shard_bytes = 1ull << 20;
  std::mt19937_64 rng(1312);
  std::uniform_int_distribution<std::uint64_t> when(0, written - 1);
  std::vector<std::uint64_t> points = {0, 1, 4096, written - 1};
  for (int k = 0; k < 8; ++k) points.push_back(when(rng));
  for (const bool rerun : {false, true}) {
    for (const std::uint64_t after : points) {
      const fs::path dst = dir / (rerun ? "rerun" : "fresh");
      if (rerun) convert_checkpoint(src, dst, options);
      const int err = after % 2 ? EIO : ENOSPC;
      detail::inject_write_fault(after, err);
      try {
        convert_checkpoint(src, dst, options);
        ADD_FAILURE() << "a write failure after " << after << " bytes was not reported";
      } catch (const io_error& e) {
        EXPECT_EQ(e.errno_value(), err) << e.what();
        EXPECT_NE(std::string(e.what()).find("write failed"), std::string::npos) << e.what();
      }
      detail::clear_write_fault();
      if (rerun)
        EXPECT_TRUE(names_in(dst).empty())
            << "after " << after << " bytes: " << join(names_in(dst));
      else
        EXPECT_FALSE(fs::exists(dst)) << "after " << after << " bytes: " << join(names_in(dst));
    }
  }
  EXPECT_TRUE(file_digests(src) == input);
}

TEST(faults, output_folder_holding_something_else_is_not_replaced_without_force) {
  temp_dir dir;
  const auto [src, input, clean] = convert_cleanly(dir.path());
  ASSERT_FALSE(clean.empty());

  // Another model; a conversion of this model with other options; unrelated files.
  synth_tiny(dir / "other", 1, 2, false, 99);
  ASSERT_EQ(run_cli(join(convert_args(src, dir / "native")) + " --layout native").status, 0);
  fs::create_directories(dir / "notes");
  write_bytes(dir / "notes" / "README.txt", "my notes");
  for (const std::string target : {"other", "native", "notes"}) {
    const auto before = file_digests(dir / target);
    const auto r = run_cli(join(convert_args(src, dir / target)));
    EXPECT_EQ(r.status, 7) << target << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
    EXPECT_TRUE(file_digests(dir / target) == before) << target << " was modified";
  }
  // With --force the folder becomes exactly the clean conversion (no stale files left).
  const auto forced = run_cli(join(convert_args(src, dir / "other")) + " --force");
  ASSERT_EQ(forced.status, 0) << forced.err;
  EXPECT_TRUE(file_digests(dir / "other") == clean);
  EXPECT_TRUE(file_digests(src) == input);
}

// Loads through the library with a hook at the first progress event, which comes after the shard
// files are opened and the first item is read: the moment to change a file under the load.
template <typename F>
void load_while(const fs::path& src, F&& change) {
  load_options options;
  options.device = "cpu";
  options.threads = 1;
  options.pipeline.slot_bytes = 1 << 20;
  options.pipeline.slots = 2;
  options.pipeline.readers = 1;
  bool done = false;
  options.pipeline.on_progress = [&](const auto&) {
    if (!done) change();
    done = true;
  };
  load_checkpoint(src, options);
}

TEST(faults, shard_that_grows_during_a_load_is_detected) {
  temp_dir dir;
  const fs::path src = make_source(dir / "src");
  const fs::path shard = src / "model-00001-of-00002.safetensors";
  try {
    load_while(src, [&] { write_bytes(shard, read_bytes(shard) + std::string(4096, 'x')); });
    FAIL() << "a shard that grew during the load was not noticed";
  } catch (const io_error& e) {
    EXPECT_NE(std::string(e.what()).find(shard.filename().string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("changed size"), std::string::npos) << e.what();
  }
}

TEST(faults, shard_that_shrinks_during_a_load_is_detected) {
  temp_dir dir;
  const fs::path src = make_source(dir / "src");
  const fs::path shard = src / "model-00002-of-00002.safetensors";
  try {
    load_while(src, [&] { fs::resize_file(shard, fs::file_size(shard) / 2); });
    FAIL() << "a shard that shrank during the load was not noticed";
  } catch (const io_error& e) {
    EXPECT_NE(std::string(e.what()).find(shard.filename().string()), std::string::npos) << e.what();
  }
}

TEST(faults, shard_that_grew_between_reading_headers_and_data_is_detected) {
  temp_dir dir;
  const fs::path src = make_source(dir / "src");
  const auto ckpt = open_checkpoint(src);
  const auto map = build_model_map(ckpt);
  pipeline_options options;
  options.slot_bytes = 1 << 20;
  const auto outputs = plan_outputs(map, options);
  // Appended bytes leave every tensor readable; only the size tells that the file changed.
  const fs::path shard = ckpt.shard_path(0);
  write_bytes(shard, read_bytes(shard) + "tail");
  auto engine = make_host_backend(1, cpu::isa::portable);
  discard_sink sink;
  try {
    run_pipeline(ckpt, outputs, options, *engine, sink);
    FAIL() << "a shard that changed after its header was read was not noticed";
  } catch (const io_error& e) {
    EXPECT_NE(std::string(e.what()).find(shard.filename().string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("changed size"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace umload::test
