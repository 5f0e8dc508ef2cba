// Fuzzes the safetensors header reader with whole files: the input is written to a memfd and read
// through read_safetensors_header, so the 8-byte length, its limits and the JSON rules all see
// fuzzed bytes. A header that is accepted must describe a buffer tiled exactly, and must survive a
// round trip through the writer.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/error.hpp"
#include "src/safetensors.hpp"
#include "tests/fuzz/fuzz_common.hpp"

namespace {

int memfd() {
  static const int fd = ::memfd_create("umload-fuzz.safetensors", MFD_CLOEXEC);
  return fd;
}

void check_accepted(const umload::safetensors_header& h) {
  UMLOAD_FUZZ_REQUIRE(h.header_bytes <= umload::max_header_bytes);
  UMLOAD_FUZZ_REQUIRE(h.data_offset == 8 + h.header_bytes && h.data_offset <= h.file_size);
  std::uint64_t cursor = 0;
  std::vector<umload::tensor_layout> layouts;
  for (const auto& t : h.tensors) {
    UMLOAD_FUZZ_REQUIRE(t.begin == cursor && t.end >= t.begin);
    cursor = t.end;
    layouts.push_back({t.name, t.type, t.shape, t.bytes()});
  }
  UMLOAD_FUZZ_REQUIRE(cursor == h.data_bytes());

  // The writer's header for the same tensors parses back to the same tensors.
  const std::string again = umload::make_safetensors_header(layouts, h.metadata);
  const auto* json = reinterpret_cast<const std::byte*>(again.data()) + 8;
  const auto back = umload::parse_safetensors_header({json, again.size() - 8},
                                                     again.size() + cursor, "round-trip");
  UMLOAD_FUZZ_REQUIRE(back.tensors.size() == h.tensors.size());
  for (std::size_t i = 0; i < h.tensors.size(); ++i) {
    UMLOAD_FUZZ_REQUIRE(back.tensors[i].name == h.tensors[i].name);
    UMLOAD_FUZZ_REQUIRE(back.tensors[i].type == h.tensors[i].type);
    UMLOAD_FUZZ_REQUIRE(back.tensors[i].shape == h.tensors[i].shape);
    UMLOAD_FUZZ_REQUIRE(back.tensors[i].bytes() == h.tensors[i].bytes());
  }
  UMLOAD_FUZZ_REQUIRE(back.metadata == h.metadata);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd = memfd();
  if (fd < 0) return 0;
  if (::ftruncate(fd, 0) != 0) return 0;
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) return 0;
    done += static_cast<std::size_t>(n);
  }
  try {
    const auto header = umload::read_safetensors_header("/proc/self/fd/" + std::to_string(fd));
    check_accepted(header);
  } catch (const umload::error&) {
    // Refused with the loader's own error: the expected outcome for almost every input.
  }
  return 0;
}
