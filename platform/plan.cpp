#include "platform/plan.hpp"

#include <algorithm>
#include <map>
#include <sstream>

#include "kernels/arith.hpp"
#include "kernels/error.hpp"
#include "platform/units.hpp"

namespace umload::platform {
namespace {

constexpr std::uint64_t mib = std::uint64_t{1} << 20;

std::uint64_t minus(std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; }

bool is_gpu(memory_model m) { return m != memory_model::host; }

// Order in which a coherent machine fills device memory: embeddings, then attention and norms
// (and anything else dense), then routers, then the experts layer by layer.
int fill_class(tensor_kind k) {
  switch (k) {
    case tensor_kind::embedding: return 0;
    case tensor_kind::attention:
    case tensor_kind::norm:
    case tensor_kind::dense: return 1;
    case tensor_kind::router: return 2;
    case tensor_kind::expert_weight:
    case tensor_kind::expert_bias: return 3;
  }
  return 3;
}

std::string rank_text(const demand_options& o) {
  if (o.world_size == 1) return "1 rank";
  return "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
}

// Device and host memory the plan may use: the platform's figures or the budgets' overrides.
void set_capacities(placement_plan& p, const platform_info& platform, const budgets& b) {
  const memory_model m = platform.model;
  p.device_capacity_bytes = b.device_memory_bytes.value_or(platform.memory.device_bytes);
  p.device_capacity_source = b.device_memory_bytes ? "--device-memory / UMLOAD_DEVICE_MEMORY"
                                                   : platform.memory.device_source;
  p.host_capacity_bytes = b.host_memory_bytes.value_or(platform.memory.host_bytes);
  p.host_capacity_source =
      b.host_memory_bytes ? "--host-memory / UMLOAD_HOST_MEMORY" : platform.memory.host_source;
  p.single_pool = m == memory_model::integrated;
  if (p.single_pool && !b.device_memory_bytes && b.host_memory_bytes) {
    p.device_capacity_bytes = std::min(p.device_capacity_bytes, *b.host_memory_bytes);
    p.device_capacity_source = "--host-memory / UMLOAD_HOST_MEMORY (one pool)";
  }
  if (is_gpu(m) && p.device_capacity_bytes == 0) {
    throw usage_error(
        "a " + std::string(to_string(m)) +
        " plan needs a device memory figure and none was detected: give --device-memory");
  }
  p.device_reserve_bytes = is_gpu(m) ? b.device_reserve_bytes : 0;
}

// Size and depth of a staging ring.
struct ring_shape {
  std::uint64_t slot_bytes = 64 * mib;
  int slots = 4;
};

// The memory model's strategy: its reason, pinning, zero copy, device scratch and ring shape.
ring_shape choose_strategy(placement_plan& p, memory_model m) {
  ring_shape ring;
  switch (m) {
    case memory_model::discrete:
    case memory_model::discrete_hmm:
      p.reason =
          "discrete device memory: every tensor in device memory, pinned staging on the "
          "GPU-local NUMA node copied through device scratch slots";
      p.orders.staging.pinned = true;
      p.device_scratch = true;
      break;
    case memory_model::coherent:
      p.reason =
          "coherent superchip: device memory filled in order of use, the rest in host "
          "memory next to the GPU with preferred-location/accessed-by advice";
      p.orders.staging.pinned = true;
      p.orders.staging.zero_copy = true;
      break;
    case memory_model::integrated:
      p.reason =
          "integrated: one resident copy in the shared pool, a small staging ring, direct "
          "I/O so no page cache competes with the weights";
      ring.slot_bytes = 16 * mib;
      ring.slots = 3;
      p.orders.staging.pinned = true;
      p.orders.staging.zero_copy = true;
      break;
    case memory_model::host:
      p.reason = "no GPU: tensors in host memory, decoded on CPU cores";
      ring.slots = 2;
      break;
  }
  return ring;
}

// The ring's slots and their size after the budgets' overrides, a slot raised to hold one expert
// whole, and the staging and device scratch bytes they take.
void size_staging(placement_plan& p, ring_shape ring, const model_demand& demand,
                  const budgets& b) {
  if (b.staging_slot_bytes) ring.slot_bytes = *b.staging_slot_bytes;
  if (b.staging_slots) ring.slots = *b.staging_slots;
  const std::uint64_t unit = demand.largest_stage_unit();
  if (ring.slot_bytes < unit) {
    p.notes.push_back("staging slot raised from " + format_bytes(ring.slot_bytes) +
                      " to hold one expert (" + format_bytes(unit) + ")");
    ring.slot_bytes = round_up(unit, 2 * mib);
  }
  p.orders.staging.slot_bytes = ring.slot_bytes;
  p.orders.staging.slots = ring.slots;
  p.staging_bytes = ring.slot_bytes * static_cast<std::uint64_t>(ring.slots);
  p.device_scratch_bytes =
      p.device_scratch ? p.staging_bytes : 0;  // device_scratch == !zero_copy on a GPU
}

// The staging NUMA node, the reader CPUs and the decode CPUs from the GPU's locality.
void choose_cpus(placement_plan& p, const platform_info& platform) {
  const memory_model m = platform.model;
  const gpu_locality& gpu = platform.topology.gpu;
  if (is_gpu(m) && gpu.found) p.orders.staging.numa_node = gpu.numa_node;
  const cpu_choice cpus = choose_worker_cpus(platform.topology, is_gpu(m));
  p.orders.reader_cpuset = cpus.cpuset;
  p.reader_cpuset_reason = cpus.reason;
  // Decode follows the readers' choice: the same CPUs near the GPU, of the fastest kind.
  p.orders.decode_cpuset = cpus.cpuset;
  p.decode_cpuset_reason =
      is_gpu(m)
          ? "the GPU decodes; a host standing in for it decodes on the reader CPUs" +
                (cpus.cpuset.empty() ? std::string(", placed by the OS") : " (" + cpus.cpuset + ")")
          : "the caller's thread and its OpenMP team, on the reader CPUs: " + cpus.reason;
}

// The strategy of the memory model and its staging ring: size and depth per model, then
// overrides; a slot holds at least one expert whole. Staging NUMA node and reader CPUs from the
// GPU's locality.
void plan_staging(placement_plan& p, const platform_info& platform, const model_demand& demand,
                  const budgets& b) {
  size_staging(p, choose_strategy(p, platform.model), demand, b);
  choose_cpus(p, platform);
}

// Direct or buffered reads, and the page-cache policy.
void plan_io(placement_plan& p, memory_model m, const budgets& b) {
  if (m == memory_model::host) {
    p.orders.io = io_mode::buffered;
    p.io_reason =
        "host memory is the destination; buffered reads with each consumed range "
        "dropped from the page cache";
  } else {
    p.orders.io = io_mode::direct;
    p.io_reason =
        m == memory_model::integrated
            ? "direct I/O: page cache would take memory from the one pool the weights need"
            : "direct I/O into pinned staging: no page cache, no extra copy";
  }
  if (b.io != io_mode::automatic) {
    p.orders.io = b.io;
    p.io_reason = "forced by UMLOAD_IO=" + std::string(to_string(b.io));
  }
  // Every model leaves no page cache behind: buffered reads drop each range once consumed, direct
  // reads cache nothing but what their buffered fallbacks read, and the shards are dropped at
  // the end. On integrated machines the cache would take memory from the weights' own pool.
  p.orders.drop_page_cache = true;
}

// One placement per output, in the demand's order, all in device memory on a GPU, else in host
// memory.
void list_placements(placement_plan& p, memory_model m, const model_demand& demand) {
  p.orders.placements.reserve(demand.tensors.size());
  for (const auto& t : demand.tensors) {
    placement pl;
    pl.tensor = t.name;
    pl.output = t.output;
    pl.bytes = t.bytes_output;
    pl.layer = t.layer;
    pl.kind = t.kind;
    pl.where = is_gpu(m) ? memory_kind::device : memory_kind::host;
    p.orders.placements.push_back(std::move(pl));
  }
}

// Indexes of the placements in the order a coherent machine fills device memory (fill_class,
// experts layer by layer), stable within a class.
std::vector<std::size_t> fill_order(const std::vector<placement>& placements) {
  std::vector<std::size_t> order(placements.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t c) {
    const auto& x = placements[a];
    const auto& y = placements[c];
    const int cx = fill_class(x.kind), cy = fill_class(y.kind);
    if (cx != cy) return cx < cy;
    if (cx == 3 && x.layer != y.layer) return x.layer < y.layer;
    return false;
  });
  return order;
}

// Device memory filled in fill order; what does not fit spills to host memory next to the GPU,
// advised for the device and listed for prefetch.
void spill_to_host(placement_plan& p, const gpu_locality& gpu) {
  const std::uint64_t room =
      minus(p.device_capacity_bytes, p.device_reserve_bytes + p.device_scratch_bytes);
  std::uint64_t used = 0;
  const int host_node = gpu.found ? gpu.numa_node : -1;
  for (std::size_t i : fill_order(p.orders.placements)) {
    placement& pl = p.orders.placements[i];
    if (used + pl.bytes <= room) {
      used += pl.bytes;
    } else {
      pl.where = memory_kind::host_managed;
      pl.numa_node = host_node;
      pl.preferred_location_host = true;
      pl.accessed_by_device = true;
    }
  }
  for (std::size_t i = 0; i < p.orders.placements.size(); ++i)
    if (p.orders.placements[i].where == memory_kind::host_managed) p.orders.prefetch.push_back(i);
}

// Resident bytes by memory, the peaks with staging, and the share spilled on coherent machines.
void count_resident(placement_plan& p, memory_model m) {
  for (const auto& pl : p.orders.placements) {
    (pl.where == memory_kind::device ? p.device_resident_bytes : p.host_resident_bytes) += pl.bytes;
  }
  p.peak_device_bytes = p.device_resident_bytes + p.device_scratch_bytes;
  p.peak_host_bytes = p.host_resident_bytes + p.staging_bytes;
  if (m == memory_model::coherent && p.output_bytes > 0) {
    p.spill_fraction =
        static_cast<double>(p.host_resident_bytes) / static_cast<double>(p.output_bytes);
  }
}

// Every output placed in the demand's order; on coherent machines device memory is filled in
// order of use and the rest spills to host memory next to the GPU, listed for prefetch.
void place_tensors(placement_plan& p, const platform_info& platform, const model_demand& demand) {
  const memory_model m = platform.model;
  p.stored_bytes = demand.bytes_stored();
  p.output_bytes = demand.bytes_output();
  list_placements(p, m, demand);
  if (m == memory_model::coherent) spill_to_host(p, platform.topology.gpu);
  count_resident(p, m);
}

// Whether the peaks fit the capacities; when not, the message says what was needed and what is
// available.
void judge_fit(placement_plan& p, const platform_info& platform, const model_demand& demand,
               const budgets& b) {
  const memory_model m = platform.model;
  const std::string who = demand.label + " (" + std::string(to_string(demand.options.dtype)) +
                          ", " + rank_text(demand.options) + ")";
  const std::string where = platform.source + " (" + std::string(to_string(m)) + ")";
  std::ostringstream why;
  if (m == memory_model::integrated) {
    const std::uint64_t need = p.peak_device_bytes + p.peak_host_bytes + p.device_reserve_bytes;
    p.fits = need <= p.device_capacity_bytes;
    if (!p.fits) {
      why << who << " does not fit on " << where << ": it needs " << format_bytes(need)
          << " of the one memory pool (" << format_bytes(p.output_bytes) << " of tensors + "
          << format_bytes(p.staging_bytes) << " of staging + "
          << format_bytes(p.device_reserve_bytes) << " reserve) and "
          << format_bytes(p.device_capacity_bytes) << " is available (" << p.device_capacity_source
          << ").";
    }
  } else if (m == memory_model::host) {
    const std::uint64_t need = p.peak_host_bytes + b.host_reserve_bytes;
    p.fits = need <= p.host_capacity_bytes;
    if (!p.fits) {
      why << who << " does not fit on " << where << ": it needs " << format_bytes(need)
          << " of host memory (" << format_bytes(p.output_bytes) << " of tensors + "
          << format_bytes(p.staging_bytes) << " of staging) and "
          << format_bytes(p.host_capacity_bytes) << " is available (" << p.host_capacity_source
          << ").";
    }
  } else {
    const std::uint64_t need_dev = p.peak_device_bytes + p.device_reserve_bytes;
    const std::uint64_t need_host = p.peak_host_bytes + b.host_reserve_bytes;
    const bool dev_ok = need_dev <= p.device_capacity_bytes;
    const bool host_ok = need_host <= p.host_capacity_bytes;
    p.fits = dev_ok && host_ok;
    if (!dev_ok) {
      why << who << " does not fit on " << where << ": it needs " << format_bytes(need_dev)
          << " of device memory (" << format_bytes(p.device_resident_bytes) << " of tensors + "
          << format_bytes(p.device_scratch_bytes) << " of staging scratch + "
          << format_bytes(p.device_reserve_bytes) << " reserve) and "
          << format_bytes(p.device_capacity_bytes) << " is available (" << p.device_capacity_source
          << ").";
    } else if (!host_ok) {
      why << who << " does not fit on " << where << ": it needs " << format_bytes(need_host)
          << " of host memory (" << format_bytes(p.host_resident_bytes)
          << (m == memory_model::coherent ? " spilled from device memory" : " of tensors") << " + "
          << format_bytes(p.staging_bytes) << " of staging) and "
          << format_bytes(p.host_capacity_bytes) << " is available (" << p.host_capacity_source
          << ").";
    }
  }
  p.message = why.str();
}

// The plan without alternatives: the policy proper.
placement_plan plan_core(const platform_info& platform, const model_demand& demand,
                         const budgets& b) {
  placement_plan p;
  p.model_label = demand.label;
  p.platform = platform.source;
  p.model = platform.model;
  p.options = demand.options;
  p.notes = platform.notes;
  set_capacities(p, platform, b);
  plan_staging(p, platform, demand, b);
  plan_io(p, platform.model, b);
  place_tensors(p, platform, demand);
  judge_fit(p, platform, demand, b);
  return p;
}

std::vector<int> world_sizes_above(std::uint64_t experts, int current) {
  std::vector<int> out;
  for (std::uint64_t w = static_cast<std::uint64_t>(current) + 1; w <= experts; ++w) {
    if (experts % w == 0) out.push_back(static_cast<int>(w));
  }
  return out;
}

suggestion price(const platform_info& platform, const model_demand& demand, const budgets& b,
                 output_dtype dtype, int world) {
  demand_options o = demand.options;
  o.dtype = dtype;
  o.world_size = world;
  o.rank = 0;
  const placement_plan alt = plan_core(platform, make_demand(demand.source, o, demand.label), b);
  suggestion s;
  s.dtype = dtype;
  s.world_size = world;
  s.peak_device_bytes = alt.peak_device_bytes;
  s.peak_host_bytes = alt.peak_host_bytes;
  s.fits = alt.fits;
  if (dtype != demand.options.dtype) s.change = "--dtype " + std::string(to_string(dtype));
  if (world != demand.options.world_size) {
    s.change +=
        (s.change.empty() ? "" : " ") + std::string("--world-size ") + std::to_string(world);
  }
  return s;
}

std::string suggestion_text(const suggestion& s, memory_model m) {
  std::ostringstream o;
  o << s.change << " (";
  if (s.dtype == output_dtype::keep && s.change.find("--dtype") != std::string::npos)
    o << "keep MXFP4, ";
  if (m == memory_model::host) {
    o << format_bytes(s.peak_host_bytes) << " of host memory";
  } else if (m == memory_model::integrated) {
    o << format_bytes(s.peak_device_bytes + s.peak_host_bytes) << " of the pool";
  } else {
    o << format_bytes(s.peak_device_bytes) << " of device memory";
    if (m == memory_model::coherent)
      o << " + " << format_bytes(s.peak_host_bytes) << " of host memory";
  }
  if (s.world_size > 1) o << " per rank";
  o << ")";
  return o.str();
}

}  // namespace

