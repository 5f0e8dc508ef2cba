#include "src/cli/matrix_record.hpp"

#include <algorithm>
#include <sstream>

#include "kernels/error.hpp"
#include "src/file.hpp"

namespace umload::cli::matrix {

namespace {

using json = nlohmann::json;

constexpr std::uint64_t max_runs_file_bytes = 1ull << 30;

// A key that must be there, of the type T.
template <typename T>
T required(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) throw format_error(where + ": no \"" + key + "\"");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw format_error(where + ": \"" + key + "\" has the wrong type (" + it->type_name() + ")");
  }
}

// A key that may be absent (skipped and failed runs have no report), of the type T when present.
template <typename T>
T optional(const json& object, const char* key, const std::string& where, T fallback = {}) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw format_error(where + ": \"" + key + "\" has the wrong type (" + it->type_name() + ")");
  }
}

const json& object_at(const json& parent, const char* key, const std::string& where) {
  static const json empty = json::object();
  const auto it = parent.find(key);
  if (it == parent.end() || it->is_null()) return empty;
  if (!it->is_object()) throw format_error(where + ": \"" + key + "\" is not an object");
  return *it;
}

run_status parse_status(const std::string& text, const std::string& where) {
  if (text == "ok") return run_status::ok;
  if (text == "skipped") return run_status::skipped;
  if (text == "failed") return run_status::failed;
  throw format_error(where + ": status '" + text + "' is not ok, skipped or failed");
}

}  // namespace

std::string_view to_string(run_status s) {
  switch (s) {
    case run_status::ok: return "ok";
    case run_status::skipped: return "skipped";
    case run_status::failed: return "failed";
  }
  return "failed";
}

std::string run_record::label() const { return machine.host + " / " + profile + " / " + device; }

json to_json(const run_record& r) {
  json machine = {
      {"host", r.machine.host},
      {"cpu", r.machine.cpu},
      {"cpus", r.machine.cpus},
      {"gpu", r.machine.gpu.empty() ? json(nullptr) : json(r.machine.gpu)},
      {"gpu_driver", r.machine.gpu_driver.empty() ? json(nullptr) : json(r.machine.gpu_driver)},
      {"gpu_count", r.machine.gpu_count},
      {"umload_version", r.machine.version},
      {"umload_commit", r.machine.commit},
  };
  json run = {
      {"checkpoint", r.checkpoint},    {"options", {{"dtype", r.dtype}, {"layout", r.layout}}},
      {"profile", r.profile},          {"device", r.device},
      {"status", to_string(r.status)}, {"exit_code", r.exit_code},
  };
  if (!r.reason.empty()) run["reason"] = r.reason;
  if (r.status == run_status::ok) {
    run["platform"] = r.platform;
    run["memory_model"] = r.memory_model;
    run["strategy"] = r.strategy;
    run["loaded_on"] = r.loaded_on;
    run["backend"] = r.backend;
    run["host_stands_in"] = r.host_stands_in;
    run["seconds"] = {{"total", r.seconds},
                      {"read", r.read_seconds},
                      {"copy", r.copy_seconds},
                      {"decode", r.decode_seconds}};
    run["bytes"] = {{"read", r.bytes_read}, {"produced", r.bytes_produced}};
    run["peaks"] = {{"host", r.peak_host_bytes},
                    {"device", r.peak_device_bytes},
                    {"predicted_host", r.predicted_peak_host_bytes},
                    {"predicted_device", r.predicted_peak_device_bytes}};
    run["page_cache_bytes_after"] = r.page_cache_bytes_after;
    run["digest"] = r.digest;
    json tensors = json::object();
    for (const auto& t : r.tensors) tensors[t.name] = t.digest;
    run["tensors"] = tensors;
  } else if (!r.memory_model.empty()) {
    run["memory_model"] = r.memory_model;
  }
  return {{"format", record_format}, {"machine", machine}, {"run", run}};
}

