#include "tests/core/fixtures.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "src/loader.hpp"
#include "src/synth.hpp"

namespace umload::test {

cli_result run_cli(const std::string& args) {
  static int counter = 0;
  const fs::path base = fs::temp_directory_path() / ("umload-cli-" + std::to_string(::getpid()) +
                                                     "-" + std::to_string(counter++));
  const std::string out = base.string() + ".out", err = base.string() + ".err";
  const std::string command = std::string(UMLOAD_CLI) + " " + args + " >" + out + " 2>" + err;
  const int raw = std::system(command.c_str());
  cli_result r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = read_bytes(out);
  r.err = read_bytes(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

std::map<std::string, std::string> file_digests(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) {
      const std::string bytes = read_bytes(e.path());
      files[fs::relative(e.path(), dir).string()] = sha256_hex(bytes.data(), bytes.size());
    }
  return files;
}

fs::path synth_tiny(const fs::path& dir, int layers, int experts, bool edge_scales,
                    std::uint64_t seed) {
  synth_options o;
  o.preset = "tiny";
  o.layers = layers;
  o.experts = experts;
  o.edge_scales = edge_scales;
  o.seed = seed;
  o.out = dir;
  synthesize(o);
  return dir;
}

}  // namespace umload::test
