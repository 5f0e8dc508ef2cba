// Placeholder until the avx512 path lands: forwards to the portable path.
#include "kernels/cpu_decode_detail.hpp"

namespace umload::cpu::detail {

void decode_tiles_avx512(const decode_job& job, std::uint64_t tile_begin, std::uint64_t tile_end) {
  decode_tiles_portable(job, tile_begin, tile_end);
}

}  // namespace umload::cpu::detail
