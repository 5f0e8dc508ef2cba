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

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& tensor,
                       const std::string& what) {
  std::string message = path.string();
  if (!tensor.empty()) message += ": tensor '" + tensor + "'";
  throw format_error(message + ": " + what);
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The product of the dimensions in order, as the reference reader computes it: the first
// product past 64 bits refuses the shape, even where a later dimension is 0.
std::optional<std::uint64_t> checked_elements(const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (std::uint64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
  return n;
}

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Reads the header's JSON as a stream of SAX events, straight into the entries, so that it sees
// what a document model hides: a field given twice inside an entry, `-0` (an integer event with
// a sign), and the nesting of fields it ignores. Stops at the first broken rule.
class header_events {
 public:
  using json = nlohmann::json;

  explicit header_events(safetensors_header& header) : header_(header) {}

  const std::string& error() const { return error_; }
  const std::string& error_tensor() const { return error_tensor_; }

  bool null() { return scalar(token{"null"}); }
  bool boolean(bool v) { return scalar(token{v ? "true" : "false"}); }
  bool number_integer(json::number_integer_t v) {
    // nlohmann reports integers without a sign as unsigned, so a signed one is negative or -0.
    return scalar(token{v == 0 ? "-0" : std::to_string(v)});
  }
  bool number_unsigned(json::number_unsigned_t v) {
    token t{std::to_string(v)};
    t.number = v;
    return scalar(t);
  }
  bool number_float(json::number_float_t, const json::string_t& text) {
    return scalar(token{text});
  }
  bool string(json::string_t& v) {
    token t{"a string"};
    t.text = &v;
    return scalar(t);
  }
  bool binary(json::binary_t&) { return scalar(token{"binary data"}); }
  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k);
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
    return broken("", "header is not valid UTF-8 JSON (at byte " + std::to_string(position) +
                          " of the header)");
  }

 private:
  // Where the value about to be read goes.
  enum class slot : std::uint8_t {
    document,
    tensor,
    metadata,
    metadata_value,
    dtype,
    shape,
    offsets,
    dim,
    offset,
    ignored
  };
  // The open container the parser is in.
  enum class room : std::uint8_t { top, metadata, entry, shape, offsets, ignored };
  struct token {
    explicit token(std::string what) : shown(std::move(what)) {}
    std::string shown;  // for messages
    std::optional<std::uint64_t> number;
    json::string_t* text = nullptr;
  };

  slot target() const;
  bool scalar(const token& t);
  bool open(bool object);
  bool close();
  bool finish_entry();
  bool broken(const std::string& tensor, std::string what) {
    error_tensor_ = tensor;
    error_ = std::move(what);
    return false;
  }

  safetensors_header& header_;
  std::vector<room> rooms_;
  slot next_ = slot::document;  // set by each key of an object
  std::set<std::string> names_;
  std::string metadata_key_;
  std::string name_;  // of the entry being read
  tensor_entry entry_;
  unsigned fields_seen_ = 0;  // bits: dtype, shape, data_offsets
  std::size_t offsets_read_ = 0;
  std::string error_;
  std::string error_tensor_;
};

header_events::slot header_events::target() const {
  if (rooms_.empty()) return slot::document;
  switch (rooms_.back()) {
    case room::top:
    case room::entry: return next_;
    case room::metadata: return slot::metadata_value;
    case room::shape: return slot::dim;
    case room::offsets: return slot::offset;
    case room::ignored: return slot::ignored;
  }
  return slot::ignored;
}

bool header_events::key(json::string_t& k) {
  switch (rooms_.back()) {
    case room::top:
      if (k.empty()) return broken("", "empty tensor name");
      if (!names_.insert(k).second)
        return broken(k == "__metadata__" ? "" : k,
                      k == "__metadata__" ? "__metadata__ appears twice in the header"
                                          : "tensor name appears twice in the header");
      next_ = k == "__metadata__" ? slot::metadata : slot::tensor;
      name_ = k;
      return true;
    case room::metadata: metadata_key_ = k; return true;
    case room::entry: {
      const std::array<std::string_view, 3> known{"dtype", "shape", "data_offsets"};
      const auto it = std::find(known.begin(), known.end(), k);
      if (it == known.end()) {
        next_ = slot::ignored;  // fields a newer writer adds are ignored, as the reference does
        return true;
      }
      const unsigned bit = 1u << (it - known.begin());
      if (fields_seen_ & bit) return broken(name_, "field '" + k + "' appears twice in the entry");
      fields_seen_ |= bit;
      next_ = it == known.begin()       ? slot::dtype
              : it == known.begin() + 1 ? slot::shape
                                        : slot::offsets;
      return true;
    }
    default: return true;
  }
}

