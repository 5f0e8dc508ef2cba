// A stored element type: every dtype a safetensors header may name, with its name and its width,
// in one table (as the safetensors crate's `Dtype` carries its `bitsize`). The reader, the
// writer, platform/'s byte counts and the schemes all take names and sizes from here.
//
//   std::optional<umload::dtype> d = umload::parse_dtype("F8_E4M3");  // nullopt: not a dtype
//   umload::element_bits(*d);   // 8
//   umload::to_string(*d);      // "F8_E4M3"
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kernels/error.hpp"

namespace umload {

enum class dtype : std::uint8_t {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
  C64,
  F4,
  F6_E2M3,
  F6_E3M2,
  F8_E4M3FNUZ,
  F8_E5M2FNUZ
};

namespace detail {

struct dtype_row {
  dtype type;
  std::string_view name;  // as safetensors spells it
  unsigned bits;
};

inline constexpr std::array<dtype_row, 22> dtype_rows{{
    {dtype::BOOL, "BOOL", 8},
    {dtype::U8, "U8", 8},
    {dtype::I8, "I8", 8},
    {dtype::F8_E5M2, "F8_E5M2", 8},
    {dtype::F8_E4M3, "F8_E4M3", 8},
    {dtype::F8_E8M0, "F8_E8M0", 8},
    {dtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {dtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {dtype::I16, "I16", 16},
    {dtype::U16, "U16", 16},
    {dtype::F16, "F16", 16},
    {dtype::BF16, "BF16", 16},
    {dtype::I32, "I32", 32},
    {dtype::U32, "U32", 32},
    {dtype::F32, "F32", 32},
    {dtype::F64, "F64", 64},
    {dtype::I64, "I64", 64},
    {dtype::U64, "U64", 64},
    {dtype::C64, "C64", 64},
    {dtype::F4, "F4", 4},
    {dtype::F6_E2M3, "F6_E2M3", 6},
    {dtype::F6_E3M2, "F6_E3M2", 6},
}};

constexpr const dtype_row* dtype_row_of(dtype d) {
  for (const auto& row : dtype_rows)
    if (row.type == d) return &row;
  return nullptr;
}

}  // namespace detail

// The safetensors name ("BF16"); "?" for a value outside the enum.
constexpr std::string_view to_string(dtype d) {
  const auto* row = detail::dtype_row_of(d);
  return row ? row->name : std::string_view("?");
}

// The dtype a safetensors name spells; nullopt for any other text. Callers turn nullopt into the
// error their context needs (a format_error naming file and tensor, a usage_error).
constexpr std::optional<dtype> parse_dtype(std::string_view text) {
  for (const auto& row : detail::dtype_rows)
    if (row.name == text) return row.type;
  return std::nullopt;
}

// The dtype `text` spells, for a tensor of `file` (a shard path or the model's label); a text that
// spells none is a format_error naming the file, the tensor and the text, never a default.
inline dtype parse_stored_dtype(std::string_view text, std::string_view file,
                                std::string_view tensor) {
  if (const auto d = parse_dtype(text)) return *d;
  throw format_error(tensor_message(
      file, tensor, "unknown dtype '" + std::string(text) + "' (not a safetensors dtype)"));
}

// Bits per element (4 for F4, 6 for the F6 types).
constexpr unsigned element_bits(dtype d) {
  const auto* row = detail::dtype_row_of(d);
  return row ? row->bits : 0;
}

// Bytes per element; 0 for the sub-byte types, whose size is not a whole number of bytes.
constexpr unsigned element_bytes(dtype d) {
  const unsigned bits = element_bits(d);
  return bits % 8 == 0 ? bits / 8 : 0;
}

}  // namespace umload
