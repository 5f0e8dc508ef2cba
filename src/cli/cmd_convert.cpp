#include <cstdio>
#include <nlohmann/json.hpp>

#include "platform/units.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/options.hpp"
#include "src/cli/report.hpp"
#include "src/convert.hpp"

namespace umload::cli {

namespace {

struct convert_args {
  std::string source;
  std::string out;
  std::string device = "auto";
  decode_args decode;
  std::string memory_budget;
  std::string shard_size = "4GiB";
  bool force = false;
  bool json = false;
  std::string progress = "auto";
};

int run_convert(const convert_args& args) {
  convert_options options;
  apply_decode_options(args.decode, options.pipeline);
  options.device = args.device;
  options.threads = args.decode.threads;
  options.isa = parse_isa_option(args.decode.isa);
  options.force = args.force;
  if (!args.memory_budget.empty()) options.memory_budget = platform::parse_size(args.memory_budget);
  options.shard_bytes = platform::parse_size(args.shard_size);
  options.pipeline.on_progress = make_progress(
      args.progress != "none" && !(args.json && args.progress == "auto"), args.progress == "json");
  const auto r = convert_checkpoint(args.source, args.out, options);
  end_progress();
  const double seconds = r.seconds;
  if (args.json) {
    std::printf("%s\n", nlohmann::json{{"destination", r.destination.string()},
                                       {"device", r.device},
                                       {"backend", r.backend},
                                       {"cpuset", r.cpuset},
                                       {"cpuset_reason", r.cpuset_reason},
                                       {"reader_binding", r.pipeline.reader_binding},
                                       {"decode_binding", r.decode_binding},
                                       {"shards", r.shards},
                                       {"tensors", r.tensors},
                                       {"output_bytes", r.output_bytes},
                                       {"quantized_bytes", r.pipeline.quantized_bytes},
                                       {"bytes_read", r.pipeline.bytes_read},
                                       {"seconds", seconds},
                                       {"read_seconds", r.pipeline.read_seconds},
                                       {"copy_seconds", r.pipeline.copy_seconds},
                                       {"decode_seconds", r.pipeline.decode_seconds},
                                       {"peak_device_bytes", r.pipeline.peak_device_bytes},
                                       {"output_gb_per_s",
                                        seconds > 0 ? r.output_bytes / seconds / 1e9 : 0.0},
                                       {"memory_budget_bytes", r.memory_budget},
                                       {"peak_rss_bytes", r.peak_rss_bytes},
                                       {"direct_io", r.pipeline.direct_io},
                                       {"slot_bytes", r.pipeline.slot_bytes},
                                       {"slots", r.pipeline.slots},
                                       {"pipeline_seconds", r.pipeline.seconds},
                                       {"write_seconds", r.writer.write_seconds},
                                       {"chunk_wait_seconds", r.writer.wait_seconds},
                                       {"direct_write_bytes", r.writer.direct_bytes},
                                       {"buffered_write_bytes", r.writer.buffered_bytes},
                                       {"chunks", r.writer.chunks},
                                       {"chunk_bytes", r.writer.chunk_bytes}}
                            .dump(2)
                            .c_str());
  } else {
    std::printf(
        "converted %s -> %s on %s: %zu tensors in %zu shards, %s in %.2f s (%s), peak RSS %s "
        "(budget %s)\n",
        args.source.c_str(), args.out.c_str(), r.device.c_str(), r.tensors, r.shards,
        platform::format_bytes(r.output_bytes).c_str(), seconds,
        human_rate(seconds > 0 ? r.output_bytes / seconds : 0).c_str(),
        platform::format_bytes(r.peak_rss_bytes).c_str(),
        platform::format_bytes(r.memory_budget).c_str());
  }
  return 0;
}

}  // namespace

void add_convert(CLI::App& app, int& status) {
  auto args = std::make_shared<convert_args>();
  auto* cmd = app.add_subcommand(
      "convert", "Write a dense BF16 (or F32) checkpoint that HF transformers loads");
  cmd->add_option("SRC", args->source, "Checkpoint directory or .safetensors file")->required();
  cmd->add_option("--out", args->out, "Destination directory")->required();
  cmd->add_option("--device", args->device,
                  "Where to decode: auto (the GPU when one is usable), cpu, cuda or cuda:N");
  add_decode_options(*cmd, args->decode, false);
  cmd->add_option("--memory-budget", args->memory_budget,
                  "Resident memory for staging and output chunks, e.g. 256M (default: min(1 GiB, "
                  "MemAvailable/4))");
  cmd->add_option("--shard-size", args->shard_size, "Largest output shard, e.g. 4GiB");
  cmd->add_flag("--force", args->force, "Replace a destination that holds other files");
  cmd->add_option("--progress", args->progress, "auto (bar on terminals), none, or json lines")
      ->check(CLI::IsMember({"auto", "none", "json"}));
  cmd->add_flag("--json", args->json, "Print a JSON summary");
  cmd->callback([args, &status] { status = run_convert(*args); });
}

}  // namespace umload::cli
