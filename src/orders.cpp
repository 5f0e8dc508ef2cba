#include "src/orders.hpp"

#include <algorithm>

namespace umload {

std::size_t load_actions::count(std::string_view action_prefix) const {
  std::size_t n = 0;
  for (const auto& t : tensors)
    for (const auto& a : t.actions) n += a.rfind(action_prefix, 0) == 0 ? 1 : 0;
  return n;
}

std::size_t load_actions::fallbacks() const {
  std::size_t n = 0;
  for (const auto& t : tensors)
    for (const auto& a : t.actions) n += a.find("fallback") != std::string::npos ? 1 : 0;
  return n;
}

output_request request_for(const platform::placement& p) {
  output_request r;
  r.where = p.where;
  r.numa_node = p.where == memory_kind::device ? -1 : p.numa_node;
  r.prefer_host = p.preferred_location_host;
  r.accessed_by_device = p.accessed_by_device;
  return r;
}

std::string planned_location(const platform::placement& p) {
  if (p.where == memory_kind::host && p.numa_node >= 0)
    return "host-numa:" + std::to_string(p.numa_node);
  return to_string(p.where);
}

fault_ahead::fault_ahead(backend& engine, std::vector<target> targets)
    : engine_(engine), targets_(std::move(targets)), done_(targets_.size()) {
  thread_ = std::thread([this] { run(); });
}

fault_ahead::~fault_ahead() { stop(); }

void fault_ahead::stop() noexcept {
  stop_ = true;
  if (!thread_.joinable()) return;
  thread_.join();
  for (std::size_t i = 0; i < targets_.size(); ++i) {
    const target& t = targets_[i];
    if (!t.record || t.bytes == 0 || t.request.where == memory_kind::device) continue;
    t.record->actions.push_back("fault-in " +
                                (done_[i].empty() ? "not reached before its decode" : done_[i]));
  }
}

void fault_ahead::run() noexcept {
  constexpr std::uint64_t chunk = 64ull << 20;
  for (std::size_t i = 0; i < targets_.size() && !stop_; ++i) {
    const target& t = targets_[i];
    if (t.bytes == 0 || t.request.where == memory_kind::device) continue;
    try {
      for (std::uint64_t at = 0; at < t.bytes && !stop_; at += chunk)
        done_[i] = engine_.fault_in(t.data + at, std::min(chunk, t.bytes - at), t.request);
    } catch (const std::exception& e) {
      // A hint that failed changes no result: the decode's first touch does the same work.
      done_[i] = std::string("failed: ") + e.what();
    }
  }
}

nlohmann::json to_json(const load_actions& a) {
  // In the plan's order, so that the two reports compare line by line.
  std::vector<const tensor_record*> in_plan_order;
  for (const auto& t : a.tensors) in_plan_order.push_back(&t);
  std::stable_sort(
      in_plan_order.begin(), in_plan_order.end(),
      [](const tensor_record* x, const tensor_record* y) { return x->plan_index < y->plan_index; });
  nlohmann::json placements = nlohmann::json::array();
  for (const tensor_record* record : in_plan_order) {
    const tensor_record& t = *record;
    nlohmann::json e = {{"tensor", t.tensor},
                        {"location", t.planned},
                        {"actual", t.actual},
                        {"actions", t.actions},
                        {"simulated", t.simulated}};
    if (t.planned_numa_node >= 0) e["numa_node"] = t.planned_numa_node;
    placements.push_back(std::move(e));
  }
  return {{"io_mode", a.io_mode},
          {"page_cache", a.page_cache},
          {"reader_cpuset", a.reader_cpuset},
          {"decode_cpuset", a.decode_cpuset},
          {"staging", a.staging},
          {"numa_binds", a.count("numa-bind bound")},
          {"advice", a.count("advise")},
          {"fault_ins", a.count("fault-in")},
          {"prefetches", a.count("fault-in prefetch") + a.count("prefetch")},
          {"fallbacks", a.fallbacks()},
          {"simulated", a.simulated},
          {"placements", placements}};
}

}  // namespace umload
