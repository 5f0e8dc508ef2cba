#include "src/pipeline.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "kernels/arith.hpp"
#include "kernels/cpu_decode.hpp"
#include "kernels/error.hpp"
#include "platform/binding.hpp"
#include "src/file.hpp"

namespace umload {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Page size for page-cache advice, and the O_DIRECT alignment when statx cannot tell.
constexpr std::uint64_t page_bytes = 4096;

// Slots in the ring: at least two, so that one is read while the other is decoded.
std::size_t slot_count(const pipeline_options& options) {
  return static_cast<std::size_t>(std::max(2, options.slots));
}

struct byte_range {
  std::size_t shard = 0;
  std::uint64_t offset = 0;  // absolute in the shard file
  std::uint64_t bytes = 0;
};

struct work_item {
  std::size_t tensor = 0;
  std::uint64_t out_offset = 0;
  std::uint64_t out_bytes = 0;
  byte_range src[2];
  int sources = 1;
  bool decode = false;
  std::uint64_t expert_first = 0;  // index of the item's first expert in the source tensor
  std::uint64_t experts = 0;
};

// A decoded tensor's items: runs of as many experts of its pair as fit in a slot.
void add_decode_items(std::vector<work_item>& items, std::size_t t, const output_tensor& out,
                      output_dtype dtype, std::uint64_t capacity) {
  const auto& pair = *out.pair;
  const auto g = pair.geometry();
  const std::uint64_t blocks_per = g.blocks();
  const std::uint64_t scales_per = g.scales();
  const std::uint64_t out_per = g.output(element_bytes(dtype));
  const std::uint64_t step = std::max<std::uint64_t>(1, capacity / g.stored());
  for (std::uint64_t e = out.expert_begin; e < out.expert_end; e += step) {
    const std::uint64_t n = std::min(step, out.expert_end - e);
    work_item item;
    item.tensor = t;
    item.decode = true;
    item.expert_first = e;
    item.experts = n;
    item.out_offset = (e - out.expert_begin) * out_per;
    item.out_bytes = n * out_per;
    item.sources = 2;
    item.src[0] = {pair.blocks.shard, pair.blocks.file_offset + e * blocks_per, n * blocks_per};
    item.src[1] = {pair.scales.shard, pair.scales.file_offset + e * scales_per, n * scales_per};
    items.push_back(item);
  }
}

// A copied tensor's items: slot-sized ranges of its bytes (of this rank's experts when sliced);
// an empty tensor is one empty item.
void add_copy_items(std::vector<work_item>& items, std::size_t t, const output_tensor& out,
                    std::uint64_t capacity) {
  std::uint64_t first = out.source.file_offset;
  if (out.sliced) {
    const std::uint64_t per_expert = out.source.bytes() / out.source.entry->shape[0];
    first += out.expert_begin * per_expert;
  }
  for (std::uint64_t done = 0; done < out.bytes || (out.bytes == 0 && done == 0);) {
    const std::uint64_t n = std::min(capacity, out.bytes - done);
    work_item item;
    item.tensor = t;
    item.out_offset = done;
    item.out_bytes = n;
    item.src[0] = {out.source.shard, first + done, n};
    items.push_back(item);
    if (n == 0) break;
    done += n;
  }
}

// The run's items in output order, each at most `capacity` bytes of input.
std::vector<work_item> make_items(const std::vector<output_tensor>& outputs,
                                  const pipeline_options& options, std::uint64_t capacity) {
  std::vector<work_item> items;
  for (std::size_t t = 0; t < outputs.size(); ++t) {
    if (outputs[t].pair)
      add_decode_items(items, t, outputs[t], options.dtype, capacity);
    else
      add_copy_items(items, t, outputs[t], capacity);
  }
  return items;
}

// The checkpoint's shard files opened for one run, O_DIRECT where asked and possible. Reads of
// a slot are widened to the direct alignment; reads straight into a destination have no
// alignment to offer O_DIRECT and go through a buffered twin of each file.
class shard_reader {
 public:
  shard_reader(const checkpoint& ckpt, bool direct) : ckpt_(ckpt), direct_(direct) {
    for (const auto& shard : ckpt.shards) files_.push_back(file::open_read(shard.path, direct));
    for (const auto& f : files_) {
      direct_ = direct_ && f.is_direct();
      align_ = std::max<std::uint64_t>(align_, f.direct_alignment());
    }
    if (direct_)
      for (const auto& shard : ckpt.shards)
        plain_files_.push_back(file::open_read(shard.path, false));
  }