run_record record_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw format_error(where + ": not a JSON object");
  const auto format = required<std::string>(j, "format", where);
  if (format != record_format)
    throw format_error(where + ": format '" + format + "' is not " + std::string(record_format));
  run_record r;
  const json& m = object_at(j, "machine", where);
  r.machine.host = required<std::string>(m, "host", where + ": machine");
  r.machine.cpu = optional<std::string>(m, "cpu", where);
  r.machine.cpus = optional<unsigned>(m, "cpus", where);
  r.machine.gpu = optional<std::string>(m, "gpu", where);
  r.machine.gpu_driver = optional<std::string>(m, "gpu_driver", where);
  r.machine.gpu_count = optional<int>(m, "gpu_count", where);
  r.machine.version = optional<std::string>(m, "umload_version", where);
  r.machine.commit = optional<std::string>(m, "umload_commit", where);

  const std::string in_run = where + ": run";
  const json& run = object_at(j, "run", where);
  r.checkpoint = optional<std::string>(run, "checkpoint", in_run);
  const json& options = object_at(run, "options", in_run);
  r.dtype = optional<std::string>(options, "dtype", in_run, "bf16");
  r.layout = optional<std::string>(options, "layout", in_run, "hf");
  r.profile = required<std::string>(run, "profile", in_run);
  r.device = required<std::string>(run, "device", in_run);
  r.status = parse_status(required<std::string>(run, "status", in_run), in_run);
  r.reason = optional<std::string>(run, "reason", in_run);
  r.exit_code = optional<int>(run, "exit_code", in_run);
  r.platform = optional<std::string>(run, "platform", in_run);
  r.memory_model = optional<std::string>(run, "memory_model", in_run);
  r.strategy = optional<std::string>(run, "strategy", in_run);
  r.loaded_on = optional<std::string>(run, "loaded_on", in_run);
  r.backend = optional<std::string>(run, "backend", in_run);
  r.host_stands_in = optional<bool>(run, "host_stands_in", in_run);
  const json& seconds = object_at(run, "seconds", in_run);
  r.seconds = optional<double>(seconds, "total", in_run);
  r.read_seconds = optional<double>(seconds, "read", in_run);
  r.copy_seconds = optional<double>(seconds, "copy", in_run);
  r.decode_seconds = optional<double>(seconds, "decode", in_run);
  const json& bytes = object_at(run, "bytes", in_run);
  r.bytes_read = optional<std::uint64_t>(bytes, "read", in_run);
  r.bytes_produced = optional<std::uint64_t>(bytes, "produced", in_run);
  const json& peaks = object_at(run, "peaks", in_run);
  r.peak_host_bytes = optional<std::uint64_t>(peaks, "host", in_run);
  r.peak_device_bytes = optional<std::uint64_t>(peaks, "device", in_run);
  r.predicted_peak_host_bytes = optional<std::uint64_t>(peaks, "predicted_host", in_run);
  r.predicted_peak_device_bytes = optional<std::uint64_t>(peaks, "predicted_device", in_run);
  r.page_cache_bytes_after = optional<std::uint64_t>(run, "page_cache_bytes_after", in_run);
  r.digest = optional<std::string>(run, "digest", in_run);
  if (r.status == run_status::ok && r.digest.empty())
    throw format_error(in_run + ": an ok run without \"digest\"");
  for (const auto& [name, digest] : object_at(run, "tensors", in_run).items()) {
    if (!digest.is_string())
      throw format_error(in_run + ": digest of tensor '" + name + "' is not a string");
    r.tensors.push_back({name, digest.get<std::string>()});
  }
  std::sort(r.tensors.begin(), r.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return r;
}

std::vector<run_record> read_records(const std::filesystem::path& path) {
  const std::string text = read_text_file(path, max_runs_file_bytes);
  std::vector<run_record> records;
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path.string() + ":" + std::to_string(number);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      throw format_error(where + ": not JSON (" + e.what() + ")");
    }
    records.push_back(record_from_json(j, where));
  }
  return records;
}

void write_records(const std::filesystem::path& path, const std::vector<run_record>& records) {
  std::string text;
  for (const auto& r : records) text += to_json(r).dump() + "\n";
  write_file_atomic(path, text);
}

}  // namespace umload::cli::matrix
