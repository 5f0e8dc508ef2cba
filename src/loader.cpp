#include "src/loader.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>

#include "kernels/error.hpp"
#include "platform/config.hpp"
#include "platform/device.hpp"

namespace umload {

namespace {

// Collects each item straight into its tensor's allocation.
class memory_sink final : public output_sink {
 public:
  explicit memory_sink(std::vector<loaded_tensor>& tensors) : tensors_(tensors) {}
  std::byte* destination(std::size_t tensor, std::uint64_t offset, std::uint64_t) override {
    return tensors_[tensor].data + offset;
  }
  void commit(std::size_t, std::uint64_t, std::uint64_t) override {}
  std::byte* stable_destination(std::size_t tensor, std::uint64_t offset) const override {
    const auto& t = tensors_[tensor];
    return t.where == memory_kind::host ? t.data + offset : nullptr;
  }

 private:
  std::vector<loaded_tensor>& tensors_;
};

std::string hex(const unsigned char* digest, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += digits[digest[i] >> 4];
    out += digits[digest[i] & 0xF];
  }
  return out;
}

class sha256 {
 public:
  sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
      throw error("SHA-256 init failed");
  }
  ~sha256() { EVP_MD_CTX_free(ctx_); }
  void update(const void* p, std::size_t n) {
    if (n && EVP_DigestUpdate(ctx_, p, n) != 1) throw error("SHA-256 update failed");
  }
  std::string finish() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_DigestFinal_ex(ctx_, digest, &n) != 1) throw error("SHA-256 final failed");
    return hex(digest, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

std::string digest_tensor(backend& engine, const loaded_tensor& t) {
  sha256 h;
  if (t.where == memory_kind::device) {
    constexpr std::size_t chunk = 64ull << 20;
    std::vector<std::byte> host(std::min<std::uint64_t>(chunk, t.bytes));
    for (std::uint64_t done = 0; done < t.bytes; done += chunk) {
      const std::size_t n = std::min<std::uint64_t>(chunk, t.bytes - done);
      engine.read_back(host.data(), t.data + done, n, t.where);
      h.update(host.data(), n);
    }
  } else {
    h.update(t.data, t.bytes);
  }
  return "sha256:" + h.finish();
}

// Seconds since it was made (total) and since the last lap.
class lap_clock {
 public:
  double lap() {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return seconds;
  }
  double total() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
};

// The plan's placement of each output, by the output's index. Every output has exactly one
// placement: a plan made from other outputs than these is a defect, not a default.
std::vector<const platform::placement*> placements_by_output(
    const platform::load_orders& orders, const std::vector<output_tensor>& outputs) {
  std::vector<const platform::placement*> placed(outputs.size(), nullptr);
  for (const auto& p : orders.placements) {
    if (p.output >= outputs.size() || placed[p.output] || outputs[p.output].name != p.tensor)
      throw error("plan placement of '" + p.tensor + "' matches no output of the load");
    placed[p.output] = &p;
  }
  for (std::size_t i = 0; i < outputs.size(); ++i)
    if (!placed[i]) throw error("the plan places no '" + outputs[i].name + "'");
  return placed;
}

}  // namespace

std::string sha256_hex(const void* data, std::size_t bytes) {
  sha256 h;
  h.update(data, bytes);
  return h.finish();
}

weight_set::weight_set(std::shared_ptr<backend> owner, std::vector<loaded_tensor> tensors)
    : owner_(std::move(owner)), tensors_(std::move(tensors)) {}

weight_set::~weight_set() {
  for (auto& t : tensors_) owner_->release_output(t.data, t.bytes, t.where);
}

const loaded_tensor* weight_set::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<std::string> weight_set::prefetch(const std::vector<int>& layers, void* stream) const {
  std::vector<std::string> issued;
  for (const auto& s : prefetch_order_) {
    if (std::find(layers.begin(), layers.end(), s.layer) == layers.end()) continue;
    const auto& t = tensors_[s.tensor];
    issued.push_back(t.name + ": " + owner_->prefetch_to_device(t.data, t.bytes, stream));
  }
  return issued;
}

std::uint64_t weight_set::bytes() const {
  std::uint64_t total = 0;
  for (const auto& t : tensors_) total += t.bytes;
  return total;
}