  // A shard whose size differs from the one its header was checked against was rewritten or
  // appended to under us: reads may still succeed, but they would not be the checked file.
  void check_sizes() const {
    for (std::size_t s = 0; s < files_.size(); ++s) {
      const std::uint64_t now = files_[s].size();
      if (now != ckpt_.shards[s].file_size)
        throw io_error(ckpt_.shards[s].path.string() + ": file changed size during the load (" +
                       std::to_string(ckpt_.shards[s].file_size) +
                       " bytes when its header was read, " + std::to_string(now) + " now)");
    }
  }

  // Reads `r` into a staging slot; returns where its first byte landed in the slot.
  const std::byte* fill(std::byte* slot, const byte_range& r) {
    const file& f = files_[r.shard];
    if (!direct_) {
      f.read_exact(slot, r.bytes, r.offset);
      bytes_read_ += r.bytes;
      return slot;
    }
    const std::uint64_t first = round_down(r.offset, align_);
    const std::uint64_t lead = r.offset - first;
    const std::uint64_t length = round_up(lead + r.bytes, align_);
    const std::size_t got = f.read_at_least(slot, length, lead + r.bytes, first);
    bytes_read_ += got;
    return slot + lead;
  }

  // Reads `r` straight into its destination, buffered.
  void read_into(std::byte* destination, const byte_range& r) {
    (direct_ ? plain_files_ : files_)[r.shard].read_exact(destination, r.bytes, r.offset);
    bytes_read_ += r.bytes;
  }

  const file& shard_file(std::size_t i) const { return files_[i]; }
  bool direct() const { return direct_; }
  std::uint64_t alignment() const { return align_; }
  std::uint64_t bytes_read() const { return bytes_read_; }

 private:
  const checkpoint& ckpt_;
  bool direct_;
  std::uint64_t align_ = page_bytes;
  std::vector<file> files_;
  std::vector<file> plain_files_;  // buffered twins of files_ when those are O_DIRECT
  std::atomic<std::uint64_t> bytes_read_{0};
};

using staged_sources = std::array<const std::byte*, 2>;

// Which item each staging slot holds and when it is ready, between the reader threads and the
// consumer. Item i goes to slot i % slots; a reader may start item i once the consumer has
// released item i - slots. A reader's failure travels with its item and is rethrown where the
// consumer waits for it; stop() wakes and ends every reader.
class slot_handover {
 public:
  slot_handover(std::size_t slots, std::size_t items)
      : slots_(slots), items_(items), ready_(slots, -1), failure_(slots), staged_(slots) {}

  // The next item for a reader, once its slot is free; nothing when all are taken or the run stops.
  std::optional<std::size_t> claim() {
    std::unique_lock lock(mutex_);
    if (stopping_ || next_ >= items_) return std::nullopt;
    const std::size_t i = next_++;
    cv_.wait(lock, [&] { return stopping_ || i < consumed_ + slots_; });
    if (stopping_) return std::nullopt;
    return i;
  }

  // Marks item i read (or failed) and wakes the consumer.
  void publish(std::size_t i, const staged_sources& staged, std::exception_ptr failure) {
    const std::size_t s = i % slots_;
    {
      std::lock_guard lock(mutex_);
      staged_[s] = staged;
      failure_[s] = std::move(failure);
      ready_[s] = static_cast<std::int64_t>(i);
    }
    cv_.notify_all();
  }

  // Waits for item i; returns its staged sources or rethrows its reader's failure.
  staged_sources wait(std::size_t i) {
    std::unique_lock lock(mutex_);
    const std::size_t s = i % slots_;
    cv_.wait(lock, [&] { return ready_[s] == static_cast<std::int64_t>(i); });
    if (failure_[s]) std::rethrow_exception(failure_[s]);
    return staged_[s];
  }

  // Frees item i's slot for the item `slots` further on.
  void release(std::size_t i) {
    {
      std::lock_guard lock(mutex_);
      consumed_ = i + 1;
    }
    cv_.notify_all();
  }

  // Ends the run for the readers: claim() returns nothing from now on.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
  }

 private:
  const std::size_t slots_;
  const std::size_t items_;
  std::vector<std::int64_t> ready_;  // per slot: the item it holds, once read
  std::vector<std::exception_ptr> failure_;
  std::vector<staged_sources> staged_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t next_ = 0;      // the first item no reader has claimed
  std::size_t consumed_ = 0;  // items the consumer has released
  bool stopping_ = false;
};

// What CPU binding the reader threads got, as the first of them reports it.
class binding_record {
 public:
  void note(const platform::bind_result& r) {
    std::lock_guard lock(mutex_);
    if (first_.empty()) first_ = std::string(platform::to_string(r.outcome)) + ": " + r.detail;
    if (r.bound()) ++bound_;
  }

