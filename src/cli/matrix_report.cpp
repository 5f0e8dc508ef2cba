#include "src/cli/matrix_report.hpp"

#include <algorithm>
#include <set>

#include "src/cli/matrix_markup.hpp"
#include "src/cli/report.hpp"

namespace umload::cli::matrix {

namespace {

std::string bytes_or_dash(std::uint64_t bytes) {
  return bytes ? platform::format_bytes(bytes) : "-";
}

std::vector<std::string> row_of(const run_record& r, const verdict& v) {
  const bool ok = r.status == run_status::ok;
  return {r.machine.host,
          r.profile,
          r.device,
          r.memory_model.empty() ? "-" : r.memory_model,
          ok ? seconds_text(r.seconds) : "-",
          ok ? bytes_or_dash(r.peak_host_bytes) : "-",
          ok ? bytes_or_dash(r.predicted_peak_host_bytes) : "-",
          ok ? bytes_or_dash(r.peak_device_bytes) : "-",
          ok ? bytes_or_dash(r.predicted_peak_device_bytes) : "-",
          short_digest(ok ? r.digest : ""),
          std::string(to_string(v.kind)),
          ok ? r.strategy : r.reason};
}

std::size_t machine_count(const std::vector<run_record>& records) {
  std::set<std::string> hosts;
  for (const auto& r : records) hosts.insert(r.machine.host);
  return hosts.size();
}

}  // namespace

std::string summary_line(const std::vector<run_record>& records, const judgement& judged) {
  std::string line = std::to_string(records.size()) + " runs on " +
                     std::to_string(machine_count(records)) + " machine" +
                     (machine_count(records) == 1 ? "" : "s") + " (" + std::to_string(judged.ok) +
                     " ok, " + std::to_string(judged.skipped) + " skipped, " +
                     std::to_string(judged.failed) + " failed): ";
  if (judged.mismatch)
    return line + std::to_string(judged.differs) + " of " + std::to_string(judged.ok) +
           " digests DIFFER";
  if (judged.ok == 0) return line + "no run produced a digest";
  return line + "every digest agrees" + (judged.failed ? ", but some runs failed" : "");
}

std::string text_table(const std::vector<run_record>& records, const judgement& judged) {
  std::vector<std::vector<std::string>> rows = {
      {"machine", "profile", "device", "memory model", "time s", "peak host", "predicted",
       "peak device", "predicted", "digest", "agreement", "strategy or reason"}};
  for (std::size_t i = 0; i < records.size(); ++i)
    rows.push_back(row_of(records[i], judged.verdicts[i]));
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    out += one_line(line) + "\n";
  }
  return out + summary_line(records, judged) + "\n";
}

nlohmann::json judgement_json(const std::vector<run_record>& records, const judgement& judged) {
  nlohmann::json runs = nlohmann::json::array();
  nlohmann::json machines = nlohmann::json::object();
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const auto& v = judged.verdicts[i];
    nlohmann::json j = to_json(r);
    j["run"].erase("tensors");
    j["agreement"] = to_string(v.kind);
    if (!v.reference.empty()) j["reference"] = v.reference;
    if (!v.first_tensor.empty()) j["first_differing_tensor"] = v.first_tensor;
    if (!v.message.empty()) j["message"] = v.message;
    machines[r.machine.host] = j["machine"];
    j.erase("machine");
    j["machine"] = r.machine.host;
    runs.push_back(j);
  }
  return {{"agree", !judged.mismatch},
          {"summary", summary_line(records, judged)},
          {"reference", judged.reference},
          {"counts",
           {{"runs", records.size()},
            {"ok", judged.ok},
            {"differs", judged.differs},
            {"failed", judged.failed},
            {"skipped", judged.skipped}}},
          {"machines", machines},
          {"runs", runs},
          {"messages", judged.messages}};
}

}  // namespace umload::cli::matrix
