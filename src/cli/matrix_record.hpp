// The hardware matrix's record: one load of one checkpoint under one platform profile on one
// device, with the machine it ran on. `umload matrix run` writes one JSON line per record
// (RUNS.jsonl); `umload matrix compare` reads the files of several machines and judges them
// together. The format is documented in docs/matrix.md; `format` is "umload-matrix/1".
//
//   auto records = read_records("h200.jsonl");       // format_error naming file and line
//   std::string line = to_json(records[0]).dump();   // the same line back
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace umload::cli::matrix {

inline constexpr std::string_view record_format = "umload-matrix/1";

struct machine_info {
  std::string host;        // host name
  std::string cpu;         // CPU model as /proc/cpuinfo names it
  unsigned cpus = 0;       // logical CPUs online
  std::string gpu;         // empty without a GPU
  std::string gpu_driver;  // CUDA driver version, e.g. "13.0"; empty without a GPU
  int gpu_count = 0;
  std::string version;  // umload version
  std::string commit;   // git commit umload was built from, "unknown" outside git
};

enum class run_status { ok, skipped, failed };
std::string_view to_string(run_status s);

struct tensor_digest {
  std::string name;
  std::string digest;  // "sha256:<hex>"
};

struct run_record {
  machine_info machine;
  std::string checkpoint;  // as given on the command line
  std::string dtype;       // load options: bf16 | f32 | keep
  std::string layout;      // hf | native
  std::string profile;     // "live" or a built-in profile name
  std::string device;      // asked for: "cpu", "cuda:N"

  run_status status = run_status::ok;
  std::string reason;  // why skipped or failed
  int exit_code = 0;   // of the load

  // From the load's report (ok runs).
  std::string platform;
  std::string memory_model;
  std::string strategy;
  std::string loaded_on;  // the device the load used
  std::string backend;
  bool host_stands_in = false;
  double seconds = 0;       // wall time of the load
  double read_seconds = 0;  // summed over reader threads
  double copy_seconds = 0;
  double decode_seconds = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_produced = 0;
  std::uint64_t peak_host_bytes = 0;    // peak RSS of the load's process
  std::uint64_t peak_device_bytes = 0;  // measured on the GPU (0 on the CPU)
  std::uint64_t predicted_peak_host_bytes = 0;
  std::uint64_t predicted_peak_device_bytes = 0;
  std::uint64_t page_cache_bytes_after = 0;
  std::string digest;                  // whole set, "sha256:<hex>"
  std::vector<tensor_digest> tensors;  // by name

  // "h200-01 / gh200 / cpu": how messages name a run.
  std::string label() const;
  // Runs whose digests must agree share this key: the load options that change the bytes.
  std::string options_key() const { return dtype + "/" + layout; }
};

nlohmann::json to_json(const run_record& record);
// Throws format_error naming `where` (e.g. "runs.jsonl:3") and the key that is missing or wrong.
run_record record_from_json(const nlohmann::json& j, const std::string& where);

// Every record of a RUNS.jsonl file (blank lines ignored). Throws io_error when it cannot be
// read, format_error naming the file and line of a line that is not a record.
std::vector<run_record> read_records(const std::filesystem::path& path);
// One line per record; written complete (temporary file, rename) or not at all.
void write_records(const std::filesystem::path& path, const std::vector<run_record>& records);

}  // namespace umload::cli::matrix