  // E.g. "bound: cpuset 0-3 (2 of 2 threads bound)"; empty when no thread was asked to bind.
  std::string describe(std::size_t threads) const {
    std::lock_guard lock(mutex_);
    if (first_.empty()) return {};
    return first_ + " (" + std::to_string(bound_) + " of " + std::to_string(threads) +
           " threads bound)";
  }

 private:
  mutable std::mutex mutex_;
  std::string first_;
  std::size_t bound_ = 0;
};

// The ring of staging slots and the reader threads that fill them, in item order.
class staging_ring {
 public:
  staging_ring(const checkpoint& ckpt, const std::vector<work_item>& items,
               const pipeline_options& options, backend& engine, const output_sink& sink,
               bool direct)
      : items_(items),
        engine_(engine),
        sink_(sink),
        reader_(ckpt, direct),
        capacity_(round_up(options.slot_bytes, reader_.alignment()) + 8 * reader_.alignment()),
        handover_(slot_count(options), items.size()) {
    reader_.check_sizes();
    allocate_slots(slot_count(options));
    start_readers(static_cast<std::size_t>(std::max(1, options.readers)), options.reader_cpuset);
  }

  ~staging_ring() {
    stop();
    release_slots();
  }

  // Waits for item i's bytes; returns the staged pointer of each source (null when read in place).
  staged_sources wait(std::size_t i) { return handover_.wait(i); }
  void release_item(std::size_t i) { handover_.release(i); }

