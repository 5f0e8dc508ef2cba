#include "src/safetensors.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "kernels/error.hpp"
#include "src/file.hpp"

namespace umload {

namespace {

struct dtype_row {
  dtype type;
  std::string_view name;
  unsigned bits;
};

constexpr std::array<dtype_row, 20> dtype_rows{{
    {dtype::BOOL, "BOOL", 8},       {dtype::U8, "U8", 8},           {dtype::I8, "I8", 8},
    {dtype::F8_E5M2, "F8_E5M2", 8}, {dtype::F8_E4M3, "F8_E4M3", 8}, {dtype::F8_E8M0, "F8_E8M0", 8},
    {dtype::I16, "I16", 16},        {dtype::U16, "U16", 16},        {dtype::F16, "F16", 16},
    {dtype::BF16, "BF16", 16},      {dtype::I32, "I32", 32},        {dtype::U32, "U32", 32},
    {dtype::F32, "F32", 32},        {dtype::F64, "F64", 64},        {dtype::I64, "I64", 64},
    {dtype::U64, "U64", 64},        {dtype::C64, "C64", 64},        {dtype::F4, "F4", 4},
    {dtype::F6_E2M3, "F6_E2M3", 6}, {dtype::F6_E3M2, "F6_E3M2", 6},
}};

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& tensor,
                       const std::string& what) {
  std::string message = path.string();
  if (!tensor.empty()) message += ": tensor '" + tensor + "'";
  throw format_error(message + ": " + what);
}

bool to_u64(const nlohmann::json& v, std::uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<std::uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
    out = static_cast<std::uint64_t>(v.get<std::int64_t>());
    return true;
  }
  return false;
}

tensor_entry parse_entry(const std::string& name, const nlohmann::json& value,
                         const std::filesystem::path& path) {
  if (name.empty()) fail(path, name, "empty tensor name");
  if (!value.is_object()) fail(path, name, "entry is not a JSON object");
  for (const auto& [key, _] : value.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      fail(path, name, "unknown field '" + key + "'");
  tensor_entry t;
  t.name = name;
  const auto dt = value.find("dtype");
  if (dt == value.end() || !dt->is_string()) fail(path, name, "missing or non-string 'dtype'");
  const auto type = parse_dtype(dt->get_ref<const std::string&>());
  if (!type) fail(path, name, "unknown dtype '" + dt->get<std::string>() + "'");
  t.type = *type;

  const auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) fail(path, name, "missing or non-array 'shape'");
  if (shape->size() > max_tensor_rank)
    fail(path, name,
         "rank " + std::to_string(shape->size()) + " exceeds the limit of " +
             std::to_string(max_tensor_rank));
  for (const auto& d : *shape) {
    std::uint64_t dim = 0;
    if (!to_u64(d, dim))
      fail(path, name, "shape holds " + d.dump() + ", not a non-negative integer");
    t.shape.push_back(dim);
  }

  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2)
    fail(path, name, "'data_offsets' must be an array of two integers");
  if (!to_u64((*offsets)[0], t.begin) || !to_u64((*offsets)[1], t.end))
    fail(path, name, "'data_offsets' holds " + offsets->dump() + ", not non-negative integers");
  if (t.end < t.begin)
    fail(path, name,
         "data_offsets end " + std::to_string(t.end) + " is before begin " +
             std::to_string(t.begin));

  // product(shape) * bits / 8 must equal end - begin, without overflow.
  unsigned __int128 total_bits = element_bits(t.type);
  for (std::uint64_t dim : t.shape) {
    total_bits *= dim;
    if (total_bits > (static_cast<unsigned __int128>(1) << 70))
      fail(path, name, "shape " + shape->dump() + " is absurdly large (byte size overflows)");
  }
  if (total_bits % 8 != 0)
    fail(path, name,
         "shape " + shape->dump() + " of " + std::string(to_string(t.type)) +
             " does not fill whole bytes");
  const auto expected = static_cast<std::uint64_t>(total_bits / 8);
  if (expected != t.bytes())
    fail(path, name,
         "size mismatch: shape " + shape->dump() + " of " + std::string(to_string(t.type)) +
             " needs " + std::to_string(expected) + " bytes, data_offsets span " +
             std::to_string(t.bytes()));
  return t;
}

}  // namespace

std::string_view to_string(dtype d) {
  for (const auto& row : dtype_rows)
    if (row.type == d) return row.name;
  return "?";
}

std::optional<dtype> parse_dtype(std::string_view text) {
  for (const auto& row : dtype_rows)
    if (row.name == text) return row.type;
  return std::nullopt;
}

unsigned element_bits(dtype d) {
  for (const auto& row : dtype_rows)
    if (row.type == d) return row.bits;
  return 0;
}

