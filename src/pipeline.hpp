// The streaming pipeline that load and convert share. It turns a checkpoint into output tensors
// item by item: reader threads (bound to the plan's reader cpuset when it names one) fill a
// bounded ring of staging slots with the quantized bytes of a run of experts, or a range of a
// dense tensor, and the backend decodes or copies each slot into the item's destination; then the
// slot is refilled. A dense range whose destination is host memory that stays put is read
// straight into it instead. Quantized bytes live only in their slot: never a whole layer, never
// the model. When the plan orders it, the input ranges are dropped from the page cache as they
// are consumed, and the shards' remaining pages at the end.
//
//   auto outputs = umload::plan_outputs(map, options);
//   umload::run_pipeline(ckpt, outputs, options, backend, sink);
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/decode_job.hpp"
#include "src/backend.hpp"
#include "src/checkpoint.hpp"
#include "src/model_map.hpp"
#include "src/outputs.hpp"

namespace umload {

struct progress_event {
  std::uint64_t bytes_done = 0;  // output bytes produced so far
  std::uint64_t bytes_total = 0;
  std::size_t tensors_done = 0;
  std::size_t tensors_total = 0;
  double seconds = 0;
};

struct pipeline_options {
  layout order = layout::hf;
  output_dtype dtype = output_dtype::bf16;
  bool allow_nan_scales = false;
  io_mode io = io_mode::automatic;
  bool drop_page_cache = true;   // the plan's page-cache order: drop what the run's reads cached
  bool keep_page_cache = false;  // benchmarks only: overrides drop_page_cache, leaves pages cached
  std::string reader_cpuset;     // the plan's reader cpuset (hwloc list); empty: threads unbound
  std::size_t slot_bytes = 64ull << 20;
  int slots = 4;
  int readers = 2;
  int rank = 0;  // expert-parallel slice: this rank's contiguous experts
  int world_size = 1;
  std::function<void(const progress_event&)> on_progress;
};

// What the outputs of a run with these options are made of (src/outputs.hpp).
inline platform::output_options output_options_of(const pipeline_options& o) {
  return {o.dtype, o.order, o.rank, o.world_size};
}
inline std::vector<output_tensor> plan_outputs(const model_map& map, const pipeline_options& o) {
  return plan_outputs(map, output_options_of(o));
}

// Where each item's output goes. `destination` is asked before the backend runs; `commit` after.
class output_sink {
 public:
  virtual ~output_sink() = default;
  virtual std::byte* destination(std::size_t tensor, std::uint64_t offset, std::uint64_t bytes) = 0;
  virtual void commit(std::size_t tensor, std::uint64_t offset, std::uint64_t bytes) = 0;
  // Where a copied (not decoded) range may be read straight into by a reader thread, skipping
  // the staging slot and the copy out of it: host memory that stays put for the whole run.
  // nullptr (the default) when there is no such place (device memory, a reused chunk buffer).
  virtual std::byte* stable_destination(std::size_t tensor, std::uint64_t offset) const {
    (void)tensor;
    (void)offset;
    return nullptr;
  }
};

struct pipeline_stats {
  double seconds = 0;
  double read_seconds = 0;  // summed over reader threads
  double copy_seconds = 0;
  double decode_seconds = 0;
  std::uint64_t bytes_read = 0;  // from files, including alignment padding
  std::uint64_t bytes_produced = 0;
  std::uint64_t quantized_bytes = 0;  // MXFP4 bytes decoded
  std::size_t items = 0;
  std::size_t slot_bytes = 0;
  int slots = 0;
  bool direct_io = false;
  bool dropped_page_cache = false;
  std::uint64_t peak_device_bytes = 0;
  std::string reader_binding;  // what binding the reader threads got ("bound: cpuset 0-3", ...)
  std::string staging;         // how the backend placed the staging slots
};

// Bytes of staging memory a run will allocate for these options (slots x slot size + alignment).
std::uint64_t staging_bytes(const pipeline_options& options);

// Smallest slot that fits the largest single item (one expert of the largest pair).
std::uint64_t min_slot_bytes(const std::vector<output_tensor>& outputs);

pipeline_stats run_pipeline(const checkpoint& ckpt, const std::vector<output_tensor>& outputs,
                            const pipeline_options& options, backend& engine, output_sink& sink);

// Bytes of the checkpoint's shard files that sit in the page cache now (mincore).
std::uint64_t resident_page_cache_bytes(const checkpoint& ckpt);

// Peak resident set of this process so far (getrusage), in bytes.
std::uint64_t peak_rss_bytes();

}  // namespace umload
