// The placement policy: a pure function of (platform, model demand, budgets). A plan is two
// things: the loader's orders (`load_orders`: where every tensor goes, how bytes are read, how
// staging is shaped, where reader threads run, what to prefetch), which src/ carries out in full
// and reports on tensor by tensor, and what the plan only reports (why, capacities, predicted
// peaks, notes). `umload plan` prints both; `umload load --json` sets what was done beside it.
//
//   auto plan = make_plan(detect_platform(opts), gpt_oss_demand(preset, {}), budgets::from(env));
//   require_fits(plan);   // throws budget_error with the plan's message when it does not fit
//   for (const auto& p : plan.orders.placements) ... p.output, p.tensor, p.where, p.numa_node
//
// This header brings in the whole public surface of platform/: detection (platform.hpp), devices
// and memory models (device.hpp), demand (demand.hpp), profiles, units and configuration.
//
// Rules (docs/platforms.md gives their sources):
//   discrete / discrete-hmm: every tensor in device memory; pinned staging on the GPU-local NUMA
//     node, copied through a device scratch slot per staging slot; direct I/O.
//   coherent: fill device memory in order of use (embeddings, attention and norms, routers, then
//     experts layer by layer); spill the rest to host memory on the GPU-local CPU node with
//     preferred location host and accessed-by device; prefetch hints for the spilled part.
//   integrated: one resident copy (device = host memory), a small staging ring, direct I/O so no
//     page cache competes with the weights; the pool is MemAvailable-bounded.
//   host: host memory; buffered reads with the consumed ranges dropped from the page cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/config.hpp"
#include "platform/demand.hpp"
#include "platform/device.hpp"
#include "platform/platform.hpp"
#include "platform/profiles.hpp"
#include "platform/units.hpp"

namespace umload::platform {

// One tensor's orders.
struct placement {
  std::string tensor;
  std::size_t output = 0;  // the index of the tensor in derive_outputs' list (outputs.hpp)
  memory_kind where = memory_kind::device;
  int numa_node = -1;                    // host_managed: bind there before first touch
  bool preferred_location_host = false;  // cudaMemAdviseSetPreferredLocation(host-numa:node | host)
  bool accessed_by_device = false;       // cudaMemAdviseSetAccessedBy(device)
  std::uint64_t bytes = 0;
  int layer = -1;
  tensor_kind kind = tensor_kind::dense;
};

struct staging_order {
  std::size_t slot_bytes = 0;
  int slots = 0;
  bool pinned = false;     // cudaHostAlloc / cudaHostRegister (a GPU decodes from the slots)
  bool zero_copy = false;  // kernels read the slot in place; otherwise each slot is copied to a
                           // device scratch slot first (discrete)
  int numa_node = -1;      // bind slots there before first touch; -1 leaves it to the OS
};

// What the loader must do. Every field is carried out (src/loader.cpp, src/pipeline.cpp, the
// backends), and the load report says for each what was done or, on a host standing in for a
// device, simulated.
struct load_orders {
  std::vector<placement>
      placements;                // in order of use; host ones are faulted in ahead of their decode
  io_mode io = io_mode::direct;  // direct or buffered, never automatic
  bool drop_page_cache = true;   // drop every page the load's buffered reads cached
  staging_order staging;
  std::string reader_cpuset;  // hwloc list; reader threads are bound to it. Empty: no binding
  std::string decode_cpuset;  // hwloc list; CPU decode threads are bound to it. Empty: no binding
  // Spilled tensors in order of use, as indices into `placements`: weight_set::prefetch moves
  // them toward the GPU ahead of their layer (coherent).
  std::vector<std::size_t> prefetch;
};

// Overrides of what the platform reports, and the margins a plan keeps.
struct budgets {
  std::optional<std::uint64_t> device_memory_bytes;  // replaces the platform's device figure
  std::optional<std::uint64_t> host_memory_bytes;    // replaces the platform's host figure
  std::uint64_t device_reserve_bytes = std::uint64_t{1} << 30;  // CUDA context, allocator slack
  std::uint64_t host_reserve_bytes = 0;
  std::optional<std::size_t> staging_slot_bytes;
  std::optional<int> staging_slots;
  io_mode io = io_mode::automatic;

