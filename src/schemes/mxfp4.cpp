// GPT-OSS's MXFP4: `<base>_blocks` [E, rows, G, 16] U8 (two E2M1 codes a byte) with
// `<base>_scales` [E, rows, G] U8 (one E8M0 byte per 32 values). The names and shapes are
// kernels/mxfp4_layout.hpp's, which platform/ also reads; this unit adds the scheme's checks.
#include "kernels/mxfp4_layout.hpp"
#include "src/schemes/scheme.hpp"

namespace umload::schemes {
namespace {

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class mxfp4_unit final : public scheme {
 public:
  std::string_view quant_method() const override { return "mxfp4"; }
  decode_kind decode() const override { return decode_kind::mxfp4; }

  std::optional<weight_part> part_of(std::string_view name) const override {
    const auto part = mxfp4::part_of(name);
    if (!part) return std::nullopt;
    return weight_part{std::string(part->base), part->kind == mxfp4::part_kind::blocks};
  }
  std::string part_name(std::string_view base, bool payload) const override {
    return mxfp4::part_name(base, payload ? mxfp4::part_kind::blocks : mxfp4::part_kind::scales);
  }

  std::vector<part_problem> check(const tensor_entry& blocks,
                                  const tensor_entry& scales) const override {
    std::vector<part_problem> problems;
    if (blocks.type != dtype::U8)
      problems.push_back({true, "blocks must be U8, found " + std::string(to_string(blocks.type))});
    if (scales.type != dtype::U8)
      problems.push_back(
          {false, "scales must be U8, found " + std::string(to_string(scales.type))});
    const auto& bs = blocks.shape;
    const auto& ss = scales.shape;
    if (bs.size() != 4 || bs[3] != static_cast<std::uint64_t>(mxfp4::block_bytes))
      problems.push_back(
          {true, "blocks shape " + shape_text(bs) + " must be [experts, rows, groups, 16]", true});
    else if (ss.size() != 3 || ss[0] != bs[0] || ss[1] != bs[1] || ss[2] != bs[2])
      problems.push_back({false,
                          "scales shape " + shape_text(ss) + " does not match blocks shape " +
                              shape_text(bs) + " (expected " + shape_text({bs[0], bs[1], bs[2]}) +
                              ")",
                          true});
    else if (!mxfp4::is_pair(bs, ss))
      problems.push_back({true, "blocks shape " + shape_text(bs) + " has a zero dimension", true});
    return problems;
  }

  std::uint64_t experts(const tensor_entry& blocks) const override { return blocks.shape[0]; }
  std::vector<std::uint64_t> decoded_shape(const tensor_entry& blocks, std::uint64_t experts,
                                           layout l) const override {
    return mxfp4::decoded_shape(experts, mxfp4::geometry_of(blocks.shape), l);
  }
  std::uint64_t output_bytes(const tensor_entry& blocks, std::uint64_t experts,
                             output_dtype d) const override {
    return experts * mxfp4::geometry_of(blocks.shape).output(element_bytes(d));
  }
  std::uint64_t stage_unit_bytes(const tensor_entry& blocks) const override {
    return mxfp4::geometry_of(blocks.shape).stored();
  }
};

}  // namespace

const scheme& mxfp4_scheme() {
  static const mxfp4_unit unit;
  return unit;
}

}  // namespace umload::schemes