std::uint64_t tensor_entry::elements() const {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape) n *= d;
  return n;
}

const tensor_entry* safetensors_header::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

safetensors_header parse_safetensors_header(std::span<const std::byte> json,
                                            std::uint64_t file_size,
                                            const std::filesystem::path& path) {
  safetensors_header header;
  header.path = path;
  header.file_size = file_size;
  header.header_bytes = json.size();
  header.data_offset = 8 + json.size();
  if (header.data_offset > file_size)
    fail(path, "",
         "header of " + std::to_string(json.size()) + " bytes runs past the end of the " +
             std::to_string(file_size) + "-byte file");
  const auto* text = reinterpret_cast<const char*>(json.data());
  std::size_t first = 0;
  while (first < json.size() && text[first] == ' ') ++first;
  if (first == json.size() || text[first] != '{') fail(path, "", "header does not start with '{'");

  // Duplicate top-level keys and nesting depth are checked while parsing: nlohmann keeps the last
  // duplicate silently, and no valid header nests deeper than 3.
  std::set<std::string> seen;
  std::string duplicate;
  bool too_deep = false;
  auto watch = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth > 4) too_deep = true;
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return !too_deep;
  };
  nlohmann::json doc = nlohmann::json::parse(text, text + json.size(), watch, false);
  if (too_deep) fail(path, "", "header JSON nests deeper than any valid header");
  if (doc.is_discarded()) fail(path, "", "header is not valid UTF-8 JSON");
  if (!doc.is_object()) fail(path, "", "header is not a JSON object");
  if (!duplicate.empty()) fail(path, duplicate, "tensor name appears twice in the header");

  for (const auto& [name, value] : doc.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(path, "", "__metadata__ is not an object");
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) fail(path, "", "__metadata__ value of '" + key + "' is not a string");
        header.metadata[key] = v.get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_entry(name, value, path));
  }

  std::sort(header.tensors.begin(), header.tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const std::uint64_t buffer = header.data_bytes();
  std::uint64_t cursor = 0;
  std::string previous;
  for (const auto& t : header.tensors) {
    if (t.begin > cursor)
      fail(path, t.name,
           "gap: data begins at " + std::to_string(t.begin) + " but the previous " +
               (previous.empty() ? std::string("data") : "tensor '" + previous + "'") +
               " ends at " + std::to_string(cursor));
    if (t.begin < cursor)
      fail(path, t.name,
           "overlap: data begins at " + std::to_string(t.begin) + " inside tensor '" + previous +
               "' which ends at " + std::to_string(cursor));
    cursor = t.end;
    previous = t.name;
  }
  if (cursor < buffer)
    fail(path, previous,
         "trailing bytes: tensors end at " + std::to_string(cursor) +
             " but the data buffer holds " + std::to_string(buffer) + " bytes");
  if (cursor > buffer)
    fail(path, previous,
         "data ends at " + std::to_string(cursor) + " past the end of the data buffer (" +
             std::to_string(buffer) + " bytes; file truncated?)");
  return header;
}

safetensors_header read_safetensors_header(const std::filesystem::path& path) {
  file f = file::open_read(path);
  const std::uint64_t size = f.size();
  if (size < 8)
    fail(path, "", "file is " + std::to_string(size) + " bytes, too short for a header length");
  unsigned char length_bytes[8];
  f.read_exact(length_bytes, 8, 0);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | length_bytes[i];
  if (n > max_header_bytes)
    fail(path, "",
         "header length " + std::to_string(n) + " exceeds the limit of " +
             std::to_string(max_header_bytes));
  if (n > size - 8)
    fail(path, "",
         "header length " + std::to_string(n) + " runs past the end of the " +
             std::to_string(size) + "-byte file");
  std::vector<std::byte> json(n);
  f.read_exact(json.data(), n, 8);
  return parse_safetensors_header(json, size, path);
}

std::string make_safetensors_header(const std::vector<tensor_layout>& tensors,
                                    const std::map<std::string, std::string>& metadata) {
  // Insertion order is kept by writing the JSON by hand; nlohmann objects would sort by key,
  // which is fine for readers but hides the layout the caller chose.
  std::string json = "{";
  bool first = true;
  if (!metadata.empty()) {
    json += "\"__metadata__\":" + nlohmann::json(metadata).dump();
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (!first) json += ",";
    first = false;
    json += nlohmann::json(t.name).dump() + ":{\"dtype\":\"" + std::string(to_string(t.type)) +
            "\",\"shape\":" + nlohmann::json(t.shape).dump() + ",\"data_offsets\":[" +
            std::to_string(offset) + "," + std::to_string(offset + t.bytes) + "]}";
    offset += t.bytes;
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + json;
}

}  // namespace umload
