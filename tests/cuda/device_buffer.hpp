// Device memory for the CUDA kernel tests (decode_test.cpp: MXFP4; fp8_decode_test.cpp: block
// FP8): one cudaMalloc'd allocation (256-byte aligned, as cudaMalloc gives), freed at scope end.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda_check.hpp"

namespace umload::test {

class device_buffer {
 public:
  explicit device_buffer(std::size_t bytes) : bytes_(bytes) {
    UMLOAD_CUDA_CHECK(cudaMalloc(&p_, bytes ? bytes : 1));
  }
  ~device_buffer() { cudaFree(p_); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  std::uint8_t* get() const { return static_cast<std::uint8_t*>(p_); }
  std::size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_;
};

}  // namespace umload::test
