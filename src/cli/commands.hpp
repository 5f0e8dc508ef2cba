// The umload command line: one function per subcommand registers its options on the app and
// returns the callback state. main() catches umload::error and maps its kind to the exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace umload::cli {

// Each adds one subcommand to `app`. When the subcommand runs, its result is stored in `status`.
void add_inspect(CLI::App& app, int& status);
void add_synth(CLI::App& app, int& status);
void add_convert(CLI::App& app, int& status);
void add_load(CLI::App& app, int& status);
void add_demo(CLI::App& app, int& status);
void add_platform(CLI::App& app, int& status);
void add_plan(CLI::App& app, int& status);
void add_matrix(CLI::App& app, int& status);

}  // namespace umload::cli