bool header_events::scalar(const token& t) {
  const std::string& name = name_;
  switch (target()) {
    case slot::document: return broken("", "header is not a JSON object");
    case slot::tensor: return broken(name, "entry is " + t.shown + ", not a JSON object");
    case slot::metadata:
      if (t.shown == "null") return true;  // no metadata, as the reference reads it
      return broken("", "__metadata__ is " + t.shown + ", neither an object nor null");
    case slot::metadata_value:
      if (!t.text)
        return broken(
            "", "__metadata__ value of '" + metadata_key_ + "' is " + t.shown + ", not a string");
      header_.metadata[metadata_key_] = *t.text;
      return true;
    case slot::dtype: {
      if (!t.text) return broken(name, "'dtype' is " + t.shown + ", not a string");
      const auto type = parse_dtype(*t.text);
      if (!type) return broken(name, "unknown dtype '" + *t.text + "'");
      entry_.type = *type;
      return true;
    }
    case slot::shape: return broken(name, "'shape' is " + t.shown + ", not an array");
    case slot::offsets:
      return broken(name, "'data_offsets' is " + t.shown + ", not an array of two integers");
    case slot::dim:
      if (!t.number) return broken(name, "shape holds " + t.shown + ", not a non-negative integer");
      entry_.shape.push_back(*t.number);
      return true;
    case slot::offset:
      if (!t.number)
        return broken(name, "'data_offsets' holds " + t.shown + ", not a non-negative integer");
      if (offsets_read_ == 2) return broken(name, "'data_offsets' holds more than two integers");
      (offsets_read_++ == 0 ? entry_.begin : entry_.end) = *t.number;
      return true;
    case slot::ignored: return true;
  }
  return true;
}

bool header_events::open(bool object) {
  if (rooms_.size() >= static_cast<std::size_t>(max_header_nesting))
    return broken("", "header JSON nests deeper than " + std::to_string(max_header_nesting) +
                          " levels (the limit of the reference reader)");
  const std::string what = object ? "an object" : "an array";
  const std::string& name = name_;
  switch (target()) {
    case slot::document:
      if (!object) return broken("", "header is not a JSON object");
      rooms_.push_back(room::top);
      return true;
    case slot::tensor:
      if (!object) return broken(name, "entry is a JSON array, not an object");
      entry_ = tensor_entry{};
      entry_.name = name_;
      fields_seen_ = 0;
      offsets_read_ = 0;
      rooms_.push_back(room::entry);
      return true;
    case slot::metadata:
      if (!object) return broken("", "__metadata__ is an array, neither an object nor null");
      rooms_.push_back(room::metadata);
      return true;
    case slot::metadata_value:
      return broken("",
                    "__metadata__ value of '" + metadata_key_ + "' is " + what + ", not a string");
    case slot::dtype: return broken(name, "'dtype' is " + what + ", not a string");
    case slot::shape:
      if (object) return broken(name, "'shape' is an object, not an array");
      rooms_.push_back(room::shape);
      return true;
    case slot::offsets:
      if (object) return broken(name, "'data_offsets' is an object, not an array of two integers");
      rooms_.push_back(room::offsets);
      return true;
    case slot::dim: return broken(name, "shape holds " + what + ", not a non-negative integer");
    case slot::offset:
      return broken(name, "'data_offsets' holds " + what + ", not a non-negative integer");
    case slot::ignored: rooms_.push_back(room::ignored); return true;
  }
  return true;
}

