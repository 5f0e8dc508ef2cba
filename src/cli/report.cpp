#include "src/cli/report.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace umload::cli {

namespace {
bool g_bar_drawn = false;
}

std::string human_rate(double bytes_per_second) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GB/s", bytes_per_second / 1e9);
  return buf;
}

std::function<void(const progress_event&)> make_progress(bool enabled, bool json) {
  if (!enabled) return {};
  if (json)
    return [](const progress_event& e) {
      std::printf(
          "{\"progress\":{\"bytes_done\":%llu,\"bytes_total\":%llu,\"tensors_done\":%zu,"
          "\"tensors_total\":%zu,\"seconds\":%.3f}}\n",
          static_cast<unsigned long long>(e.bytes_done),
          static_cast<unsigned long long>(e.bytes_total), e.tensors_done, e.tensors_total,
          e.seconds);
      std::fflush(stdout);
    };
  if (!::isatty(STDERR_FILENO)) return {};
  auto last = std::make_shared<double>(-1.0);
  return [last](const progress_event& e) {
    const bool final = e.bytes_done >= e.bytes_total;
    if (!final && e.seconds - *last < 0.1) return;
    *last = e.seconds;
    const double fraction = e.bytes_total ? static_cast<double>(e.bytes_done) / e.bytes_total : 1.0;
    const double rate = e.seconds > 0 ? e.bytes_done / e.seconds : 0;
    const double eta = rate > 0 ? (e.bytes_total - e.bytes_done) / rate : 0;
    constexpr int width = 30;
    const int filled = static_cast<int>(fraction * width);
    std::string bar(filled, '#');
    bar.append(width - filled, ' ');
    std::fprintf(stderr, "\r[%s] %3.0f%%  %s / %s  %s  %zu/%zu tensors  ETA %.0fs ", bar.c_str(),
                 fraction * 100, platform::format_bytes(e.bytes_done).c_str(),
                 platform::format_bytes(e.bytes_total).c_str(), human_rate(rate).c_str(),
                 e.tensors_done, e.tensors_total, eta);
    g_bar_drawn = true;
  };
}

void end_progress() {
  if (g_bar_drawn) std::fprintf(stderr, "\n");
  g_bar_drawn = false;
}

std::string one_line(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (const char c : message) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      char escaped[5];
      std::snprintf(escaped, sizeof(escaped), "\\x%02X", u);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace umload::cli
