// Fuzzes config.json: the pure parser, then the parsed config against a fixed tiny checkpoint so
// the model map's config rules (model_type, hidden/intermediate size, expert count) see fuzzed
// values. validate_model and build_model_map must agree: no problems exactly when the map builds.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "kernels/error.hpp"
#include "src/checkpoint.hpp"
#include "src/model_map.hpp"
#include "src/synth.hpp"
#include "tests/fuzz/fuzz_common.hpp"

namespace fs = std::filesystem;

namespace {

umload::checkpoint* g_ckpt = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const fs::path root = umload::fuzz::synth_tiny_checkpoint("config");
  // Headers are read once; the files are not needed after that.
  static umload::checkpoint ckpt = umload::open_checkpoint(root);
  g_ckpt = &ckpt;
  fs::remove_all(root);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    g_ckpt->config = umload::parse_model_config(text, "fuzz/config.json");
  } catch (const umload::error&) {
    return 0;
  }
  const auto problems = umload::validate_model(*g_ckpt);
  bool built = false;
  try {
    const auto map = umload::build_model_map(*g_ckpt);
    built = true;
    UMLOAD_FUZZ_REQUIRE(map.pair_count() <= g_ckpt->tensors.size() / 2);
  } catch (const umload::format_error&) {
  }
  UMLOAD_FUZZ_REQUIRE(built == problems.empty());
  return 0;
}
