// umload's public C++ API: the one header a program includes to open a GPT-OSS MXFP4 checkpoint,
// look inside it, ask where its tensors would go on this machine, load it into memory a framework
// can use, and hand each tensor over through DLPack without a copy.
//
//   auto ckpt = umload::model::open("gpt-oss-20b");         // headers only, every rule checked
//   umload::load_request request;                            // device "auto", BF16, hf layout
//   auto [weights, report] = ckpt.load(request);             // owns every tensor's memory
//   for (const auto& t : weights->tensors()) {
//     umload::tensor_view v = umload::view(t);         // pointer, dtype, shape, strides, device
//     DLManagedTensor* dl = umload::to_dlpack(weights, t);   // holds `weights` alive
//     ...                                                    // give `dl` to a framework
//   }
//
// A request is resolved once (to_load_options): rank, world size and the GPU default to
// torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) through platform::process_defaults(); an
// explicit value in a request wins. The command line and the Python module build a request too.
// Each rank of an expert-parallel load holds its contiguous range of experts of every tensor under
// `.mlp.experts.`, and every other tensor whole. Every failure is one of the exceptions of
// kernels/error.hpp (format_error, io_error, cuda_error, budget_error, usage_error, ...); the
// library never prints and never aborts. docs/api.md has a complete example program.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/error.hpp"
#include "platform/config.hpp"
#include "platform/plan.hpp"
#include "platform/platform.hpp"
#include "src/checkpoint.hpp"
#include "src/convert.hpp"
#include "src/loader.hpp"
#include "src/model_map.hpp"
#include "src/pipeline.hpp"
#include "src/planning.hpp"

namespace umload {

// Which experts a process holds. Unset fields come from the environment (RANK, WORLD_SIZE);
// a world size given without a rank means rank 0, as on the command line.
struct shard_request {
  std::optional<int> rank;
  std::optional<int> world_size;
};

using platform::shard;

// Applies the defaults, then platform::checked_shard (throws usage_error, one wording).
shard resolve_shard(const shard_request& request, const platform::defaults& env);

// A load as the caller states it. The CLI's flags and the Python module's keywords fill one of
// these; to_load_options resolves it, once, into plain checked values.
struct load_request {
  device_request device;                    // auto | cpu | cuda | cuda:N (usage_error otherwise)
  layout order = layout::hf;                // hf: experts [E, in, out]; native: [E, out, in]
  output_dtype dtype = output_dtype::bf16;  // bf16 | f32 | keep (MXFP4 pairs as stored)
  shard_request sharding;
  int threads = 0;      // CPU decode threads (0: all)
  bool digest = false;  // per-tensor SHA-256 in loaded_tensor::digest and the report
  // The machine the load plans for: live (default; UMLOAD_PROFILE applies), a built-in profile,
  // or a forced memory model. The plan picks I/O mode, staging and where each tensor goes; a
  // plan that does not fit throws budget_error before anything is read.
  platform_choice platform;
  // Called on the loading thread after every staged item, with output bytes and tensors done.
  // An exception it throws stops the load and propagates.
  std::function<void(const progress_event&)> on_progress;
  // Overrides of what the plan decides, and of the decode's defaults (unset: the plan's, the
  // best CPU path).
  std::optional<io_mode> io;
  std::optional<std::size_t> slot_bytes;
  std::optional<int> slots;
  std::optional<cpu::isa> isa;
  bool check = false;             // non-finite count and checksum of every decoded tensor
  bool allow_nan_scales = false;  // decode scale byte 255 to NaN instead of refusing it
  bool keep_page_cache = false;   // benchmarks: leave consumed input pages cached
};

// The front door: the load_options a request becomes under `env` (tests pass their own
// environment). Rank and world size are checked here; the device text was parsed when it was
// set, and is matched against the machine when the load starts (choose_device).
load_options to_load_options(const load_request& request, const platform::defaults& env);

struct plan_request {
  output_dtype dtype = output_dtype::bf16;
  layout order = layout::hf;
  shard_request sharding;
  // profile: a name from platform::profile_names() (default UMLOAD_PROFILE, else this machine);
  // device/host memory bytes override what the platform reports.
  platform_choice platform;
};

struct convert_request {
  layout order = layout::hf;
  output_dtype dtype = output_dtype::bf16;  // bf16 | f32
  shard_request sharding;
  std::uint64_t memory_budget = 0;  // 0: min(1 GiB, MemAvailable / 4)
  std::uint64_t shard_bytes = 4ull << 30;
  std::string device = "auto";  // auto | cpu | cuda | cuda:N: where the decode runs
  int threads = 0;              // CPU decode threads (0: all)
  bool force = false;           // replace a destination holding another model
  std::function<void(const progress_event&)> on_progress;
};

// One tensor as the checkpoint stores it.
struct stored_tensor_info {
  std::string name;
  dtype type = dtype::U8;
  std::vector<std::uint64_t> shape;
  std::uint64_t bytes = 0;
  std::filesystem::path file;
};

// An opened checkpoint: headers, index and config.json read and checked, no weight data read.
// Cheap to copy (the parsed state is shared and immutable).
class model {
 public:
  // Throws format_error or io_error naming the file, tensor and rule.
  static model open(const std::filesystem::path& source);

