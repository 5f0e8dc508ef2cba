#include "src/loader.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>

#include "kernels/error.hpp"

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

 private:
  std::vector<loaded_tensor>& tensors_;
};

struct device_choice {
  bool cuda = false;
  int ordinal = 0;
};

device_choice choose_device(const std::string& device) {
  if (device == "cpu") return {};
  if (device == "auto") return cuda_available() ? device_choice{true, 0} : device_choice{};
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int ordinal = 0;
    if (device.size() > 5) {
      try {
        std::size_t used = 0;
        ordinal = std::stoi(device.substr(5), &used);
        if (used != device.size() - 5 || ordinal < 0) throw std::invalid_argument(device);
      } catch (const std::exception&) {
        throw usage_error("bad device '" + device + "' (expected auto, cpu, cuda or cuda:N)");
      }
    }
    if (!cuda_available())
      throw cuda_error("device '" + device + "' asked for, but no usable CUDA GPU was found" +
                       std::string(cuda_device_count() == 0 ? "" : " with that ordinal"));
    if (ordinal >= cuda_device_count())
      throw usage_error("device '" + device + "': only " + std::to_string(cuda_device_count()) +
                        " CUDA device(s)");
    return {true, ordinal};
  }
  throw usage_error("bad device '" + device + "' (expected auto, cpu, cuda or cuda:N)");
}

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
    if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) throw error("SHA-256 init failed");
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
  const auto outputs = plan_outputs(map, options.pipeline);
  const device_choice device = choose_device(options.device);

  std::shared_ptr<backend> engine;
  load_report report;
  memory_kind where = memory_kind::host;
  if (device.cuda) {
    cuda_backend_options cuda;
    cuda.ordinal = device.ordinal;
    engine = make_cuda_backend(cuda);
    where = memory_kind::device;
    report.device = "cuda:" + std::to_string(device.ordinal);
    report.strategy = "discrete: pinned staging, copy, decode on GPU";
  } else {
    engine = make_host_backend(options.threads, options.isa.value_or(cpu::best_isa()));
    report.device = "cpu";
    report.strategy = "host: staging ring, decode on CPU cores";
  }
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
      t.where = where;
      t.device = device.cuda ? device.ordinal : -1;
      t.data = engine->allocate_output(out.bytes, where);
      tensors.push_back(std::move(t));
    }
  } catch (...) {
    for (auto& t : tensors) engine->release_output(t.data, t.bytes, t.where);
    throw;
  }
  auto weights = std::make_shared<weight_set>(engine, std::move(tensors));
  auto& held = weights->tensors_;
  memory_sink sink(held);
  report.pipeline = run_pipeline(ckpt, outputs, options.pipeline, *engine, sink);
  report.output_bytes = weights->bytes();
  report.tensor_count = held.size();
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

}  // namespace umload
