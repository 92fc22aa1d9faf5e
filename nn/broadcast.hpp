// Internal: numpy-style broadcasting of up to three operands for the elementwise ops of
// nn/ops_math.cpp.  Shapes are right-aligned into 4 dims; an operand's stride is 0 along a dim
// where it has extent 1 and the output does not.  Not part of the public API.
// (nn/ops_basic.cpp keeps its own two-operand copy for add/sub/mul.)
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "nn/kernels.hpp"
#include "nn/tensor.hpp"

namespace hwnas::nn::detail {

using Dims4 = std::array<std::int64_t, 4>;

template <std::size_t N>
struct BroadcastN {
  Shape out;
  Dims4 dims{1, 1, 1, 1};
  std::array<Dims4, N> strides{};  // per operand
};

inline Dims4 padded_dims4(const Shape& s) {
  Dims4 d{1, 1, 1, 1};
  for (int i = 0; i < s.rank(); ++i) d[static_cast<std::size_t>(4 - s.rank() + i)] = s[i];
  return d;
}

// `names` are the operand shapes as printed in the error (the first two are named).
template <std::size_t N>
BroadcastN<N> broadcast_n(const char* op, const std::array<Shape, N>& shapes) {
  BroadcastN<N> bc;
  std::array<Dims4, N> d;
  int rank = 0;
  for (std::size_t k = 0; k < N; ++k) {
    d[k] = padded_dims4(shapes[k]);
    rank = std::max(rank, shapes[k].rank());
  }
  for (std::size_t i = 0; i < 4; ++i) {
    std::int64_t e = 1;
    for (std::size_t k = 0; k < N; ++k) {
      if (d[k][i] == 1) continue;
      if (e != 1 && e != d[k][i]) {
        // Name the two operands that disagree.
        std::size_t first = 0;
        while (d[first][i] == 1 || d[first][i] == d[k][i]) ++first;
        shape_error(op, shapes[first], shapes[k], "not broadcastable");
      }
      e = d[k][i];
    }
    bc.dims[i] = e;
  }
  std::vector<int> od;
  for (int i = 4 - rank; i < 4; ++i)
    od.push_back(static_cast<int>(bc.dims[static_cast<std::size_t>(i)]));
  bc.out = Shape(od);
  for (std::size_t k = 0; k < N; ++k) {
    std::int64_t s = 1;
    for (int i = 3; i >= 0; --i) {
      const auto u = static_cast<std::size_t>(i);
      bc.strides[k][u] = (d[k][u] == 1 && bc.dims[u] != 1) ? 0 : s;
      s *= d[k][u];
    }
  }
  return bc;
}

// Calls f(out_index, idx) for every output element in row-major order, idx[k] being operand k's
// element index.  Serial: callers use it for the (rarer) truly broadcast case.
template <std::size_t N, class F>
void for_each_broadcast_n(const BroadcastN<N>& bc, F&& f) {
  std::int64_t o = 0;
  const auto& d = bc.dims;
  std::array<std::int64_t, N> idx{};
  for (std::int64_t i0 = 0; i0 < d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < d[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < d[2]; ++i2) {
        std::array<std::int64_t, N> base;
        for (std::size_t k = 0; k < N; ++k)
          base[k] = i0 * bc.strides[k][0] + i1 * bc.strides[k][1] + i2 * bc.strides[k][2];
        for (std::int64_t i3 = 0; i3 < d[3]; ++i3, ++o) {
          for (std::size_t k = 0; k < N; ++k) idx[k] = base[k] + i3 * bc.strides[k][3];
          f(o, idx);
        }
      }
}

// Sums a full output-shaped gradient down to operand k's shape (serial, fixed order).
template <std::size_t N>
Tensor reduce_broadcast(const Tensor& full, const Shape& target, const BroadcastN<N>& bc,
                        std::size_t k) {
  if (target == bc.out) return full;
  Tensor r = Tensor::zeros(target);
  const float* g = full.data();
  float* p = r.data();
  for_each_broadcast_n(
      bc, [&](std::int64_t o, const std::array<std::int64_t, N>& idx) { p[idx[k]] += g[o]; });
  return r;
}

}  // namespace hwnas::nn::detail
