// Opens a checkpoint, plans it for this machine, loads it, and hands one tensor over through
// DLPack, which keeps the memory alive after the weight set is released.
//   umload_api_example CHECKPOINT
#include <cstdio>
#include <cstring>

#include "src/umload.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CHECKPOINT\n", argv[0]);
    return 2;
  }
  try {
    const umload::model ckpt = umload::model::open(argv[1]);  // headers only
    std::printf("%zu tensors stored, %zu MXFP4 expert pairs\n", ckpt.stored_tensors().size(),
                ckpt.map().pair_count());

    const auto plan = ckpt.plan({});  // this machine, BF16, hf layout, rank from $RANK
    std::printf("plan: %s memory model, fits: %s\n",
                std::string(umload::platform::to_string(plan.model)).c_str(),
                plan.fits ? "yes" : "no");

    umload::load_request request;  // device "auto": the GPU $LOCAL_RANK names when there is one
    auto [weights, report] = ckpt.load(request);
    std::printf("loaded %zu tensors on %s\n", report.tensor_count, report.device.c_str());

    for (const auto& t : weights->tensors()) {
      const umload::tensor_view v = umload::view(t);
      if (v.shape.size() != 3) continue;  // the decoded experts: [E, in, out]
      std::printf("%s: [%llu, %llu, %llu], strides [%lld, %lld, %lld]\n", t.name.c_str(),
                  static_cast<unsigned long long>(v.shape[0]),
                  static_cast<unsigned long long>(v.shape[1]),
                  static_cast<unsigned long long>(v.shape[2]), static_cast<long long>(v.strides[0]),
                  static_cast<long long>(v.strides[1]), static_cast<long long>(v.strides[2]));
    }

    DLManagedTensor* dl = umload::to_dlpack(weights, "model.layers.0.mlp.experts.down_proj");
    weights.reset();  // the DLPack tensor holds the weight set now
    const DLTensor& t = dl->dl_tensor;
    std::printf("DLPack: ndim %d, dtype code %d bits %d, device type %d\n", t.ndim, t.dtype.code,
                t.dtype.bits, static_cast<int>(t.device.device_type));
    if (t.device.device_type == kDLCPU && t.dtype.code == kDLBfloat) {
      std::uint16_t bits = 0;
      std::memcpy(&bits, t.data, sizeof bits);
      const std::uint32_t widened = static_cast<std::uint32_t>(bits) << 16;
      float first = 0;
      std::memcpy(&first, &widened, sizeof first);
      std::printf("first value %g\n", first);
    }
    dl->deleter(dl);  // the last reference: the memory is freed here
    return 0;
  } catch (const umload::error& e) {
    std::fprintf(stderr, "umload: %s\n", e.what());
    return static_cast<int>(e.code());
  }
}
