#include "src/cli/options.hpp"

#include "kernels/error.hpp"
#include "platform/config.hpp"
#include "src/umload.hpp"

namespace umload::cli {

void add_decode_options(CLI::App& cmd, decode_args& args, bool allow_keep) {
  cmd.add_option("--layout", args.layout, "hf ([E, in, out], default) or native ([E, out, in])")
      ->check(CLI::IsMember({"hf", "native"}));
  if (allow_keep)
    cmd.add_option("--dtype", args.dtype, "bf16 (default), f32, or keep (MXFP4 pairs as stored)")
        ->check(CLI::IsMember({"bf16", "f32", "keep"}));
  else
    cmd.add_option("--dtype", args.dtype, "bf16 (default) or f32")
        ->check(CLI::IsMember({"bf16", "f32"}));
  cmd.add_option("--threads", args.threads, "CPU decode threads (0: all cores)")
      ->check(CLI::Range(0, 4096));
  cmd.add_option("--isa", args.isa,
                 "CPU decode path: scalar, portable, avx2, avx512 (default: best)");
  cmd.add_flag("--allow-nan-scales", args.allow_nan_scales,
               "Decode scale byte 255 to NaN (OCP MX) instead of refusing it");
  cmd.add_option("--rank", args.rank, "Expert-parallel rank (default: $RANK)")
      ->check(CLI::Range(0, 1 << 20));
  cmd.add_option("--world-size", args.world_size,
                 "Expert-parallel world size (default: $WORLD_SIZE)")
      ->check(CLI::Range(1, 1 << 20));
}

std::optional<cpu::isa> parse_isa_option(const std::string& text) {
  if (text.empty()) return std::nullopt;
  cpu::isa path;
  if (!cpu::parse_isa(text, path))
    throw usage_error("unknown --isa '" + text + "' (expected scalar, portable, avx2 or avx512)");
  return path;
}

void apply_decode_options(const decode_args& args, pipeline_options& pipeline) {
  pipeline.order = parse_layout(args.layout);
  pipeline.dtype = parse_output_dtype(args.dtype);
  pipeline.allow_nan_scales = args.allow_nan_scales;
  const shard s = resolve_shard({args.rank, args.world_size}, platform::process_defaults());
  pipeline.rank = s.rank;
  pipeline.world_size = s.world_size;
}

void apply_decode_options(const decode_args& args, load_request& request) {
  request.order = parse_layout(args.layout);
  request.dtype = parse_output_dtype(args.dtype);
  request.allow_nan_scales = args.allow_nan_scales;
  request.sharding = {args.rank, args.world_size};
  request.threads = args.threads;
  request.isa = parse_isa_option(args.isa);
}

}  // namespace umload::cli
