#include <csignal>
#include <cstdio>
#include <exception>
#include <new>

#include "kernels/error.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/report.hpp"

int main(int argc, char** argv) {
  // Writes past RLIMIT_FSIZE must fail with EFBIG (reported, cleaned up), not kill the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"umload: stream GPT-OSS MXFP4 checkpoints into BF16, on CPUs and GPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "umload 0.1.0");
  int status = 0;
  umload::cli::add_inspect(app, status);
  umload::cli::add_synth(app, status);
  umload::cli::add_convert(app, status);
  umload::cli::add_load(app, status);
  umload::cli::add_demo(app, status);
  umload::cli::add_platform(app, status);
  umload::cli::add_plan(app, status);
  umload::cli::add_matrix(app, status);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(umload::exit_code::usage);
  } catch (const umload::error& e) {
    std::fprintf(stderr, "umload: error: %s\n", umload::cli::one_line(e.what()).c_str());
    return static_cast<int>(e.code());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "umload: error: out of memory\n");
    return static_cast<int>(umload::exit_code::internal);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "umload: internal error: %s\n", umload::cli::one_line(e.what()).c_str());
    return static_cast<int>(umload::exit_code::internal);
  }
  return status;
}