namespace {

// What the plan and the device make of the options: where the load runs and how it reads.
struct load_setup {
  device_choice device;
  platform::platform_info info;
  platform::placement_plan plan;
  pipeline_options pipeline;
};

// The plan decides strategy, I/O and staging; a plan that cannot fit stops here, before any
// memory is taken, with what was needed and what would fit.
load_setup settle(const model_map& map, const std::vector<output_tensor>& outputs,
                  const load_options& options) {
  load_setup s;
  const auto query = options.query ? nullptr : platform::make_cuda_device_query();
  s.device = choose_device(options.device, platform::process_defaults(),
                           options.query ? *options.query : *query);
  platform_choice examined = options.platform;
  if (s.device.cuda && !examined.device) examined.device = s.device.ordinal;  // the GPU used
  s.info = choose_platform(examined);
  s.pipeline = options.pipeline;
  s.plan = plan_checkpoint(map, s.pipeline, s.info, examined);
  platform::require_fits(s.plan);
  s.device = settle_device(s.device, s.plan, s.info.source);
  const platform::load_orders& orders = s.plan.orders;
  if (options.io_from_plan && s.pipeline.io == io_mode::automatic) s.pipeline.io = orders.io;
  if (options.staging_from_plan && orders.staging.slot_bytes > 0 && orders.staging.slots > 0) {
    s.pipeline.slot_bytes =
        std::max<std::size_t>(orders.staging.slot_bytes, min_slot_bytes(outputs));
    s.pipeline.slots = orders.staging.slots;
  }
  s.pipeline.drop_page_cache = orders.drop_page_cache;
  s.pipeline.reader_cpuset = orders.reader_cpuset;
  return s;
}

// The backend the setup asks for, with the report's description of it.
std::shared_ptr<backend> make_engine(const load_setup& s, const load_options& options,
                                     load_report& report) {
  const auto& plan = s.plan;
  const auto& staging = plan.orders.staging;
  const bool gpu_plan = plan.model != platform::memory_model::host;
  std::shared_ptr<backend> engine;
  if (s.device.cuda) {
    cuda_backend_options cuda;
    cuda.ordinal = s.device.ordinal;
    cuda.zero_copy_staging = staging.zero_copy;
    cuda.pinned_staging = staging.pinned;
    cuda.staging_numa_node = staging.numa_node;
    engine = make_cuda_backend(cuda);
    report.device = "cuda:" + std::to_string(s.device.ordinal);
    report.strategy = std::string(platform::to_string(plan.model)) +
                      (staging.pinned ? ": pinned" : ": pageable") +
                      (staging.zero_copy ? " staging read in place by the GPU, decode on GPU"
                                         : " staging copied to device scratch, decode on GPU");
  } else {
    engine = make_host_backend(options.threads, options.isa.value_or(cpu::best_isa()),
                               plan.orders.decode_cpuset);
    report.device = "cpu";
    report.host_stands_in = gpu_plan;
    report.strategy =
        gpu_plan ? std::string(platform::to_string(plan.model)) +
                       " plan with the host standing in for the device: CPU decode into host memory"
                 : "host: staging ring, decode on CPU cores";
  }
  report.strategy += std::string(", ") + to_string(s.pipeline.io) + " I/O";
  report.backend = std::string(engine->name());
  report.memory_model = std::string(platform::to_string(plan.model));
  report.platform = s.info.source;
  report.plan_reason = plan.reason;
  report.predicted_peak_device_bytes = plan.peak_device_bytes;
  report.predicted_peak_host_bytes = plan.peak_host_bytes;
  return engine;
}

// Every output allocated up front, placed as ordered, so a load that cannot fit fails before
// reading anything. Each placement's record (planned beside actual, the actions) goes to
// `done.tensors`, in the order of the outputs.
std::vector<loaded_tensor> place_outputs(backend& engine, const std::vector<output_tensor>& outputs,
                                         const platform::load_orders& orders,
                                         const device_choice& device, load_actions& done) {
  const auto placed_as = placements_by_output(orders, outputs);
  std::vector<loaded_tensor> tensors;
  tensors.reserve(outputs.size());
  try {
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      const platform::placement& order = *placed_as[i];
      const output_request request = request_for(order);
      loaded_tensor t;
      t.name = outputs[i].name;
      t.type = outputs[i].type;
      t.shape = outputs[i].shape;
      t.bytes = outputs[i].bytes;
      placed_output placed = engine.place_output(t.bytes, request);
      t.data = placed.data;
      // A host standing in for the device places host memory for every request.
      t.where = device.cuda ? request.where : memory_kind::host;
      t.device = t.where == memory_kind::host ? -1 : device.ordinal;
      tensor_record record;
      record.tensor = t.name;
      record.plan_index = static_cast<std::size_t>(&order - orders.placements.data());
      record.planned = planned_location(order);
      record.planned_numa_node = order.numa_node;
      record.actual = to_string(t.where);
      record.actions = std::move(placed.actions);
      record.simulated = std::move(placed.simulated);
      tensors.push_back(std::move(t));
      done.tensors.push_back(std::move(record));
    }
  } catch (...) {
    for (auto& t : tensors) engine.release_output(t.data, t.bytes, t.where);
    throw;
  }
  return tensors;
}

