#include "src/verify.hpp"

#include <cstring>
#include <vector>

#include "kernels/cpu_decode.hpp"
#include "kernels/error.hpp"
#include "src/checkpoint.hpp"
#include "src/file.hpp"
#include "src/model_map.hpp"

namespace umload {

namespace {

std::vector<std::byte> read_range(const checkpoint& ckpt, const tensor_ref& ref,
                                  std::uint64_t offset, std::uint64_t bytes) {
  std::vector<std::byte> data(bytes);
  file::open_read(ckpt.shard_path(ref.shard))
      .read_exact(data.data(), bytes, ref.file_offset + offset);
  return data;
}

}  // namespace

verify_report verify_conversion(const std::filesystem::path& source,
                                const std::filesystem::path& destination, layout order,
                                output_dtype dtype) {
  const checkpoint src = open_checkpoint(source);
  const model_map map = build_model_map(src);
  const checkpoint dst = open_checkpoint(destination);
  verify_report report;
  std::size_t expected = 0;
  for (const auto& group : map.groups) {
    for (const auto& ref : group.dense) {
      ++expected;
      const tensor_ref& out = dst.tensor(ref.name());
      if (out.bytes() != ref.bytes() || out.entry->shape != ref.entry->shape)
        throw mismatch_error(destination.string() + ": tensor '" + ref.name() + "' changed shape");
      if (read_range(src, ref, 0, ref.bytes()) != read_range(dst, out, 0, out.bytes()))
        throw mismatch_error(destination.string() + ": tensor '" + ref.name() +
                             "' differs from the source bytes");
      ++report.dense_tensors;
    }
    for (const auto& pair : group.pairs) {
      ++expected;
      const tensor_ref& out = dst.tensor(pair.base);
      const auto g = pair.geometry();
      const std::uint64_t per_blocks = g.blocks();
      const std::uint64_t per_scales = g.scales();
      const std::uint64_t per_out = g.output(element_bytes(dtype));
      if (out.bytes() != per_out * pair.experts)
        throw mismatch_error(destination.string() + ": tensor '" + pair.base + "' has " +
                             std::to_string(out.bytes()) + " bytes, expected " +
                             std::to_string(per_out * pair.experts));
      std::vector<std::byte> want(per_out);
      for (std::uint64_t e = 0; e < pair.experts; ++e) {
        const auto blocks = read_range(src, pair.blocks, e * per_blocks, per_blocks);
        const auto scales = read_range(src, pair.scales, e * per_scales, per_scales);
        auto job = decode_job::of(g, 1, order, dtype);
        job.blocks = reinterpret_cast<const std::uint8_t*>(blocks.data());
        job.scales = reinterpret_cast<const std::uint8_t*>(scales.data());
        job.out = want.data();
        cpu::decode_scalar(job);
        const auto got = read_range(dst, out, e * per_out, per_out);
        if (got != want) {
          std::size_t at = 0;
          while (at < per_out && got[at] == want[at]) ++at;
          throw mismatch_error(destination.string() + ": tensor '" + pair.base + "' expert " +
                               std::to_string(e) + " differs from the oracle at byte " +
                               std::to_string(at));
        }
        report.values_checked += job.values();
      }
      ++report.decoded_tensors;
    }
  }
  if (dst.tensors.size() != expected)
    throw mismatch_error(destination.string() + ": holds " + std::to_string(dst.tensors.size()) +
                         " tensors, expected " + std::to_string(expected));
  return report;
}

}  // namespace umload
