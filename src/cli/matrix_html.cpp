#include "src/cli/matrix_html.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "src/cli/matrix_markup.hpp"
#include "src/cli/matrix_report.hpp"
#include "src/cli/report.hpp"

namespace umload::cli::matrix {

namespace {

// Colours: time in blue; host memory orange, device memory teal; measured solid, predicted pale
// with an outline of the same hue.
constexpr const char* time_colour = "#4c78a8";
constexpr const char* host_colour = "#e8871e";
constexpr const char* host_pale = "#f8d3a6";
constexpr const char* device_colour = "#2a9d8f";
constexpr const char* device_pale = "#a8dcd5";

// Chart geometry, in pixels.
constexpr double width = 1100;
constexpr double label_x = 12;  // run labels start here
constexpr double time_x = 300;  // time panel
constexpr double time_w = 240;
constexpr double memory_x = 620;    // memory panel
constexpr double memory_w = 340;    // leaves room for the value labels
constexpr double top = 124;         // titles, legend and tick labels above the first row
constexpr double machine_row = 26;  // a machine's heading
constexpr double run_row = 36;      // one run
constexpr double bottom = 56;       // axis labels and titles below the last row

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

std::string text(double x, double y, const std::string& content,
                 const std::string& attributes = {}) {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\"" +
         (attributes.empty() ? "" : " " + attributes) + ">" + escape_markup(content) + "</text>\n";
}

std::string rect(double x, double y, double w, double h, const std::string& cls,
                 const std::string& fill, const std::string& stroke = {},
                 const std::string& title = {}) {
  std::string r = "<rect class=\"" + cls + "\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" +
                  num(std::max(w, 0.0)) + "\" height=\"" + num(h) + "\" fill=\"" + fill + "\"";
  if (!stroke.empty()) r += " stroke=\"" + stroke + "\" stroke-width=\"1\"";
  if (title.empty()) return r + "/>\n";
  return r + "><title>" + escape_markup(title) + "</title></rect>\n";
}

// Round tick spacing (1, 2, 2.5 or 5 times a power of ten) giving at most `most` intervals
// up to `max`; returns the ticks including 0 and a last one at or past `max`.
std::vector<double> ticks(double max, int most = 5) {
  if (max <= 0) max = 1;
  const double raw = max / most;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power * 10;
  for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (power * m >= raw) {
      step = power * m;
      break;
    }
  std::vector<double> out;
  for (double t = 0; t < max + step * 0.999; t += step) out.push_back(t);
  return out;
}

std::string tick_text(double v) {
  char buf[32];
  if (v == std::floor(v))
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  else
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

struct memory_unit {
  double bytes;
  const char* name;
};

memory_unit unit_for(double max_bytes) {
  if (max_bytes >= 2.0 * (1ull << 30)) return {double(1ull << 30), "GiB"};
  if (max_bytes >= 2.0 * (1ull << 20)) return {double(1ull << 20), "MiB"};
  return {1024.0, "KiB"};
}

// One x axis under a panel: grid lines through the rows, tick labels, the axis title.
std::string axis(double x0, double w, double y_top, double y_bottom, const std::vector<double>& at,
                 const std::string& title, const std::string& unit) {
  std::string s = "<g class=\"axis\">\n";
  const double max = at.back();
  for (const double t : at) {
    const double x = x0 + w * t / max;
    s += "<line class=\"grid\" x1=\"" + num(x) + "\" y1=\"" + num(y_top) + "\" x2=\"" + num(x) +
         "\" y2=\"" + num(y_bottom) + "\" stroke=\"#dddddd\"/>\n";
    s += text(x, y_bottom + 16, tick_text(t), "class=\"tick\" text-anchor=\"middle\"");
    s += text(x, y_top - 6, tick_text(t),
              "class=\"tick-top\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555555\"");
  }
  s += text(x0 + w + 14, y_top - 6, unit, "class=\"tick-unit\" font-size=\"11\" fill=\"#555555\"");
  s += "<line x1=\"" + num(x0) + "\" y1=\"" + num(y_bottom) + "\" x2=\"" + num(x0 + w) +
       "\" y2=\"" + num(y_bottom) + "\" stroke=\"#444444\"/>\n";
  s += text(x0 + w / 2, y_bottom + 38, title,
            "class=\"axis-title\" text-anchor=\"middle\" font-weight=\"bold\"");
  return s + "</g>\n";
}

std::string legend(double y) {
  struct entry {
    const char* label;
    const char* fill;
    const char* stroke;
  };
  const entry entries[] = {{"load time, measured", time_colour, ""},
                           {"host peak, measured (RSS)", host_colour, ""},
                           {"device peak, measured", device_colour, ""},
                           {"host peak, predicted by the plan", host_pale, host_colour},
                           {"device peak, predicted by the plan", device_pale, device_colour}};
  std::string s = "<g class=\"legend\">\n";
  double x = label_x;
  for (const auto& e : entries) {
    s += rect(x, y - 10, 14, 12, "legend-swatch", e.fill, e.stroke);
    s += text(x + 19, y, e.label, "class=\"legend-label\"");
    x += 24 + 7.0 * std::string(e.label).size();
  }
  return s + "</g>\n";
}

// Records grouped by machine, machines in order of first appearance.
std::vector<std::pair<std::string, std::vector<std::size_t>>> by_machine(
    const std::vector<run_record>& records) {
  std::vector<std::pair<std::string, std::vector<std::size_t>>> groups;
  for (std::size_t i = 0; i < records.size(); ++i) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == records[i].machine.host; });
    if (it == groups.end()) it = groups.insert(groups.end(), {records[i].machine.host, {}});
    it->second.push_back(i);
  }
  return groups;
}

