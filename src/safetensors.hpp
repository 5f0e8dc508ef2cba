// safetensors files: the header parser (every rule of the format, checked before any number read
// from the file is used) and a writer for dense output shards.
//
//   auto header = umload::read_safetensors_header("model-00000-of-00002.safetensors");
//   for (const auto& t : header.tensors) ... t.name, t.type, t.shape, header.data_offset + t.begin
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/dtype.hpp"

namespace umload {

// The limits of the reference reader (the `safetensors` crate), kept so that both read the same
// files: a header of at most 100,000,000 bytes, and JSON nested at most 127 containers deep
// counting the header's own object (serde_json's recursion limit), also inside fields that are
// otherwise ignored. There is no rank limit: the header limit bounds a shape's dimensions (each
// takes at least two bytes of JSON and 8 bytes of memory).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;
inline constexpr int max_header_nesting = 127;

struct tensor_entry {
  std::string name;
  dtype type = dtype::U8;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // relative to the data buffer
  std::uint64_t end = 0;

  std::uint64_t bytes() const { return end - begin; }
  // The product of the shape; throws format_error where it does not fit in 64 bits (a parsed
  // entry always fits: the reader refuses such shapes).
  std::uint64_t elements() const;
};

struct safetensors_header {
  std::filesystem::path path;
  std::uint64_t file_size = 0;
  std::uint64_t header_bytes = 0;     // N, the JSON length
  std::uint64_t data_offset = 0;      // 8 + N
  std::vector<tensor_entry> tensors;  // sorted by begin
  std::map<std::string, std::string> metadata;

  const tensor_entry* find(std::string_view name) const;
  std::uint64_t data_bytes() const { return file_size - data_offset; }
};

// Parses and validates a header given its JSON text and the size of the whole file. Pure: reads
// no file. Throws format_error naming `path`, the tensor and the broken rule.
safetensors_header parse_safetensors_header(std::span<const std::byte> json,
                                            std::uint64_t file_size,
                                            const std::filesystem::path& path);

// Parses a whole file held in memory: the 8-byte length, its limits, then the header. Throws
// format_error as above; `path` only names the file in messages.
safetensors_header parse_safetensors_file(std::span<const std::byte> file,
                                          const std::filesystem::path& path);

// Reads the 8-byte length and the header of a file, then parses it. Throws io_error on a failed
// read, format_error on any broken rule.
safetensors_header read_safetensors_header(const std::filesystem::path& path);

// Serialises a header for tensors laid out back to back in the given order, padded with spaces
// to a multiple of 8 bytes. Returns the 8-byte length followed by the JSON text.
struct tensor_layout {
  std::string name;
  dtype type;
  std::vector<std::uint64_t> shape;
  std::uint64_t bytes;
};
std::string make_safetensors_header(const std::vector<tensor_layout>& tensors,
                                    const std::map<std::string, std::string>& metadata = {});

}  // namespace umload
