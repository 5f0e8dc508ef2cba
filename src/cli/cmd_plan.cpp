// `umload plan SRC`: where every tensor of a checkpoint would go on this machine (or a profile),
// how it would be read, and the predicted peaks. Reads headers only, never weight data, so it
// runs on a checkpoint whose data are holes. A plan that does not fit exits with code 5
// (exit_code::budget) after printing the plan, whose message says what was needed, what is
// available and what would fit; with --json the JSON (fits: false) is printed.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "kernels/error.hpp"
#include "platform/config.hpp"
#include "platform/demand.hpp"
#include "platform/plan.hpp"
#include "platform/platform.hpp"
#include "platform/profiles.hpp"
#include "platform/units.hpp"
#include "src/checkpoint.hpp"
#include "src/cli/commands.hpp"
#include "src/model_map.hpp"
#include "src/planning.hpp"
#include "src/umload.hpp"

namespace umload::cli {

namespace {

struct plan_args {
  std::string source;
  std::string profile;
  std::string model;
  std::string topology;
  std::string device_memory;
  std::string host_memory;
  std::string dtype = "bf16";
  std::string layout = "hf";
  std::optional<int> rank;
  std::optional<int> world_size;
  bool json = false;
  bool tensors = false;
};

int run_plan(const plan_args& args) {
  const checkpoint ckpt = open_checkpoint(args.source);
  const model_map map = build_model_map(ckpt);  // every pairing and shape rule, before pricing

  pipeline_options options;
  options.dtype = parse_output_dtype(args.dtype);
  options.order = parse_layout(args.layout);
  const shard s = resolve_shard({args.rank, args.world_size}, platform::process_defaults());
  options.rank = s.rank;
  options.world_size = s.world_size;

  platform_choice choice;
  if (!args.profile.empty()) choice.profile = args.profile;
  if (!args.model.empty()) choice.memory_model = args.model;
  if (!args.topology.empty()) choice.topology = args.topology;
  if (!args.device_memory.empty())
    choice.device_memory_bytes = platform::parse_size(args.device_memory);
  if (!args.host_memory.empty()) choice.host_memory_bytes = platform::parse_size(args.host_memory);
  const platform::placement_plan plan =
      plan_checkpoint(map, options, choose_platform(choice), choice);
  if (args.json) {
    std::printf("%s\n", platform::to_json(plan).dump(2).c_str());
    return plan.fits ? 0 : static_cast<int>(exit_code::budget);
  }
  // The summary already says why it does not fit and what would; exit 5 without repeating it.
  std::fputs(platform::describe(plan, args.tensors).c_str(), stdout);
  return plan.fits ? 0 : static_cast<int>(exit_code::budget);
}

}  // namespace

void add_plan(CLI::App& app, int& status) {
  auto args = std::make_shared<plan_args>();
  auto* cmd = app.add_subcommand("plan",
                                 "Plan where every tensor goes on this machine or a profile, "
                                 "reading headers only; exits 5 when it does not fit");
  cmd->add_option("source", args->source, "Checkpoint directory or .safetensors file")->required();
  std::string profiles;
  for (const auto& n : platform::profile_names()) profiles += (profiles.empty() ? "" : ", ") + n;
  auto* profile =
      cmd->add_option("--profile", args->profile,
                      "Plan for a built-in profile: " + profiles + " (default: $UMLOAD_PROFILE)");
  auto* model =
      cmd->add_option("--platform", args->model,
                      "Force the memory model: host, discrete, discrete-hmm, coherent, integrated");
  profile->excludes(model);
  cmd->add_option("--topology", args->topology, "hwloc XML file or synthetic:DESC");
  cmd->add_option("--device-memory", args->device_memory,
                  "Device memory the plan may use (e.g. 80G)");
  cmd->add_option("--host-memory", args->host_memory, "Host memory the plan may use (e.g. 256G)");
  cmd->add_option("--dtype", args->dtype, "bf16 (default), f32, or keep (MXFP4 pairs as stored)")
      ->check(CLI::IsMember({"bf16", "f32", "keep"}));
  cmd->add_option("--layout", args->layout, "hf ([E, in, out], default) or native ([E, out, in])")
      ->check(CLI::IsMember({"hf", "native"}));
  cmd->add_option("--rank", args->rank, "Expert-parallel rank (default: $RANK)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--world-size", args->world_size,
                  "Expert-parallel world size (default: $WORLD_SIZE)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--json", args->json,
                "Print JSON (fits, memory_model, io_mode, peaks, placements)");
  cmd->add_flag("--tensors", args->tensors, "List every tensor's placement");
  cmd->callback([args, &status] { status = run_plan(*args); });
}

}  // namespace umload::cli