budgets budgets::from(const defaults& env) {
  budgets b;
  b.device_memory_bytes = env.device_memory_bytes;
  b.host_memory_bytes = env.host_memory_bytes;
  if (env.staging_slot_bytes)
    b.staging_slot_bytes = static_cast<std::size_t>(*env.staging_slot_bytes);
  b.staging_slots = env.staging_slots;
  b.io = env.io;
  return b;
}

placement_plan make_plan(const platform_info& platform, const model_demand& demand,
                         const budgets& b) {
  placement_plan p = plan_core(platform, demand, b);
  if (p.fits) return p;
  if (demand.source.empty()) {
    p.message += " No alternatives were priced (the demand carries no source tensors).";
    return p;
  }
  std::vector<suggestion> tried;
  for (auto d : {output_dtype::keep, output_dtype::bf16, output_dtype::f32}) {
    if (d != demand.options.dtype)
      tried.push_back(price(platform, demand, b, d, demand.options.world_size));
  }
  bool ranks_fit = false;
  for (int w : world_sizes_above(demand.experts, demand.options.world_size)) {
    suggestion s = price(platform, demand, b, demand.options.dtype, w);
    if (s.fits) {
      tried.push_back(s);
      ranks_fit = true;
      break;
    }
  }
  const bool keep_fits = std::any_of(tried.begin(), tried.end(), [](const suggestion& s) {
    return s.fits && s.dtype == output_dtype::keep;
  });
  if (!ranks_fit && !keep_fits && demand.options.dtype != output_dtype::keep) {
    for (int w : world_sizes_above(demand.experts, demand.options.world_size)) {
      suggestion s = price(platform, demand, b, output_dtype::keep, w);
      if (s.fits) {
        tried.push_back(s);
        break;
      }
    }
  }
  for (const auto& s : tried) {
    if (s.fits) p.would_fit.push_back(s);
  }
  std::ostringstream o;
  o << p.message;
  if (!p.would_fit.empty()) {
    o << " What would fit:";
    for (std::size_t i = 0; i < p.would_fit.size(); ++i) {
      o << (i ? ";" : "") << " " << suggestion_text(p.would_fit[i], p.model);
    }
    o << ".";
  } else {
    o << " Nothing tried fits:";
    for (std::size_t i = 0; i < tried.size(); ++i) {
      o << (i ? ";" : "") << " " << suggestion_text(tried[i], p.model);
    }
    o << (tried.empty() ? " no alternative" : "") << ".";
  }
  p.message = o.str();
  return p;
}

