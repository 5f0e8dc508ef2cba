// `umload platform`: what machine this is and why (attributes, classification, memory figures,
// NUMA layout, the GPU's cpuset), live or as a named profile.
#include <cstdio>
#include <memory>
#include <string>

#include "platform/config.hpp"
#include "platform/platform.hpp"
#include "platform/profiles.hpp"
#include "src/cli/commands.hpp"
#include "src/planning.hpp"

namespace umload::cli {

namespace {

struct platform_args {
  bool json = false;
  std::string topology;
  std::string profile;
};

std::string profile_list() {
  std::string list;
  for (const auto& n : platform::profile_names()) list += (list.empty() ? "" : ", ") + n;
  return list;
}

}  // namespace

void add_platform(CLI::App& app, int& status) {
  auto args = std::make_shared<platform_args>();
  auto* cmd = app.add_subcommand("platform",
                                 "Show the detected platform: GPU attributes, memory model, "
                                 "topology and the memory a plan may use");
  cmd->add_flag("--json", args->json, "Print JSON (keys include memory_model)");
  cmd->add_option("--topology", args->topology,
                  "hwloc XML file (format 2.0) or synthetic:DESC instead of the live topology "
                  "(default: $UMLOAD_TOPOLOGY)");
  cmd->add_option(
      "--profile", args->profile,
      "Behave as on a built-in profile: " + profile_list() + " (default: $UMLOAD_PROFILE)");
  cmd->callback([args, &status] {
    auto options = platform::detect_options::from(platform::process_defaults());
    options.device = default_cuda_ordinal(platform::process_defaults());
    if (!args->topology.empty()) options.topology = args->topology;
    if (!args->profile.empty()) options.profile = args->profile;
    const platform::platform_info info = platform::detect_platform(options);
    if (args->json) {
      std::printf("%s\n", platform::to_json(info).dump(2).c_str());
    } else {
      std::fputs(platform::describe(info).c_str(), stdout);
    }
    status = 0;
  });
}

}  // namespace umload::cli
