// Converting an MXFP4 checkpoint into a dense one (BF16 or F32 experts) that HF transformers loads
// as a GptOss model. It streams through the shared pipeline with memory bounded by a budget,
// whatever the model's size: two staging slots and two output chunks, sized by the planning code
// that load's plan uses (platform::plan_bounded_staging), are all that is resident. Reader and
// decode threads run on the CPUs load's plan would choose on this machine.
// The writes overlap the decode (src/shard_writer.hpp: a writer thread, O_DIRECT where the file
// system allows). Output shards are written under temporary names, synced and renamed when
// complete; the index is written last, so a directory with an index is a complete conversion,
// and a failed conversion removes everything it wrote. With a GPU, the decode
// runs there (each slot copied to the device, decoded into one device chunk, read back into a
// host chunk for writing); the host backend decodes only where no GPU is usable or the caller
// asks for the CPU.
//
//   umload::convert_options options;
//   options.memory_budget = 256ull << 20;
//   auto report = umload::convert_checkpoint("gpt-oss-20b", "gpt-oss-20b-bf16", options);
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "src/pipeline.hpp"
#include "src/shard_writer.hpp"

namespace umload {

struct convert_options {
  pipeline_options pipeline;        // layout, dtype (bf16|f32), rank/world, progress
  std::uint64_t memory_budget = 0;  // 0: min(1 GiB, MemAvailable / 4)
  std::uint64_t shard_bytes = 4ull << 30;
  std::string device = "auto";  // auto (the GPU when usable) | cpu | cuda | cuda:N
  int threads = 0;              // host backend only
  std::optional<cpu::isa> isa;  // host backend only
  bool force = false;           // replace a destination holding another model
  // The machine's topology for the choice of reader and decode CPUs: hwloc XML or
  // "synthetic:DESC"; unset: UMLOAD_TOPOLOGY, else the live machine (never a profile's).
  std::optional<std::string> topology;
};

struct convert_report {
  pipeline_stats pipeline;
  shard_writer_stats writer;
  double seconds = 0;  // the whole conversion: planning to index
  std::uint64_t memory_budget = 0;
  std::uint64_t output_bytes = 0;  // tensor bytes written
  std::size_t shards = 0;
  std::size_t tensors = 0;
  std::uint64_t peak_rss_bytes = 0;
  std::filesystem::path destination;
  std::string device = "cpu";  // where the decode ran: cpu or cuda:N
  std::string backend;         // the backend's name
  std::string cpuset;          // the reader and decode CPUs chosen (hwloc list; empty: unbound)
  std::string cpuset_reason;   // why: locality and CPU kinds, as the plan says for load
  std::string decode_binding;  // what the host decode threads got (empty on the GPU)
};

convert_report convert_checkpoint(const std::filesystem::path& source,
                                  const std::filesystem::path& destination,
                                  const convert_options& options);

// The default budget: the smaller of 1 GiB and a quarter of MemAvailable.
std::uint64_t default_memory_budget();

}  // namespace umload
