// Quantization schemes: each is one unit that says how it is recognised (config.json's
// quantization_config.quant_method, the stored names and dtypes), which stored tensors form one
// logical weight (payload and scales), the rules those parts keep, the shape and bytes the weight
// decodes to, the smallest piece a staging slot must hold, and which kernels/ decode it uses.
// The model map (src/model_map.cpp) asks the schemes about every stored tensor; adding a scheme
// is one more unit here and one more row in known_schemes().
//
//   const auto& s = umload::schemes::scheme_named("mxfp4", "ckpt/config.json");  // or throws
//   if (auto part = s.part_of(name)) ... part->base, part->payload
//
// Today MXFP4 (GPT-OSS) is the one scheme that decodes (src/schemes/mxfp4.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/vocabulary.hpp"
#include "src/safetensors.hpp"

namespace umload::schemes {

// Which kernels/ decode turns a weight's stored parts into values.
enum class decode_kind : std::uint8_t {
  mxfp4,  // kernels/mxfp4.hpp: E2M1 codes and E8M0 scales per 32 values
};

// A stored tensor as one part of a logical weight.
struct weight_part {
  std::string base;      // the logical weight's name
  bool payload = false;  // the quantized values (else the scales)
};

// A broken rule of a weight's parts: which part it concerns and what is wrong. A fatal one
// (a shape that cannot be read) leaves the weight unusable.
struct part_problem {
  bool payload = false;
  std::string rule;
  bool fatal = false;
};

class scheme {
 public:
  virtual ~scheme() = default;

  // config.json's quantization_config.quant_method that names this scheme.
  virtual std::string_view quant_method() const = 0;
  virtual decode_kind decode() const = 0;

  // The weight a stored tensor named `name` is a part of; nullopt when it is no part's.
  virtual std::optional<weight_part> part_of(std::string_view name) const = 0;
  // The stored name of a weight's payload or scales.
  virtual std::string part_name(std::string_view base, bool payload) const = 0;

  // The rules the two parts break (dtypes first, then at most one fatal shape rule); empty when
  // they form one weight.
  virtual std::vector<part_problem> check(const tensor_entry& payload,
                                          const tensor_entry& scales) const = 0;

  // For parts that pass check(): the experts (the dimension that shards), the shape of
  // `experts` of them decoded in `l`, the bytes they hold as `d`, and the stored bytes of one
  // expert's parts, the smallest piece a staging slot must hold whole.
  virtual std::uint64_t experts(const tensor_entry& payload) const = 0;
  virtual std::vector<std::uint64_t> decoded_shape(const tensor_entry& payload,
                                                   std::uint64_t experts, layout l) const = 0;
  virtual std::uint64_t output_bytes(const tensor_entry& payload, std::uint64_t experts,
                                     output_dtype d) const = 0;
  virtual std::uint64_t stage_unit_bytes(const tensor_entry& payload) const = 0;
};

const scheme& mxfp4_scheme();

// Every scheme umload knows, in the order they are asked about a stored tensor.
std::span<const scheme* const> known_schemes();

// The scheme config.json's quant_method names; a method no scheme has is a format_error naming
// `config_file`, the method and the known ones.
const scheme& scheme_named(std::string_view quant_method, std::string_view config_file);

// The message of that error, for callers that collect problems instead of throwing.
std::string unknown_scheme_message(std::string_view quant_method, std::string_view config_file);

}  // namespace umload::schemes
