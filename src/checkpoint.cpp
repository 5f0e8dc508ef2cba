#include "src/checkpoint.hpp"

#include <algorithm>
#include <set>

#include "kernels/error.hpp"
#include "src/file.hpp"

namespace umload {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t max_json_file_bytes = 64ull << 20;
constexpr const char* index_name = "model.safetensors.index.json";

// Real configs and indexes nest 3 or 4 levels; the limit keeps the recursive parts of nlohmann
// (dump, used in messages and by convert) off a stack that a hostile file could exhaust.
constexpr int max_json_depth = 64;

nlohmann::json parse_json_file_text(std::string_view text, const fs::path& path) {
  bool too_deep = false;
  const auto watch = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > max_json_depth) too_deep = true;
    return !too_deep;
  };
  nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end(), watch, false);
  if (too_deep)
    throw format_error(path.string() + ": JSON nests deeper than " +
                       std::to_string(max_json_depth) + " levels");
  if (doc.is_discarded()) throw format_error(path.string() + ": not valid UTF-8 JSON");
  if (!doc.is_object()) throw format_error(path.string() + ": not a JSON object");
  return doc;
}

// Where a file of the checkpoint may really live: directly in the checkpoint directory, or, for a
// Hugging Face cache snapshot (`models--org--name/snapshots/<rev>/`), in that repository's
// `blobs/` folder, where the snapshot's symbolic links point. Nowhere else.
bool stays_inside(const fs::path& dir, const fs::path& file) {
  std::error_code ec;
  const fs::path real = fs::canonical(file, ec);
  if (ec) return false;
  const fs::path real_dir = fs::canonical(dir.empty() ? fs::path(".") : dir, ec);
  if (ec) return false;
  if (real.parent_path() == real_dir) return true;
  const fs::path snapshots = real_dir.parent_path();
  return snapshots.filename() == "snapshots" &&
         real.parent_path() == snapshots.parent_path() / "blobs";
}

// A name from weight_map must name a file directly inside the checkpoint directory: no absolute
// path, no '..', no sub-folders, and no symbolic link that leads out of it (stays_inside).
fs::path shard_file(const fs::path& dir, const std::string& name, const std::string& tensor,
                    const fs::path& index) {
  const fs::path rel(name);
  const auto refuse = [&](const std::string& why) -> void {
    throw format_error(index.string() + ": tensor '" + tensor + "': file name '" + name + "' " +
                       why);
  };
  if (name.empty()) refuse("is empty");
  if (rel.is_absolute()) refuse("is an absolute path, outside the checkpoint directory");
  for (const auto& part : rel)
    if (part == "..") refuse("escapes the checkpoint directory");
  if (rel.has_parent_path()) refuse("names a sub-folder; shards must sit beside the index");
  const fs::path full = dir / rel;
  std::error_code ec;
  if (!fs::exists(full, ec))
    throw format_error(full.string() + ": shard named by the index for tensor '" + tensor +
                       "' does not exist");
  if (!stays_inside(dir, full))
    refuse("is a symbolic link that leads out of the checkpoint directory");
  if (!fs::is_regular_file(full, ec)) refuse("is not a regular file");  // follows the link
  return full;
}

// config.json and the small files copied by convert follow the same rule as shards: a symbolic
// link may point inside the checkpoint directory (or its cache blobs), never elsewhere (a hostile
// "tokenizer.json -> ~/.ssh/id_rsa" would otherwise be copied into a converted model).
void refuse_link_out(const fs::path& dir, const fs::path& file) {
  std::error_code ec;
  if (!fs::is_symlink(file, ec)) return;
  if (!stays_inside(dir, file))
    throw format_error(file.string() +
                       ": is a symbolic link that leads out of the checkpoint directory");
}

void add_shard_tensors(checkpoint& ckpt, std::size_t shard_index) {
  const auto& header = ckpt.shards[shard_index];
  for (const auto& t : header.tensors) {
    tensor_ref ref{shard_index, &t, header.data_offset + t.begin};
    if (!ckpt.tensors.emplace(t.name, ref).second)
      throw format_error(header.path.string() + ": tensor '" + t.name +
                         "' appears in more than one shard");
  }
}

}  // namespace