// What the load did with the orders that concern the whole run (I/O, page cache, reader
// threads, staging), and on a host standing in for the device, which of them it only simulated.
void record_run_actions(const platform::load_orders& orders, const pipeline_stats& run,
                        bool host_stands_in, load_actions& done) {
  done.io_mode = run.direct_io ? "direct" : "buffered";
  done.page_cache =
      run.dropped_page_cache ? "dropped as it went and at the end" : "kept (--keep-cache)";
  done.reader_cpuset =
      orders.reader_cpuset.empty() ? "not bound (the plan names no cpuset)" : run.reader_binding;
  done.staging = run.staging;
  if (!host_stands_in) return;
  if (orders.staging.pinned) done.simulated.push_back("pinned staging (host backend: pageable)");
  done.simulated.push_back(orders.staging.zero_copy ? "staging read in place by the GPU"
                                                    : "device scratch copies of each slot");
  if (orders.staging.numa_node >= 0)
    done.simulated.push_back("staging bound to NUMA node " +
                             std::to_string(orders.staging.numa_node));
  if (!orders.prefetch.empty())
    done.simulated.push_back("prefetch of " + std::to_string(orders.prefetch.size()) +
                             " spilled tensors toward the GPU (weight_set::prefetch)");
}

// Runs the pipeline while destinations are faulted in where they were placed, ahead of the
// decode, in order of use (fault_ahead: a thread of its own).
pipeline_stats run_faulted_ahead(const checkpoint& ckpt, const std::vector<output_tensor>& outputs,
                                 const pipeline_options& pipeline, backend& engine,
                                 std::vector<loaded_tensor>& held, load_actions& done) {
  std::vector<fault_ahead::target> ahead;
  ahead.reserve(held.size());
  for (std::size_t i = 0; i < held.size(); ++i)
    ahead.push_back({held[i].data,
                     held[i].bytes,
                     {held[i].where, done.tensors[i].planned_numa_node},
                     &done.tensors[i]});
  memory_sink sink(held);
  fault_ahead faulting(engine, std::move(ahead));
  return run_pipeline(ckpt, outputs, pipeline, engine, sink);
}

// With check: non-finite values and a checksum of every decoded tensor, where it lives.
void check_decoded(backend& engine, const std::vector<output_tensor>& outputs, output_dtype dtype,
                   std::vector<loaded_tensor>& held, load_report& report) {
  for (std::size_t i = 0; i < held.size(); ++i) {
    if (!outputs[i].pair) continue;
    auto& t = held[i];
    const auto s = engine.summarize(t.data, t.bytes / element_bytes(dtype), dtype, t.where);
    t.non_finite = s.non_finite;
    t.checksum = s.checksum;
    report.non_finite += s.non_finite;
  }
}

// Per-tensor digests, and one over "<name> <hex>\n" lines sorted by name.
std::string digest_all(backend& engine, std::vector<loaded_tensor>& held) {
  std::vector<std::pair<std::string, std::string>> lines;
  for (auto& t : held) {
    t.digest = digest_tensor(engine, t);
    lines.emplace_back(t.name, t.digest.substr(7));
  }
  std::sort(lines.begin(), lines.end());
  sha256 all;
  for (const auto& [name, h] : lines) {
    const std::string line = name + " " + h + "\n";
    all.update(line.data(), line.size());
  }
  return "sha256:" + all.finish();
}

}  // namespace

