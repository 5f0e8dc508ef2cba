// Loading a checkpoint into memory, as a framework receives it: every tensor decoded (or kept as
// MXFP4) into one allocation each, owned by a weight_set that frees them when destroyed.
//
//   umload::load_options options;             // device "auto": CUDA when usable, else CPU
//   auto [weights, report] = umload::load_checkpoint("gpt-oss-20b", options);
//   const auto* t = weights->find("model.layers.0.mlp.experts.gate_up_proj");
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "src/backend.hpp"
#include "src/orders.hpp"
#include "src/pipeline.hpp"
#include "src/planning.hpp"

namespace umload {

// The plain, checked values a load runs with: what a load_request (src/umload.hpp), the CLI's
// flags or the Python module's keywords become in to_load_options.
struct load_options {
  pipeline_options pipeline;
  device_request device;        // auto | cpu | cuda | cuda:N
  int threads = 0;              // CPU decode threads (0: all)
  std::optional<cpu::isa> isa;  // CPU decode path (default: best this CPU has)
  bool digest = false;          // compute per-tensor SHA-256 digests
  bool check = false;  // count non-finite values and checksum each decoded tensor where it lives
  platform_choice platform;  // live machine, a profile, or a forced memory model
  // Staging slot size and count come from the plan unless the caller set them.
  bool staging_from_plan = true;
  bool io_from_plan = true;  // pipeline.io automatic: the plan's I/O mode
  // The GPU as the load sees it: nullptr for the CUDA runtime; tests give a fixed device.
  const platform::device_query* query = nullptr;
};

struct loaded_tensor {
  std::string name;
  dtype type = dtype::BF16;
  std::vector<std::uint64_t> shape;
  std::byte* data = nullptr;
  std::uint64_t bytes = 0;
  memory_kind where = memory_kind::host;
  int device = -1;     // CUDA ordinal (device and host_managed memory), -1 for host memory
  std::string digest;  // "sha256:<hex>" when asked for
  // With load_options::check, for decoded tensors: non-finite values and a checksum of the bits,
  // computed where the tensor lives (CUB on the GPU), the same on every backend.
  std::optional<std::uint64_t> non_finite;
  std::optional<std::uint64_t> checksum;
};

struct load_result;

class weight_set {
 public:
  weight_set(std::shared_ptr<backend> owner, std::vector<loaded_tensor> tensors);
  ~weight_set();
  weight_set(const weight_set&) = delete;
  weight_set& operator=(const weight_set&) = delete;

  const std::vector<loaded_tensor>& tensors() const { return tensors_; }
  const loaded_tensor* find(std::string_view name) const;
  std::uint64_t bytes() const;
  backend& owner() const { return *owner_; }

  // Moves the spilled (host_managed) tensors of `layers` toward the GPU ahead of their use, in
  // the plan's prefetch order, on `stream` (a cudaStream_t of the weights' device; nullptr: one of
  // the backend's own). Returns one line per tensor: "NAME: prefetch cuda:0", or "simulated" on a
  // host standing in for the device. Nothing is spilled outside coherent plans.
  std::vector<std::string> prefetch(const std::vector<int>& layers, void* stream = nullptr) const;

 private:
  friend load_result load_checkpoint(const checkpoint&, const model_map&, const load_options&);
  std::shared_ptr<backend> owner_;
  std::vector<loaded_tensor> tensors_;
  struct spilled {
    std::size_t tensor = 0;
    int layer = -1;
  };
  std::vector<spilled> prefetch_order_;  // the plan's prefetch schedule
};

// Where a load's time goes, measured from the backend's creation with its CUDA context to the
// outputs being ready, allocations included: the figure to set beside another loader's
// from_pretrained. `total_seconds` covers the parts and what falls between them (the fault-ahead
// thread started and joined); the plan made before the backend is not in it. On a live GPU
// the CUDA context is made while the device is examined for the plan (its free memory is read
// in it, platform::cuda_context_seconds) and kept for the backend: those seconds count in
// `backend_seconds` and `total_seconds`.
struct load_timing {
  double total_seconds = 0;
  double backend_seconds = 0;   // the backend and its CUDA context (about 0 on the CPU)
  double allocate_seconds = 0;  // every output placed (cudaMalloc, host mappings, advice)
  double pipeline_seconds = 0;  // the pipeline's own `seconds`: read, copy, decode
  double finish_seconds = 0;    // the last synchronize (every stream), and the --check summaries
};

struct load_report {
  std::string device;  // "cpu" or "cuda:N"
  std::string backend;
  std::string strategy;      // how bytes moved (e.g. "host-decode", "discrete-copy-decode")
  std::string memory_model;  // from the platform layer
  std::string platform;      // "live" or "profile NAME"
  std::string plan_reason;   // why the plan chose its strategy
  std::uint64_t predicted_peak_device_bytes = 0;
  std::uint64_t predicted_peak_host_bytes = 0;
  bool host_stands_in = false;  // a GPU plan run on the CPU (no GPU here)
  pipeline_stats pipeline;
  load_timing timing;
  std::uint64_t output_bytes = 0;
  std::uint64_t peak_rss_bytes = 0;
  std::uint64_t page_cache_bytes_after = 0;
  std::size_t tensor_count = 0;
  std::string digest;            // "sha256:<hex>" over "<name> <hex>\n" lines sorted by name
  std::uint64_t non_finite = 0;  // with check: non-finite values over every decoded tensor
  load_actions actions;          // the plan's orders as carried out, tensor by tensor
};

struct load_result {
  std::shared_ptr<weight_set> weights;
  load_report report;
};

// Loads an opened checkpoint (its map built) with resolved options.
load_result load_checkpoint(const checkpoint& ckpt, const model_map& map,
                            const load_options& options);
// Opens `source`, builds its map, and loads it.
load_result load_checkpoint(const std::filesystem::path& source, const load_options& options);

// The report as JSON (the keys `umload load --json` prints). With `weights`, per-tensor digests
// ("tensors") and checks ("checks") are included when they were computed.
nlohmann::json to_json(const load_report& report, const weight_set* weights = nullptr);

// SHA-256 of a byte range, as lowercase hex.
std::string sha256_hex(const void* data, std::size_t bytes);

}  // namespace umload
