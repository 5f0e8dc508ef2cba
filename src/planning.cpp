#include "src/planning.hpp"

#include "kernels/error.hpp"
#include "platform/config.hpp"
#include "platform/demand.hpp"
#include "src/backend.hpp"

namespace umload {

int default_cuda_ordinal(const platform::defaults& env) {
  // torchrun with one visible GPU per rank (CUDA_VISIBLE_DEVICES set per process): LOCAL_RANK
  // counts ranks on the node, but the only device this process sees is 0.
  if (!env.device_ordinal && env.local_rank && cuda_device_count() == 1) return 0;
  return env.device();
}

device_request::device_request(std::string_view text) {
  if (text == "auto") return;
  if (text == "cpu") {
    what = kind::cpu;
    return;
  }
  const auto digits = text.substr(std::min<std::size_t>(5, text.size()));
  const bool numbered = text.substr(0, 5) == "cuda:" && !digits.empty() && digits.size() <= 6 &&
                        digits.find_first_not_of("0123456789") == std::string_view::npos;
  if (text != "cuda" && !numbered)
    throw usage_error("bad device '" + std::string(text) +
                      "' (expected auto, cpu, cuda or cuda:N)");
  what = kind::cuda;
  if (numbered) ordinal = std::stoi(std::string(digits));
}

std::string device_request::text() const {
  if (what == kind::automatic) return "auto";
  if (what == kind::cpu) return "cpu";
  return ordinal ? "cuda:" + std::to_string(*ordinal) : "cuda";
}

device_choice choose_device(const device_request& device, const platform::defaults& env,
                            const platform::device_query& query) {
  if (device.what == device_request::kind::cpu) return {};
  const int ordinal = device.ordinal.value_or(default_cuda_ordinal(env));
  const platform::device_info gpu = query.query(ordinal);
  if (device.what == device_request::kind::automatic)
    return gpu.present ? device_choice{true, ordinal, true} : device_choice{false, 0, true};
  if (gpu.device_count == 0)
    throw cuda_error("device '" + device.text() + "' (cuda:" + std::to_string(ordinal) +
                     ") asked for, but no usable CUDA GPU was found" +
                     (gpu.absence_reason.empty() ? "" : " (" + gpu.absence_reason + ")"));
  if (!gpu.present || ordinal >= gpu.device_count)
    throw usage_error("device '" + device.text() + "': only " + std::to_string(gpu.device_count) +
                      " CUDA device(s)");
  return {true, ordinal, false};
}

device_choice choose_device(const device_request& device) {
  return choose_device(device, platform::process_defaults(), *platform::make_cuda_device_query());
}

device_choice settle_device(const device_choice& device, const platform::placement_plan& plan,
                            const std::string& platform_source) {
  if (!device.cuda || plan.model != platform::memory_model::host) return device;
  if (!device.automatic)
    throw usage_error("device 'cuda:" + std::to_string(device.ordinal) +
                      "' with a host-only plan (" + platform_source +
                      ": every tensor in host memory); load with --device cpu or plan for a GPU "
                      "platform");
  return {false, 0, true};
}

platform::platform_info choose_live_platform(const platform_choice& choice) {
  const auto& env = platform::process_defaults();
  auto detect = platform::detect_options::from(env);
  detect.profile.reset();
  detect.device = choice.device.value_or(default_cuda_ordinal(env));
  if (choice.topology) detect.topology = choice.topology;
  return platform::detect_platform(detect);
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

platform::model_demand demand_of(const model_map& map, const pipeline_options& options) {
  return platform::make_demand(stored_tensors(map), output_options_of(options), map.label);
}

platform::placement_plan plan_checkpoint(const model_map& map, const pipeline_options& options,
                                         const platform::platform_info& info,
                                         const platform_choice& choice) {
  auto b = platform::budgets::from(platform::process_defaults());
  if (choice.device_memory_bytes) b.device_memory_bytes = choice.device_memory_bytes;
  if (choice.host_memory_bytes) b.host_memory_bytes = choice.host_memory_bytes;
  return platform::make_plan(info, demand_of(map, options), b);
}

}  // namespace umload