load_result load_checkpoint(const checkpoint& ckpt, const model_map& map,
                            const load_options& options) {
  const auto outputs = plan_outputs(map, options.pipeline);
  const double context_before = platform::cuda_context_seconds();
  const load_setup setup = settle(map, outputs, options);
  // The CUDA context, where examining the GPU for the plan made it (load_timing).
  const double context_seconds = platform::cuda_context_seconds() - context_before;
  const platform::load_orders& orders = setup.plan.orders;
  load_report report;
  lap_clock clock;
  const std::shared_ptr<backend> engine = make_engine(setup, options, report);
  const double backend_seconds = clock.lap();
  // A CUDA backend's runtime now holds the context the plan's device query made; a CPU load
  // needs none.
  platform::release_held_cuda_contexts();
  load_actions& done = report.actions;
  auto weights = std::make_shared<weight_set>(
      engine, place_outputs(*engine, outputs, orders, setup.device, done));
  const double allocate_seconds = clock.lap();
  auto& held = weights->tensors_;
  for (const std::size_t i : orders.prefetch) {
    const platform::placement& p = orders.placements[i];
    weights->prefetch_order_.push_back({p.output, outputs[p.output].layer});
  }
  report.pipeline = run_faulted_ahead(ckpt, outputs, setup.pipeline, *engine, held, done);
  clock.lap();
  // The pipeline waited for its decodes; fault-ins it did not wait for may still run.
  engine->synchronize();
  record_run_actions(orders, report.pipeline, report.host_stands_in, done);
  done.decode_cpuset = setup.device.cuda ? "not bound: the GPU decodes"
                       : orders.decode_cpuset.empty()
                           ? "not bound: " + setup.plan.decode_cpuset_reason
                           : engine->stats().decode_binding;
  report.output_bytes = weights->bytes();
  report.tensor_count = held.size();
  if (options.check) check_decoded(*engine, outputs, setup.pipeline.dtype, held, report);
  report.timing.finish_seconds = clock.lap();
  report.timing.total_seconds = context_seconds + clock.total();
  report.timing.backend_seconds = context_seconds + backend_seconds;
  report.timing.allocate_seconds = allocate_seconds;
  report.timing.pipeline_seconds = report.pipeline.seconds;
  if (options.digest) report.digest = digest_all(*engine, held);
  report.peak_rss_bytes = peak_rss_bytes();
  report.page_cache_bytes_after = resident_page_cache_bytes(ckpt);
  return {weights, report};
}

load_result load_checkpoint(const std::filesystem::path& source, const load_options& options) {
  const checkpoint ckpt = open_checkpoint(source);
  return load_checkpoint(ckpt, build_model_map(ckpt), options);
}

nlohmann::json to_json(const load_report& r, const weight_set* weights) {
  const auto& p = r.pipeline;
  nlohmann::json j = {
      {"device", r.device},
      {"backend", r.backend},
      {"strategy", r.strategy},
      {"memory_model", r.memory_model},
      {"platform", r.platform},
      {"plan_reason", r.plan_reason},
      {"host_stands_in", r.host_stands_in},
      {"predicted_peak_device_bytes", r.predicted_peak_device_bytes},
      {"predicted_peak_host_bytes", r.predicted_peak_host_bytes},
      {"tensors_loaded", r.tensor_count},
      {"seconds", p.seconds},
      {"read_seconds", p.read_seconds},
      {"copy_seconds", p.copy_seconds},
      {"decode_seconds", p.decode_seconds},
      {"bytes_read", p.bytes_read},
      {"quantized_bytes", p.quantized_bytes},
      {"bytes_produced", r.output_bytes},
      {"output_gb_per_s", p.seconds > 0 ? r.output_bytes / p.seconds / 1e9 : 0.0},
      {"peak_rss_bytes", r.peak_rss_bytes},
      {"peak_device_bytes", p.peak_device_bytes},
      {"page_cache_bytes_after", r.page_cache_bytes_after},
      {"direct_io", p.direct_io},
      {"slot_bytes", p.slot_bytes},
      {"slots", p.slots},
      {"timing",
       {{"total_seconds", r.timing.total_seconds},
        {"backend_seconds", r.timing.backend_seconds},
        {"allocate_seconds", r.timing.allocate_seconds},
        {"pipeline_seconds", r.timing.pipeline_seconds},
        {"finish_seconds", r.timing.finish_seconds}}},
  };
  // Planned beside actual, tensor by tensor, in the order `umload plan --json` lists them.
  nlohmann::json actions = to_json(r.actions);
  j["placements"] = std::move(actions["placements"]);
  actions.erase("placements");
  j["actions"] = std::move(actions);
  if (weights && std::any_of(weights->tensors().begin(), weights->tensors().end(),
                             [](const auto& t) { return t.checksum.has_value(); })) {
    nlohmann::json checks = nlohmann::json::object();
    for (const auto& t : weights->tensors())
      if (t.checksum) checks[t.name] = {{"non_finite", *t.non_finite}, {"checksum", *t.checksum}};
    j["checks"] = checks;
    j["non_finite"] = r.non_finite;
  }
  if (!r.digest.empty()) {
    j["digest"] = r.digest;
    if (weights) {
      nlohmann::json tensors = nlohmann::json::object();
      for (const auto& t : weights->tensors()) tensors[t.name] = t.digest;
      j["tensors"] = tensors;
    }
  }
  return j;
}

}  // namespace umload
