// Fuzzes a whole checkpoint folder: the input is a small archive of files (index, config, shard
// headers with their data length), unpacked into a temporary folder and opened as a user would:
// open_checkpoint, validate_model, build_model_map, plan_outputs. Shard data is never read when
// opening, so it is written as a sparse tail; that lets the fuzzer try absurd but consistent sizes.
//
// Archive: byte 0 holds flags (bit 0: re-tile shard headers), then records of
//   u8 name length, name, u32 content length, content, u32 sparse tail length   (little endian)
// Re-tiling rewrites each shard header's data_offsets from its dtypes and shapes, so mutations of
// names, dtypes and shapes reach the model map instead of stopping at the tiling rule.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/error.hpp"
#include "src/checkpoint.hpp"
#include "src/model_map.hpp"
#include "src/pipeline.hpp"
#include "src/safetensors.hpp"
#include "tests/fuzz/fuzz_common.hpp"

namespace fs = std::filesystem;

namespace {

constexpr std::size_t max_files = 16;
constexpr std::uint64_t max_tail = 1ull << 32;  // sparse: costs no memory and no disk

fs::path g_root;
fs::path g_dir;

void remove_root() {
  std::error_code ec;
  fs::remove_all(g_root, ec);
}

struct reader {
  const std::uint8_t* p;
  std::size_t left;
  bool take(std::size_t n, const std::uint8_t*& out) {
    if (n > left) return false;
    out = p;
    p += n;
    left -= n;
    return true;
  }
  bool u32(std::uint32_t& v) {
    const std::uint8_t* b;
    if (!take(4, b)) return false;
    v = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
    return true;
  }
};

bool safe_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_'))
      return false;
  return true;
}

// Recomputes data_offsets from dtype and shape; returns the new header and the data length, or
// leaves `content` alone when the header is not a usable JSON object.
void retile(std::string& content, std::uint64_t& tail) {
  if (content.size() < 8) return;
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(content[i]);
  if (n > content.size() - 8) return;
  nlohmann::json doc = nlohmann::json::parse(
      content.begin() + 8, content.begin() + 8 + static_cast<std::ptrdiff_t>(n), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return;
  std::uint64_t offset = 0;
  for (auto& [name, entry] : doc.items()) {
    if (name == "__metadata__" || !entry.is_object()) continue;
    const auto dt = entry.find("dtype");
    const auto shape = entry.find("shape");
    if (dt == entry.end() || !dt->is_string() || shape == entry.end() || !shape->is_array())
      continue;
    const auto type = umload::parse_dtype(dt->get<std::string>());
    if (!type) continue;
    unsigned __int128 bits = umload::element_bits(*type);
    bool ok = true;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) {
        ok = false;
        break;
      }
      bits *= d.get<std::uint64_t>();
      if (bits > static_cast<unsigned __int128>(max_tail) * 8) ok = false;
      if (!ok) break;
    }
    if (!ok || bits % 8) continue;
    const auto bytes = static_cast<std::uint64_t>(bits / 8);
    if (offset + bytes > max_tail) continue;
    entry["data_offsets"] = {offset, offset + bytes};
    offset += bytes;
  }
  const std::string text = doc.dump();
  std::string header(8, '\0');
  for (int i = 0; i < 8; ++i) header[i] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  content = header + text;
  tail = offset;
}

bool write_file(const fs::path& path, const std::string& content, std::uint64_t tail) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = ::pwrite(fd, content.data(), content.size(), 0) == static_cast<ssize_t>(content.size());
  ok = ok && ::ftruncate(fd, static_cast<off_t>(content.size() + tail)) == 0;
  ::close(fd);
  return ok;
}

void exercise(const umload::checkpoint& ckpt) {
  const auto problems = umload::validate_model(ckpt);
  umload::model_map map;
  try {
    map = umload::build_model_map(ckpt);
  } catch (const umload::format_error&) {
    UMLOAD_FUZZ_REQUIRE(!problems.empty());
    return;
  }
  UMLOAD_FUZZ_REQUIRE(problems.empty());
  std::uint64_t quantized = 0;
  for (const auto& group : map.groups)
    for (const auto& pair : group.pairs) {
      UMLOAD_FUZZ_REQUIRE(pair.blocks.bytes() == pair.experts * pair.rows * pair.groups * 16);
      UMLOAD_FUZZ_REQUIRE(pair.scales.bytes() == pair.experts * pair.rows * pair.groups);
      quantized += pair.quantized_bytes();
    }
  UMLOAD_FUZZ_REQUIRE(quantized == map.quantized_bytes);
  for (const auto order : {umload::layout::hf, umload::layout::native}) {
    umload::pipeline_options options;
    options.order = order;
    try {
      const auto outputs = umload::plan_outputs(map, options);
      for (const auto& out : outputs)
        if (out.pair) UMLOAD_FUZZ_REQUIRE(out.bytes == out.pair->values() * 2);
    } catch (const umload::error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_root = fs::temp_directory_path() / ("umload-fuzz-model-map-" + std::to_string(::getpid()));
  g_dir = g_root / "ckpt";
  std::atexit(remove_root);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool retile_headers = data[0] & 1;
  reader in{data + 1, size - 1};
  std::error_code ec;
  fs::remove_all(g_dir, ec);
  fs::create_directories(g_dir);
  for (std::size_t files = 0; files < max_files && in.left > 0; ++files) {
    const std::uint8_t *name_bytes, *content_bytes, *length;
    std::uint32_t content_size = 0, tail32 = 0;
    if (!in.take(1, length) || !in.take(*length, name_bytes) || !in.u32(content_size) ||
        !in.take(content_size, content_bytes) || !in.u32(tail32))
      break;
    const std::string name(reinterpret_cast<const char*>(name_bytes), *length);
    if (!safe_name(name)) continue;
    std::string content(reinterpret_cast<const char*>(content_bytes), content_size);
    std::uint64_t tail = tail32;
    if (retile_headers && name.size() > 12 && name.ends_with(".safetensors")) retile(content, tail);
    if (!write_file(g_dir / name, content, tail)) return 0;
  }
  try {
    exercise(umload::open_checkpoint(g_dir));
  } catch (const umload::error&) {
  }
  return 0;
}