std::string run_rows(const run_record& r, const verdict& v, double y, double time_max,
                     double memory_max) {
  const bool differs = v.kind == agreement::differs;
  std::string s = "<g class=\"run" + std::string(differs ? " differs" : "") + "\" data-machine=\"" +
                  escape_markup(r.machine.host) + "\" data-profile=\"" + escape_markup(r.profile) +
                  "\" data-device=\"" + escape_markup(r.device) + "\" data-status=\"" +
                  std::string(to_string(r.status)) + "\" data-agreement=\"" +
                  std::string(to_string(v.kind)) + "\">\n";
  if (differs) s += rect(0, y, width, run_row, "mismatch-band", "#fde2e2");
  s += text(label_x + 12, y + 15, r.profile + " on " + r.device, "class=\"run-label\"");
  std::string sub = r.memory_model.empty() ? std::string(to_string(r.status)) : r.memory_model;
  if (r.host_stands_in) sub += ", host stands in";
  if (differs) sub += ", DIGEST DIFFERS";
  s += text(label_x + 12, y + 29, sub,
            std::string("class=\"run-sublabel\" font-size=\"11\" fill=\"") +
                (differs ? "#b00020" : "#666666") + "\"");
  if (r.status != run_status::ok) {
    const std::string note = std::string(to_string(r.status)) + ": " + r.reason;
    const std::string clipped = note.size() > 110 ? note.substr(0, 107) + "..." : note;
    s += text(time_x, y + 22, clipped,
              std::string("class=\"run-note\" font-style=\"italic\" fill=\"") +
                  (r.status == run_status::failed ? "#b00020" : "#777777") + "\"");
    return s + "</g>\n";
  }
  const double tw = time_w * r.seconds / time_max;
  s += rect(time_x, y + 10, tw, 16, "bar time", time_colour, {},
            "load time " + seconds_text(r.seconds) + " s");
  s += text(time_x + tw + 4, y + 22, seconds_text(r.seconds) + " s",
            "class=\"value\" font-size=\"11\"");

  const auto scaled = [&](std::uint64_t bytes) { return memory_w * double(bytes) / memory_max; };
  const auto bar_pair = [&](double yy, std::uint64_t host, std::uint64_t device, const char* kind,
                            const char* host_fill, const char* device_fill, const char* stroke_host,
                            const char* stroke_device) {
    std::string b;
    const double hw = scaled(host), dw = scaled(device);
    b += rect(memory_x, yy, hw, 13, std::string("bar ") + kind + "-host", host_fill, stroke_host,
              std::string(kind) + " host peak " + platform::format_bytes(host));
    if (device)
      b +=
          rect(memory_x + hw, yy, dw, 13, std::string("bar ") + kind + "-device", device_fill,
               stroke_device, std::string(kind) + " device peak " + platform::format_bytes(device));
    b += text(memory_x + hw + dw + 4, yy + 11, platform::format_bytes(host + device) + " " + kind,
              "class=\"value\" font-size=\"11\"");
    return b;
  };
  s += bar_pair(y + 4, r.peak_host_bytes, r.peak_device_bytes, "measured", host_colour,
                device_colour, "", "");
  s += bar_pair(y + 19, r.predicted_peak_host_bytes, r.predicted_peak_device_bytes, "predicted",
                host_pale, device_pale, host_colour, device_colour);
  return s + "</g>\n";
}

