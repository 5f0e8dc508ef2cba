// The error types every umload layer throws. They live in the lowest layer (kernels/) so that
// platform/ and src/ share them without an upward include. The library never aborts and never
// prints: it throws one of these, and the CLI maps each kind to an exit code (docs/cli.md).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace umload {

// Exit codes of the CLI, one per error kind. Documented in docs/cli.md.
enum class exit_code : int {
  ok = 0,
  internal = 1,
  usage = 2,
  format = 3,
  io = 4,
  budget = 5,
  device = 6,
  conflict = 7,
  mismatch = 8,
};

class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
  virtual exit_code code() const noexcept { return exit_code::internal; }
};

// A bad or corrupt checkpoint: the message names the file, the tensor, the field, the value and
// the limit it broke.
class format_error : public error {
 public:
  using error::error;
  exit_code code() const noexcept override { return exit_code::format; }
};

// A failed system call: the message carries the path and strerror(errno).
class io_error : public error {
 public:
  io_error(const std::string& what, int err) : error(what), errno_(err) {}
  explicit io_error(const std::string& what) : error(what), errno_(0) {}
  int errno_value() const noexcept { return errno_; }
  exit_code code() const noexcept override { return exit_code::io; }

 private:
  int errno_;
};

// A CUDA runtime failure, or a device-only feature asked of a build or machine without one.
class cuda_error : public error {
 public:
  using error::error;
  exit_code code() const noexcept override { return exit_code::device; }
};

// A plan that cannot fit: says what was needed, what was available, and what would fit.
class budget_error : public error {
 public:
  using error::error;
  exit_code code() const noexcept override { return exit_code::budget; }
};

// Bad arguments or options from the caller.
class usage_error : public error {
 public:
  using error::error;
  exit_code code() const noexcept override { return exit_code::usage; }
};

// The output already holds something the caller did not ask to replace.
class conflict_error : public error {
 public:
  using error::error;
  exit_code code() const noexcept override { return exit_code::conflict; }
};

// Results that should agree do not (digests across platforms, a verification pass).
class mismatch_error : public error {
 public:
  using error::error;
  exit_code code() const noexcept override { return exit_code::mismatch; }
};

// The one shape of a message about one tensor: "<file>: tensor '<tensor>': <rule>". `file` is
// the shard path (or the model's label where no file is at stake).
inline std::string tensor_message(std::string_view file, std::string_view tensor,
                                  std::string_view rule) {
  std::string m;
  m.reserve(file.size() + tensor.size() + rule.size() + 14);
  m.append(file).append(": tensor '").append(tensor).append("': ").append(rule);
  return m;
}

}  // namespace umload
