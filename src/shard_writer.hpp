// Writing a converted checkpoint's shard files behind the decode. The shards are laid out up front
// (a header, then tensors at known offsets); the caller fills one output chunk at a time and
// hands it over, and a writer thread puts it in its place while the caller decodes the next
// chunk. The chunks are all the memory there is: `chunks` buffers of `chunk_bytes`, allocated at
// construction, and `acquire` waits while every one of them is still being written.
//
// Each shard is created under a temporary name with its blocks reserved (a full disk fails at
// once), written with O_DIRECT where the file system and the alignment allow (the unaligned head
// and tail of a chunk through the buffered descriptor), synced once with fdatasync when its last
// byte is in, then renamed. What goes through the page cache has its writeback started as soon as
// it is written and is dropped from the cache a chunk later, so neither dirty nor clean output
// piles up in memory. A failed or abandoned writer removes every file it made.
//
//   shard_writer writer(dir, shards, engine, 2, chunk_bytes);
//   std::byte* chunk = writer.acquire(shard, offset, bytes);  // fill it
//   writer.submit(chunk, shard, offset, bytes);
//   writer.finish();  // every shard synced and renamed, or the first failure thrown
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/backend.hpp"
#include "src/file.hpp"

namespace umload {

// One output file: its final name, its header (8-byte length + JSON) and the tensor bytes after it.
struct shard_layout {
  std::string name;
  std::string header;
  std::uint64_t data_bytes = 0;
};

struct shard_writer_stats {
  double write_seconds = 0;          // the writer thread's time in writes and syncs
  double wait_seconds = 0;           // the caller's time waiting for a free chunk
  std::uint64_t direct_bytes = 0;    // written with O_DIRECT
  std::uint64_t buffered_bytes = 0;  // through the page cache (headers, unaligned ends, tmpfs)
  std::size_t chunks = 0;
  std::uint64_t chunk_bytes = 0;
};

class shard_writer {
 public:
  // Creates every shard file (temporary names) and writes its header. `engine` allocates the chunk
  // buffers (host memory). Throws io_error, leaving nothing behind.
  shard_writer(const std::filesystem::path& dir, std::vector<shard_layout> shards, backend& engine,
               std::size_t chunks, std::uint64_t chunk_bytes);
  shard_writer(const shard_writer&) = delete;
  shard_writer& operator=(const shard_writer&) = delete;
  // Stops the writer; removes every file unless finish() returned.
  ~shard_writer();

  // A free chunk for `bytes` (at most chunk_bytes) bound for `offset` of shard `shard`'s data,
  // placed so that O_DIRECT can write it there. Waits while every chunk is in flight; throws the
  // writer's failure if it has failed.
  std::byte* acquire(std::size_t shard, std::uint64_t offset, std::uint64_t bytes);
  // Hands a filled chunk (as acquire returned it, with the same arguments) to the writer.
  void submit(std::byte* chunk, std::size_t shard, std::uint64_t offset, std::uint64_t bytes);
  // Waits for every write; each shard is then synced and renamed. Throws the first failure, or
  // io_error when a shard did not get all of its bytes.
  void finish();
  // Stops and removes every file, finished or not (a failed run leaves nothing behind).
  void discard() noexcept;

  shard_writer_stats stats() const;

 private:
  struct job {
    std::size_t chunk = 0;
    std::size_t shard = 0;
    std::uint64_t offset = 0;  // in the file
    std::uint64_t bytes = 0;
    const std::byte* data = nullptr;
  };
  struct pending_range {
    std::size_t shard = 0;
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
  };

  std::filesystem::path temp_path(std::size_t s) const;
  void write_loop();
  void write(const job& j);
  void finish_shard(std::size_t s);
  void stop() noexcept;
  void release_chunks() noexcept;

  std::filesystem::path dir_;
  std::vector<shard_layout> shards_;
  backend& engine_;
  std::uint64_t chunk_bytes_ = 0;
  std::uint64_t alignment_ = 4096;
  std::vector<std::byte*> chunk_memory_;
  std::vector<file> files_;
  std::vector<std::uint64_t> remaining_;  // data bytes not yet written, per shard
  std::vector<bool> renamed_;
  std::vector<pending_range> settling_;  // writeback started, not yet waited for and dropped

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::size_t> free_;  // chunk indices not in flight
  std::vector<job> queue_;         // submitted, not yet written (FIFO)
  std::size_t written_jobs_ = 0;
  std::size_t submitted_jobs_ = 0;
  std::exception_ptr failure_;
  bool stopping_ = false;
  bool finished_ = false;
  shard_writer_stats stats_;
  std::thread thread_;
};

}  // namespace umload
