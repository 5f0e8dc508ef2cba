// `umload matrix run` and `umload matrix compare`: the hardware matrix (docs/matrix.md). `run`
// loads one checkpoint under every profile on every device of this machine and writes one JSON
// line per load; `compare` joins the files of several machines, judges their digests together
// and reports as a table, JSON, JUnit or an HTML page.
#include <cstdio>

#include "kernels/error.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/matrix_html.hpp"
#include "src/cli/matrix_judge.hpp"
#include "src/cli/matrix_junit.hpp"
#include "src/cli/matrix_markup.hpp"
#include "src/cli/matrix_record.hpp"
#include "src/cli/matrix_report.hpp"
#include "src/cli/matrix_run.hpp"
#include "src/cli/report.hpp"
#include "src/file.hpp"

namespace umload::cli {

namespace {

struct matrix_run_args {
  std::string source;
  std::string profiles = "all";
  std::string devices = "auto";
  std::string dtype = "bf16";
  std::string layout = "hf";
  std::string out;
  std::string junit;
};

struct matrix_compare_args {
  std::vector<std::string> runs;
  std::string expect;
  std::string html;
  std::string junit;
  bool json = false;
};

void print_messages(const matrix::judgement& judged) {
  for (const auto& m : judged.messages)
    std::fprintf(stderr, "umload: matrix: %s\n", one_line(m).c_str());
}

int run_matrix_command(const matrix_run_args& args) {
  const auto profiles = matrix::resolve_profiles(args.profiles);
  const matrix::machine_info machine = matrix::this_machine();
  const auto devices = matrix::resolve_devices(args.devices, machine);
  matrix::run_options options{args.source, profiles, devices, args.dtype, args.layout};
  const auto records = matrix::run_matrix(
      options, machine, [](const matrix::run_record& r, std::size_t i, std::size_t n) {
        std::string what = std::string(matrix::to_string(r.status));
        if (r.status == matrix::run_status::ok)
          what += ", " + matrix::seconds_text(r.seconds) + " s, " + matrix::short_digest(r.digest);
        else
          what += ": " + r.reason;
        std::fprintf(stderr, "umload: matrix: [%zu/%zu] %s on %s: %s\n", i, n, r.profile.c_str(),
                     r.device.c_str(), one_line(what).c_str());
      });
  matrix::write_records(args.out, records);
  const auto judged = matrix::judge(records, std::nullopt);
  if (!args.junit.empty()) write_file_atomic(args.junit, matrix::junit_xml(records, judged));
  std::fputs(matrix::text_table(records, judged).c_str(), stdout);
  print_messages(judged);
  if (judged.mismatch) return static_cast<int>(exit_code::mismatch);
  for (const auto& r : records)
    if (r.status == matrix::run_status::failed)
      return r.exit_code > 0 && r.exit_code < 128 ? r.exit_code : 1;
  if (judged.ok == 0) {
    std::fprintf(stderr, "umload: matrix: no run fit this checkpoint\n");
    return static_cast<int>(exit_code::budget);
  }
  return 0;
}

int compare_command(const matrix_compare_args& args) {
  std::vector<matrix::run_record> records;
  for (const auto& path : args.runs) {
    auto more = matrix::read_records(path);
    if (more.empty()) throw format_error(path + ": no runs in the file");
    records.insert(records.end(), more.begin(), more.end());
  }
  std::optional<matrix::expected_digests> expected;
  if (!args.expect.empty()) expected = matrix::read_expected(args.expect);
  const auto judged = matrix::judge(records, expected);
  if (!args.html.empty()) write_file_atomic(args.html, matrix::html_report(records, judged));
  if (!args.junit.empty()) write_file_atomic(args.junit, matrix::junit_xml(records, judged));
  if (args.json)
    std::printf("%s\n", matrix::judgement_json(records, judged).dump(2).c_str());
  else
    std::fputs(matrix::text_table(records, judged).c_str(), stdout);
  print_messages(judged);
  return judged.mismatch || judged.failed ? static_cast<int>(exit_code::mismatch) : 0;
}

}  // namespace

void add_matrix(CLI::App& app, int& status) {
  auto* cmd = app.add_subcommand("matrix",
                                 "The hardware matrix: load one checkpoint under every profile and "
                                 "device, compare machines");
  cmd->require_subcommand(1);

  auto run = std::make_shared<matrix_run_args>();
  auto* run_cmd = cmd->add_subcommand(
      "run", "Load SRC under every profile on every device here; one JSON line per run");
  run_cmd->add_option("SRC", run->source, "Checkpoint directory or .safetensors file")->required();
  run_cmd->add_option(
      "--profiles", run->profiles,
      "all (live and every built-in profile) or a comma-separated list (live, h200, ...)");
  run_cmd->add_option("--devices", run->devices,
                      "auto (the CPU and every GPU) or a list: cpu,cuda:0,...");
  run_cmd->add_option("--dtype", run->dtype, "bf16, f32 or keep")
      ->check(CLI::IsMember({"bf16", "f32", "keep"}));
  run_cmd->add_option("--layout", run->layout, "hf or native")
      ->check(CLI::IsMember({"hf", "native"}));
  run_cmd->add_option("--out", run->out, "RUNS.jsonl to write (complete or absent)")->required();
  run_cmd->add_option("--junit", run->junit, "Also write JUnit XML, one test case per run");
  run_cmd->callback([run, &status] { status = run_matrix_command(*run); });

  auto compare = std::make_shared<matrix_compare_args>();
  auto* compare_cmd = cmd->add_subcommand(
      "compare", "Join the RUNS.jsonl of several machines and check that every digest agrees");
  compare_cmd->add_option("RUNS", compare->runs, "RUNS.jsonl files written by umload matrix run")
      ->required();
  compare_cmd->add_option(
      "--expect", compare->expect,
      "DIGESTS.json every run must match (the JSON of umload load --digest --json)");
  compare_cmd->add_option("--html", compare->html,
                          "Also write a self-contained HTML report: table and chart");
  compare_cmd->add_option("--junit", compare->junit,
                          "Also write JUnit XML, one test case per run of every machine");
  compare_cmd->add_flag("--json", compare->json, "Print the judgement as JSON");
  compare_cmd->callback([compare, &status] { status = compare_command(*compare); });
}

}  // namespace umload::cli
