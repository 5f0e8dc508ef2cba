// The words a load is described in, each defined once for every layer (kernels/, platform/,
// src/) and spelled as the command line spells it: one to_string and one parse each.
//
//   umload::output_dtype d = umload::parse_output_dtype("f32");   // throws usage_error
//   const char* name = umload::to_string(d);                      // "f32"
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/error.hpp"

namespace umload {

// Where an expert's input column goes in the decoded output.
//   hf:     [experts, in, out] = [E, G*32, rows]   (HF transformers, NeMo; the default)
//   native: [experts, out, in] = [E, rows, G*32]   (the checkpoint's own order)
enum class layout : std::uint8_t { hf, native };

// What MXFP4 expert weights become: BF16 (the HF form), F32, or kept as stored (blocks and
// scales). Every other tensor is loaded as stored whatever the dtype. A decode writes bf16 or
// f32; keep never reaches a kernel.
enum class output_dtype : std::uint8_t { bf16, f32, keep };

// How shard bytes are read: automatic (the plan decides), O_DIRECT, or through the page cache.
enum class io_mode : std::uint8_t { automatic, direct, buffered };

// Where an output tensor's memory lives. Chosen by the plan (platform/), honoured by the backend.
enum class memory_kind : std::uint8_t {
  host,          // pageable or anonymous host memory
  device,        // cudaMalloc (on integrated machines: the one pool)
  host_managed,  // host memory the GPU reads (coherent spill / integrated), with advice
};

constexpr const char* to_string(layout l) { return l == layout::hf ? "hf" : "native"; }

constexpr const char* to_string(output_dtype d) {
  switch (d) {
    case output_dtype::bf16: return "bf16";
    case output_dtype::f32: return "f32";
    case output_dtype::keep: return "keep";
  }
  return "bf16";
}

constexpr const char* to_string(io_mode m) {
  switch (m) {
    case io_mode::automatic: return "auto";
    case io_mode::direct: return "direct";
    case io_mode::buffered: return "buffered";
  }
  return "auto";
}

constexpr const char* to_string(memory_kind k) {
  switch (k) {
    case memory_kind::host: return "host";
    case memory_kind::device: return "device";
    case memory_kind::host_managed: return "host-managed";
  }
  return "host";
}

// Bytes of one decoded value: 2 for bf16, 4 for f32, 0 for keep (nothing is decoded).
constexpr unsigned element_bytes(output_dtype d) {
  return d == output_dtype::bf16 ? 2u : d == output_dtype::f32 ? 4u : 0u;
}

namespace detail {

// The one wording of a refused name: "unknown dtype 'x' (expected bf16, f32 or keep)".
template <typename Enum, std::size_t N>
Enum parse_word(std::string_view what, std::string_view text, const Enum (&values)[N]) {
  std::string expected;
  for (std::size_t i = 0; i < N; ++i) {
    if (text == to_string(values[i])) return values[i];
    expected += std::string(i == 0       ? ""
                            : i + 1 == N ? " or "
                                         : ", ") +
                std::string(to_string(values[i]));
  }
  throw usage_error("unknown " + std::string(what) + " '" + std::string(text) + "' (expected " +
                    expected + ")");
}

}  // namespace detail

// Each throws usage_error naming the word and the accepted spellings.
inline layout parse_layout(std::string_view text) {
  static constexpr layout all[] = {layout::hf, layout::native};
  return detail::parse_word("layout", text, all);
}
inline output_dtype parse_output_dtype(std::string_view text) {
  static constexpr output_dtype all[] = {output_dtype::bf16, output_dtype::f32, output_dtype::keep};
  return detail::parse_word("dtype", text, all);
}
inline io_mode parse_io_mode(std::string_view text) {
  static constexpr io_mode all[] = {io_mode::automatic, io_mode::direct, io_mode::buffered};
  return detail::parse_word("I/O mode", text, all);
}
inline memory_kind parse_memory_kind(std::string_view text) {
  static constexpr memory_kind all[] = {memory_kind::host, memory_kind::device,
                                        memory_kind::host_managed};
  return detail::parse_word("memory kind", text, all);
}

}  // namespace umload
