// Fuzzes model.safetensors.index.json: first the pure parser, then the same text as the index of
// a real (tiny, synthetic) checkpoint, so weight_map names are followed on disk: every name must
// stay inside the checkpoint folder, and every accepted checkpoint must agree with its index.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "kernels/error.hpp"
#include "src/checkpoint.hpp"
#include "src/synth.hpp"
#include "tests/fuzz/fuzz_common.hpp"

namespace fs = std::filesystem;

namespace {

fs::path g_dir;

void remove_dir() {
  std::error_code ec;
  fs::remove_all(g_dir.parent_path(), ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A tiny checkpoint with 3 shards, plus a file outside it for names that try to escape.
  const fs::path root = umload::fuzz::synth_tiny_checkpoint("index", "ckpt");
  fs::copy_file(root / "ckpt" / "model-00000-of-00002.safetensors", root / "outside.safetensors");
  fs::create_symlink(root / "outside.safetensors", root / "ckpt" / "link.safetensors");
  g_dir = root / "ckpt";
  std::atexit(remove_dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    umload::parse_checkpoint_index(text, "fuzz/model.safetensors.index.json");
  } catch (const umload::error&) {
  }
  {
    std::ofstream out(g_dir / "model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  try {
    const auto ckpt = umload::open_checkpoint(g_dir);
    const fs::path real_dir = fs::canonical(g_dir);
    for (const auto& shard : ckpt.shards)
      UMLOAD_FUZZ_REQUIRE(fs::canonical(shard.path).parent_path() == real_dir);
    UMLOAD_FUZZ_REQUIRE(ckpt.index_total_size == ckpt.tensor_bytes());
  } catch (const umload::error&) {
  }
  return 0;
}
