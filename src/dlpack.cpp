#include <functional>
#include <string>

#include "src/umload.hpp"

namespace umload {

namespace {

// Everything one exported tensor needs, freed by its deleter: the DLPack struct points into the
// shape and stride arrays held here, and `weights` keeps the memory alive.
struct dlpack_holder {
  DLManagedTensor managed{};
  std::shared_ptr<const weight_set> weights;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;
};

void delete_holder(DLManagedTensor* self) { delete static_cast<dlpack_holder*>(self->manager_ctx); }

}  // namespace

std::vector<std::int64_t> contiguous_strides(std::span<const std::uint64_t> shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t step = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = step;
    step *= static_cast<std::int64_t>(shape[i]);
  }
  return strides;
}

tensor_view view(const loaded_tensor& tensor) {
  tensor_view v;
  v.name = tensor.name;
  v.type = tensor.type;
  v.shape = tensor.shape;
  v.strides = contiguous_strides(tensor.shape);
  v.data = tensor.data;
  v.bytes = tensor.bytes;
  v.where = tensor.where;
  v.device = tensor.device;
  return v;
}

// DLPack 1.1 added type codes for the FP8 variants; the 0.6 header (Debian's) has none, so
// those tensors are refused for export there rather than handed out as bytes of another type.
#if defined(DLPACK_MAJOR_VERSION) && (DLPACK_MAJOR_VERSION > 1 || DLPACK_MINOR_VERSION >= 1)
#define UMLOAD_DLPACK_HAS_FLOAT8 1
#endif

DLDataType dlpack_dtype(dtype type) {
  const auto bits = static_cast<std::uint8_t>(element_bits(type));
  switch (type) {
    case dtype::U8:
    case dtype::U16:
    case dtype::U32:
    case dtype::U64: return {static_cast<std::uint8_t>(kDLUInt), bits, 1};
    case dtype::I8:
    case dtype::I16:
    case dtype::I32:
    case dtype::I64: return {static_cast<std::uint8_t>(kDLInt), bits, 1};
    case dtype::F16:
    case dtype::F32:
    case dtype::F64: return {static_cast<std::uint8_t>(kDLFloat), bits, 1};
    case dtype::BF16: return {static_cast<std::uint8_t>(kDLBfloat), 16, 1};
#ifdef UMLOAD_DLPACK_HAS_FLOAT8
    case dtype::F8_E4M3FNUZ: return {static_cast<std::uint8_t>(kDLFloat8_e4m3fnuz), 8, 1};
    case dtype::F8_E5M2FNUZ: return {static_cast<std::uint8_t>(kDLFloat8_e5m2fnuz), 8, 1};
#endif
    default:
      throw usage_error("dtype " + std::string(to_string(type)) +
                        " has no type code in the DLPack header this build uses (version " +
                        std::to_string(DLPACK_VERSION) + "); read it with the loader's C++ API");
  }
}

DLDevice dlpack_device(const loaded_tensor& tensor, managed_export managed) {
  switch (tensor.where) {
    case memory_kind::host: return {kDLCPU, 0};
    case memory_kind::device: return {kDLCUDA, tensor.device};
    case memory_kind::host_managed:
      return {managed == managed_export::cuda ? kDLCUDA : kDLCUDAManaged, tensor.device};
  }
  return {kDLCPU, 0};
}

DLManagedTensor* to_dlpack(std::shared_ptr<const weight_set> weights, const loaded_tensor& tensor,
                           managed_export managed) {
  if (!weights) throw usage_error("to_dlpack: no weight set");
  const auto& all = weights->tensors();
  const std::less<const loaded_tensor*> before;
  if (all.empty() || before(&tensor, all.data()) || !before(&tensor, all.data() + all.size()))
    throw usage_error("to_dlpack: tensor '" + tensor.name + "' does not belong to this weight set");
  auto holder = std::make_unique<dlpack_holder>();
  holder->shape.assign(tensor.shape.begin(), tensor.shape.end());
  holder->strides = contiguous_strides(tensor.shape);
  holder->weights = std::move(weights);
  DLTensor& t = holder->managed.dl_tensor;
  t.data = tensor.data;
  t.device = dlpack_device(tensor, managed);
  t.ndim = static_cast<int>(holder->shape.size());
  t.dtype = dlpack_dtype(tensor.type);
  t.shape = holder->shape.data();
  t.strides = holder->strides.data();
  t.byte_offset = 0;
  holder->managed.manager_ctx = holder.get();
  holder->managed.deleter = &delete_holder;
  return &holder.release()->managed;
}

DLManagedTensor* to_dlpack(std::shared_ptr<const weight_set> weights, std::string_view name,
                           managed_export managed) {
  if (!weights) throw usage_error("to_dlpack: no weight set");
  const loaded_tensor* t = weights->find(name);
  if (t == nullptr)
    throw usage_error("to_dlpack: no tensor '" + std::string(name) + "' in this weight set");
  return to_dlpack(std::move(weights), *t, managed);
}

}  // namespace umload
