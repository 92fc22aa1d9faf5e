// The fused B-spline basis of KAN layers (efficient-KAN formulation): one pass per input
// element writes its k + 1 nonzero basis values, so the layer's spline branch becomes one matmul.
#include <cmath>
#include <stdexcept>
#include <string>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {

using detail::parallel_range;

namespace {

constexpr int kMaxOrder = 10;

// Values of the order-k bases j-k..j at local coordinate u = (x - t_j) / h in [0, 1).
// On a uniform grid every Cox-de Boor denominator t_{i+d} - t_i equals d h, so the recursion
// runs in units of h with no division by knot differences.
inline void local_basis(float u, int k, float* n) {
  n[0] = 1.0f;
  for (int d = 1; d <= k; ++d) {
    const float inv_d = 1.0f / static_cast<float>(d);
    float saved = 0.0f;
    for (int r = 0; r < d; ++r) {
      const float temp = n[r] * inv_d;
      n[r] = saved + (static_cast<float>(r + 1) - u) * temp;
      saved = (u + static_cast<float>(d - 1 - r)) * temp;
    }
    n[d] = saved;
  }
}

struct Grid {
  int g, k, nb;        // intervals, order, bases per input (g + k)
  float t0, inv_h, h;  // first knot, 1 / spacing, spacing
  // Interval index j in [0, g + 2k) and local coordinate, or false outside the knot span.
  bool locate(float x, int& j, float& u) const {
    const float s = (x - t0) * inv_h;
    if (!(s >= 0.0f) || s >= static_cast<float>(g + 2 * k)) return false;  // also rejects NaN
    const float fl = std::floor(s);
    j = static_cast<int>(fl);
    u = s - fl;
    return true;
  }
};

}  // namespace

Var bspline_basis(const Var& x, int grid_size, int order, float lo, float hi) {
  if (grid_size < 1)
    throw std::invalid_argument("bspline_basis: grid_size = " + std::to_string(grid_size) +
                                ", must be >= 1");
  if (order < 0 || order > kMaxOrder)
    throw std::invalid_argument("bspline_basis: order = " + std::to_string(order) +
                                ", must be in [0, " + std::to_string(kMaxOrder) + "]");
  if (!(lo < hi))
    throw std::invalid_argument("bspline_basis: grid range [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "] is empty, need lo < hi");
  const float h = (hi - lo) / static_cast<float>(grid_size);
  const Grid grid{grid_size, order, grid_size + order, lo - static_cast<float>(order) * h,
                  1.0f / h,  h};
  std::vector<int> dims = x.shape().to_vector();
  dims.push_back(grid.nb);
  Tensor out = Tensor::zeros(Shape(dims));
  const std::int64_t n = x.value().numel();
  const float* xv = x.value().data();
  float* ov = out.data();
  const std::int64_t cost = static_cast<std::int64_t>(bspline_basis_flops(order)) + grid.nb;
  parallel_range(n, cost, [&](std::int64_t i0, std::int64_t i1) {
    float vals[kMaxOrder + 1];
    for (std::int64_t i = i0; i < i1; ++i) {
      int j;
      float u;
      if (!grid.locate(xv[i], j, u)) continue;
      local_basis(u, grid.k, vals);
      float* row = ov + i * grid.nb;
      for (int r = 0; r <= grid.k; ++r) {
        const int b = j - grid.k + r;  // bases below 0 or above g + k - 1 lie off the knot vector
        if (b >= 0 && b < grid.nb) row[b] = vals[r];
      }
    }
  });
  return make_result(std::move(out), {x}, [grid](Node& self) {
    Node& px = *self.parents[0];
    if (!px.requires_grad || grid.k == 0) return;  // order 0 is piecewise constant
    Tensor& gx = grad_of(px);
    const std::int64_t n = px.value.numel();
    const float* xv = px.value.data();
    const float* g = self.grad.data();
    float* gxv = gx.data();
    parallel_range(n, static_cast<std::int64_t>(bspline_basis_flops(grid.k)) + grid.nb,
                   [&](std::int64_t i0, std::int64_t i1) {
                     float m[kMaxOrder + 2];
                     for (std::int64_t i = i0; i < i1; ++i) {
                       int j;
                       float u;
                       if (!grid.locate(xv[i], j, u)) continue;
                       // Order k-1 bases j-k+1..j, padded with zeros at both ends.
                       m[0] = 0.0f;
                       local_basis(u, grid.k - 1, m + 1);
                       m[grid.k + 1] = 0.0f;
                       const float* gr = g + i * grid.nb;
                       float acc = 0.0f;
                       for (int r = 0; r <= grid.k; ++r) {
                         const int b = j - grid.k + r;
                         if (b >= 0 && b < grid.nb) acc += gr[b] * (m[r] - m[r + 1]);
                       }
                       gxv[i] += acc * grid.inv_h;
                     }
                   });
  });
}

}  // namespace hwnas::nn
