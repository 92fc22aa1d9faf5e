// Per-thread scratch buffers (internal to nn/): one set per user (Owner tag), kSlots each, so
// that a caller holding some buffers can call code that takes others (a convolution holds its
// im2col buffer while the GEMM packs into its own).  Reused across calls to avoid heap churn;
// contents never carry over, so reuse does not affect results.  Buffers start on a 64-byte
// boundary: aligned vector loads in the GEMM kernels, and Eigen peels an unaligned head into
// scalar code whose exp/tanh differ from the vector path in the last bit, so an address-dependent
// alignment would make results vary from run to run.
#pragma once

#include <cstddef>
#include <new>

namespace hwnas::nn::detail {

template <class Owner, int kSlots>
float* thread_scratch(std::size_t n, int slot) {
  struct Buffer {
    float* data = nullptr;
    std::size_t size = 0;
    ~Buffer() { ::operator delete[](data, std::align_val_t(64)); }
  };
  thread_local Buffer buffers[kSlots];
  Buffer& b = buffers[slot];
  if (b.size < n) {
    ::operator delete[](b.data, std::align_val_t(64));
    b.data = static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)));
    b.size = n;
  }
  return b.data;
}

}  // namespace hwnas::nn::detail
