// Test fixtures for the loader: temporary folders, hand-made safetensors files, synthetic
// checkpoints, and running the CLI as a user would.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "src/pipeline.hpp"

namespace umload::test {

namespace fs = std::filesystem;

// A fresh folder under the build tree's temp area, removed at the end of the test.
class temp_dir {
 public:
  temp_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name =
        std::string(info ? info->test_suite_name() : "t") + "." + (info ? info->name() : "x");
    for (auto& c : name)
      if (c == '/') c = '_';
    path_ = fs::temp_directory_path() / ("umload-test-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file from a header text and a data buffer of `data_bytes` bytes.
inline void write_safetensors(const fs::path& path, const std::string& header,
                              std::uint64_t data_bytes, unsigned char fill = 0x11) {
  write_bytes(path,
              le64(header.size()) + header + std::string(data_bytes, static_cast<char>(fill)));
}

// Runs the CLI; returns the exit status and fills stdout/stderr.
struct cli_result {
  int status = -1;
  std::string out;
  std::string err;
  nlohmann::json json() const { return nlohmann::json::parse(out); }
};

cli_result run_cli(const std::string& args);

// A pipeline sink that writes every item into one scratch buffer and keeps nothing: for tests
// that only care whether a run fails.
struct discard_sink : output_sink {
  std::vector<std::byte> buffer = std::vector<std::byte>(64 << 20);
  std::byte* destination(std::size_t, std::uint64_t, std::uint64_t) override {
    return buffer.data();
  }
  void commit(std::size_t, std::uint64_t, std::uint64_t) override {}
};

// sha256 of every regular file under `dir`, by its path relative to `dir`: to prove an input
// untouched or two outputs identical.
std::map<std::string, std::string> file_digests(const fs::path& dir);

// Synthesizes a tiny GPT-OSS-layout checkpoint through the library.
fs::path synth_tiny(const fs::path& dir, int layers = 2, int experts = 4, bool edge_scales = false,
                    std::uint64_t seed = 1);

// Reads and rewrites a JSON file in place.
template <typename F>
void edit_json(const fs::path& path, F&& edit) {
  nlohmann::json doc = nlohmann::json::parse(read_bytes(path));
  edit(doc);
  write_bytes(path, doc.dump(2));
}

}  // namespace umload::test
