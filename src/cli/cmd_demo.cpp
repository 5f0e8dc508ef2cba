#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "kernels/error.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/report.hpp"
#include "src/convert.hpp"
#include "src/synth.hpp"
#include "src/umload.hpp"
#include "src/verify.hpp"

namespace umload::cli {

namespace fs = std::filesystem;

namespace {

int run_demo(const std::string& dir_option, bool keep) {
  fs::path root = dir_option;
  if (root.empty()) {
    char pattern[] = "/tmp/umload-demo-XXXXXX";
    if (!::mkdtemp(pattern)) throw io_error("cannot create a temporary directory", errno);
    root = pattern;
  }
  const fs::path source = root / "gpt-oss-tiny-mxfp4";
  const fs::path dense = root / "gpt-oss-tiny-bf16";

  synth_options synth;
  synth.preset = "tiny";
  synth.layers = 4;
  synth.experts = 8;
  synth.edge_scales = true;
  synth.out = source;
  const auto s = synthesize(synth);
  std::printf(
      "1. synth    %s: a GPT-OSS-layout checkpoint, %zu tensors in %zu shards (%s), "
      "scales covering every byte 0..254\n",
      source.string().c_str(), s.tensors, s.shards, platform::format_bytes(s.tensor_bytes).c_str());

  convert_options convert;
  convert.memory_budget = 64ull << 20;
  convert.shard_bytes = 256ull << 10;
  const auto c = convert_checkpoint(source, dense, convert);
  std::printf(
      "2. convert  %s: %zu tensors in %zu BF16 shard(s) (%s), layout hf [E, in, out], "
      "%.3f s, peak RSS %s\n",
      dense.string().c_str(), c.tensors, c.shards, platform::format_bytes(c.output_bytes).c_str(),
      c.pipeline.seconds, platform::format_bytes(c.peak_rss_bytes).c_str());

  const auto v = verify_conversion(source, dense, layout::hf, output_dtype::bf16);
  std::printf(
      "3. verify   %zu expert tensors equal the scalar oracle bit for bit (%llu values), "
      "%zu dense tensors copied byte for byte\n",
      v.decoded_tensors, static_cast<unsigned long long>(v.values_checked), v.dense_tensors);

  const model checkpoint = model::open(source);
  load_request load;
  load.digest = true;
  const auto l = checkpoint.load(load);
  std::printf(
      "4. load     %zu tensors into %s memory (%s) in %.3f s on this %s machine, digest %s\n",
      l.report.tensor_count, l.report.device.c_str(),
      platform::format_bytes(l.report.output_bytes).c_str(), l.report.pipeline.seconds,
      l.report.memory_model.c_str(), l.report.digest.substr(0, 23).c_str());

  load.platform.profile = "dgx-spark";
  const auto spark = checkpoint.load(load);
  std::printf("5. profile  the same load planned as on a DGX Spark (%s): %s; digest %s\n",
              spark.report.memory_model.c_str(), spark.report.strategy.c_str(),
              spark.report.digest == l.report.digest ? "identical" : "DIFFERENT");
  if (spark.report.digest != l.report.digest)
    throw mismatch_error("the dgx-spark profile's load gave another digest than the live load");

  if (!keep && dir_option.empty()) {
    std::error_code ec;
    fs::remove_all(root, ec);
    std::printf("done: removed %s (pass --keep to keep it)\n", root.string().c_str());
  } else {
    std::printf("done: files kept in %s\n", root.string().c_str());
  }
  return 0;
}

}  // namespace

void add_demo(CLI::App& app, int& status) {
  auto dir = std::make_shared<std::string>();
  auto keep = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("demo", "Synthesize a small model, convert it, check it, load it");
  cmd->add_option("--dir", *dir, "Work in this directory (default: a temporary one)");
  cmd->add_flag("--keep", *keep, "Keep the files");
  cmd->callback([dir, keep, &status] { status = run_demo(*dir, *keep); });
}

}  // namespace umload::cli
