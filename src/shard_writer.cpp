#include "src/shard_writer.hpp"

#include <algorithm>
#include <chrono>

#include "kernels/arith.hpp"
#include "kernels/error.hpp"

namespace umload {

namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

}  // namespace

shard_writer::shard_writer(const fs::path& dir, std::vector<shard_layout> shards, backend& engine,
                           std::size_t chunks, std::uint64_t chunk_bytes)
    : dir_(dir),
      shards_(std::move(shards)),
      engine_(engine),
      chunk_bytes_(std::max<std::uint64_t>(chunk_bytes, 1)) {
  files_.resize(shards_.size());
  remaining_.resize(shards_.size());
  renamed_.assign(shards_.size(), false);
  // A failure here (a full disk at the first header) happens before the caller holds the writer
  // and could discard it, so the files made so far are removed here.
  try {
    for (std::size_t s = 0; s < shards_.size(); ++s) {
      files_[s] = file::create(temp_path(s), true);
      alignment_ = std::max<std::uint64_t>(alignment_, files_[s].direct_alignment());
      files_[s].preallocate(shards_[s].header.size() + shards_[s].data_bytes);
      files_[s].write_exact(shards_[s].header.data(), shards_[s].header.size(), 0);
      stats_.buffered_bytes += shards_[s].header.size();
      remaining_[s] = shards_[s].data_bytes;
      if (remaining_[s] == 0) finish_shard(s);
    }
    // Room to place a chunk at any offset within an alignment unit, and to align its base.
    for (std::size_t c = 0; c < std::max<std::size_t>(chunks, 1); ++c) {
      chunk_memory_.push_back(
          engine_.allocate_output(chunk_bytes_ + 2 * alignment_, memory_kind::host));
      free_.push_back(c);
    }
  } catch (...) {
    discard();
    release_chunks();
    throw;
  }
  stats_.chunks = chunk_memory_.size();
  stats_.chunk_bytes = chunk_bytes_;
  thread_ = std::thread([this] { write_loop(); });
}

shard_writer::~shard_writer() {
  if (!finished_) discard();
  stop();
  release_chunks();
}

fs::path shard_writer::temp_path(std::size_t s) const {
  return dir_ / ("." + shards_[s].name + ".partial");
}

std::byte* shard_writer::acquire(std::size_t shard, std::uint64_t offset, std::uint64_t bytes) {
  if (bytes > chunk_bytes_)
    throw error("shard writer: a chunk of " + std::to_string(bytes) +
                " bytes exceeds the chunk size of " + std::to_string(chunk_bytes_));
  const auto t0 = clock_type::now();
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return failure_ || !free_.empty(); });
  stats_.wait_seconds += seconds_since(t0);
  if (failure_) std::rethrow_exception(failure_);
  const std::size_t c = free_.back();
  free_.pop_back();
  auto* base = reinterpret_cast<std::byte*>(
      round_up(reinterpret_cast<std::uintptr_t>(chunk_memory_[c]), alignment_));
  return base + (shards_[shard].header.size() + offset) % alignment_;
}

void shard_writer::submit(std::byte* chunk, std::size_t shard, std::uint64_t offset,
                          std::uint64_t bytes) {
  std::size_t c = 0;
  while (c < chunk_memory_.size() &&
         !(chunk >= chunk_memory_[c] && chunk < chunk_memory_[c] + chunk_bytes_ + 2 * alignment_))
    ++c;
  if (c == chunk_memory_.size())
    throw error("shard writer: submitted memory is not one of its chunks");
  {
    std::lock_guard lock(mutex_);
    if (failure_) std::rethrow_exception(failure_);
    queue_.push_back({c, shard, shards_[shard].header.size() + offset, bytes, chunk});
    ++submitted_jobs_;
  }
  cv_.notify_all();
}

void shard_writer::write_loop() {
  for (;;) {
    job j;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      j = queue_.front();
      queue_.erase(queue_.begin());
    }
    bool failed = false;
    try {
      const auto t0 = clock_type::now();
      write(j);
      const double seconds = seconds_since(t0);
      std::lock_guard lock(mutex_);
      stats_.write_seconds += seconds;
      free_.push_back(j.chunk);
      ++written_jobs_;
    } catch (...) {
      std::lock_guard lock(mutex_);
      failure_ = std::current_exception();
      failed = true;
    }
    cv_.notify_all();
    if (failed) return;
  }
}

void shard_writer::write(const job& j) {
  const file& f = files_[j.shard];
  if (j.bytes > remaining_[j.shard])
    throw error("shard writer: " + std::to_string(j.bytes) + " bytes for " + shards_[j.shard].name +
                ", which has " + std::to_string(remaining_[j.shard]) + " left");
  const std::size_t direct = f.write_exact(j.data, j.bytes, j.offset);
  {
    std::lock_guard lock(mutex_);
    stats_.direct_bytes += direct;
    stats_.buffered_bytes += j.bytes - direct;
  }
  // A chunk that went through the page cache has its writeback started now and, a chunk later
  // (when that writeback has had this chunk's time to finish), waited for and dropped. A chunk
  // that went direct leaves at most its two partial end pages dirty: they wait for the shard's
  // fdatasync rather than cost two small synchronous writes each.
  if (direct == 0) {
    f.start_writeback(j.offset, j.bytes);
    settling_.push_back({j.shard, j.offset, j.bytes});
  }
  while (settling_.size() > 1 || (direct > 0 && !settling_.empty())) {
    const pending_range r = settling_.front();
    settling_.erase(settling_.begin());
    files_[r.shard].write_back_and_drop(r.offset, r.bytes);
  }
  remaining_[j.shard] -= j.bytes;
  if (remaining_[j.shard] == 0) finish_shard(j.shard);
}

void shard_writer::finish_shard(std::size_t s) {
  files_[s].sync();
  files_[s].drop_cache(0, 0);
  files_[s].close();
  settling_.erase(std::remove_if(settling_.begin(), settling_.end(),
                                 [&](const pending_range& r) { return r.shard == s; }),
                  settling_.end());
  std::error_code ec;
  fs::rename(temp_path(s), dir_ / shards_[s].name, ec);
  if (ec)
    throw io_error("cannot rename " + temp_path(s).string() + ": " + ec.message(), ec.value());
  renamed_[s] = true;
}

void shard_writer::finish() {
  {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return failure_ || written_jobs_ == submitted_jobs_; });
    if (failure_) std::rethrow_exception(failure_);
  }
  stop();
  for (std::size_t s = 0; s < shards_.size(); ++s)
    if (!renamed_[s])
      throw io_error(shards_[s].name + ": conversion ended with " + std::to_string(remaining_[s]) +
                     " bytes of the shard unwritten");
  finished_ = true;
}

void shard_writer::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void shard_writer::discard() noexcept {
  stop();
  std::error_code ec;
  for (std::size_t s = 0; s < shards_.size(); ++s) {
    files_[s].close();
    fs::remove(temp_path(s), ec);
    fs::remove(dir_ / shards_[s].name, ec);
  }
}

void shard_writer::release_chunks() noexcept {
  for (auto* p : chunk_memory_)
    engine_.release_output(p, chunk_bytes_ + 2 * alignment_, memory_kind::host);
  chunk_memory_.clear();
}

shard_writer_stats shard_writer::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace umload