model_config parse_model_config(std::string_view json_text, const fs::path& path) {
  const nlohmann::json doc = parse_json_file_text(json_text, path);
  model_config c;
  c.raw = doc;
  const auto number = [&](const char* key, std::uint64_t& out) {
    const auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) return;
    if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<std::int64_t>() >= 0))
      throw format_error(path.string() + ": field '" + key + "' is " + it->dump() +
                         ", not a non-negative integer");
    out = it->get<std::uint64_t>();
  };
  number("hidden_size", c.hidden_size);
  number("intermediate_size", c.intermediate_size);
  number("num_local_experts", c.num_local_experts);
  number("num_hidden_layers", c.num_hidden_layers);
  number("num_attention_heads", c.num_attention_heads);
  number("num_key_value_heads", c.num_key_value_heads);
  number("head_dim", c.head_dim);
  number("vocab_size", c.vocab_size);
  // A text field that is present is a string: anything else is refused, not read as absent.
  const auto text = [&](const nlohmann::json& object, const char* key, const char* shown,
                        std::string& out) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return;
    if (!it->is_string())
      throw format_error(path.string() + ": field '" + shown + "' is " + it->dump() +
                         ", not a string");
    out = it->get<std::string>();
  };
  text(doc, "model_type", "model_type", c.model_type);
  if (auto q = doc.find("quantization_config"); q != doc.end()) {
    if (!q->is_object())
      throw format_error(path.string() + ": quantization_config is not an object");
    text(*q, "quant_method", "quantization_config.quant_method", c.quant_method);
  }
  return c;
}

checkpoint_index parse_checkpoint_index(std::string_view json_text, const fs::path& path) {
  const nlohmann::json doc = parse_json_file_text(json_text, path);
  checkpoint_index index;
  const auto map = doc.find("weight_map");
  if (map == doc.end() || !map->is_object())
    throw format_error(path.string() + ": missing or non-object 'weight_map'");
  for (const auto& [tensor, file_name] : map->items()) {
    if (!file_name.is_string())
      throw format_error(path.string() + ": tensor '" + tensor + "': weight_map value is " +
                         file_name.dump() + ", not a file name");
    index.weight_map[tensor] = file_name.get<std::string>();
  }
  if (auto meta = doc.find("metadata"); meta != doc.end()) {
    if (!meta->is_object()) throw format_error(path.string() + ": 'metadata' is not an object");
    if (auto total = meta->find("total_size"); total != meta->end()) {
      if (total->is_number_unsigned())
        index.total_size = total->get<std::uint64_t>();
      else if (total->is_number_float() && total->get<double>() >= 0 &&
               total->get<double>() < 1.8e19 &&
               total->get<double>() ==
                   static_cast<double>(static_cast<std::uint64_t>(total->get<double>())))
        index.total_size = static_cast<std::uint64_t>(total->get<double>());
      else
        throw format_error(path.string() + ": metadata.total_size is " + total->dump() +
                           ", not a non-negative integer");
    }
  }
  return index;
}

const tensor_ref* checkpoint::find(std::string_view name) const {
  const auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

const tensor_ref& checkpoint::tensor(std::string_view name) const {
  if (const auto* ref = find(name)) return *ref;
  throw format_error(source.string() + ": tensor '" + std::string(name) + "' is missing");
}

std::uint64_t checkpoint::tensor_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [_, ref] : tensors) total += ref.bytes();
  return total;
}

std::uint64_t checkpoint::file_bytes() const {
  std::uint64_t total = 0;
  for (const auto& s : shards) total += s.file_size;
  return total;
}

