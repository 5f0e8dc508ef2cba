// Files as the loader uses them: an owning descriptor, full reads and writes that turn every
// failure (EIO, a short read at end of file, a full disk) into an io_error naming the path, and a
// fault hook so tests can inject those failures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace umload {

class file {
 public:
  file() = default;
  // Opens for reading; `direct` adds O_DIRECT where the filesystem supports it (statx
  // STATX_DIOALIGN says so, or the open succeeds on kernels that cannot tell), and falls back to
  // a plain buffered open where it is refused.
  static file open_read(const std::filesystem::path& path, bool direct = false);
  // Creates (truncating) for writing. `direct` adds an O_DIRECT twin descriptor where the file
  // system allows it (as for open_read); write_exact then sends the aligned middle of a write
  // through it and the unaligned head and tail through the buffered one.
  static file create(const std::filesystem::path& path, bool direct = false);
  file(file&& other) noexcept;
  file& operator=(file&& other) noexcept;
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  ~file();

  int fd() const { return fd_; }
  bool is_direct() const { return direct_; }
  // A created file whose writes go direct where their alignment allows.
  bool writes_direct() const { return direct_fd_ >= 0; }
  // Offset, length and buffer alignment O_DIRECT needs on this file (4096 when unknown).
  std::uint32_t direct_alignment() const { return direct_alignment_; }
  const std::filesystem::path& path() const { return path_; }
  std::uint64_t size() const;

  // Reads exactly `bytes` at `offset`, or throws io_error (EIO, or end of file before `bytes`).
  void read_exact(void* dst, std::size_t bytes, std::uint64_t offset) const;
  // Reads up to `bytes` at `offset`, stopping early only at end of file and only once `required`
  // bytes are in; returns the count. For O_DIRECT reads whose aligned length passes the end.
  std::size_t read_at_least(void* dst, std::size_t bytes, std::size_t required,
                            std::uint64_t offset) const;
  // Writes exactly `bytes` at `offset`, or throws io_error (ENOSPC, EFBIG, ...). With a direct
  // descriptor, the whole pages of the range go through it when `src` sits at the same offset
  // within a page as `offset` does (else all of it goes buffered); a page shared with a
  // neighbouring write is always written buffered, so the two descriptors never share a page.
  // Returns the bytes that went direct.
  std::size_t write_exact(const void* src, std::size_t bytes, std::uint64_t offset) const;
  // Reserves the file's blocks up front (fallocate), so a full disk fails here and not after
  // minutes of writing; a file system without fallocate is left as it is.
  void preallocate(std::uint64_t bytes) const;
  void sync() const;
  // Starts writeback of a range without waiting (sync_file_range WRITE); advisory.
  void start_writeback(std::uint64_t offset, std::uint64_t bytes) const noexcept;
  // Waits until a range is on disk (writing what is still dirty), then drops its pages from the
  // page cache: for a range whose writeback was started a while ago, so the wait is short.
  void write_back_and_drop(std::uint64_t offset, std::uint64_t bytes) const noexcept;
  // Drops the cached pages of a range (POSIX_FADV_DONTNEED); advisory, never fails.
  void drop_cache(std::uint64_t offset, std::uint64_t bytes) const noexcept;
  void close();

 private:
  file(int fd, std::filesystem::path path, bool direct)
      : fd_(fd), path_(std::move(path)), direct_(direct) {}
  void write_through(int fd, const char* src, std::size_t bytes, std::uint64_t offset) const;
  int fd_ = -1;
  int direct_fd_ = -1;  // created files: the O_DIRECT twin of fd_, or -1
  std::filesystem::path path_;
  bool direct_ = false;
  std::uint32_t direct_alignment_ = 4096;
};

// Reads a whole small file (config, index) with a size limit.
std::string read_text_file(const std::filesystem::path& path, std::uint64_t limit);

// Writes a small file atomically: temporary name, fsync, rename, fsync of the directory.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);
void sync_directory(const std::filesystem::path& dir);

namespace detail {
// Test hook: after `after_bytes` more bytes have been read, the next read fails with `error`
// (an errno), or, when error is 0, returns short (end of file). Cleared with clear_read_fault().
void inject_read_fault(std::uint64_t after_bytes, int error);
void clear_read_fault();
// Test hook: after `after_bytes` more bytes have been written, the next write fails with `error`
// (an errno: ENOSPC for a full disk, EIO). Cleared with clear_write_fault().
void inject_write_fault(std::uint64_t after_bytes, int error);
void clear_write_fault();
// Test hook: while set, opening with O_DIRECT behaves as on a filesystem that refuses it.
void refuse_direct_io(bool refuse);
}  // namespace detail

}  // namespace umload
