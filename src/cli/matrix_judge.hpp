// Judging the runs of a hardware matrix together: every run that loaded (status ok) with the same
// load options must have produced the same digest. The digest a run is held to is the expected
// one when the caller gives it (--expect), else the digest most runs share (the earliest run's on
// a tie). A run that differs is named with its machine, profile and device and, where both sides
// have per-tensor digests, the first tensor (by name) that differs.
//
//   auto judged = judge(records, std::nullopt);
//   if (judged.mismatch) ...     // judged.messages says who and what
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/cli/matrix_record.hpp"

namespace umload::cli::matrix {

// The digests every run must produce: `umload load --digest --json` output, or any JSON object
// with "digest" and optionally "tensors" {name: digest}.
struct expected_digests {
  std::string digest;
  std::vector<tensor_digest> tensors;  // by name; may be empty
  std::string source;                  // the file it came from
};
// Throws io_error or format_error naming the file.
expected_digests read_expected(const std::filesystem::path& path);

enum class agreement {
  same,     // digest equals the reference
  differs,  // digest differs from the reference
  failed,   // the load failed: nothing to compare, counts against the matrix
  skipped,  // the plan did not fit this profile: not compared
};
std::string_view to_string(agreement a);

struct verdict {
  agreement kind = agreement::same;
  std::string reference;     // the digest the run was held to
  std::string first_tensor;  // first tensor that differs (empty: unknown or none)
  std::string message;       // one line, for failures
};

struct judgement {
  std::vector<verdict> verdicts;                 // one per record, same order
  std::map<std::string, std::string> reference;  // per options key: the reference digest
  std::size_t ok = 0, differs = 0, failed = 0, skipped = 0;
  bool mismatch = false;              // some run differs
  std::vector<std::string> messages;  // one line per run that differs or failed
};

judgement judge(const std::vector<run_record>& records,
                const std::optional<expected_digests>& expected);

}  // namespace umload::cli::matrix
