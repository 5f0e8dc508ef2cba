#include "src/pipeline.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
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

std::vector<work_item> make_items(const std::vector<output_tensor>& outputs,
                                  const pipeline_options& options, std::uint64_t capacity) {
  std::vector<work_item> items;
  for (std::size_t t = 0; t < outputs.size(); ++t) {
    const auto& out = outputs[t];
    if (out.pair) {
      const auto& pair = *out.pair;
      const auto g = pair.geometry();
      const std::uint64_t blocks_per = g.blocks();
      const std::uint64_t scales_per = g.scales();
      const std::uint64_t out_per = g.output(element_bytes(options.dtype));
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
      continue;
    }
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
  return items;
}

// The ring of staging slots and the reader threads that fill them, in item order.
class staging_ring {
 public:
  staging_ring(const checkpoint& ckpt, const std::vector<work_item>& items,
               const pipeline_options& options, backend& engine, const output_sink& sink,
               bool direct)
      : ckpt_(ckpt),
        items_(items),
        engine_(engine),
        sink_(sink),
        slots_(std::max(2, options.slots)),
        direct_(direct) {
    for (const auto& shard : ckpt.shards) files_.push_back(file::open_read(shard.path, direct));
    for (const auto& f : files_) {
      direct_ = direct_ && f.is_direct();
      align_ = std::max<std::uint64_t>(align_, f.direct_alignment());
    }
    // Reads straight into a destination have no alignment to offer O_DIRECT: they go buffered.
    if (direct_)
      for (const auto& shard : ckpt.shards)
        plain_files_.push_back(file::open_read(shard.path, false));
    capacity_ = round_up(options.slot_bytes, align_) + 8 * align_;
    check_sizes();
    buffers_.resize(slots_, nullptr);
    ready_.assign(slots_, -1);
    failure_.resize(slots_);
    data_.resize(slots_);
    try {
      for (auto& b : buffers_) b = engine_.allocate_staging(capacity_);
    } catch (...) {
      release();
      throw;
    }
    readers_ = static_cast<std::size_t>(std::max(1, options.readers));
    for (std::size_t r = 0; r < readers_; ++r)
      threads_.emplace_back([this, cpuset = options.reader_cpuset] {
        if (!cpuset.empty()) note_binding(platform::bind_this_thread(cpuset));
        read_loop();
      });
  }

  ~staging_ring() {
    stop();
    release();
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

  // Waits for item i's bytes; returns the staged pointer of each source.
  std::array<const std::byte*, 2> wait(std::size_t i) {
    std::unique_lock lock(mutex_);
    const std::size_t s = i % slots_;
    cv_.wait(lock, [&] { return ready_[s] == static_cast<std::int64_t>(i); });
    if (failure_[s]) std::rethrow_exception(failure_[s]);
    return data_[s];
  }

  void release_item(std::size_t i) {
    {
      std::lock_guard lock(mutex_);
      consumed_ = i + 1;
    }
    cv_.notify_all();
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  const file& shard_file(std::size_t i) const { return files_[i]; }
  bool direct() const { return direct_; }
  std::uint64_t bytes_read() const { return bytes_read_; }
  double read_seconds() const { return read_nanos_ / 1e9; }
  std::size_t capacity() const { return capacity_; }
  std::uint64_t alignment() const { return align_; }
  // What binding the reader threads got, e.g. "bound: cpuset 0-3 (2 of 2 threads)".
  std::string binding() const {
    std::lock_guard lock(mutex_);
    if (binding_.empty()) return {};
    return binding_ + " (" + std::to_string(bound_threads_) + " of " + std::to_string(readers_) +
           " threads bound)";
  }

 private:
  void note_binding(const platform::bind_result& r) {
    std::lock_guard lock(mutex_);
    if (binding_.empty()) binding_ = std::string(platform::to_string(r.outcome)) + ": " + r.detail;
    if (r.bound()) ++bound_threads_;
  }

  void read_loop() {
    for (;;) {
      std::size_t i = 0;
      {
        std::unique_lock lock(mutex_);
        if (stopping_ || next_ >= items_.size()) return;
        i = next_++;
        cv_.wait(lock, [&] { return stopping_ || i < consumed_ + slots_; });
        if (stopping_) return;
      }
      const std::size_t s = i % slots_;
      std::array<const std::byte*, 2> staged{};
      std::exception_ptr failure;
      const auto t0 = clock_type::now();
      try {
        const work_item& item = items_[i];
        std::byte* in_place = item.decode || item.out_bytes == 0
                                  ? nullptr
                                  : sink_.stable_destination(item.tensor, item.out_offset);
        if (in_place) {
          // A copied range read straight into its destination; staged stays null.
          const auto& r = item.src[0];
          (direct_ ? plain_files_ : files_)[r.shard].read_exact(in_place, r.bytes, r.offset);
          bytes_read_ += r.bytes;
        } else {
          std::uint64_t at = 0;
          for (int k = 0; k < item.sources; ++k) {
            staged[k] = fill(buffers_[s] + at, item.src[k]);
            at += round_up(item.src[k].bytes, align_) + 2 * align_;
          }
        }
      } catch (...) {
        failure = std::current_exception();
      }
      read_nanos_ +=
          std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count();
      {
        std::lock_guard lock(mutex_);
        data_[s] = staged;
        failure_[s] = failure;
        ready_[s] = static_cast<std::int64_t>(i);
      }
      cv_.notify_all();
    }
  }

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

  void release() noexcept {
    for (auto*& b : buffers_)
      if (b) engine_.release_staging(b, capacity_), b = nullptr;
  }

  const checkpoint& ckpt_;
  const std::vector<work_item>& items_;
  backend& engine_;
  const output_sink& sink_;
  std::size_t slots_;
  bool direct_;
  std::uint64_t align_ = page_bytes;
  std::size_t capacity_ = 0;
  std::vector<file> files_;
  std::vector<file> plain_files_;  // buffered twins of files_ when those are O_DIRECT
  std::vector<std::byte*> buffers_;
  std::vector<std::int64_t> ready_;
  std::vector<std::exception_ptr> failure_;
  std::vector<std::array<const std::byte*, 2>> data_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string binding_;
  std::size_t bound_threads_ = 0;
  std::size_t readers_ = 0;
  std::size_t next_ = 0;
  std::size_t consumed_ = 0;
  bool stopping_ = false;
  std::atomic<std::uint64_t> bytes_read_{0};
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

bool choose_direct(const pipeline_options& options) {
  // automatic: direct I/O only when the page cache is to be left clean anyway.
  if (options.io == io_mode::direct) return true;
  if (options.io == io_mode::buffered) return false;
  return options.drop_page_cache && !options.keep_page_cache;
}

}  // namespace

std::uint64_t staging_bytes(const pipeline_options& options) {
  return static_cast<std::uint64_t>(std::max(2, options.slots)) *
         (round_up(options.slot_bytes, page_bytes) + 8 * page_bytes);
}

std::uint64_t min_slot_bytes(const std::vector<output_tensor>& outputs) {
  std::uint64_t need = 1;
  for (const auto& out : outputs)
    if (out.pair) need = std::max(need, out.pair->geometry().stored());
  return need;
}

pipeline_stats run_pipeline(const checkpoint& ckpt, const std::vector<output_tensor>& outputs,
                            const pipeline_options& options, backend& engine, output_sink& sink) {
  const auto t0 = clock_type::now();
  const std::uint64_t need = min_slot_bytes(outputs);
  if (options.slot_bytes < need)
    throw budget_error("staging slots of " + std::to_string(options.slot_bytes) +
                       " bytes cannot hold one expert (" + std::to_string(need) +
                       " bytes); raise the memory budget");
  const auto items = make_items(outputs, options, options.slot_bytes);
  pipeline_stats stats;
  stats.items = items.size();
  stats.slots = std::max(2, options.slots);

  std::uint64_t total_out = 0;
  for (const auto& o : outputs) total_out += o.bytes;
  staging_ring ring(ckpt, items, options, engine, sink, choose_direct(options));
  stats.direct_io = ring.direct();
  stats.slot_bytes = ring.capacity();
  const bool drop = options.drop_page_cache && !options.keep_page_cache;
  stats.dropped_page_cache = drop;
  std::size_t tensors_done = 0;
  std::uint64_t produced = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    const auto& out = outputs[item.tensor];
    const auto staged = ring.wait(i);
    std::byte* dst = sink.destination(item.tensor, item.out_offset, item.out_bytes);
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
      work.job.out = dst;
      stats.quantized_bytes += work.staged_bytes;
    } else {
      work.what = staged_item::kind::copy;
      work.staged = staged[0];
      work.staged_bytes = item.src[0].bytes;
    }
    work.destination = dst;
    const bool read_in_place = !item.decode && staged[0] == nullptr && item.out_bytes > 0;
    if (!read_in_place) engine.process(work);
    sink.commit(item.tensor, item.out_offset, item.out_bytes);
    ring.release_item(i);
    if (drop && (!ring.direct() || read_in_place))
      for (int k = 0; k < item.sources; ++k) {
        const auto& r = item.src[k];
        const std::uint64_t first = round_down(r.offset, page_bytes);
        ring.shard_file(r.shard).drop_cache(first,
                                            round_up(r.offset + r.bytes, page_bytes) - first);
      }
    produced += item.out_bytes;
    if (i + 1 == items.size() || items[i + 1].tensor != item.tensor) ++tensors_done;
    if (options.on_progress)
      options.on_progress({produced, total_out, tensors_done, outputs.size(), seconds_since(t0)});
  }
  engine.synchronize();
  ring.stop();
  ring.check_sizes();
  if (drop)
    for (std::size_t s = 0; s < ckpt.shards.size(); ++s)
      ring.shard_file(s).drop_cache(0, ckpt.shards[s].file_size);
  stats.reader_binding = ring.binding();
  const auto b = engine.stats();
  stats.staging = b.staging;
  stats.copy_seconds = b.copy_seconds;
  stats.decode_seconds = b.decode_seconds;
  stats.peak_device_bytes = b.peak_device_bytes;
  stats.read_seconds = ring.read_seconds();
  stats.bytes_read = ring.bytes_read();
  stats.bytes_produced = produced;
  stats.seconds = seconds_since(t0);
  return stats;
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
