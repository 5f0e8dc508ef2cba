#include "src/cli/matrix_judge.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "kernels/error.hpp"
#include "src/file.hpp"

namespace umload::cli::matrix {

namespace {

constexpr std::uint64_t max_expect_bytes = 64ull << 20;

// The first name, in name order, whose digest differs between the two lists or that only one
// of them has. Empty when either list is empty or they agree.
std::string first_differing_tensor(const std::vector<tensor_digest>& run,
                                   const std::vector<tensor_digest>& reference) {
  if (run.empty() || reference.empty()) return {};
  auto a = run.begin();
  auto b = reference.begin();
  while (a != run.end() && b != reference.end()) {
    if (a->name != b->name) return std::min(a->name, b->name);
    if (a->digest != b->digest) return a->name;
    ++a, ++b;
  }
  if (a != run.end()) return a->name;
  if (b != reference.end()) return b->name;
  return {};
}

std::string digest_of(const std::vector<tensor_digest>& tensors, const std::string& name) {
  for (const auto& t : tensors)
    if (t.name == name) return t.digest;
  return "absent";
}

// The reference digest of each options key: the most common digest among ok runs, the earliest
// on a tie; and the first ok run holding it, for its per-tensor digests.
struct reference_run {
  std::string digest;
  const run_record* run = nullptr;
};

std::map<std::string, reference_run> majority(const std::vector<run_record>& records) {
  std::map<std::string, std::vector<const run_record*>> by_key;
  for (const auto& r : records)
    if (r.status == run_status::ok) by_key[r.options_key()].push_back(&r);
  std::map<std::string, reference_run> out;
  for (const auto& [key, runs] : by_key) {
    std::size_t best_count = 0;
    for (const auto* r : runs) {
      const auto count = static_cast<std::size_t>(std::count_if(
          runs.begin(), runs.end(), [&](const auto* o) { return o->digest == r->digest; }));
      if (count > best_count) best_count = count, out[key] = {r->digest, r};
    }
  }
  return out;
}

}  // namespace

std::string_view to_string(agreement a) {
  switch (a) {
    case agreement::same: return "same";
    case agreement::differs: return "DIFFERS";
    case agreement::failed: return "failed";
    case agreement::skipped: return "skipped";
  }
  return "failed";
}

expected_digests read_expected(const std::filesystem::path& path) {
  const std::string text = read_text_file(path, max_expect_bytes);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw format_error(path.string() + ": not JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("digest") || !j["digest"].is_string())
    throw format_error(path.string() +
                       ": no \"digest\" string (expected the JSON of umload load --digest --json)");
  expected_digests e{j["digest"].get<std::string>(), {}, path.string()};
  if (j.contains("tensors")) {
    if (!j["tensors"].is_object())
      throw format_error(path.string() + ": \"tensors\" is not an object");
    for (const auto& [name, digest] : j["tensors"].items()) {
      if (!digest.is_string())
        throw format_error(path.string() + ": digest of tensor '" + name + "' is not a string");
      e.tensors.push_back({name, digest.get<std::string>()});
    }
    std::sort(e.tensors.begin(), e.tensors.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
  }
  return e;
}

judgement judge(const std::vector<run_record>& records,
                const std::optional<expected_digests>& expected) {
  judgement out;
  const auto majorities = majority(records);
  for (const auto& [key, ref] : majorities)
    out.reference[key] = expected ? expected->digest : ref.digest;

  for (const auto& r : records) {
    verdict v;
    if (r.status == run_status::skipped) {
      v.kind = agreement::skipped;
      ++out.skipped;
    } else if (r.status == run_status::failed) {
      v.kind = agreement::failed;
      v.message = r.label() + ": failed (exit " + std::to_string(r.exit_code) + "): " + r.reason;
      ++out.failed;
    } else {
      ++out.ok;
      const auto& ref = majorities.at(r.options_key());
      v.reference = expected ? expected->digest : ref.digest;
      if (r.digest == v.reference) {
        v.kind = agreement::same;
      } else {
        v.kind = agreement::differs;
        ++out.differs;
        const auto& ref_tensors = expected ? expected->tensors : ref.run->tensors;
        v.first_tensor = first_differing_tensor(r.tensors, ref_tensors);
        const std::string held_to = expected
                                        ? "the expected " + v.reference + " of " + expected->source
                                        : v.reference + " of " + ref.run->label();
        v.message = r.label() + " (" + r.options_key() + "): digest " + r.digest +
                    " differs from " + held_to;
        if (!v.first_tensor.empty())
          v.message += "; first differing tensor " + v.first_tensor + " (" +
                       digest_of(r.tensors, v.first_tensor) + " vs " +
                       digest_of(ref_tensors, v.first_tensor) + ")";
      }
    }
    if (!v.message.empty()) out.messages.push_back(v.message);
    out.verdicts.push_back(std::move(v));
  }
  out.mismatch = out.differs > 0;
  return out;
}

}  // namespace umload::cli::matrix
