#include "src/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "kernels/arith.hpp"
#include "kernels/error.hpp"

namespace umload {

namespace {

std::string describe(const char* what, const std::filesystem::path& path, int err) {
  return std::string(what) + " " + path.string() + ": " + std::strerror(err);
}

struct io_fault {
  std::atomic<bool> armed{false};
  std::atomic<std::int64_t> remaining{0};
  std::atomic<int> error{0};
};
io_fault g_fault;
io_fault g_write_fault;
std::atomic<bool> g_refuse_direct{false};

// Returns -1 when no fault is armed, 0 when this transfer must fail, else the bytes it may move
// (all of them: a transfer that would cross the fault point fails whole, which also keeps
// O_DIRECT transfers aligned).
std::int64_t fault_budget(io_fault& fault, std::size_t wanted) {
  if (!fault.armed.load(std::memory_order_relaxed)) return -1;
  const std::int64_t left = fault.remaining.fetch_sub(static_cast<std::int64_t>(wanted));
  return left < static_cast<std::int64_t>(wanted) ? 0 : static_cast<std::int64_t>(wanted);
}

}  // namespace

namespace detail {
void inject_read_fault(std::uint64_t after_bytes, int error) {
  g_fault.remaining = static_cast<std::int64_t>(after_bytes);
  g_fault.error = error;
  g_fault.armed = true;
}
void clear_read_fault() { g_fault.armed = false; }
void inject_write_fault(std::uint64_t after_bytes, int error) {
  g_write_fault.remaining = static_cast<std::int64_t>(after_bytes);
  g_write_fault.error = error;
  g_write_fault.armed = true;
}
void clear_write_fault() { g_write_fault.armed = false; }
void refuse_direct_io(bool refuse) { g_refuse_direct = refuse; }
}  // namespace detail

// Opens `path` with O_DIRECT added to `flags` where its file system can do direct I/O (statx
// STATX_DIOALIGN says so, or the open succeeds on kernels that cannot tell); -1 where not. Sets
// `alignment` to what offsets, lengths and buffers need (at least a page).
int open_direct(const std::filesystem::path& path, int flags, std::uint32_t& alignment) {
  alignment = 4096;
  if (g_refuse_direct) return -1;
  struct statx stx {};
  if (::statx(AT_FDCWD, path.c_str(), 0, STATX_DIOALIGN, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN)) {
    if (stx.stx_dio_offset_align == 0) return -1;  // this file cannot do direct I/O
    alignment = std::max({alignment, stx.stx_dio_offset_align, stx.stx_dio_mem_align});
  }
  return ::open(path.c_str(), flags | O_CLOEXEC | O_DIRECT);
}

file file::open_read(const std::filesystem::path& path, bool direct) {
  std::uint32_t alignment = 4096;
  int fd = direct ? open_direct(path, O_RDONLY, alignment) : -1;
  const bool is_direct = fd >= 0;
  if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(describe("cannot open", path, errno), errno);
  file f(fd, path, is_direct);
  f.direct_alignment_ = alignment;
  return f;
}

file file::create(const std::filesystem::path& path, bool direct) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw io_error(describe("cannot create", path, errno), errno);
  file f(fd, path, false);
  if (direct) f.direct_fd_ = open_direct(path, O_WRONLY, f.direct_alignment_);
  return f;
}

file::file(file&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      direct_fd_(std::exchange(other.direct_fd_, -1)),
      path_(std::move(other.path_)),
      direct_(other.direct_),
      direct_alignment_(other.direct_alignment_) {}

file& file::operator=(file&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    direct_fd_ = std::exchange(other.direct_fd_, -1);
    path_ = std::move(other.path_);
    direct_ = other.direct_;
    direct_alignment_ = other.direct_alignment_;
  }
  return *this;
}

file::~file() { close(); }

void file::close() {
  if (fd_ >= 0) ::close(fd_);
  if (direct_fd_ >= 0) ::close(direct_fd_);
  fd_ = -1;
  direct_fd_ = -1;
}

std::uint64_t file::size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw io_error(describe("cannot stat", path_, errno), errno);
  return static_cast<std::uint64_t>(st.st_size);
}

void file::read_exact(void* dst, std::size_t bytes, std::uint64_t offset) const {
  read_at_least(dst, bytes, bytes, offset);
}

