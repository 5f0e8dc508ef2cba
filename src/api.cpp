#include <utility>

#include "platform/demand.hpp"
#include "platform/profiles.hpp"
#include "src/umload.hpp"

namespace umload {

struct model::state {
  checkpoint ckpt;
  model_map map;
};

namespace {

platform::output_dtype to_platform(output_dtype d) {
  switch (d) {
    case output_dtype::bf16: return platform::output_dtype::bf16;
    case output_dtype::f32: return platform::output_dtype::f32;
    case output_dtype::keep: return platform::output_dtype::keep;
  }
  return platform::output_dtype::bf16;
}

platform::output_layout to_platform(layout l) {
  return l == layout::hf ? platform::output_layout::hf : platform::output_layout::native;
}

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
    throw usage_error("rank " + std::to_string(s.rank) + " must be in [0, " + std::to_string(s.world_size) +
                      ") for world size " + std::to_string(s.world_size));
  return s;
}

std::string resolve_device(std::string_view device, const platform::defaults& env) {
  const std::string ordinal = "cuda:" + std::to_string(env.device());
  if (device == "cpu") return "cpu";
  if (device == "cuda") return ordinal;
  if (device == "auto") return cuda_available() ? ordinal : "cpu";
  if (device.substr(0, 5) == "cuda:" && device.size() > 5 &&
      device.find_first_not_of("0123456789", 5) == std::string_view::npos)
    return std::string(device);
  throw usage_error("bad device '" + std::string(device) + "' (expected auto, cpu, cuda or cuda:N)");
}

load_options to_load_options(const load_request& request, const platform::defaults& env) {
  load_options o;
  o.pipeline = pipeline_for(request.order, request.dtype, resolve_shard(request.sharding, env));
  o.pipeline.on_progress = request.on_progress;
  o.device = resolve_device(request.device, env);
  o.threads = request.threads;
  o.digest = request.digest;
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
    out.push_back({name, ref.entry->type, ref.entry->shape, ref.bytes(), state_->ckpt.shard_path(ref.shard)});
  return out;
}

std::vector<output_tensor> model::outputs(const load_request& request) const {
  const auto& env = platform::process_defaults();
  return plan_outputs(state_->map,
                      pipeline_for(request.order, request.dtype, resolve_shard(request.sharding, env)));
}

platform::placement_plan model::plan(const plan_request& request) const {
  const auto& env = platform::process_defaults();
  const shard s = resolve_shard(request.sharding, env);
  std::vector<platform::stored_tensor> stored;
  stored.reserve(state_->ckpt.tensors.size());
  for (const auto& [name, ref] : state_->ckpt.tensors)
    stored.push_back({name, std::string(to_string(ref.entry->type)), ref.entry->shape, ref.bytes()});
  platform::demand_options options;
  options.dtype = to_platform(request.dtype);
  options.layout = to_platform(request.order);
  options.rank = s.rank;
  options.world_size = s.world_size;
  std::string label = state_->ckpt.source.filename().string();
  if (label.empty()) label = state_->ckpt.source.string();
  const auto demand = platform::make_demand(std::move(stored), options, label);

  auto detect = platform::detect_options::from(env);
  if (request.profile) detect.profile = request.profile;
  const auto info = platform::detect_platform(detect);
  auto budgets = platform::budgets::from(env);
  if (request.device_memory_bytes) budgets.device_memory_bytes = request.device_memory_bytes;
  if (request.host_memory_bytes) budgets.host_memory_bytes = request.host_memory_bytes;
  return platform::make_plan(info, demand, budgets);
}

load_result model::load(const load_request& request) const {
  return load_checkpoint(state_->ckpt.source, to_load_options(request, platform::process_defaults()));
}

platform::platform_info detect_platform(const std::optional<std::string>& profile) {
  auto detect = platform::detect_options::from(platform::process_defaults());
  if (profile) detect.profile = profile;
  return platform::detect_platform(detect);
}

convert_report convert(const std::filesystem::path& source, const std::filesystem::path& destination,
                       const convert_request& request) {
  if (request.dtype == output_dtype::keep)
    throw usage_error("convert writes bf16 or f32 experts; dtype keep would copy the checkpoint as it is");
  convert_options o;
  o.pipeline = pipeline_for(request.order, request.dtype,
                            resolve_shard(request.sharding, platform::process_defaults()));
  o.pipeline.on_progress = request.on_progress;
  o.memory_budget = request.memory_budget;
  o.shard_bytes = request.shard_bytes;
  o.threads = request.threads;
  o.force = request.force;
  return convert_checkpoint(source, destination, o);
}

}  // namespace umload
