// Carrying out a plan's orders in a load, and the record of what was done. Each output is placed
// as its placement orders (memory kind, NUMA node, advice), faulted in ahead of the decode that
// writes it, in order of use, on a thread of its own; reader threads are bound by the pipeline, CPU
// decode threads by the host backend.
// The record sets, tensor by tensor, the planned placement beside the actual one and the actions
// taken, so `umload plan --json` and `umload load --json` compare line by line. On a machine where
// the host stands in for the device, what could not be carried out is listed as simulated.
//
//   auto request = umload::request_for(placement, on_gpu);
//   auto placed = engine.place_output(bytes, request);
//   umload::fault_ahead ahead(engine, targets, records);   // joins when destroyed
#pragma once

#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "platform/plan.hpp"
#include "src/backend.hpp"

namespace umload {

// One row of the load report.
struct tensor_record {
  std::string tensor;
  std::size_t plan_index = 0;  // its place in the plan's placements (their count: not planned)
  std::string planned;         // the plan's location, spelled as `umload plan --json` spells it
  int planned_numa_node = -1;
  std::string actual;                  // where the memory is: "device", "host", "host-managed"
  std::vector<std::string> actions;    // what was done: binds, advice, fault-ins, prefetches
  std::vector<std::string> simulated;  // what the host standing in for a device could not do
};

struct load_actions {
  std::string io_mode;                 // the I/O the run used ("direct", "buffered")
  std::string page_cache;              // what happened to the page cache
  std::string reader_cpuset;           // what the reader threads got, or why not
  std::string decode_cpuset;           // what the CPU decode threads got, or why not
  std::string staging;                 // how the staging slots were placed
  std::vector<std::string> simulated;  // orders of the whole load that were simulated
  std::vector<tensor_record> tensors;  // in the order of the load's outputs

  // Counts over `tensors`, for a one-line summary.
  std::size_t count(std::string_view action_prefix) const;
  // Advice and prefetches the driver refused at their first location: taken at a fallback (the
  // host for a host NUMA node) or skipped. Their actions say "fallback".
  std::size_t fallbacks() const;
};

// The memory kind a placement asks for on a GPU; a host standing in for it asks the same, and
// its backend places host memory and says what it simulated.
output_request request_for(const platform::placement& p);
// "device", "host-managed", "host", or "host-numa:1" for host memory bound to a node.
std::string planned_location(const platform::placement& p);

// Faults outputs in ahead of the pipeline, in the order given, 64 MiB at a time, on a thread of
// its own (first-touch faults would otherwise stall the decode; on virtual machines they cost
// more than writing the bytes). What each fault-in did is added to its record's actions once the
// thread is joined (stop() or the destructor).
class fault_ahead {
 public:
  struct target {
    std::byte* data = nullptr;
    std::uint64_t bytes = 0;
    output_request request;
    tensor_record* record = nullptr;
  };
  fault_ahead(backend& engine, std::vector<target> targets);
  ~fault_ahead();
  fault_ahead(const fault_ahead&) = delete;
  fault_ahead& operator=(const fault_ahead&) = delete;
  void stop() noexcept;

 private:
  void run() noexcept;
  backend& engine_;
  std::vector<target> targets_;
  std::vector<std::string> done_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

nlohmann::json to_json(const load_actions& actions);

}  // namespace umload
