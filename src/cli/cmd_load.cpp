#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/error.hpp"
#include "platform/units.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/options.hpp"
#include "src/cli/report.hpp"
#include "src/umload.hpp"

namespace umload::cli {

namespace {

struct load_args {
  std::string source;
  std::string device = "auto";
  decode_args decode;
  std::string io = "auto";
  std::string report_file;
  std::string slot_size;
  int slots = 0;
  std::string profile;
  std::string platform_model;
  std::string topology;
  std::string device_memory;
  std::string host_memory;
  bool keep_cache = false;
  bool digest = false;
  bool check = false;
  bool json = false;
  std::string progress = "auto";
};

// The flags as a load_request: the same front door as the C++ API and the Python module.
load_request request_of(const load_args& args) {
  load_request request;
  apply_decode_options(args.decode, request);
  request.device = args.device;
  request.digest = args.digest;
  request.check = args.check;
  const io_mode io = parse_io_mode(args.io);
  if (io != io_mode::automatic) request.io = io;
  request.keep_page_cache = args.keep_cache;
  if (!args.slot_size.empty()) request.slot_bytes = platform::parse_size(args.slot_size);
  if (args.slots > 0) request.slots = args.slots;
  if (!args.profile.empty()) request.platform.profile = args.profile;
  if (!args.platform_model.empty()) request.platform.memory_model = args.platform_model;
  if (!args.topology.empty()) request.platform.topology = args.topology;
  if (!args.device_memory.empty())
    request.platform.device_memory_bytes = platform::parse_size(args.device_memory);
  if (!args.host_memory.empty())
    request.platform.host_memory_bytes = platform::parse_size(args.host_memory);
  request.on_progress = make_progress(
      args.progress != "none" && !(args.json && args.progress == "auto"), args.progress == "json");
  return request;
}

int run_load(const load_args& args) {
  const load_request request = request_of(args);
  const auto result = model::open(args.source).load(request);
  end_progress();
  const auto& r = result.report;
  const nlohmann::json j = to_json(r, result.weights.get());
  if (!args.report_file.empty()) {
    std::ofstream out(args.report_file);
    out << j.dump(2) << "\n";
    if (!out) throw io_error("cannot write report " + args.report_file);
  }
  if (args.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  const auto& p = r.pipeline;
  std::printf("loaded %zu tensors (%s) on %s in %.3f s: %s of output\n", r.tensor_count,
              platform::format_bytes(r.output_bytes).c_str(), r.device.c_str(), p.seconds,
              human_rate(p.seconds > 0 ? r.output_bytes / p.seconds : 0).c_str());
  std::printf("  platform     %s, memory model %s\n", r.platform.c_str(), r.memory_model.c_str());
  std::printf("  strategy     %s\n", r.strategy.c_str());
  std::printf("  read         %s in %.3f s (%s I/O)\n",
              platform::format_bytes(p.bytes_read).c_str(), p.read_seconds,
              p.direct_io ? "direct" : "buffered");
  std::printf("  copy         %.3f s\n", p.copy_seconds);
  std::printf("  decode       %.3f s (%s MXFP4)\n", p.decode_seconds,
              platform::format_bytes(p.quantized_bytes).c_str());
  const auto& t = r.timing;
  std::printf(
      "  timing       %.3f s from the backend's creation: backend %.3f, allocate %.3f, "
      "pipeline %.3f, finish %.3f\n",
      t.total_seconds, t.backend_seconds, t.allocate_seconds, t.pipeline_seconds, t.finish_seconds);
  std::printf("  peak RSS     %s\n", platform::format_bytes(r.peak_rss_bytes).c_str());
  if (p.peak_device_bytes)
    std::printf("  peak device  %s\n", platform::format_bytes(p.peak_device_bytes).c_str());
  std::printf("  page cache   %s of the checkpoint still cached\n",
              platform::format_bytes(r.page_cache_bytes_after).c_str());
  if (request.check)
    std::printf("  check        %llu non-finite values in decoded tensors\n",
                static_cast<unsigned long long>(r.non_finite));
  if (!r.digest.empty()) std::printf("  digest       %s\n", r.digest.c_str());
  return 0;
}

}  // namespace

void add_load(CLI::App& app, int& status) {
  auto args = std::make_shared<load_args>();
  auto* cmd = app.add_subcommand(
      "load", "Load the whole model into memory as a framework would, and report");
  cmd->add_option("SRC", args->source, "Checkpoint directory or .safetensors file")->required();
  cmd->add_option("--device", args->device, "auto, cpu, cuda or cuda:N");
  auto* profile =
      cmd->add_option("--profile", args->profile,
                      "Behave as on a built-in machine profile (see umload platform --help)");
  cmd->add_option("--platform", args->platform_model,
                  "Force the memory model: host, discrete, discrete-hmm, coherent, integrated")
      ->excludes(profile);
  cmd->add_option("--topology", args->topology, "hwloc XML file or synthetic:DESC");
  cmd->add_option("--device-memory", args->device_memory,
                  "Device memory the plan may use, e.g. 80G");
  cmd->add_option("--host-memory", args->host_memory, "Host memory the plan may use, e.g. 64G");
  add_decode_options(*cmd, args->decode, true);
  cmd->add_option("--io", args->io, "auto, direct or buffered")
      ->check(CLI::IsMember({"auto", "direct", "buffered"}));
  cmd->add_option("--slot-size", args->slot_size, "Staging slot size, e.g. 64M");
  cmd->add_option("--slots", args->slots, "Staging slots in the ring")->check(CLI::Range(2, 64));
  cmd->add_flag("--keep-cache", args->keep_cache,
                "Leave consumed input pages in the page cache (benchmarks)");
  cmd->add_option("--report", args->report_file, "Also write the JSON report to FILE");
  cmd->add_flag("--digest", args->digest,
                "SHA-256 of every tensor as loaded, and of the whole set");
  cmd->add_flag(
      "--check", args->check,
      "Count non-finite values and checksum every decoded tensor where it lives (CUB on GPUs)");
  cmd->add_option("--progress", args->progress, "auto (bar on terminals), none, or json lines")
      ->check(CLI::IsMember({"auto", "none", "json"}));
  cmd->add_flag("--json", args->json, "Print the report as JSON");
  cmd->callback([args, &status] { status = run_load(*args); });
}

}  // namespace umload::cli
