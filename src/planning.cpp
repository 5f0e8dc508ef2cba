#include "src/planning.hpp"

#include "kernels/error.hpp"
#include "platform/config.hpp"
#include "platform/demand.hpp"
#include "src/backend.hpp"

namespace umload {

std::vector<platform::stored_tensor> stored_tensors(const checkpoint& ckpt) {
  std::vector<platform::stored_tensor> out;
  out.reserve(ckpt.tensors.size());
  for (const auto& [name, ref] : ckpt.tensors)
    out.push_back(
        {name, std::string(umload::to_string(ref.entry->type)), ref.entry->shape, ref.bytes()});
  return out;
}

int default_cuda_ordinal(const platform::defaults& env) {
  // torchrun with one visible GPU per rank (CUDA_VISIBLE_DEVICES set per process): LOCAL_RANK
  // counts ranks on the node, but the only device this process sees is 0.
  if (!env.device_ordinal && env.local_rank && cuda_device_count() == 1) return 0;
  return env.device();
}

device_choice choose_device(const std::string& device) {
  if (device == "cpu") return {};
  if (device == "auto") return cuda_available() ? choose_device("cuda") : device_choice{};
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int ordinal = default_cuda_ordinal(platform::process_defaults());
    if (device.size() > 5) {
      try {
        std::size_t used = 0;
        ordinal = std::stoi(device.substr(5), &used);
        if (used != device.size() - 5 || ordinal < 0) throw std::invalid_argument(device);
      } catch (const std::exception&) {
        throw usage_error("bad device '" + device + "' (expected auto, cpu, cuda or cuda:N)");
      }
    }
    if (!cuda_available())
      throw cuda_error("device '" + device + "' asked for, but no usable CUDA GPU was found" +
                       std::string(cuda_device_count() == 0 ? "" : " with that ordinal"));
    if (ordinal >= cuda_device_count())
      throw usage_error("device '" + device + "': only " + std::to_string(cuda_device_count()) +
                        " CUDA device(s)");
    return {true, ordinal};
  }
  throw usage_error("bad device '" + device + "' (expected auto, cpu, cuda or cuda:N)");
}

platform::platform_info choose_platform(const platform_choice& choice) {
  const auto& env = platform::process_defaults();
  auto detect = platform::detect_options::from(env);
  detect.device = choice.device.value_or(default_cuda_ordinal(env));
  if (choice.topology) detect.topology = choice.topology;
  if (choice.profile) detect.profile = choice.profile;
  if (choice.memory_model && !choice.profile) detect.profile.reset();
  platform::platform_info info = platform::detect_platform(detect);
  if (choice.memory_model) {
    const auto model = platform::parse_memory_model(*choice.memory_model);
    if (!model)
      throw usage_error(
          "--platform '" + *choice.memory_model +
          "' is not a memory model (host, discrete, discrete-hmm, coherent, integrated)");
    info = platform::with_model(std::move(info), *model);
  }
  return info;
}

platform::model_demand demand_of(const checkpoint& ckpt, const pipeline_options& options) {
  platform::demand_options demand_options;
  demand_options.dtype = options.dtype == output_dtype::f32    ? platform::output_dtype::f32
                         : options.dtype == output_dtype::keep ? platform::output_dtype::keep
                                                               : platform::output_dtype::bf16;
  demand_options.layout =
      options.order == layout::hf ? platform::output_layout::hf : platform::output_layout::native;
  demand_options.rank = options.rank;
  demand_options.world_size = options.world_size;
  std::string label = ckpt.source.filename().string();
  if (label.empty()) label = ckpt.source.string();
  return platform::make_demand(stored_tensors(ckpt), demand_options, label);
}

platform::placement_plan plan_checkpoint(const checkpoint& ckpt, const pipeline_options& options,
                                         const platform::platform_info& info,
                                         const platform_choice& choice) {
  auto b = platform::budgets::from(platform::process_defaults());
  if (choice.device_memory_bytes) b.device_memory_bytes = choice.device_memory_bytes;
  if (choice.host_memory_bytes) b.host_memory_bytes = choice.host_memory_bytes;
  return platform::make_plan(info, demand_of(ckpt, options), b);
}

}  // namespace umload
