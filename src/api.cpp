#include <utility>

#include "src/umload.hpp"

namespace umload {

struct model::state {
  checkpoint ckpt;
  model_map map;
};

namespace {

pipeline_options pipeline_for(layout order, output_dtype dtype, const shard& s) {
  pipeline_options p;
  p.order = order;
  p.dtype = dtype;
  p.rank = s.rank;
  p.world_size = s.world_size;
  return p;
}

}  // namespace

shard resolve_shard(const shard_request& request, const platform::defaults& env) {
  shard s;
  s.world_size = request.world_size.value_or(env.world_size.value_or(1));
  // An explicit world size with no rank is a single-process request: rank 0, not $RANK.
  s.rank = request.rank.value_or(request.world_size ? 0 : env.rank.value_or(0));
  if (s.world_size < 1)
    throw usage_error("world size " + std::to_string(s.world_size) + " must be at least 1");
  if (s.rank < 0 || s.rank >= s.world_size)
    throw usage_error("rank " + std::to_string(s.rank) + " must be in [0, " +
                      std::to_string(s.world_size) + ") for world size " +
                      std::to_string(s.world_size));
  return s;
}

std::string resolve_device(std::string_view device, const platform::defaults& env) {
  const std::string ordinal = "cuda:" + std::to_string(default_cuda_ordinal(env));
  if (device == "cpu") return "cpu";
  if (device == "cuda") return ordinal;
  if (device == "auto") return cuda_available() ? ordinal : "cpu";
  if (device.substr(0, 5) == "cuda:" && device.size() > 5 &&
      device.find_first_not_of("0123456789", 5) == std::string_view::npos)
    return std::string(device);
  throw usage_error("bad device '" + std::string(device) +
                    "' (expected auto, cpu, cuda or cuda:N)");
}

load_options to_load_options(const load_request& request, const platform::defaults& env) {
  load_options o;
  o.pipeline = pipeline_for(request.order, request.dtype, resolve_shard(request.sharding, env));
  o.pipeline.on_progress = request.on_progress;
  o.device = resolve_device(request.device, env);
  o.threads = request.threads;
  o.digest = request.digest;
  o.platform = request.platform;
  return o;
}

model model::open(const std::filesystem::path& source) {
  auto s = std::make_shared<state>();
  s->ckpt = open_checkpoint(source);
  s->map = build_model_map(s->ckpt);
  return model(std::move(s));
}

const checkpoint& model::files() const { return state_->ckpt; }
const model_map& model::map() const { return state_->map; }
const std::optional<model_config>& model::config() const { return state_->ckpt.config; }

std::vector<stored_tensor_info> model::stored_tensors() const {
  std::vector<stored_tensor_info> out;
  out.reserve(state_->ckpt.tensors.size());
  for (const auto& [name, ref] : state_->ckpt.tensors)
    out.push_back(
        {name, ref.entry->type, ref.entry->shape, ref.bytes(), state_->ckpt.shard_path(ref.shard)});
  return out;
}

std::vector<output_tensor> model::outputs(const load_request& request) const {
  const auto& env = platform::process_defaults();
  return plan_outputs(state_->map, pipeline_for(request.order, request.dtype,
                                                resolve_shard(request.sharding, env)));
}

platform::placement_plan model::plan(const plan_request& request) const {
  const auto options = pipeline_for(request.order, request.dtype,
                                    resolve_shard(request.sharding, platform::process_defaults()));
  return plan_checkpoint(state_->ckpt, options, choose_platform(request.platform),
                         request.platform);
}

load_result model::load(const load_request& request) const {
  return load_checkpoint(state_->ckpt.source,
                         to_load_options(request, platform::process_defaults()));
}

platform::platform_info detect_platform(const platform_choice& choice) {
  return choose_platform(choice);
}

convert_report convert(const std::filesystem::path& source,
                       const std::filesystem::path& destination, const convert_request& request) {
  if (request.dtype == output_dtype::keep)
    throw usage_error(
        "convert writes bf16 or f32 experts; dtype keep would copy the checkpoint as it is");
  convert_options o;
  o.pipeline = pipeline_for(request.order, request.dtype,
                            resolve_shard(request.sharding, platform::process_defaults()));
  o.pipeline.on_progress = request.on_progress;
  o.memory_budget = request.memory_budget;
  o.shard_bytes = request.shard_bytes;
  o.device = request.device;
  o.threads = request.threads;
  o.force = request.force;
  return convert_checkpoint(source, destination, o);
}

}  // namespace umload