bounded_staging plan_bounded_staging(const model_demand& demand, std::uint64_t budget_bytes) {
  // Per slot of staging, each chunk holds its decoded bytes: 64/17 of it for BF16 (32 values of
  // 2 bytes from 16 + 1 stored bytes), 128/17 for F32, at least a slot for copied tensors.
  constexpr std::uint64_t max_slot_bytes = 32 * mib;
  const double growth = demand.options.dtype == output_dtype::f32 ? 128.0 / 17 : 64.0 / 17;
  bounded_staging b;
  b.staging.slots = 2;
  const double per_slot = b.staging.slots + b.chunks * std::max(1.0, growth);
  const auto slot =
      round_down(static_cast<std::uint64_t>(static_cast<double>(budget_bytes) / per_slot), 4096);
  b.staging.slot_bytes = static_cast<std::size_t>(std::min(slot, max_slot_bytes));
  const std::uint64_t need = std::max<std::uint64_t>(1, demand.largest_stage_unit());
  if (b.staging.slot_bytes < need) {
    b.fits = false;
    b.message = "memory budget of " + std::to_string(budget_bytes) +
                " bytes is too small: one expert needs a slot of " + std::to_string(need) +
                " bytes, so the budget must be at least " +
                std::to_string(static_cast<std::uint64_t>(static_cast<double>(need) * per_slot) +
                               (8 << 20)) +
                " bytes";
    return b;
  }
  for (const auto& t : demand.tensors) {
    if (t.decoded && t.stage_unit_bytes > 0) {
      const std::uint64_t experts = t.bytes_stored / t.stage_unit_bytes;
      const std::uint64_t per_item =
          std::min(experts, std::max<std::uint64_t>(1, b.staging.slot_bytes / t.stage_unit_bytes));
      b.chunk_bytes = std::max(b.chunk_bytes, experts ? per_item * (t.bytes_output / experts) : 0);
    } else {
      b.chunk_bytes = std::max<std::uint64_t>(
          b.chunk_bytes, std::min<std::uint64_t>(t.bytes_output, b.staging.slot_bytes));
    }
  }
  b.chunk_bytes = std::max<std::uint64_t>(b.chunk_bytes, 1);
  return b;
}