  // Stops the readers and waits for them to end.
  void stop() {
    handover_.stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  void check_sizes() const { reader_.check_sizes(); }
  const file& shard_file(std::size_t i) const { return reader_.shard_file(i); }
  bool direct() const { return reader_.direct(); }
  std::uint64_t bytes_read() const { return reader_.bytes_read(); }
  double read_seconds() const { return read_nanos_ / 1e9; }
  std::size_t capacity() const { return capacity_; }
  // What binding the reader threads got, e.g. "bound: cpuset 0-3 (2 of 2 threads bound)".
  std::string binding() const { return binding_.describe(readers_); }

 private:
  // One staging slot per ring position; all or none are held.
  void allocate_slots(std::size_t slots) {
    buffers_.resize(slots, nullptr);
    try {
      for (auto& b : buffers_) b = engine_.allocate_staging(capacity_);
    } catch (...) {
      release_slots();
      throw;
    }
  }

  void release_slots() noexcept {
    for (auto*& b : buffers_)
      if (b) engine_.release_staging(b, capacity_), b = nullptr;
  }

  // The reader threads, each bound to the cpuset when one is given.
  void start_readers(std::size_t readers, const std::string& cpuset) {
    readers_ = readers;
    try {
      for (std::size_t r = 0; r < readers_; ++r)
        threads_.emplace_back([this, cpuset] {
          if (!cpuset.empty()) binding_.note(platform::bind_this_thread(cpuset));
          read_loop();
        });
    } catch (...) {
      stop();
      release_slots();
      throw;
    }
  }

  // A reader thread's body: claims items in order and stages each into its slot.
  void read_loop() {
    while (const auto i = handover_.claim()) {
      staged_sources staged{};
      std::exception_ptr failure;
      const auto t0 = clock_type::now();
      try {
        staged = read_item(*i);
      } catch (...) {
        failure = std::current_exception();
      }
      read_nanos_ +=
          std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count();
      handover_.publish(*i, staged, std::move(failure));
    }
  }

  // Reads item i's sources into its slot, or a copied range straight into its destination
  // when the sink offers a stable one (the staged pointers then stay null).
  staged_sources read_item(std::size_t i) {
    const work_item& item = items_[i];
    std::byte* in_place = item.decode || item.out_bytes == 0
                              ? nullptr
                              : sink_.stable_destination(item.tensor, item.out_offset);
    if (in_place) {
      reader_.read_into(in_place, item.src[0]);
      return {};
    }
    staged_sources staged{};
    std::byte* slot = buffers_[i % buffers_.size()];
    std::uint64_t at = 0;
    for (int k = 0; k < item.sources; ++k) {
      staged[k] = reader_.fill(slot + at, item.src[k]);
      at += round_up(item.src[k].bytes, reader_.alignment()) + 2 * reader_.alignment();
    }
    return staged;
  }

  const std::vector<work_item>& items_;
  backend& engine_;
  const output_sink& sink_;
  shard_reader reader_;
  std::size_t capacity_;
  slot_handover handover_;
  std::vector<std::byte*> buffers_;
  binding_record binding_;
  std::size_t readers_ = 0;
  std::atomic<std::int64_t> read_nanos_{0};
  std::vector<std::thread> threads_;
};

[[noreturn]] void refuse_nan_scale(const checkpoint& ckpt, const expert_pair& pair,
                                   const work_item& item, std::int64_t at) {
  const std::uint64_t index =
      item.expert_first * pair.rows * pair.groups + static_cast<std::uint64_t>(at);
  const std::uint64_t expert = index / (pair.rows * pair.groups);
  const std::uint64_t row = index / pair.groups % pair.rows;
  const std::uint64_t group = index % pair.groups;
  throw format_error(ckpt.shards[pair.scales.shard].path.string() + ": tensor '" +
                     pair.scales.name() + "': scale byte 255 (NaN in E8M0) at expert " +
                     std::to_string(expert) + ", row " + std::to_string(row) + ", group " +
                     std::to_string(group) + " (element " + std::to_string(index) +
                     "); pass --allow-nan-scales to decode it as NaN");
}

// The plan's page-cache order, unless a benchmark keeps the pages.
bool drops_page_cache(const pipeline_options& options) {
  return options.drop_page_cache && !options.keep_page_cache;
}

bool choose_direct(const pipeline_options& options) {
  // automatic: direct I/O only when the page cache is to be left clean anyway.
  if (options.io == io_mode::direct) return true;
  if (options.io == io_mode::buffered) return false;
  return drops_page_cache(options);
}

// A staging slot too small for one expert of the largest pair could never be filled.
void check_slot_fits(const std::vector<output_tensor>& outputs, const pipeline_options& options) {
  const std::uint64_t need = min_slot_bytes(outputs);
  if (options.slot_bytes < need)
    throw budget_error("staging slots of " + std::to_string(options.slot_bytes) +
                       " bytes cannot hold one expert (" + std::to_string(need) +
                       " bytes); raise the memory budget");
}

// The backend's work for one staged item: a decode of its blocks and scales (refused when a
// scale is NaN, unless allowed) or a copy of its bytes, into `destination`.
staged_item work_of(const checkpoint& ckpt, const output_tensor& out, const work_item& item,
                    const staged_sources& staged, std::byte* destination,
                    const pipeline_options& options) {
  staged_item work;
  if (item.decode) {
    const auto& pair = *out.pair;
    const auto* scales = reinterpret_cast<const std::uint8_t*>(staged[1]);
    if (!options.allow_nan_scales) {
      const std::int64_t at = cpu::find_nan_scale(scales, item.src[1].bytes);
      if (at >= 0) refuse_nan_scale(ckpt, pair, item, at);
    }
    work.what = staged_item::kind::decode;
    work.staged = staged[0];
    work.staged_bytes = item.src[0].bytes + item.src[1].bytes;
    work.job = decode_job::of(pair.geometry(), item.experts, options.order, options.dtype);
    work.job.blocks = reinterpret_cast<const std::uint8_t*>(staged[0]);
    work.job.scales = scales;
    work.job.out = destination;
  } else {
    work.what = staged_item::kind::copy;
    work.staged = staged[0];
    work.staged_bytes = item.src[0].bytes;
  }
  work.destination = destination;
  return work;
}

// One run of the pipeline: the consumer side, which takes the items from the ring in order,
// hands each to the backend and reports progress, with the ring's readers running beside it.
class pipeline_run {
 public:
  pipeline_run(const checkpoint& ckpt, const std::vector<output_tensor>& outputs,
               const pipeline_options& options, backend& engine, output_sink& sink)
      : t0_(clock_type::now()),
        ckpt_(ckpt),
        outputs_(outputs),
        options_(options),
        engine_(engine),
        sink_(sink) {
    check_slot_fits(outputs, options);
    items_ = make_items(outputs, options, options.slot_bytes);
    for (const auto& o : outputs) total_out_ += o.bytes;
  }

  pipeline_stats run() {
    staging_ring ring(ckpt_, items_, options_, engine_, sink_, choose_direct(options_));
    for (std::size_t i = 0; i < items_.size(); ++i) {
      consume(ring, i);
      report_progress(i);
    }
    finish(ring);
    return stats_of(ring);
  }

