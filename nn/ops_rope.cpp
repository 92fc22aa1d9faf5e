// Rotary position embedding (RoFormer, Su et al. 2021, eq. 34): within each head, the pair of
// channels (2i, 2i+1) of the vector at position m is rotated by the angle m * theta_i,
// theta_i = base^(-2i / d_head).  Applied to queries and keys, the score q_m . k_n then depends on
// the positions only through m - n (relative position), with no parameters.
//
// The rotation is orthogonal, so the backward pass is the rotation by -m * theta_i.  Angles are
// computed in double and stored as float cos / sin tables of [L, d_head / 2], shared by batch
// rows and heads; work is parallel over batch rows, each writing only its own rows.
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/ops.hpp"
#include "nn/parallel.hpp"

namespace hwnas::nn {

namespace {

struct RopeTables {
  int len = 0, half = 0;
  std::vector<float> cos, sin;  // [len, half]
};

RopeTables rope_tables(int len, int d_head, double base) {
  RopeTables t;
  t.len = len;
  t.half = d_head / 2;
  t.cos.resize(static_cast<std::size_t>(len) * t.half);
  t.sin.resize(t.cos.size());
  for (int m = 0; m < len; ++m)
    for (int i = 0; i < t.half; ++i) {
      const double theta = std::pow(base, -2.0 * i / d_head);
      const double a = m * theta;
      t.cos[static_cast<std::size_t>(m) * t.half + i] = static_cast<float>(std::cos(a));
      t.sin[static_cast<std::size_t>(m) * t.half + i] = static_cast<float>(std::sin(a));
    }
  return t;
}

// dst = R(sign * angle) src over rows of [rows, L, D] (D = heads * d_head); sign -1 is the
// inverse (transposed) rotation.
void rotate(const float* src, float* dst, std::int64_t rows, int heads, const RopeTables& t,
            float sign) {
  const int d_head = 2 * t.half;
  const std::int64_t d = static_cast<std::int64_t>(heads) * d_head;
  const std::int64_t per_row = static_cast<std::int64_t>(t.len) * d;
  auto body = [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (int m = 0; m < t.len; ++m) {
        const float* c = t.cos.data() + static_cast<std::size_t>(m) * t.half;
        const float* s = t.sin.data() + static_cast<std::size_t>(m) * t.half;
        const float* x = src + r * per_row + m * d;
        float* y = dst + r * per_row + m * d;
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < t.half; ++i) {
            const std::int64_t j = static_cast<std::int64_t>(h) * d_head + 2 * i;
            const float x0 = x[j], x1 = x[j + 1], sn = sign * s[i];
            y[j] = x0 * c[i] - x1 * sn;
            y[j + 1] = x0 * sn + x1 * c[i];
          }
      }
  };
  if (rows * per_row < kParallelGrainFlops) {
    body(0, rows);
    return;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<std::int64_t>(0, rows),
      [&](const oneapi::tbb::blocked_range<std::int64_t>& r) { body(r.begin(), r.end()); });
}

}  // namespace

void rope_cos_sin(int len, int d_head, double base, std::vector<float>& cos,
                  std::vector<float>& sin) {
  RopeTables t = rope_tables(len, d_head, base);
  cos = std::move(t.cos);
  sin = std::move(t.sin);
}

Var rope(const Var& x, int heads, double base) {
  const Shape& s = x.value().shape();
  if (s.rank() < 2)
    throw std::invalid_argument("rope: input must be [..., L, D], got rank " +
                                std::to_string(s.rank()));
  const int len = s[s.rank() - 2], d = s[s.rank() - 1];
  if (heads <= 0 || d % heads != 0 || (d / heads) % 2 != 0)
    throw std::invalid_argument("rope: heads " + std::to_string(heads) + " must divide D " +
                                std::to_string(d) + " into heads of even size");
  if (!(base > 1))
    throw std::invalid_argument("rope: base must be > 1, got " + std::to_string(base));
  const std::int64_t rows = len > 0 && d > 0 ? x.value().numel() / (std::int64_t{len} * d) : 0;
  auto tables = std::make_shared<RopeTables>(rope_tables(len, d / heads, base));
  Tensor out(s);
  rotate(x.value().data(), out.data(), rows, heads, *tables, 1.0f);
  return make_result(std::move(out), {x}, [tables, rows, heads](Node& self) {
    Node& parent = *self.parents[0];
    if (!parent.requires_grad) return;
    Tensor g(self.grad.shape());
    rotate(self.grad.data(), g.data(), rows, heads, *tables, -1.0f);
    accumulate_grad(parent, g);
  });
}

}  // namespace hwnas::nn