const char* style = R"(
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 8px 0; }
h2 { font-size: 17px; margin: 28px 0 8px 0; }
.verdict { padding: 10px 14px; border-radius: 6px; font-weight: bold; margin: 12px 0; }
.verdict.agree { background: #e3f4e8; color: #1b5e20; border: 1px solid #9ccfa8; }
.verdict.differ { background: #fde2e2; color: #8a0015; border: 1px solid #f2a2a2; }
.verdict ul { font-weight: normal; margin: 6px 0 0 0; }
table { border-collapse: collapse; font-size: 12px; }
div.scroll { overflow-x: auto; }
td { white-space: nowrap; }
td.strategy { white-space: normal; min-width: 220px; }
td.agreement { white-space: normal; min-width: 90px; overflow-wrap: anywhere; }
th, td { border: 1px solid #d0d0d0; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.differs td { background: #fde2e2; }
tr.failed td { background: #fff1e0; }
tr.skipped td { color: #777; }
code { font-size: 12px; }
svg#matrix-chart { max-width: 100%; height: auto; }
svg text { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; font-size: 12px; }
)";

std::string cell(const std::string& content, bool numeric = false) {
  return std::string(numeric ? "<td class=\"num\">" : "<td>") + escape_markup(content) + "</td>";
}

std::string bytes_cell(std::uint64_t bytes, bool ok) {
  return cell(ok && bytes ? platform::format_bytes(bytes) : "-", true);
}

std::string runs_table(const std::vector<run_record>& records, const judgement& judged) {
  std::string s =
      "<div class=\"scroll\"><table "
      "id=\"runs\">\n<tr><th>machine</th><th>profile</th><th>device</th>"
      "<th>status</th><th>time (s)</th><th>peak host</th><th>predicted host</th><th>peak "
      "device</th>"
      "<th>predicted device</th><th>page cache left</th><th>digest</th><th>agreement</th>"
      "<th>strategy, or why not</th></tr>\n";
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    const auto& v = judged.verdicts[i];
    const bool ok = r.status == run_status::ok;
    const char* cls = v.kind == agreement::differs   ? "differs"
                      : v.kind == agreement::failed  ? "failed"
                      : v.kind == agreement::skipped ? "skipped"
                                                     : "same";
    std::string agreement_text = std::string(to_string(v.kind));
    if (!v.first_tensor.empty()) agreement_text += " (first tensor: " + v.first_tensor + ")";
    s += std::string("<tr class=\"") + cls + "\">" + cell(r.machine.host) + cell(r.profile) +
         cell(r.device) + cell(std::string(to_string(r.status))) +
         cell(ok ? seconds_text(r.seconds) : "-", true) + bytes_cell(r.peak_host_bytes, ok) +
         bytes_cell(r.predicted_peak_host_bytes, ok) + bytes_cell(r.peak_device_bytes, ok) +
         bytes_cell(r.predicted_peak_device_bytes, ok) + bytes_cell(r.page_cache_bytes_after, ok) +
         "<td><code>" + escape_markup(short_digest(ok ? r.digest : "")) + "</code></td>" +
         "<td class=\"agreement\">" + escape_markup(agreement_text) + "</td>" +
         "<td class=\"strategy\">" + escape_markup(ok ? r.strategy : r.reason) + "</td></tr>\n";
  }
  return s + "</table></div>\n";
}

std::string machines_table(const std::vector<run_record>& records) {
  std::string s =
      "<table "
      "id=\"machines\">\n<tr><th>machine</th><th>CPU</th><th>CPUs</th><th>GPU</th><th>driver</th>"
      "<th>umload</th><th>commit</th></tr>\n";
  for (const auto& [host, indices] : by_machine(records)) {
    const machine_info& m = records[indices.front()].machine;
    s += "<tr>" + cell(host) + cell(m.cpu) + cell(std::to_string(m.cpus), true) +
         cell(m.gpu.empty() ? "none" : m.gpu) + cell(m.gpu_driver.empty() ? "-" : m.gpu_driver) +
         cell(m.version) + "<td><code>" + escape_markup(m.commit) + "</code></td></tr>\n";
  }
  return s + "</table>\n";
}

}  // namespace

std::string svg_chart(const std::vector<run_record>& records, const judgement& judged) {
  double time_max = 0, memory_max = 0;
  for (const auto& r : records) {
    if (r.status != run_status::ok) continue;
    time_max = std::max(time_max, r.seconds);
    memory_max = std::max({memory_max, double(r.peak_host_bytes + r.peak_device_bytes),
                           double(r.predicted_peak_host_bytes + r.predicted_peak_device_bytes)});
  }
  const memory_unit unit = unit_for(memory_max);
  const auto time_ticks = ticks(time_max > 0 ? time_max : 1);
  const auto memory_ticks = ticks(memory_max > 0 ? memory_max / unit.bytes : 1);
  const double time_scale = time_ticks.back();
  const double memory_scale = memory_ticks.back() * unit.bytes;

  const auto groups = by_machine(records);
  double height = top + bottom;
  for (const auto& g : groups) height += machine_row + run_row * g.second.size();

  std::string s = "<svg id=\"matrix-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                  num(width) + "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(width) +
                  " " + num(height) + "\" role=\"img\" aria-labelledby=\"chart-title\">\n";
  s += "<title id=\"chart-title\">Load time and peak memory per machine and run, predicted beside "
       "measured</title>\n";
  s += rect(0, 0, width, height, "background", "#ffffff");
  s += text(time_x, 24, "Load time per run",
            "class=\"panel-title\" font-size=\"15\" font-weight=\"bold\"");
  s += text(memory_x, 24, "Peak memory: measured (upper bar), predicted (lower)",
            "class=\"panel-title\" font-size=\"15\" font-weight=\"bold\"");
  s += text(time_x, 42, "the plan predicts no time",
            "class=\"panel-note\" font-size=\"11\" fill=\"#666666\"");
  s += text(memory_x, 42, "host and device stacked; a host standing in for the GPU holds both",
            "class=\"panel-note\" font-size=\"11\" fill=\"#666666\"");
  s += legend(72);

  double y = top;
  const double rows_top = y;
  std::string rows;
  for (const auto& [host, indices] : groups) {
    const machine_info& m = records[indices.front()].machine;
    rows += "<g class=\"machine\" data-machine=\"" + escape_markup(host) + "\">\n";
    rows += "<line x1=\"0\" y1=\"" + num(y) + "\" x2=\"" + num(width) + "\" y2=\"" + num(y) +
            "\" stroke=\"#999999\"/>\n";
    rows += text(label_x, y + 18, host + "  (" + (m.gpu.empty() ? m.cpu : m.gpu) + ")",
                 "class=\"machine-label\" font-weight=\"bold\"");
    y += machine_row;
    for (const std::size_t i : indices) {
      rows += run_rows(records[i], judged.verdicts[i], y, time_scale, memory_scale);
      y += run_row;
    }
    rows += "</g>\n";
  }
  s += axis(time_x, time_w, rows_top, y, time_ticks, "load time (s)", "s");
  s += axis(memory_x, memory_w, rows_top, y, memory_ticks,
            std::string("peak memory (") + unit.name + ")", unit.name);
  s += rows;
  return s + "</svg>\n";
}

std::string html_report(const std::vector<run_record>& records, const judgement& judged) {
  std::string s =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>umload hardware matrix</title>\n<style>" +
      std::string(style) + "</style>\n</head>\n<body>\n<h1>umload hardware matrix</h1>\n";
  const bool pass = !judged.mismatch && judged.failed == 0 && judged.ok > 0;
  s += std::string("<div id=\"verdict\" class=\"verdict ") + (pass ? "agree" : "differ") + "\">" +
       escape_markup(summary_line(records, judged));
  if (!judged.messages.empty()) {
    s += "<ul>\n";
    for (const auto& m : judged.messages) s += "<li>" + escape_markup(m) + "</li>\n";
    s += "</ul>";
  }
  s += "</div>\n";
  if (!judged.reference.empty()) {
    s += "<p>Reference digest";
    for (const auto& [key, digest] : judged.reference)
      s += " (" + escape_markup(key) + "): <code>" + escape_markup(digest) + "</code>";
    s += "</p>\n";
  }
  s += "<h2>Load time and peak memory</h2>\n" + svg_chart(records, judged);
  s += "<h2>Runs</h2>\n" + runs_table(records, judged);
  s += "<h2>Machines</h2>\n" + machines_table(records);
  return s + "</body>\n</html>\n";
}

}  // namespace umload::cli::matrix
