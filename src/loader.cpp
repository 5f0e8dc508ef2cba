#include "src/loader.hpp"

#include <openssl/evp.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <thread>

#include "kernels/error.hpp"
#include "platform/config.hpp"

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

load_result load_checkpoint(const std::filesystem::path& source, const load_options& options) {
  const checkpoint ckpt = open_checkpoint(source);
  const model_map map = build_model_map(ckpt);
  pipeline_options pipeline = options.pipeline;
  const auto outputs = plan_outputs(map, pipeline);

  // The plan decides strategy, I/O and staging; a plan that cannot fit stops here, before any
  // memory is taken, with what was needed and what would fit.
  device_choice device = choose_device(options.device);
  platform_choice examined = options.platform;
  if (device.cuda && !examined.device) examined.device = device.ordinal;  // the GPU loaded onto
  const platform::platform_info info = choose_platform(examined);
  const platform::placement_plan plan = plan_checkpoint(ckpt, pipeline, info, examined);
  platform::require_fits(plan);
  const platform::load_orders& orders = plan.orders;
  if (options.io_from_plan && pipeline.io == io_mode::automatic)
    pipeline.io = orders.io == platform::io_mode::direct ? io_mode::direct : io_mode::buffered;
  if (options.staging_from_plan && orders.staging.slot_bytes > 0 && orders.staging.slots > 0) {
    pipeline.slot_bytes = std::max<std::size_t>(orders.staging.slot_bytes, min_slot_bytes(outputs));
    pipeline.slots = orders.staging.slots;
  }
  pipeline.drop_page_cache = orders.drop_page_cache;
  pipeline.reader_cpuset = orders.reader_cpuset;

  load_report report;
  report.memory_model = std::string(platform::to_string(plan.model));
  report.platform = info.source;
  report.plan_reason = plan.reason;
  report.predicted_peak_device_bytes = plan.peak_device_bytes;
  report.predicted_peak_host_bytes = plan.peak_host_bytes;

  const bool gpu_plan = plan.model != platform::memory_model::host;
  if (device.cuda && !gpu_plan) {
    // A plan for a host-only machine (a forced --platform host, a CPU profile) puts every tensor
    // in host memory, which the GPU does not decode into: "auto" follows the plan onto the CPU.
    if (options.device != "auto")
      throw usage_error("device '" + options.device + "' with a host-only plan (" + info.source +
                        ": every tensor in host memory); load with --device cpu or plan for a GPU "
                        "platform");
    device = {};
  }
  std::shared_ptr<backend> engine;
  std::map<std::string, const platform::placement*, std::less<>> placement_of;
  for (const auto& p : orders.placements) placement_of[p.tensor] = &p;
  if (device.cuda) {
    cuda_backend_options cuda;
    cuda.ordinal = device.ordinal;
    cuda.zero_copy_staging = orders.staging.zero_copy;
    cuda.staging_numa_node = orders.staging.numa_node;
    engine = make_cuda_backend(cuda);
    report.device = "cuda:" + std::to_string(device.ordinal);
    report.strategy =
        std::string(platform::to_string(plan.model)) +
        (orders.staging.zero_copy ? ": pinned staging read in place by the GPU, decode on GPU"
                                  : ": pinned staging copied to device scratch, decode on GPU");
  } else {
    engine = make_host_backend(options.threads, options.isa.value_or(cpu::best_isa()));
    report.device = "cpu";
    report.host_stands_in = gpu_plan;
    report.strategy =
        gpu_plan ? std::string(platform::to_string(plan.model)) +
                       " plan with the host standing in for the device: CPU decode into host memory"
                 : "host: staging ring, decode on CPU cores";
  }
  report.strategy +=
      std::string(", ") + (pipeline.io == io_mode::direct ? "direct" : "buffered") + " I/O";
  report.backend = std::string(engine->name());

  std::vector<loaded_tensor> tensors;
  tensors.reserve(outputs.size());
  load_actions& done = report.actions;
  std::vector<fault_ahead::target> ahead;
  // Allocate every output up front, placed as ordered, so a load that cannot fit fails before
  // reading anything.
  try {
    for (const auto& out : outputs) {
      // An output the plan does not name goes where the plan's model puts tensors, and the
      // report says it was not planned.
      const auto planned = placement_of.find(out.name);
      platform::placement order;
      order.tensor = out.name;
      order.where = gpu_plan ? platform::location::device : platform::location::host;
      if (planned != placement_of.end()) order = *planned->second;
      const output_request request = request_for(order);
      loaded_tensor t;
      t.name = out.name;
      t.type = out.type;
      t.shape = out.shape;
      t.bytes = out.bytes;
      placed_output placed = engine->place_output(out.bytes, request);
      t.data = placed.data;
      // A host standing in for the device places host memory for every request.
      t.where = device.cuda ? request.where : memory_kind::host;
      t.device = t.where == memory_kind::host ? -1 : device.ordinal;
      tensors.push_back(std::move(t));
      tensor_record record;
      record.tensor = out.name;
      record.plan_index =
          planned == placement_of.end()
              ? orders.placements.size()
              : static_cast<std::size_t>(planned->second - orders.placements.data());
      record.planned = planned == placement_of.end() ? "not in the plan" : planned_location(order);
      record.planned_numa_node = order.numa_node;
      record.actual = std::string(to_string(tensors.back().where));
      record.actions = std::move(placed.actions);
      record.simulated = std::move(placed.simulated);
      done.tensors.push_back(std::move(record));
    }
  } catch (...) {
    for (auto& t : tensors) engine->release_output(t.data, t.bytes, t.where);
    throw;
  }
  auto weights = std::make_shared<weight_set>(engine, std::move(tensors));
  auto& held = weights->tensors_;
  for (std::size_t i = 0; i < held.size(); ++i)
    ahead.push_back({held[i].data,
                     held[i].bytes,
                     {held[i].where, done.tensors[i].planned_numa_node},
                     &done.tensors[i]});
  std::map<std::string, std::size_t, std::less<>> index_of;
  for (std::size_t i = 0; i < held.size(); ++i) index_of[held[i].name] = i;
  for (const auto& name : orders.prefetch)
    if (const auto it = index_of.find(name); it != index_of.end())
      weights->prefetch_order_.push_back({it->second, outputs[it->second].layer});
  memory_sink sink(held);
  {
    // Destinations are faulted in where they were placed, ahead of the decode, in order of use.
    fault_ahead faulting(*engine, std::move(ahead));
    report.pipeline = run_pipeline(ckpt, outputs, pipeline, *engine, sink);
  }
  done.io_mode = report.pipeline.direct_io ? "direct" : "buffered";
  done.page_cache = report.pipeline.dropped_page_cache ? "dropped as it went and at the end"
                                                       : "kept (--keep-cache)";
  done.reader_cpuset = orders.reader_cpuset.empty() ? "not bound (the plan names no cpuset)"
                                                    : report.pipeline.reader_binding;
  done.staging = report.pipeline.staging;
  if (report.host_stands_in) {
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
  report.output_bytes = weights->bytes();
  report.tensor_count = held.size();
  if (options.check) {
    for (std::size_t i = 0; i < held.size(); ++i) {
      if (!outputs[i].pair) continue;
      auto& t = held[i];
      const out_dtype dt = t.type == dtype::F32 ? out_dtype::f32 : out_dtype::bf16;
      const auto s = engine->summarize(t.data, t.bytes / element_bytes(dt), dt, t.where);
      t.non_finite = s.non_finite;
      t.checksum = s.checksum;
      report.non_finite += s.non_finite;
    }
  }
  if (options.digest) {
    std::vector<std::pair<std::string, std::string>> lines;
    for (auto& t : held) {
      t.digest = digest_tensor(*engine, t);
      lines.emplace_back(t.name, t.digest.substr(7));
    }
    std::sort(lines.begin(), lines.end());
    sha256 all;
    for (const auto& [name, h] : lines) {
      const std::string line = name + " " + h + "\n";
      all.update(line.data(), line.size());
    }
    report.digest = "sha256:" + all.finish();
  }
  report.peak_rss_bytes = peak_rss_bytes();
  report.page_cache_bytes_after = resident_page_cache_bytes(ckpt);
  return {weights, report};
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
