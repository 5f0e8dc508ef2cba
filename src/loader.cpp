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
  if (options.io_from_plan && pipeline.io == io_mode::automatic)
    pipeline.io = plan.io == platform::io_mode::direct ? io_mode::direct : io_mode::buffered;
  if (options.staging_from_plan && plan.staging_slot_bytes > 0 && plan.staging_slots > 0) {
    pipeline.slot_bytes = std::max<std::size_t>(plan.staging_slot_bytes, min_slot_bytes(outputs));
    pipeline.slots = plan.staging_slots;
  }

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
  std::map<std::string, memory_kind, std::less<>> where_of;
  memory_kind default_kind = memory_kind::host;
  if (device.cuda) {
    cuda_backend_options cuda;
    cuda.ordinal = device.ordinal;
    cuda.zero_copy_staging = plan.zero_copy_staging;
    cuda.staging_numa_node = plan.staging_numa_node;
    engine = make_cuda_backend(cuda);
    default_kind = memory_kind::device;
    for (const auto& p : plan.placements)
      where_of[p.tensor] = p.where == platform::location::device         ? memory_kind::device
                           : p.where == platform::location::host_managed ? memory_kind::host_managed
                                                                         : memory_kind::host;
    report.device = "cuda:" + std::to_string(device.ordinal);
    report.strategy =
        std::string(platform::to_string(plan.model)) +
        (plan.zero_copy_staging ? ": pinned staging read in place by the GPU, decode on GPU"
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
  // Allocate every output up front so a load that cannot fit fails before reading anything.
  try {
    for (const auto& out : outputs) {
      loaded_tensor t;
      t.name = out.name;
      t.type = out.type;
      t.shape = out.shape;
      t.bytes = out.bytes;
      const auto placed = where_of.find(out.name);
      t.where = placed == where_of.end() ? default_kind : placed->second;
      t.device = t.where == memory_kind::host ? -1 : device.ordinal;
      t.data = engine->allocate_output(out.bytes, t.where);
      tensors.push_back(std::move(t));
    }
  } catch (...) {
    for (auto& t : tensors) engine->release_output(t.data, t.bytes, t.where);
    throw;
  }
  auto weights = std::make_shared<weight_set>(engine, std::move(tensors));
  auto& held = weights->tensors_;
  memory_sink sink(held);
  {
    // Fresh host memory is faulted in ahead of the pipeline, in its order of use, by a thread of
    // its own: first-touch faults otherwise stall the decode threads (on virtual machines they
    // cost more than writing the bytes).
    std::atomic<bool> stop{false};
    std::thread prefault([&] {
      for (const auto& t : held) {
        if (t.where != memory_kind::host || t.bytes == 0) continue;
        constexpr std::uint64_t chunk = 64ull << 20;
        for (std::uint64_t at = 0; at < t.bytes && !stop; at += chunk)
          ::madvise(t.data + at, std::min(chunk, t.bytes - at), MADV_POPULATE_WRITE);
      }
    });
    try {
      report.pipeline = run_pipeline(ckpt, outputs, pipeline, *engine, sink);
    } catch (...) {
      stop = true;
      prefault.join();
      throw;
    }
    stop = true;
    prefault.join();
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
