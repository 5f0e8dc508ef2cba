#include "src/cli/matrix_junit.hpp"

#include <map>

#include "src/cli/matrix_markup.hpp"

namespace umload::cli::matrix {

namespace {

std::string attribute(const char* name, const std::string& value) {
  return std::string(" ") + name + "=\"" + escape_markup(value) + "\"";
}

struct suite_counts {
  std::size_t tests = 0, failures = 0, skipped = 0;
  double seconds = 0;
};

std::string counts_attributes(const suite_counts& c) {
  return attribute("tests", std::to_string(c.tests)) +
         attribute("failures", std::to_string(c.failures)) + attribute("errors", "0") +
         attribute("skipped", std::to_string(c.skipped)) +
         attribute("time", seconds_text(c.seconds));
}

std::string testcase(const run_record& r, const verdict& v) {
  std::string xml = "    <testcase" + attribute("classname", "umload.matrix." + r.machine.host) +
                    attribute("name", r.profile + " on " + r.device) +
                    attribute("time", seconds_text(r.seconds)) + ">\n";
  if (v.kind == agreement::failed || v.kind == agreement::differs) {
    const char* type = v.kind == agreement::failed ? "load-failed" : "digest-differs";
    xml += "      <failure" + attribute("type", type) + attribute("message", v.message) + ">" +
           escape_markup(v.message) + "</failure>\n";
  } else if (v.kind == agreement::skipped) {
    xml += "      <skipped" + attribute("message", r.reason) + "/>\n";
  }
  if (r.status == run_status::ok)
    xml += "      <system-out>" +
           escape_markup("strategy: " + r.strategy + "; memory model: " + r.memory_model +
                         "; digest: " + r.digest) +
           "</system-out>\n";
  return xml + "    </testcase>\n";
}

}  // namespace

std::string junit_xml(const std::vector<run_record>& records, const judgement& judged) {
  // Suites in order of each machine's first run.
  std::vector<std::string> hosts;
  std::map<std::string, std::string> cases;
  std::map<std::string, suite_counts> counts;
  std::map<std::string, const machine_info*> machines;
  suite_counts total;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const auto& v = judged.verdicts[i];
    if (!machines.count(r.machine.host))
      hosts.push_back(r.machine.host), machines[r.machine.host] = &r.machine;
    cases[r.machine.host] += testcase(r, v);
    for (auto* c : {&counts[r.machine.host], &total}) {
      ++c->tests;
      c->failures += v.kind == agreement::failed || v.kind == agreement::differs;
      c->skipped += v.kind == agreement::skipped;
      c->seconds += r.seconds;
    }
  }
  std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites" +
                    attribute("name", "umload matrix") + counts_attributes(total) + ">\n";
  for (const auto& host : hosts) {
    const machine_info& m = *machines[host];
    xml += "  <testsuite" + attribute("name", "umload matrix on " + host) +
           attribute("hostname", host) + counts_attributes(counts[host]) + ">\n    <properties>\n";
    for (const auto& [name, value] : {std::pair<const char*, std::string>{"cpu", m.cpu},
                                      {"gpu", m.gpu.empty() ? "none" : m.gpu},
                                      {"gpu_driver", m.gpu_driver.empty() ? "none" : m.gpu_driver},
                                      {"umload_version", m.version},
                                      {"umload_commit", m.commit}})
      xml += "      <property" + attribute("name", name) + attribute("value", value) + "/>\n";
    xml += "    </properties>\n" + cases[host] + "  </testsuite>\n";
  }
  return xml + "</testsuites>\n";
}

}  // namespace umload::cli::matrix