bool header_events::close() {
  const room closed = rooms_.back();
  rooms_.pop_back();
  if (closed == room::offsets && offsets_read_ != 2)
    return broken(name_, "'data_offsets' must be an array of two integers");
  if (closed == room::entry) return finish_entry();
  return true;
}

bool header_events::finish_entry() {
  const std::string& name = name_;
  for (unsigned i = 0; i < 3; ++i)
    if (!(fields_seen_ & (1u << i)))
      return broken(name, std::string("missing '") +
                              (i == 0   ? "dtype"
                               : i == 1 ? "shape"
                                        : "data_offsets") +
                              "'");
  header_.tensors.push_back(std::move(entry_));
  entry_ = tensor_entry{};
  return true;
}

// product(shape) * bits / 8 must equal end - begin, each step within 64 bits as in the reference.
// Checked once the whole header is read, so that a name given twice is reported as such.
void check_size(const tensor_entry& t, const std::filesystem::path& path) {
  if (t.end < t.begin)
    fail(path, t.name,
         "data_offsets end " + std::to_string(t.end) + " is before begin " +
             std::to_string(t.begin));
  const std::string shape = shape_text(t.shape);
  const std::string type(to_string(t.type));
  const auto elements = checked_elements(t.shape);
  if (!elements) fail(path, t.name, "shape " + shape + " has more elements than 64 bits can count");
  std::uint64_t bits = 0;
  if (__builtin_mul_overflow(*elements, std::uint64_t{element_bits(t.type)}, &bits))
    fail(path, t.name,
         "shape " + shape + " of " + type + " needs more bits than 64 bits can count");
  if (bits % 8 != 0)
    fail(path, t.name, "shape " + shape + " of " + type + " does not fill whole bytes");
  if (bits / 8 != t.bytes())
    fail(path, t.name,
         "size mismatch: shape " + shape + " of " + type + " needs " + std::to_string(bits / 8) +
             " bytes, data_offsets span " + std::to_string(t.bytes()));
}

// Checks the 8-byte length of a file of `size` bytes; returns N.
std::uint64_t header_length(const unsigned char* length_bytes, std::uint64_t size,
                            const std::filesystem::path& path) {
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
  return n;
}

void refuse_short_file(std::uint64_t size, const std::filesystem::path& path) {
  if (size < 8)
    fail(path, "", "file is " + std::to_string(size) + " bytes, too short for a header length");
}

}  // namespace

std::uint64_t tensor_entry::elements() const {
  const auto n = checked_elements(shape);
  if (!n)
    throw format_error("tensor '" + name + "': shape " + shape_text(shape) +
                       " has more elements than 64 bits can count");
  return *n;
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
  // nlohmann takes a NUL for the end of its input and would not look past it; JSON allows no NUL
  // byte anywhere, so one is refused here, wherever it is.
  if (const void* nul = json.empty() ? nullptr : std::memchr(text, 0, json.size()))
    fail(path, "",
         "header holds a NUL byte at byte " + std::to_string(static_cast<const char*>(nul) - text) +
             " (JSON allows none; padding must be spaces)");
  std::size_t first = 0;
  while (first < json.size() && is_json_space(text[first])) ++first;
  if (first == json.size() || text[first] != '{') fail(path, "", "header does not start with '{'");

  header_events events(header);
  if (!nlohmann::json::sax_parse(text, text + json.size(), &events))
    fail(path, events.error_tensor(), events.error());
  for (const auto& t : header.tensors) check_size(t, path);

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

safetensors_header parse_safetensors_file(std::span<const std::byte> file,
                                          const std::filesystem::path& path) {
  refuse_short_file(file.size(), path);
  const std::uint64_t n =
      header_length(reinterpret_cast<const unsigned char*>(file.data()), file.size(), path);
  return parse_safetensors_header(file.subspan(8, n), file.size(), path);
}

safetensors_header read_safetensors_header(const std::filesystem::path& path) {
  file f = file::open_read(path);
  const std::uint64_t size = f.size();
  refuse_short_file(size, path);
  unsigned char length_bytes[8];
  f.read_exact(length_bytes, 8, 0);
  const std::uint64_t n = header_length(length_bytes, size, path);
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