void require_fits(const placement_plan& plan) {
  if (!plan.fits) throw budget_error(plan.message);
}

namespace {
// The prefetch schedule by tensor name, as the plan's JSON lists it.
std::vector<std::string> prefetch_names(const load_orders& orders) {
  std::vector<std::string> names;
  names.reserve(orders.prefetch.size());
  for (const std::size_t i : orders.prefetch) names.push_back(orders.placements[i].tensor);
  return names;
}
}  // namespace

nlohmann::json to_json(const placement_plan& p) {
  using nlohmann::json;
  json placements = json::array();
  for (const auto& pl : p.orders.placements) {
    json e = {{"tensor", pl.tensor},
              {"bytes", pl.bytes},
              {"layer", pl.layer},
              {"kind", std::string(to_string(pl.kind))}};
    e["location"] = std::string(to_string(pl.where));
    if (pl.where == memory_kind::host_managed) {
      e["numa_node"] = pl.numa_node;
      e["preferred_location"] =
          pl.numa_node >= 0 ? "host-numa:" + std::to_string(pl.numa_node) : "host";
      e["accessed_by"] = pl.accessed_by_device ? "device" : "";
    }
    placements.push_back(std::move(e));
  }
  json alternatives = json::array();
  for (const auto& s : p.would_fit) {
    alternatives.push_back({{"change", s.change},
                            {"dtype", std::string(to_string(s.dtype))},
                            {"world_size", s.world_size},
                            {"peak_device_bytes", s.peak_device_bytes},
                            {"peak_host_bytes", s.peak_host_bytes},
                            {"fits", s.fits}});
  }
  return {
      {"fits", p.fits},
      {"message", p.message},
      {"model", p.model_label},
      {"platform", p.platform},
      {"memory_model", std::string(to_string(p.model))},
      {"reason", p.reason},
      {"dtype", std::string(to_string(p.options.dtype))},
      {"layout", std::string(to_string(p.options.layout))},
      {"rank", p.options.rank},
      {"world_size", p.options.world_size},
      {"io_mode", std::string(to_string(p.orders.io))},
      {"drop_page_cache", p.orders.drop_page_cache},
      {"io_reason", p.io_reason},
      {"staging",
       {{"slot_bytes", p.orders.staging.slot_bytes},
        {"slots", p.orders.staging.slots},
        {"pinned", p.orders.staging.pinned},
        {"device_scratch", p.device_scratch},
        {"zero_copy", p.orders.staging.zero_copy},
        {"numa_node", p.orders.staging.numa_node}}},
      {"reader_cpuset", p.orders.reader_cpuset},
      {"reader_cpuset_reason", p.reader_cpuset_reason},
      {"decode_cpuset", p.orders.decode_cpuset},
      {"decode_cpuset_reason", p.decode_cpuset_reason},
      {"stored_bytes", p.stored_bytes},
      {"output_bytes", p.output_bytes},
      {"device_resident_bytes", p.device_resident_bytes},
      {"host_resident_bytes", p.host_resident_bytes},
      {"staging_bytes", p.staging_bytes},
      {"device_scratch_bytes", p.device_scratch_bytes},
      {"peak_device_bytes", p.peak_device_bytes},
      {"peak_host_bytes", p.peak_host_bytes},
      {"device_capacity_bytes", p.device_capacity_bytes},
      {"device_capacity_source", p.device_capacity_source},
      {"device_reserve_bytes", p.device_reserve_bytes},
      {"host_capacity_bytes", p.host_capacity_bytes},
      {"host_capacity_source", p.host_capacity_source},
      {"single_pool", p.single_pool},
      {"spill_fraction", p.spill_fraction},
      {"placements", placements},
      {"prefetch", prefetch_names(p.orders)},
      {"would_fit", alternatives},
      {"notes", p.notes},
  };
}