namespace {

// Files that are part of the weights, not copied as "other files".
using known_files = std::set<fs::path>;

// A single .safetensors file given by path: its one shard.
void open_single_file(checkpoint& ckpt, const fs::path& source, known_files& known) {
  ckpt.single_file = true;
  ckpt.directory = source.has_parent_path() ? source.parent_path() : fs::path(".");
  ckpt.shards.push_back(read_safetensors_header(source));
  add_shard_tensors(ckpt, 0);
  known.insert(source.filename());
}

// The shards an index names, in the order their first tensor appears in its (sorted) weight_map;
// returns the shard of each file name.
std::map<std::string, std::size_t> read_indexed_shards(checkpoint& ckpt,
                                                       const checkpoint_index& index,
                                                       const fs::path& index_path,
                                                       known_files& known) {
  std::map<std::string, std::size_t> shard_of_file;
  for (const auto& [tensor, name] : index.weight_map) {
    if (shard_of_file.count(name)) continue;
    const fs::path path = shard_file(ckpt.directory, name, tensor, index_path);
    shard_of_file[name] = ckpt.shards.size();
    ckpt.shards.push_back(read_safetensors_header(path));
    known.insert(fs::path(name).filename());
  }
  return shard_of_file;
}

// The index and the shards agree: each listed tensor is in the shard named, each tensor held is
// listed, and metadata.total_size is the tensors' bytes.
void check_index_agrees(const checkpoint& ckpt, const checkpoint_index& index,
                        const fs::path& index_path,
                        const std::map<std::string, std::size_t>& shard_of_file) {
  for (const auto& [tensor, name] : index.weight_map) {
    const auto* ref = ckpt.find(tensor);
    if (!ref || ref->shard != shard_of_file.at(name))
      throw format_error(index_path.string() + ": tensor '" + tensor + "' is listed in " + name +
                         " but that shard does not hold it");
  }
  for (const auto& [tensor, ref] : ckpt.tensors)
    if (!index.weight_map.count(tensor))
      throw format_error(ckpt.shards[ref.shard].path.string() + ": tensor '" + tensor +
                         "' is not listed in " + index_path.string());
  if (index.total_size != ckpt.tensor_bytes())
    throw format_error(index_path.string() + ": metadata.total_size is " +
                       std::to_string(index.total_size) + " but the tensors hold " +
                       std::to_string(ckpt.tensor_bytes()) + " bytes");
}

// A directory with an index: the shards it names, checked against it.
void open_indexed(checkpoint& ckpt, const fs::path& index_path, known_files& known) {
  ckpt.index_path = index_path;
  known.insert(index_name);
  const checkpoint_index index =
      parse_checkpoint_index(read_text_file(index_path, max_json_file_bytes), index_path);
  const auto shard_of_file = read_indexed_shards(ckpt, index, index_path, known);
  for (std::size_t i = 0; i < ckpt.shards.size(); ++i) add_shard_tensors(ckpt, i);
  ckpt.index_total_size = index.total_size;
  check_index_agrees(ckpt, index, index_path, shard_of_file);
}

// A directory without an index: its one .safetensors file, refused when there are none or several.
void open_lone_shard(checkpoint& ckpt, const fs::path& source, known_files& known) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(source))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors")
      files.push_back(entry.path());
  if (files.empty())
    throw format_error(source.string() + ": no " + index_name + " and no .safetensors file");
  if (files.size() > 1)
    throw format_error(source.string() + ": several .safetensors files but no " + index_name);
  refuse_link_out(source, files[0]);
  ckpt.shards.push_back(read_safetensors_header(files[0]));
  add_shard_tensors(ckpt, 0);
  known.insert(files[0].filename());
}

// config.json beside the weights, when there is one.
void read_config(checkpoint& ckpt, known_files& known) {
  std::error_code ec;
  const fs::path config_path = ckpt.directory / "config.json";
  if (!fs::is_regular_file(config_path, ec)) return;
  refuse_link_out(ckpt.directory, config_path);
  ckpt.config = parse_model_config(read_text_file(config_path, max_json_file_bytes), config_path);
  known.insert("config.json");
}

// The directory's other regular files (tokenizer, generation config, ...), sorted; stray
// .safetensors files are not among them.
void list_other_files(checkpoint& ckpt, const known_files& known) {
  for (const auto& entry : fs::directory_iterator(ckpt.directory)) {
    if (!entry.is_regular_file() || known.count(entry.path().filename())) continue;
    if (entry.path().extension() == ".safetensors") continue;  // stray weights, not ours
    refuse_link_out(ckpt.directory, entry.path());
    ckpt.other_files.push_back(entry.path());
  }
  std::sort(ckpt.other_files.begin(), ckpt.other_files.end());
}

}  // namespace

checkpoint open_checkpoint(const fs::path& source) {
  checkpoint ckpt;
  ckpt.source = source;
  std::error_code ec;
  if (!fs::exists(source, ec))
    throw io_error(source.string() + ": no such file or directory", ENOENT);

  known_files known;
  if (fs::is_regular_file(source)) {
    open_single_file(ckpt, source, known);
  } else if (fs::is_directory(source)) {
    ckpt.directory = source;
    const fs::path index_path = source / index_name;
    if (fs::exists(index_path, ec)) {
      open_indexed(ckpt, index_path, known);
    } else {
      open_lone_shard(ckpt, source, known);
    }
  } else {
    throw format_error(source.string() + ": neither a file nor a directory");
  }

  read_config(ckpt, known);
  if (!ckpt.single_file) list_other_files(ckpt, known);
  return ckpt;
}

std::string checkpoint_label(const checkpoint& ckpt) {
  std::string label = ckpt.source.filename().string();
  return label.empty() ? ckpt.source.string() : label;
}

}  // namespace umload
