#include <cstdio>
#include <nlohmann/json.hpp>

#include "src/cli/commands.hpp"
#include "src/cli/report.hpp"
#include "src/synth.hpp"

namespace umload::cli {

void add_synth(CLI::App& app, int& status) {
  auto options = std::make_shared<synth_options>();
  auto json = std::make_shared<bool>(false);
  auto out = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("synth", "Write a seeded checkpoint in the exact GPT-OSS layout");
  cmd->add_option("--preset", options->preset, "tiny | gpt-oss-20b | gpt-oss-120b")
      ->check(CLI::IsMember({"tiny", "gpt-oss-20b", "gpt-oss-120b"}));
  cmd->add_option("--layers", options->layers, "Number of layers (default: the preset's)")
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--experts", options->experts, "Experts per layer (default: the preset's)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--seed", options->seed, "Generator seed");
  cmd->add_option("--hidden", options->hidden, "Override hidden_size (multiple of 32)");
  cmd->add_option("--intermediate", options->intermediate,
                  "Override intermediate_size (multiple of 32)");
  cmd->add_option("--vocab", options->vocab, "Override vocab_size");
  cmd->add_option("--shards", options->shards, "Number of shards (default: the preset's)")
      ->check(CLI::Range(1, 10000));
  cmd->add_flag("--edge-scales", options->edge_scales, "Scales cycle through every byte 0..254");
  cmd->add_flag("--holes", options->holes,
                "Headers only; tensor data left as holes (sparse files)");
  cmd->add_option("--out", *out, "Output directory")->required();
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([options, json, out, &status] {
    options->out = *out;
    const auto r = synthesize(*options);
    if (*json)
      std::printf("%s\n", nlohmann::json{{"directory", r.directory.string()},
                                         {"tensors", r.tensors},
                                         {"shards", r.shards},
                                         {"tensor_bytes", r.tensor_bytes}}
                              .dump(2)
                              .c_str());
    else
      std::printf("wrote %s: %zu tensors in %zu shards, %s\n", r.directory.string().c_str(),
                  r.tensors, r.shards, platform::format_bytes(r.tensor_bytes).c_str());
    status = 0;
  });
}

}  // namespace umload::cli
