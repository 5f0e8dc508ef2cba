// The bridge from a checkpoint to the platform layer: which device a request names and which the
// machine has, which platform this is (live, a profile, or a forced memory model), and the plan
// of the model map's outputs there. `umload plan` prints this plan; `umload load` follows it.
//
//   platform_choice choice{.profile = "gh200"};
//   auto plan = umload::plan_checkpoint(map, pipeline_options, choose_platform(choice), choice);
#pragma once

#include <optional>
#include <string>
#include <string_view>
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

// A device as a caller names it ("auto", "cpu", "cuda", "cuda:N"), parsed once. Implicit from
// text so that `options.device = "cpu"` reads as the command line does; throws usage_error for
// anything else.
struct device_request {
  enum class kind : std::uint8_t { automatic, cpu, cuda };
  kind what = kind::automatic;
  std::optional<int> ordinal;  // cuda:N; unset: default_cuda_ordinal's GPU

  device_request() = default;
  device_request(std::string_view text);  // NOLINT: implicit on purpose
  device_request(const char* text) : device_request(std::string_view(text)) {}
  device_request(const std::string& text) : device_request(std::string_view(text)) {}
  std::string text() const;  // as the caller would write it
};

// Which processor decodes: the host, or CUDA device `ordinal`. `automatic`: asked as "auto", so a
// host-only plan moves the work onto the CPU instead of refusing it.
struct device_choice {
  bool cuda = false;
  int ordinal = 0;
  bool automatic = false;
};

// The CUDA ordinal "cuda" and "auto" mean: UMLOAD_DEVICE, else LOCAL_RANK (torchrun), else 0;
// LOCAL_RANK gives 0 where the process sees a single GPU (one visible device per rank).
int default_cuda_ordinal(const platform::defaults& env);

// "cpu", "auto" (the GPU when one is usable, else the host), "cuda" or "cuda:N" on the machine
// `query` describes (the CUDA runtime, or a test's fixed device). "auto" and "cuda" mean
// default_cuda_ordinal's GPU: the same device the platform layer examines for the plan. Throws
// usage_error for an ordinal past the device count, cuda_error when a GPU is asked for and none
// is usable.
device_choice choose_device(const device_request& device, const platform::defaults& env,
                            const platform::device_query& query);
// The same on this machine (the live CUDA query and the process environment).
device_choice choose_device(const device_request& device);

// The device a load runs on once its plan is known. A plan for a host-only machine (a forced
// --platform host) puts every tensor in host memory, which the GPU does not decode into: "auto"
// follows the plan onto the CPU, an explicit GPU is a usage error naming `platform_source`.
device_choice settle_device(const device_choice& device, const platform::placement_plan& plan,
                            const std::string& platform_source);

// The platform for a choice: a profile, the live machine (environment defaults apply), and a
// forced memory model on top when asked. Throws usage_error for unknown names.
platform::platform_info choose_platform(const platform_choice& choice);

// This machine as it is, for what acts on its own CPUs (convert's threads): `choice.topology` or
// UMLOAD_TOPOLOGY for its topology, `choice.device` for the GPU, never a profile.
platform::platform_info choose_live_platform(const platform_choice& choice);

// What this model map asks of memory under these options (dtype, layout, rank).
platform::model_demand demand_of(const model_map& map, const pipeline_options& options);

// The plan of this checkpoint's map under these options on that platform. Pure given its
// inputs. Its placements name their outputs by index in plan_outputs(map, options).
platform::placement_plan plan_checkpoint(const model_map& map, const pipeline_options& options,
                                         const platform::platform_info& platform,
                                         const platform_choice& choice);

}  // namespace umload