 private:
  // Item i: waits for its bytes, has the backend decode or copy them into the sink's
  // destination, commits it, frees its slot and drops its input pages.
  void consume(staging_ring& ring, std::size_t i) {
    const auto& item = items_[i];
    const auto staged = ring.wait(i);
    std::byte* dst = sink_.destination(item.tensor, item.out_offset, item.out_bytes);
    const staged_item work = work_of(ckpt_, outputs_[item.tensor], item, staged, dst, options_);
    if (item.decode) quantized_ += work.staged_bytes;
    const bool read_in_place = !item.decode && staged[0] == nullptr && item.out_bytes > 0;
    if (!read_in_place) engine_.process(work);
    sink_.commit(item.tensor, item.out_offset, item.out_bytes);
    ring.release_item(i);
    // O_DIRECT reads leave nothing cached; reads straight into a destination went buffered.
    if (drop() && (!ring.direct() || read_in_place)) drop_pages(ring, item);
    produced_ += item.out_bytes;
  }

  // Drops the page-cache pages of an item's input ranges.
  static void drop_pages(const staging_ring& ring, const work_item& item) {
    for (int k = 0; k < item.sources; ++k) {
      const auto& r = item.src[k];
      const std::uint64_t first = round_down(r.offset, page_bytes);
      ring.shard_file(r.shard).drop_cache(first, round_up(r.offset + r.bytes, page_bytes) - first);
    }
  }

  // Counts a tensor done after its last item and tells the caller how far the run is.
  void report_progress(std::size_t i) {
    if (i + 1 == items_.size() || items_[i + 1].tensor != items_[i].tensor) ++tensors_done_;
    if (options_.on_progress)
      options_.on_progress(
          {produced_, total_out_, tensors_done_, outputs_.size(), seconds_since(t0_)});
  }

  // Waits for the backend and the readers, checks the shards kept their size and drops every
  // page of them the run left cached.
  void finish(staging_ring& ring) {
    engine_.synchronize();
    ring.stop();
    ring.check_sizes();
    if (drop())
      for (std::size_t s = 0; s < ckpt_.shards.size(); ++s)
        ring.shard_file(s).drop_cache(0, ckpt_.shards[s].file_size);
  }

  pipeline_stats stats_of(const staging_ring& ring) const {
    pipeline_stats stats;
    stats.items = items_.size();
    stats.slots = static_cast<int>(slot_count(options_));
    stats.direct_io = ring.direct();
    stats.slot_bytes = ring.capacity();
    stats.dropped_page_cache = drop();
    stats.quantized_bytes = quantized_;
    stats.reader_binding = ring.binding();
    const auto b = engine_.stats();
    stats.staging = b.staging;
    stats.copy_seconds = b.copy_seconds;
    stats.decode_seconds = b.decode_seconds;
    stats.peak_device_bytes = b.peak_device_bytes;
    stats.read_seconds = ring.read_seconds();
    stats.bytes_read = ring.bytes_read();
    stats.bytes_produced = produced_;
    stats.seconds = seconds_since(t0_);
    return stats;
  }

  bool drop() const { return drops_page_cache(options_); }

  const clock_type::time_point t0_;
  const checkpoint& ckpt_;
  const std::vector<output_tensor>& outputs_;
  const pipeline_options& options_;
  backend& engine_;
  output_sink& sink_;
  std::vector<work_item> items_;
  std::uint64_t total_out_ = 0;
  std::uint64_t produced_ = 0;
  std::uint64_t quantized_ = 0;
  std::size_t tensors_done_ = 0;
};

}  // namespace

std::uint64_t staging_bytes(const pipeline_options& options) {
  return slot_count(options) * (round_up(options.slot_bytes, page_bytes) + 8 * page_bytes);
}

std::uint64_t min_slot_bytes(const std::vector<output_tensor>& outputs) {
  std::uint64_t need = 1;
  for (const auto& out : outputs)
    if (out.pair) need = std::max(need, out.pair->geometry().stored());
  return need;
}

pipeline_stats run_pipeline(const checkpoint& ckpt, const std::vector<output_tensor>& outputs,
                            const pipeline_options& options, backend& engine, output_sink& sink) {
  return pipeline_run(ckpt, outputs, options, engine, sink).run();
}

std::uint64_t resident_page_cache_bytes(const checkpoint& ckpt) {
  const long page = ::sysconf(_SC_PAGESIZE);
  std::uint64_t resident = 0;
  for (const auto& shard : ckpt.shards) {
    if (shard.file_size == 0) continue;
    const int fd = ::open(shard.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    void* map = ::mmap(nullptr, shard.file_size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) continue;
    const std::size_t pages = ceil_div(shard.file_size, static_cast<std::uint64_t>(page));
    std::vector<unsigned char> present(pages);
    if (::mincore(map, shard.file_size, present.data()) == 0)
      for (unsigned char p : present) resident += (p & 1) ? static_cast<std::uint64_t>(page) : 0;
    ::munmap(map, shard.file_size);
  }
  return resident;
}

std::uint64_t peak_rss_bytes() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace umload