std::size_t file::read_at_least(void* dst, std::size_t bytes, std::size_t required,
                                std::uint64_t offset) const {
  auto* out = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < bytes) {
    std::size_t want = bytes - done;
    const std::int64_t allowed = fault_budget(g_fault, want);
    if (allowed == 0) {
      const int err = g_fault.error.load();
      if (err != 0)
        throw io_error(
            describe("read failed", path_, err) + " at offset " + std::to_string(offset + done),
            err);
      throw io_error("short read from " + path_.string() + ": end of file at offset " +
                     std::to_string(offset + done) + ", " + std::to_string(required - done) +
                     " bytes missing (the file changed or is truncated)");
    }
    if (allowed > 0) want = static_cast<std::size_t>(allowed);
    const ssize_t n = ::pread(fd_, out + done, want, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(
          describe("read failed", path_, errno) + " at offset " + std::to_string(offset + done),
          errno);
    }
    if (n == 0 && done >= required) return done;
    if (n == 0)
      throw io_error("short read from " + path_.string() + ": end of file at offset " +
                     std::to_string(offset + done) + ", " + std::to_string(required - done) +
                     " bytes missing (the file changed or is truncated)");
    done += static_cast<std::size_t>(n);
  }
  return done;
}

std::size_t file::write_exact(const void* src, std::size_t bytes, std::uint64_t offset) const {
  const auto* in = static_cast<const char*>(src);
  const std::uint64_t a = direct_alignment_;
  const std::uint64_t first = round_up(offset, a);
  const std::uint64_t last = round_down(offset + bytes, a);
  const bool aligned = reinterpret_cast<std::uintptr_t>(in + (first - offset)) % a == 0;
  if (direct_fd_ < 0 || last <= first || !aligned) {
    write_through(fd_, in, bytes, offset);
    return 0;
  }
  write_through(fd_, in, first - offset, offset);
  write_through(direct_fd_, in + (first - offset), last - first, first);
  write_through(fd_, in + (last - offset), offset + bytes - last, last);
  return last - first;
}

void file::write_through(int fd, const char* in, std::size_t bytes, std::uint64_t offset) const {
  std::size_t done = 0;
  while (done < bytes) {
    if (fault_budget(g_write_fault, bytes - done) == 0)
      throw io_error(describe("write failed", path_, g_write_fault.error.load()),
                     g_write_fault.error.load());
    const ssize_t n = ::pwrite(fd, in + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      // A direct write the file system refuses after all (EINVAL): the buffered twin writes it.
      if (fd == direct_fd_ && errno == EINVAL) {
        fd = fd_;
        continue;
      }
      throw io_error(describe("write failed", path_, errno), errno);
    }
    if (n == 0) throw io_error(describe("write failed", path_, ENOSPC), ENOSPC);
    done += static_cast<std::size_t>(n);
    // A short direct write leaves an unaligned rest: it goes buffered.
    if (fd == direct_fd_ && done % direct_alignment_ != 0) fd = fd_;
  }
}

void file::preallocate(std::uint64_t bytes) const {
  if (bytes == 0) return;
  if (::fallocate(fd_, 0, 0, static_cast<off_t>(bytes)) == 0) return;
  const int err = errno;
  if (err == EOPNOTSUPP || err == ENOSYS || err == EINTR) return;
  throw io_error(
      describe("write failed", path_, err) + " (reserving " + std::to_string(bytes) + " bytes)",
      err);
}

void file::start_writeback(std::uint64_t offset, std::uint64_t bytes) const noexcept {
  if (fd_ >= 0 && bytes > 0)
    ::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes),
                      SYNC_FILE_RANGE_WRITE);
}

void file::write_back_and_drop(std::uint64_t offset, std::uint64_t bytes) const noexcept {
  if (fd_ < 0 || bytes == 0) return;
  ::sync_file_range(
      fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes),
      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  drop_cache(offset, bytes);
}

void file::sync() const {
  if (::fdatasync(fd_) != 0) throw io_error(describe("fdatasync failed", path_, errno), errno);
}

void file::drop_cache(std::uint64_t offset, std::uint64_t bytes) const noexcept {
  if (fd_ >= 0 && bytes > 0)
    ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes),
                    POSIX_FADV_DONTNEED);
}

std::string read_text_file(const std::filesystem::path& path, std::uint64_t limit) {
  file f = file::open_read(path);
  const std::uint64_t size = f.size();
  if (size > limit)
    throw format_error(path.string() + ": file is " + std::to_string(size) +
                       " bytes, more than the limit of " + std::to_string(limit));
  std::string text(size, '\0');
  f.read_exact(text.data(), size, 0);
  return text;
}

void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw io_error(describe("cannot open directory", dir, errno), errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw io_error(describe("fsync failed", dir, err), err);
}

void write_file_atomic(const std::filesystem::path& path, const std::string& content) {
  const std::filesystem::path temp = path.string() + ".umload-tmp";
  {
    file f = file::create(temp);
    try {
      f.write_exact(content.data(), content.size(), 0);
      if (::fsync(f.fd()) != 0) throw io_error(describe("fsync failed", temp, errno), errno);
    } catch (...) {
      f.close();
      std::error_code ec;
      std::filesystem::remove(temp, ec);
      throw;
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::filesystem::remove(temp, ec);
    throw io_error("cannot rename " + temp.string() + " to " + path.string() + ": " + ec.message(),
                   ec.value());
  }
  sync_directory(path.parent_path().empty() ? "." : path.parent_path());
}

}  // namespace umload
