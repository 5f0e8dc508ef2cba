// The bridge from a checkpoint to the platform layer's placement policy: what the model
// demands (from headers only), which platform this is (live, a profile, or a forced memory
// model), and the plan. `umload plan` prints this plan; `umload load` follows it.
//
//   auto plan = umload::plan_checkpoint(ckpt, pipeline_options, {.profile = "gh200"});
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "platform/config.hpp"
#include "platform/plan.hpp"
#include "platform/platform.hpp"
#include "src/checkpoint.hpp"
#include "src/pipeline.hpp"

namespace umload {

struct platform_choice {
  std::optional<std::string> profile;       // a built-in profile name (no live query)
  std::optional<std::string> memory_model;  // force host|discrete|discrete-hmm|coherent|integrated
  std::optional<std::string> topology;      // hwloc XML or "synthetic:..."
  std::optional<std::uint64_t> device_memory_bytes;
  std::optional<std::uint64_t> host_memory_bytes;
  std::optional<int> device;  // the CUDA ordinal to examine (default_cuda_ordinal)
};

// Which processor decodes: the host, or CUDA device `ordinal`.
struct device_choice {
  bool cuda = false;
  int ordinal = 0;
};

// The CUDA ordinal "cuda" and "auto" mean: UMLOAD_DEVICE, else LOCAL_RANK (torchrun), else 0;
// LOCAL_RANK gives 0 where the process sees a single GPU (one visible device per rank).
int default_cuda_ordinal(const platform::defaults& env);

// "cpu", "auto" (the GPU when one is usable, else the host), "cuda" or "cuda:N". "auto" and
// "cuda" mean default_cuda_ordinal's GPU: the same device the platform layer examines for the
// plan. Throws usage_error for a malformed name or an
// ordinal past the device count, cuda_error when a GPU is asked for and none is usable.
device_choice choose_device(const std::string& device);

// The checkpoint's tensors as the policy sees them: names, dtypes, shapes and byte counts.
std::vector<platform::stored_tensor> stored_tensors(const checkpoint& ckpt);

// The platform for a choice: a profile, the live machine (environment defaults apply), and a
// forced memory model on top when asked. Throws usage_error for unknown names.
platform::platform_info choose_platform(const platform_choice& choice);

// What this checkpoint asks of memory under these options (dtype, layout, rank).
platform::model_demand demand_of(const checkpoint& ckpt, const pipeline_options& options);

// The plan of this checkpoint under these options on that platform. Pure given its inputs.
platform::placement_plan plan_checkpoint(const checkpoint& ckpt, const pipeline_options& options,
                                         const platform::platform_info& platform,
                                         const platform_choice& choice);

}  // namespace umload
