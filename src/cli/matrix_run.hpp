// `umload matrix run`: one checkpoint loaded under every chosen platform profile on every chosen
// device, each load a `umload load --digest --json` of its own process, so that its peak memory,
// page cache and failures are its own and a crash is recorded as a failed run, not the matrix's.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "src/cli/matrix_record.hpp"

namespace umload::cli::matrix {

struct run_options {
  std::string source;
  std::vector<std::string> profiles;  // "live" or profile names, already checked
  std::vector<std::string> devices;   // "cpu", "cuda:N"
  std::string dtype = "bf16";
  std::string layout = "hf";
};

// This machine: host name, CPU model, GPUs (asked of `umload platform --json` in a child
// process, so the CUDA runtime never loads into this one).
machine_info this_machine();

// "all" -> live and every built-in profile; else a comma-separated list, each checked.
// Throws usage_error naming an unknown profile and listing the known ones.
std::vector<std::string> resolve_profiles(const std::string& list);
// "auto" -> cpu and every GPU of `machine`; else a comma-separated list of cpu, cuda, cuda:N.
std::vector<std::string> resolve_devices(const std::string& list, const machine_info& machine);

// Runs every (device, profile) pair, devices outermost; `on_run` sees each record as it is made.
std::vector<run_record> run_matrix(
    const run_options& options, const machine_info& machine,
    const std::function<void(const run_record&, std::size_t index, std::size_t total)>& on_run);

}  // namespace umload::cli::matrix