  const checkpoint& files() const;
  const model_map& map() const;
  const std::optional<model_config>& config() const;
  std::vector<stored_tensor_info> stored_tensors() const;  // by name

  // The tensors a load with these settings produces (name, dtype, shape, bytes), in load order.
  std::vector<output_tensor> outputs(const load_request& request) const;

  // Where every tensor would go on this machine (or a profile), reading nothing but headers.
  // Never throws for "does not fit": the plan says fits=false and why.
  platform::placement_plan plan(const plan_request& request) const;

  // Loads every tensor (this rank's slice of the experts) into memory owned by the result.
  load_result load(const load_request& request) const;

  struct state;

 private:
  explicit model(std::shared_ptr<const state> s) : state_(std::move(s)) {}
  std::shared_ptr<const state> state_;
};

// This machine as the platform layer sees it (UMLOAD_PROFILE applies), or a choice's profile or
// forced memory model.
platform::platform_info detect_platform(const platform_choice& choice = {});

// Streams `source` into a dense checkpoint at `destination` (see src/convert.hpp).
convert_report convert(const std::filesystem::path& source,
                       const std::filesystem::path& destination, const convert_request& request);

// A loaded tensor as a framework needs it. `strides` are in elements, row-major (the tensors
// are contiguous); `data` is a host pointer when where == host, a CUDA device pointer when
// where == device, and a pointer both may use when where == host_managed.
struct tensor_view {
  std::string_view name;
  dtype type = dtype::BF16;
  std::span<const std::uint64_t> shape;
  std::vector<std::int64_t> strides;
  void* data = nullptr;
  std::uint64_t bytes = 0;
  memory_kind where = memory_kind::host;
  int device = -1;  // CUDA ordinal, -1 for host memory
};

// Valid while the weight_set holding `tensor` is.
tensor_view view(const loaded_tensor& tensor);

// Row-major strides, in elements, of a contiguous tensor of this shape.
std::vector<std::int64_t> contiguous_strides(std::span<const std::uint64_t> shape);

// DLPack 0.6 type of a stored or loaded dtype: BF16 -> {kDLBfloat, 16}, F16/F32/F64 -> kDLFloat,
// U8..U64 -> kDLUInt, I8..I64 -> kDLInt. Throws usage_error for types DLPack 0.6 has no code for
// (BOOL, the FP8, FP6 and FP4 types).
DLDataType dlpack_dtype(dtype type);

// How host_managed memory is described. DLPack's kDLCUDAManaged is the exact code, but some
// consumers (PyTorch 1.13) accept only kDLCPU and kDLCUDA; such memory is valid on the device.
enum class managed_export : std::uint8_t { cuda_managed, cuda };

// kDLCPU for host memory, kDLCUDA with the ordinal for device memory, host_managed as `managed`.
DLDevice dlpack_device(const loaded_tensor& tensor,
                       managed_export managed = managed_export::cuda_managed);

// A DLManagedTensor for one tensor of `weights`. It holds a reference to `weights`, so the
// memory stays valid until its deleter is called, even after every other reference is gone;
// the consumer calls `deleter` exactly once. Throws usage_error when `tensor` is not one of
// `weights`' tensors, or its dtype has no DLPack code.
DLManagedTensor* to_dlpack(std::shared_ptr<const weight_set> weights, const loaded_tensor& tensor,
                           managed_export managed = managed_export::cuda_managed);
// By name; throws usage_error naming the tensor when it is not in `weights`.
DLManagedTensor* to_dlpack(std::shared_ptr<const weight_set> weights, std::string_view name,
                           managed_export managed = managed_export::cuda_managed);

}  // namespace umload