  // UMLOAD_DEVICE_MEMORY, UMLOAD_HOST_MEMORY, UMLOAD_STAGING_*, UMLOAD_IO.
  static budgets from(const defaults& env);
};

// An alternative that was priced because the request does not fit.
struct suggestion {
  std::string change;  // "--dtype keep", "--world-size 4", "--dtype keep --world-size 2"
  output_dtype dtype = output_dtype::bf16;
  int world_size = 1;
  std::uint64_t peak_device_bytes = 0;
  std::uint64_t peak_host_bytes = 0;
  bool fits = false;
};

struct placement_plan {
  std::string model_label;
  std::string platform;  // platform_info::source
  memory_model model = memory_model::host;
  demand_options options;
  bool fits = true;
  std::string message;  // when !fits: needed, available, what would fit

  load_orders orders;  // what the loader does

  // What the plan only reports.
  std::string reason;  // why this strategy
  std::string io_reason;
  std::string reader_cpuset_reason;  // why those CPUs (locality, CPU kinds): choose_worker_cpus
  std::string decode_cpuset_reason;  // which threads decode on the CPU, and on which CPUs, why
  bool device_scratch = false;       // !orders.staging.zero_copy on a GPU
  std::uint64_t stored_bytes = 0;    // read from disk by this rank
  std::uint64_t output_bytes = 0;    // held by this rank once loaded
  std::uint64_t device_resident_bytes = 0;
  std::uint64_t host_resident_bytes = 0;  // tensors placed in host memory (spilled on coherent)
  std::uint64_t staging_bytes = 0;        // host staging ring
  std::uint64_t device_scratch_bytes = 0;
  std::uint64_t peak_device_bytes = 0;  // device_resident + device_scratch
  std::uint64_t peak_host_bytes = 0;    // host_resident + staging
  std::uint64_t device_capacity_bytes = 0;
  std::uint64_t host_capacity_bytes = 0;
  std::string device_capacity_source;
  std::string host_capacity_source;
  std::uint64_t device_reserve_bytes = 0;
  bool single_pool = false;
  double spill_fraction = 0;  // host_resident / output on coherent machines

  std::vector<suggestion> would_fit;  // alternatives that fit (or the closest, when none does)
  std::vector<std::string> notes;
};

// Pure. Never throws for "does not fit": returns fits=false with the message. Throws
// usage_error only for an impossible request (a GPU model with no device memory figure).
placement_plan make_plan(const platform_info& platform, const model_demand& demand,
                         const budgets& b);

// Staging for a run held to `budget_bytes` of host memory, as convert runs: two slots (one
// decoded from while the next is read) and two output chunks (one decoded into while the other
// is written), a chunk holding the decoded bytes of the largest item. Slots are as large as the
// budget allows, a multiple of 4 KiB, at most 32 MiB: larger ones only lengthen the start (the
// first slot read and decoded before any write) and the end (the last chunk written after the
// decode), and more chunks do not write faster (the writer is the bottleneck), so a budget beyond
// about 300 MiB is not spent. fits=false, with the message, when a slot that holds one expert
// does not fit the budget. Pure.
struct bounded_staging {
  staging_order staging;
  int chunks = 2;                 // output chunks in flight between the decode and the writer
  std::uint64_t chunk_bytes = 0;  // each chunk: the largest item's decoded bytes
  bool fits = true;
  std::string message;
};
bounded_staging plan_bounded_staging(const model_demand& demand, std::uint64_t budget_bytes);

// Throws umload::budget_error(plan.message) when !plan.fits.
void require_fits(const placement_plan& plan);

// Keys: fits, memory_model, io_mode, peak_device_bytes, peak_host_bytes, placements
// ([{tensor, location, bytes, numa_node?, preferred_location?, accessed_by?}]), and the rest.
nlohmann::json to_json(const placement_plan& plan);

// Human-readable summary; with `every_tensor`, one line per placement.
std::string describe(const placement_plan& plan, bool every_tensor = false);

}  // namespace umload::platform