namespace {

// The I/O mode, the staging ring and the reader and decode CPUs, each with its reason.
void describe_orders(std::ostringstream& o, const placement_plan& p) {
  o << "  I/O: " << to_string(p.orders.io)
    << (p.orders.io == io_mode::buffered && p.orders.drop_page_cache ? " (consumed ranges dropped)"
                                                                     : "")
    << " — " << p.io_reason << "\n";
  o << "  staging: " << p.orders.staging.slots << " x " << format_bytes(p.orders.staging.slot_bytes)
    << (p.orders.staging.pinned ? " pinned" : "")
    << (p.device_scratch ? ", device scratch copies" : "")
    << (p.orders.staging.zero_copy ? ", read in place by the GPU" : "") << ", NUMA node "
    << (p.orders.staging.numa_node >= 0 ? std::to_string(p.orders.staging.numa_node)
                                        : std::string("any"))
    << ", reader cpuset "
    << (p.orders.reader_cpuset.empty() ? std::string("any") : p.orders.reader_cpuset) << "\n";
  o << "  reader CPUs: " << p.reader_cpuset_reason << "\n";
  o << "  decode CPUs: " << p.decode_cpuset_reason << "\n";
}

// Tensors and bytes per memory kind (and NUMA node), and on coherent machines what spilled.
void describe_locations(std::ostringstream& o, const placement_plan& p) {
  std::map<std::string, std::pair<std::size_t, std::uint64_t>> by_location;
  for (const auto& pl : p.orders.placements) {
    std::string key(to_string(pl.where));
    if (pl.where == memory_kind::host_managed) {
      key += pl.numa_node >= 0 ? " (NUMA node " + std::to_string(pl.numa_node) + ")" : "";
    }
    auto& e = by_location[key];
    ++e.first;
    e.second += pl.bytes;
  }
  for (const auto& [where, e] : by_location) {
    o << "  " << where << ": " << e.first << " tensors, " << format_bytes(e.second) << "\n";
  }
  if (p.model == memory_model::coherent) {
    char share[32];
    std::snprintf(share, sizeof share, "%.1f%%", p.spill_fraction * 100.0);
    o << "  spilled to host memory: " << format_bytes(p.host_resident_bytes) << " (" << share
      << " of the output), preferred location host, accessed by the GPU";
    if (!p.orders.prefetch.empty())
      o << "; first spilled: " << p.orders.placements[p.orders.prefetch.front()].tensor;
    o << "\n";
  }
}

// The predicted peaks beside the capacities and reserve they are judged against.
void describe_peaks(std::ostringstream& o, const placement_plan& p) {
  o << "  predicted peak: device " << format_bytes(p.peak_device_bytes) << " ("
    << format_count(p.peak_device_bytes) << " B), host " << format_bytes(p.peak_host_bytes) << " ("
    << format_count(p.peak_host_bytes) << " B)\n";
  o << "  available: device " << format_bytes(p.device_capacity_bytes) << " ("
    << p.device_capacity_source << "), reserve " << format_bytes(p.device_reserve_bytes)
    << "; host " << format_bytes(p.host_capacity_bytes) << " (" << p.host_capacity_source << ")"
    << (p.single_pool ? "; one pool" : "") << "\n";
}

}  // namespace

std::string describe(const placement_plan& p, bool every_tensor) {
  std::ostringstream o;
  o << p.model_label << " on " << p.platform << ": " << (p.fits ? "fits" : "DOES NOT FIT") << "\n";
  o << "  memory model: " << to_string(p.model) << " — " << p.reason << "\n";
  o << "  output: " << to_string(p.options.dtype) << ", layout " << to_string(p.options.layout)
    << ", " << rank_text(p.options) << "; reads " << format_bytes(p.stored_bytes) << ", holds "
    << format_bytes(p.output_bytes) << "\n";
  describe_orders(o, p);
  describe_locations(o, p);
  describe_peaks(o, p);
  if (!p.fits) o << "  " << p.message << "\n";
  for (const auto& n : p.notes) o << "  note: " << n << "\n";
  if (every_tensor) {
    for (const auto& pl : p.orders.placements) {
      o << "    " << pl.tensor << "  " << to_string(pl.where);
      if (pl.numa_node >= 0) o << ":" << pl.numa_node;
      o << "  " << format_bytes(pl.bytes) << "\n";
    }
  }
  return o.str();
}

}  // namespace umload::platform
