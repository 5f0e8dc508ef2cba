#include "src/cli/matrix_run.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "kernels/error.hpp"
#include "platform/profiles.hpp"
#include "src/cli/build_info.hpp"
#include "src/file.hpp"

extern char** environ;

namespace umload::cli::matrix {

namespace {

using json = nlohmann::json;

constexpr std::uint64_t max_child_output_bytes = 256ull << 20;

struct child_result {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// A private directory for the children's output, removed with everything in it.
class scratch_dir {
 public:
  scratch_dir() {
    std::string base = (std::filesystem::temp_directory_path() / "umload-matrix.XXXXXX").string();
    if (!::mkdtemp(base.data()))
      throw io_error("cannot create a directory like " + base + ": " + std::strerror(errno), errno);
    path_ = base;
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string read_output(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  return read_text_file(path, max_child_output_bytes);
}

// Runs this same executable with `args`, stdin from /dev/null, stdout and stderr into files of
// `scratch`, and waits for it.
child_result run_self(const std::vector<std::string>& args, const scratch_dir& scratch) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string out_path = (scratch.path() / "stdout").string();
  const std::string err_path = (scratch.path() / "stderr").string();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(self.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, self.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw io_error("cannot start " + self + ": " + std::strerror(rc), rc);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      throw io_error(std::string("waitpid failed: ") + std::strerror(errno), errno);
  child_result result;
  result.out = read_output(out_path);
  result.err = read_output(err_path);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else {
    const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    result.exit_code = 128 + sig;
    result.err +=
        std::string("\nkilled by signal ") + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return result;
}

// The last line of a child's stderr without the "umload: error: " the CLI puts in front.
std::string reason_of(const std::string& err, int exit_code) {
  std::istringstream lines(err);
  std::string line, last;
  while (std::getline(lines, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  for (const std::string prefix : {"umload: error: ", "umload: internal error: "})
    if (last.rfind(prefix, 0) == 0) last = last.substr(prefix.size());
  return last.empty() ? "exit " + std::to_string(exit_code) + " with nothing on stderr" : last;
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  std::string implementer, part;
  while (std::getline(cpuinfo, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    if (key == "model name" || key == "Model") return value;
    if (key == "CPU implementer" && implementer.empty()) implementer = value;
    if (key == "CPU part" && part.empty()) part = value;
  }
  // Arm's /proc/cpuinfo names no model: give the implementer and part numbers it does give.
  if (!implementer.empty()) return "Arm CPU implementer " + implementer + " part " + part;
  return "unknown";
}

std::string driver_text(int version) {
  if (version <= 0) return {};
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

bool host_only_profile(const std::string& profile) {
  return profile != "live" && !platform::find_profile(profile).device.present;
}

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> items;
  std::string item;
  std::istringstream in(list);
  while (std::getline(in, item, ','))
    if (!item.empty()) items.push_back(item);
  return items;
}

void fill_from_report(run_record& r, const json& report) {
  r.platform = report.value("platform", "");
  r.memory_model = report.value("memory_model", "");
  r.strategy = report.value("strategy", "");
  r.loaded_on = report.value("device", "");
  r.backend = report.value("backend", "");
  r.host_stands_in = report.value("host_stands_in", false);
  r.seconds = report.value("seconds", 0.0);
  r.read_seconds = report.value("read_seconds", 0.0);
  r.copy_seconds = report.value("copy_seconds", 0.0);
  r.decode_seconds = report.value("decode_seconds", 0.0);
  r.bytes_read = report.value("bytes_read", std::uint64_t{0});
  r.bytes_produced = report.value("bytes_produced", std::uint64_t{0});
  r.peak_host_bytes = report.value("peak_rss_bytes", std::uint64_t{0});
  r.peak_device_bytes = report.value("peak_device_bytes", std::uint64_t{0});
  r.predicted_peak_host_bytes = report.value("predicted_peak_host_bytes", std::uint64_t{0});
  r.predicted_peak_device_bytes = report.value("predicted_peak_device_bytes", std::uint64_t{0});
  r.page_cache_bytes_after = report.value("page_cache_bytes_after", std::uint64_t{0});
  r.digest = report.value("digest", "");
  if (report.contains("tensors") && report["tensors"].is_object())
    for (const auto& [name, digest] : report["tensors"].items())
      r.tensors.push_back({name, digest.is_string() ? digest.get<std::string>() : ""});
  std::sort(r.tensors.begin(), r.tensors.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
}

run_record run_one(const run_options& options, const machine_info& machine,
                   const std::string& profile, const std::string& device,
                   const scratch_dir& scratch) {
  run_record r;
  r.machine = machine;
  r.checkpoint = options.source;
  r.dtype = options.dtype;
  r.layout = options.layout;
  r.profile = profile;
  r.device = device;
  if (device != "cpu" && host_only_profile(profile)) {
    r.status = run_status::skipped;
    r.memory_model = "host";
    r.reason = "profile " + profile +
               " plans for a host-only machine: every tensor in host memory, "
               "which a GPU does not decode into";
    return r;
  }
  std::vector<std::string> args = {"load",     options.source, "--device",   device,
                                   "--dtype",  options.dtype,  "--layout",   options.layout,
                                   "--digest", "--json",       "--progress", "none"};
  if (profile != "live") args.insert(args.end(), {"--profile", profile});
  const child_result child = run_self(args, scratch);
  r.exit_code = child.exit_code;
  if (child.exit_code == static_cast<int>(exit_code::budget)) {
    r.status = run_status::skipped;
    r.reason = "plan does not fit: " + reason_of(child.err, child.exit_code);
    return r;
  }
  if (child.exit_code != 0) {
    r.status = run_status::failed;
    r.reason = reason_of(child.err, child.exit_code);
    return r;
  }
  try {
    fill_from_report(r, json::parse(child.out));
  } catch (const json::exception& e) {
    r.status = run_status::failed;
    r.reason = std::string("the load's JSON report could not be read: ") + e.what();
    return r;
  }
  if (r.digest.empty()) {
    r.status = run_status::failed;
    r.reason = "the load's report has no digest";
  }
  return r;
}

}  // namespace

machine_info this_machine() {
  machine_info m;
  char host[256] = {};
  m.host = ::gethostname(host, sizeof(host) - 1) == 0 && host[0] ? host : "unknown";
  m.cpu = cpu_model();
  m.cpus = std::thread::hardware_concurrency();
  m.version = UMLOAD_VERSION;
  m.commit = UMLOAD_GIT_COMMIT;
  scratch_dir scratch;
  const child_result child = run_self({"platform", "--json"}, scratch);
  if (child.exit_code != 0)
    throw error("umload platform --json failed (exit " + std::to_string(child.exit_code) +
                "): " + reason_of(child.err, child.exit_code));
  try {
    const json device = json::parse(child.out).at("device");
    if (device.value("present", false)) {
      m.gpu = device.value("name", "");
      m.gpu_driver = driver_text(device.value("driver_version", -1));
      m.gpu_count = device.value("device_count", 1);
    }
  } catch (const json::exception& e) {
    throw error(std::string("umload platform --json printed no device: ") + e.what());
  }
  return m;
}

std::vector<std::string> resolve_profiles(const std::string& list) {
  const auto known = platform::profile_names();
  std::vector<std::string> profiles;
  if (list == "all") {
    profiles.push_back("live");
    profiles.insert(profiles.end(), known.begin(), known.end());
    return profiles;
  }
  for (const auto& name : split_list(list)) {
    if (name != "live" && std::find(known.begin(), known.end(), name) == known.end()) {
      std::string names = "live";
      for (const auto& k : known) names += ", " + k;
      throw usage_error("--profiles: unknown profile '" + name + "' (known: " + names +
                        ", or all)");
    }
    profiles.push_back(name);
  }
  if (profiles.empty()) throw usage_error("--profiles: no profile given");
  return profiles;
}

std::vector<std::string> resolve_devices(const std::string& list, const machine_info& machine) {
  std::vector<std::string> devices;
  if (list == "auto") {
    devices.push_back("cpu");
    for (int i = 0; i < machine.gpu_count; ++i) devices.push_back("cuda:" + std::to_string(i));
    return devices;
  }
  for (const auto& d : split_list(list)) {
    const bool ordinal = d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
                         d.find_first_not_of("0123456789", 5) == std::string::npos;
    if (d != "cpu" && d != "cuda" && !ordinal)
      throw usage_error("--devices: '" + d + "' is not cpu, cuda or cuda:N");
    devices.push_back(d);
  }
  if (devices.empty()) throw usage_error("--devices: no device given");
  return devices;
}

std::vector<run_record> run_matrix(
    const run_options& options, const machine_info& machine,
    const std::function<void(const run_record&, std::size_t, std::size_t)>& on_run) {
  scratch_dir scratch;
  std::vector<run_record> records;
  const std::size_t total = options.devices.size() * options.profiles.size();
  for (const auto& device : options.devices)
    for (const auto& profile : options.profiles) {
      records.push_back(run_one(options, machine, profile, device, scratch));
      if (on_run) on_run(records.back(), records.size(), total);
    }
  return records;
}

}  // namespace umload::cli::matrix
