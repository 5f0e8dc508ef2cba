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
  const int world = request.world_size.value_or(env.world_size.value_or(1));
  // An explicit world size with no rank is a single-process request: rank 0, not $RANK.
  const int rank = request.rank.value_or(request.world_size ? 0 : env.rank.value_or(0));
  return platform::checked_shard(rank, world);
}

load_options to_load_options(const load_request& request, const platform::defaults& env) {
  load_options o;
  o.pipeline = pipeline_for(request.order, request.dtype, resolve_shard(request.sharding, env));
  o.pipeline.on_progress = request.on_progress;
  o.pipeline.allow_nan_scales = request.allow_nan_scales;
  o.pipeline.keep_page_cache = request.keep_page_cache;
  if (request.io) o.pipeline.io = *request.io;
  if (request.slot_bytes) o.pipeline.slot_bytes = *request.slot_bytes;
  if (request.slots) o.pipeline.slots = *request.slots;
  o.staging_from_plan = !request.slot_bytes && !request.slots;
  o.device = request.device;
  o.threads = request.threads;
  o.isa = request.isa;
  o.digest = request.digest;
  o.check = request.check;
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
  return plan_checkpoint(state_->map, options, choose_platform(request.platform), request.platform);
}

load_result model::load(const load_request& request) const {
  return load_checkpoint(state_->ckpt, state_->map,
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
