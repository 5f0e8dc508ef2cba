// A C entry to the safetensors reader, for tests written in other languages (ctypes): the
// differential test and fuzzer against the reference reader hand it the same bytes as the
// `safetensors` package and compare verdicts and what each read.
//
//   int umload_probe_safetensors(const unsigned char* file, size_t size, char* out,
//                                size_t capacity, size_t* written);
//
// Returns 0 when the reader accepts the file, with `out` holding JSON: {"tensors": {name:
// [dtype, shape, begin, end]}, "metadata": {...}, "data_offset": 8 + N}; 3 (exit_code::format)
// when it refuses it, with `out` holding the message; 1 on any other error. `*written` is the
// full length; when it exceeds `capacity - 1`, `out` holds a truncated copy and the caller asks
// again with a larger buffer.
#include <cstddef>
#include <cstring>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "kernels/error.hpp"
#include "src/safetensors.hpp"

namespace {

void copy_out(const std::string& text, char* out, std::size_t capacity, std::size_t* written) {
  *written = text.size();
  if (capacity == 0) return;
  const std::size_t n = std::min(text.size(), capacity - 1);
  std::memcpy(out, text.data(), n);
  out[n] = '\0';
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int umload_probe_safetensors(
    const unsigned char* file, std::size_t size, char* out, std::size_t capacity,
    std::size_t* written) {
  try {
    const auto header =
        umload::parse_safetensors_file(std::as_bytes(std::span(file, size)), "input.safetensors");
    nlohmann::json tensors = nlohmann::json::object();
    for (const auto& t : header.tensors)
      tensors[t.name] = {std::string(umload::to_string(t.type)), t.shape, t.begin, t.end};
    const nlohmann::json doc = {
        {"tensors", tensors}, {"metadata", header.metadata}, {"data_offset", header.data_offset}};
    copy_out(doc.dump(), out, capacity, written);
    return 0;
  } catch (const umload::format_error& e) {
    copy_out(e.what(), out, capacity, written);
    return static_cast<int>(umload::exit_code::format);
  } catch (const std::exception& e) {
    copy_out(e.what(), out, capacity, written);
    return 1;
  }
}
