#include "src/convert.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>

#include "kernels/error.hpp"
#include "platform/meminfo.hpp"
#include "src/backend.hpp"
#include "src/file.hpp"
#include "src/planning.hpp"
#include "src/shard_writer.hpp"

namespace umload {

namespace fs = std::filesystem;

namespace {

constexpr const char* marker_name = "umload_convert.json";
constexpr const char* index_name = "model.safetensors.index.json";

std::string shard_name(std::size_t i, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

bool inside(const fs::path& child, const fs::path& parent) {
  const auto c = fs::weakly_canonical(child);
  const auto p = fs::weakly_canonical(parent);
  auto ci = c.begin();
  for (auto pi = p.begin(); pi != p.end(); ++pi, ++ci)
    if (ci == c.end() || *ci != *pi) return false;
  return true;
}

struct shard_plan {
  std::vector<std::size_t> tensors;    // indices into outputs, in file order
  std::vector<std::uint64_t> offsets;  // data offset of each, parallel to `tensors`
  std::string header;                  // 8-byte length + JSON
  std::uint64_t data_bytes = 0;
};

// The pipeline's sink for a conversion: each item is decoded (or copied) into a chunk of the
// shard writer, which writes it into its tensor's place while the next item is decoded.
class shard_sink final : public output_sink {
 public:
  // Items land in chunks of `writer`. With `device` set they land in `device_chunk` (device
  // memory) instead, and commit copies each back into a writer chunk after waiting for its decode.
  shard_sink(const std::vector<output_tensor>& outputs, const std::vector<shard_plan>& shards,
             shard_writer& writer, std::byte* device_chunk, backend* device)
      : writer_(writer), device_chunk_(device_chunk), device_(device) {
    place_.resize(outputs.size());
    for (std::size_t s = 0; s < shards.size(); ++s)
      for (std::size_t k = 0; k < shards[s].tensors.size(); ++k)
        place_[shards[s].tensors[k]] = {s, shards[s].offsets[k]};
  }

  std::byte* destination(std::size_t tensor, std::uint64_t offset, std::uint64_t bytes) override {
    if (device_) return device_chunk_;
    const auto [s, base] = place_[tensor];
    chunk_ = writer_.acquire(s, base + offset, bytes);
    return chunk_;
  }

  void commit(std::size_t tensor, std::uint64_t offset, std::uint64_t bytes) override {
    const auto [s, base] = place_[tensor];
    if (device_) {
      device_->synchronize();
      chunk_ = writer_.acquire(s, base + offset, bytes);
      device_->read_back(chunk_, device_chunk_, bytes, memory_kind::device);
    }
    writer_.submit(chunk_, s, base + offset, bytes);
    chunk_ = nullptr;
  }

 private:
  shard_writer& writer_;
  std::byte* device_chunk_;
  backend* device_;
  std::byte* chunk_ = nullptr;
  std::vector<std::pair<std::size_t, std::uint64_t>> place_;  // tensor -> shard, data offset
};

// A header padded with spaces (as safetensors allows) to a whole number of pages, so the data
// starts on a page and every chunk whose size is whole pages is written with O_DIRECT alone.
std::string page_aligned(std::string header) {
  constexpr std::uint64_t page = 4096;
  header.append((page - header.size() % page) % page, ' ');
  const std::uint64_t n = header.size() - 8;
  for (int i = 0; i < 8; ++i) header[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return header;
}

std::vector<shard_plan> plan_shards(const std::vector<output_tensor>& outputs,
                                    std::uint64_t shard_bytes, const std::string& layout_name) {
  // Consecutive tensors (streaming order) fill a shard up to shard_bytes; a larger tensor gets a
  // shard to itself.
  std::vector<std::vector<std::size_t>> groups(1);
  std::uint64_t used = 0;
  for (std::size_t t = 0; t < outputs.size(); ++t) {
    if (!groups.back().empty() && used + outputs[t].bytes > shard_bytes) {
      groups.emplace_back();
      used = 0;
    }
    groups.back().push_back(t);
    used += outputs[t].bytes;
  }
  std::vector<shard_plan> shards;
  for (auto& group : groups) {
    // Within a file: widest elements first, then by name, so every tensor starts aligned.
    std::sort(group.begin(), group.end(), [&](std::size_t a, std::size_t b) {
      const unsigned wa = element_bits(outputs[a].type), wb = element_bits(outputs[b].type);
      return wa != wb ? wa > wb : outputs[a].name < outputs[b].name;
    });
    shard_plan plan;
    std::vector<tensor_layout> layouts;
    for (std::size_t t : group) {
      plan.tensors.push_back(t);
      plan.offsets.push_back(plan.data_bytes);
      plan.data_bytes += outputs[t].bytes;
      layouts.push_back({outputs[t].name, outputs[t].type, outputs[t].shape, outputs[t].bytes});
    }
    plan.header = page_aligned(
        make_safetensors_header(layouts, {{"format", "pt"}, {"umload_layout", layout_name}}));
    shards.push_back(std::move(plan));
  }
  return shards;
}

void check_destination(const fs::path& source, const fs::path& destination, bool force,
                       const std::string& marker_text) {
  const fs::path source_dir = fs::is_directory(source) ? source : source.parent_path();
  if (inside(destination, source_dir.empty() ? fs::path(".") : source_dir) &&
      fs::is_directory(source))
    throw usage_error("destination " + destination.string() + " is the source checkpoint " +
                      source.string() + " or inside it; choose another folder");
  if (fs::exists(destination) && !fs::is_directory(destination))
    throw conflict_error("destination " + destination.string() + " exists and is not a folder");
  if (!fs::exists(destination) || force) return;
  // A run killed while writing its marker leaves only the marker's temporary file: that folder
  // is as good as empty.
  bool empty = true;
  for (const auto& entry : fs::directory_iterator(destination))
    empty = empty && entry.path().filename() == std::string(marker_name) + ".umload-tmp";
  if (empty) return;
  const fs::path marker = destination / marker_name;
  if (fs::exists(marker)) {
    const std::string previous = read_text_file(marker, 1 << 20);
    if (previous == marker_text) return;  // the same conversion, rerun after a crash or to refresh
  }
  throw conflict_error("destination " + destination.string() +
                       " already holds other files (another model or another conversion); "
                       "pass --force to replace them");
}

// What a run puts into its destination, taken out again unless the run completes: a failed
// conversion leaves no file behind, and removes the folder itself when it made it. (A killed
// process cannot clean up: it leaves the marker and temporary shards, never an index, and a
// rerun of the same conversion replaces them.)
class destination_cleanup {
 public:
  destination_cleanup(fs::path dir, bool made_dir) : dir_(std::move(dir)), made_dir_(made_dir) {}
  destination_cleanup(const destination_cleanup&) = delete;
  destination_cleanup& operator=(const destination_cleanup&) = delete;
  ~destination_cleanup() {
    if (!armed_) return;
    std::error_code ec;
    for (const auto& name : names_) fs::remove(dir_ / name, ec);
    if (made_dir_) fs::remove(dir_, ec);  // only when empty: a user's own files stay
  }
  void add(const fs::path& name) { names_.push_back(name); }
  void keep() noexcept { armed_ = false; }

 private:
  fs::path dir_;
  bool made_dir_;
  bool armed_ = true;
  std::vector<fs::path> names_;
};

// Staging slots and output chunks held to the budget, by the planning code load shares; the
// pipeline's slots set from them.
platform::bounded_staging plan_convert_staging(const model_map& map, pipeline_options& pipeline,
                                               std::uint64_t budget) {
  platform::bounded_staging staging =
      platform::plan_bounded_staging(demand_of(map, pipeline), budget);
  if (!staging.fits) throw budget_error(staging.message);
  pipeline.slots = staging.staging.slots;
  pipeline.slot_bytes = staging.staging.slot_bytes;
  pipeline.readers = 1;
  return staging;
}

// Where the decode runs: the device, the backend, and the CPUs of the reader and decode threads.
struct decoder {
  device_choice device;
  std::unique_ptr<backend> engine;
};

// Chooses the decoder and the reader CPUs, set into `pipeline` and told in `report`. It comes
// before the destination is touched: a GPU asked for and missing leaves nothing behind.
decoder choose_decoder(const convert_options& options, pipeline_options& pipeline,
                       convert_report& report) {
  decoder d{choose_device(options.device), nullptr};
  // Reader and decode threads on the CPUs load's plan would choose on this machine: next to the
  // GPU that decodes, cut to the most performant CPU kind when there are several.
  platform_choice where;
  where.topology = options.topology;
  if (d.device.cuda) where.device = d.device.ordinal;
  const platform::cpu_choice cpus =
      platform::choose_worker_cpus(choose_live_platform(where).topology, d.device.cuda);
  pipeline.reader_cpuset = cpus.cpuset;
  report.cpuset = cpus.cpuset;
  report.cpuset_reason = cpus.reason;
  if (d.device.cuda) {
    // The copy strategy on every machine: it is correct everywhere, whatever profile or device
    // variables are set, and a convert is bound by its writes, not by one extra device copy of
    // a slot on integrated or coherent machines.
    cuda_backend_options cuda;
    cuda.ordinal = d.device.ordinal;
    d.engine = make_cuda_backend(cuda);
    report.device = "cuda:" + std::to_string(d.device.ordinal);
  } else {
    d.engine =
        make_host_backend(options.threads, options.isa.value_or(cpu::best_isa()), cpus.cpuset);
    report.device = "cpu";
  }
  report.backend = std::string(d.engine->name());
  return d;
}

// The marker's text: what conversion a destination holds, so that a rerun of the same one may
// replace it.
std::string marker_text_of(const fs::path& source, const pipeline_options& pipeline,
                           const convert_options& options) {
  const nlohmann::json marker = {{"tool", "umload convert"},
                                 {"source", fs::weakly_canonical(source).string()},
                                 {"layout", to_string(pipeline.order)},
                                 {"dtype", to_string(pipeline.dtype)},
                                 {"rank", pipeline.rank},
                                 {"world_size", pipeline.world_size},
                                 {"shard_bytes", options.shard_bytes}};
  return marker.dump(2) + "\n";
}

// Clears what a previous run left in the destination: a rerun (or --force) starts from a clean
// slate, the old index first, so the folder never looks complete while it is being rewritten.
void clear_previous_run(const fs::path& destination, bool force) {
  std::error_code ec;
  fs::remove(destination / index_name, ec);
  for (const auto& entry : fs::directory_iterator(destination)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("model-", 0) == 0 || name.rfind(".model-", 0) == 0 ||
        name == std::string(marker_name) + ".umload-tmp" || (force && entry.is_regular_file()))
      fs::remove(entry.path(), ec);
  }
}

// Which shard holds each output tensor, as the index lists it.
nlohmann::json weight_map_of(const std::vector<output_tensor>& outputs,
                             const std::vector<shard_plan>& shards) {
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s)
    for (std::size_t t : shards[s].tensors)
      weight_map[outputs[t].name] = shard_name(s, shards.size());
  return weight_map;
}

// Streams the outputs through the pipeline into the shard files. The chunks written to the
// shards are host memory either way; with a GPU each item is decoded into one device chunk and
// copied back into a writer chunk.
void write_shards(const checkpoint& ckpt, const std::vector<output_tensor>& outputs,
                  const std::vector<shard_plan>& shards, const pipeline_options& pipeline,
                  const platform::bounded_staging& staging, const decoder& d,
                  const fs::path& destination, convert_report& report) {
  const auto chunks = static_cast<std::size_t>(staging.chunks);
  const std::uint64_t chunk_bytes = staging.chunk_bytes;
  backend& engine = *d.engine;
  std::byte* device_chunk = nullptr;
  try {
    if (d.device.cuda) device_chunk = engine.allocate_output(chunk_bytes, memory_kind::device);
    std::vector<shard_layout> layouts;
    for (std::size_t s = 0; s < shards.size(); ++s)
      layouts.push_back({shard_name(s, shards.size()), shards[s].header, shards[s].data_bytes});
    shard_writer writer(destination, std::move(layouts), engine, chunks, chunk_bytes);
    shard_sink sink(outputs, shards, writer, device_chunk, device_chunk ? &engine : nullptr);
    report.pipeline = run_pipeline(ckpt, outputs, pipeline, engine, sink);
    report.decode_binding = engine.stats().decode_binding;
    writer.finish();
    report.writer = writer.stats();
  } catch (...) {
    if (device_chunk) engine.release_output(device_chunk, chunk_bytes, memory_kind::device);
    throw;
  }
  if (device_chunk) engine.release_output(device_chunk, chunk_bytes, memory_kind::device);
}

// The checkpoint's small files, then config.json without its quantization, then the index last.
void write_small_files(const checkpoint& ckpt, const fs::path& destination, output_dtype dtype,
                       std::uint64_t output_bytes, const nlohmann::json& weight_map) {
  for (const auto& other : ckpt.other_files) {
    const std::string text = read_text_file(other, 256ull << 20);
    write_file_atomic(destination / other.filename(), text);
  }
  nlohmann::json config = ckpt.config ? ckpt.config->raw : nlohmann::json::object();
  config.erase("quantization_config");
  config["torch_dtype"] = dtype == output_dtype::f32 ? "float32" : "bfloat16";
  write_file_atomic(destination / "config.json", config.dump(2) + "\n");
  const nlohmann::json index = {{"metadata", {{"total_size", output_bytes}}},
                                {"weight_map", weight_map}};
  write_file_atomic(destination / index_name, index.dump(2) + "\n");
}

}  // namespace

std::uint64_t default_memory_budget() {
  std::uint64_t quarter = 0;
  try {
    quarter = platform::read_meminfo("/proc/meminfo").available_bytes() / 4;
  } catch (const error&) {
    // No /proc/meminfo (not Linux, a sandbox): the fixed 1 GiB default stands.
  }
  return std::min<std::uint64_t>(1ull << 30, quarter ? quarter : 1ull << 30);
}

convert_report convert_checkpoint(const fs::path& source, const fs::path& destination,
                                  const convert_options& options) {
  const auto t0 = std::chrono::steady_clock::now();
  if (options.pipeline.dtype == output_dtype::keep)
    throw usage_error("convert writes dense weights: --dtype must be bf16 or f32");
  const checkpoint ckpt = open_checkpoint(source);
  const model_map map = build_model_map(ckpt);
  pipeline_options pipeline = options.pipeline;
  auto outputs = plan_outputs(map, pipeline);

  convert_report report;
  report.destination = destination;
  report.memory_budget = options.memory_budget ? options.memory_budget : default_memory_budget();
  const auto staging = plan_convert_staging(map, pipeline, report.memory_budget);
  const decoder d = choose_decoder(options, pipeline, report);

  const std::string marker_text = marker_text_of(source, pipeline, options);
  check_destination(source, destination, options.force, marker_text);
  const bool made_dir = !fs::exists(destination);
  fs::create_directories(destination);
  destination_cleanup cleanup(destination, made_dir);
  cleanup.add(marker_name);
  cleanup.add(index_name);
  cleanup.add("config.json");
  for (const auto& other : ckpt.other_files) cleanup.add(other.filename());
  clear_previous_run(destination, options.force);
  write_file_atomic(destination / marker_name, marker_text);

  const auto shards = plan_shards(outputs, options.shard_bytes, to_string(pipeline.order));
  report.shards = shards.size();
  report.tensors = outputs.size();
  for (std::size_t s = 0; s < shards.size(); ++s) cleanup.add(shard_name(s, shards.size()));
  write_shards(ckpt, outputs, shards, pipeline, staging, d, destination, report);

  for (const auto& o : outputs) report.output_bytes += o.bytes;
  write_small_files(ckpt, destination, pipeline.dtype, report.output_bytes,
                    weight_map_of(outputs, shards));
  cleanup.keep();
  report.peak_rss_bytes = peak_rss_bytes();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace umload
