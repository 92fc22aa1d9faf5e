// Elementwise and broadcasting math beyond add/sub/mul (div, pow, maximum, where, softplus, ...)
// and cumsum.  Same-shape operands take a chunked, vectorisable loop over contiguous memory;
// true broadcasting walks the padded 4-D index space serially.
#include <cmath>

#include "nn/broadcast.hpp"
#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::accumulate_owned;
using detail::parallel_range;
using detail::parent;
using detail::shape_error;

namespace {

using ArrayIn = Eigen::Map<const Eigen::ArrayXf>;
using ArrayOut = Eigen::Map<Eigen::ArrayXf>;

// ---- unary: fwd(in, out) and dfn(g, x, y, out) act on Eigen array segments of one chunk ----

template <class Fwd, class Dfn>
Var unary_op(const Var& x, std::int64_t cost, Fwd fwd, Dfn dfn) {
  Tensor out(x.shape());
  {
    const float* px = x.value().data();
    float* po = out.data();
    parallel_range(out.numel(), cost, [&](std::int64_t i0, std::int64_t i1) {
      ArrayIn in(px + i0, i1 - i0);
      ArrayOut o(po + i0, i1 - i0);
      fwd(in, o);
    });
  }
  return make_result(std::move(out), {x}, [cost, dfn](Node& self) {
    Node& nx = parent(self, 0);
    Tensor gx(nx.value.shape());
    const float* pg = self.grad.data();
    const float* px = nx.value.data();
    const float* py = self.value.data();
    float* po = gx.data();
    parallel_range(gx.numel(), cost, [&](std::int64_t i0, std::int64_t i1) {
      const std::int64_t len = i1 - i0;
      ArrayIn g(pg + i0, len), xv(px + i0, len), y(py + i0, len);
      ArrayOut o(po + i0, len);
      dfn(g, xv, y, o);
    });
    accumulate_owned(nx, std::move(gx));
  });
}

// ---- binary with broadcasting: scalar kernels fwd(a, b), da(a, b, y), db(a, b, y) ----
// (plain loops over contiguous memory that the compiler vectorises where the math allows)

template <class Fwd, class Da, class Db>
Var binary_op(const char* name, const Var& a, const Var& b, std::int64_t cost, Fwd fwd, Da da,
              Db db) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  if (sa == sb) {
    Tensor out(sa);
    {
      const float* pa = a.value().data();
      const float* pb = b.value().data();
      float* po = out.data();
      parallel_range(out.numel(), cost, [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t i = i0; i < i1; ++i) po[i] = fwd(pa[i], pb[i]);
      });
    }
    return make_result(std::move(out), {a, b}, [cost, da, db](Node& self) {
      Node& na = parent(self, 0);
      Node& nb = parent(self, 1);
      Tensor ga, gb;
      if (na.requires_grad) ga = Tensor(na.value.shape());
      if (nb.requires_grad) gb = Tensor(nb.value.shape());
      const float* g = self.grad.data();
      const float* pa = na.value.data();
      const float* pb = nb.value.data();
      const float* py = self.value.data();
      float* pga = ga.empty() ? nullptr : ga.data();
      float* pgb = gb.empty() ? nullptr : gb.data();
      parallel_range(self.value.numel(), cost, [&](std::int64_t i0, std::int64_t i1) {
        if (pga)
          for (std::int64_t i = i0; i < i1; ++i) pga[i] = g[i] * da(pa[i], pb[i], py[i]);
        if (pgb)
          for (std::int64_t i = i0; i < i1; ++i) pgb[i] = g[i] * db(pa[i], pb[i], py[i]);
      });
      if (pga) accumulate_owned(na, std::move(ga));
      if (pgb) accumulate_owned(nb, std::move(gb));
    });
  }
  const auto bc = detail::broadcast_n<2>(name, {sa, sb});
  Tensor out(bc.out);
  {
    const float* pa = a.value().data();
    const float* pb = b.value().data();
    float* po = out.data();
    detail::for_each_broadcast_n(bc, [&](std::int64_t o, const std::array<std::int64_t, 2>& ix) {
      po[o] = fwd(pa[ix[0]], pb[ix[1]]);
    });
  }
  return make_result(std::move(out), {a, b}, [bc, da, db](Node& self) {
    Node& na = parent(self, 0);
    Node& nb = parent(self, 1);
    const float* g = self.grad.data();
    const float* pa = na.value.data();
    const float* pb = nb.value.data();
    const float* py = self.value.data();
    Tensor fa, fb;
    if (na.requires_grad) fa = Tensor(bc.out);
    if (nb.requires_grad) fb = Tensor(bc.out);
    detail::for_each_broadcast_n(bc, [&](std::int64_t o, const std::array<std::int64_t, 2>& ix) {
      if (!fa.empty()) fa.data()[o] = g[o] * da(pa[ix[0]], pb[ix[1]], py[o]);
      if (!fb.empty()) fb.data()[o] = g[o] * db(pa[ix[0]], pb[ix[1]], py[o]);
    });
    if (!fa.empty()) accumulate_owned(na, detail::reduce_broadcast(fa, na.value.shape(), bc, 0));
    if (!fb.empty()) accumulate_owned(nb, detail::reduce_broadcast(fb, nb.value.shape(), bc, 1));
  });
}

}  // namespace

// ---------------------------------------------------------------- binary

Var div(const Var& a, const Var& b) {
  return binary_op(
      "div", a, b, 2, [](float x, float y) { return x / y; },
      [](float, float y, float) { return 1.0f / y; },
      [](float, float y, float q) { return -q / y; });
}

Var pow(const Var& a, const Var& b) {
  return binary_op(
      "pow", a, b, 40, [](float x, float y) { return std::pow(x, y); },
      [](float x, float y, float) { return y == 0.0f ? 0.0f : y * std::pow(x, y - 1.0f); },
      // PyTorch's convention: no gradient to the exponent where the base is 0 and the exponent >=
      // 0.
      [](float x, float y, float p) { return (x == 0.0f && y >= 0.0f) ? 0.0f : p * std::log(x); });
}

// Ties (a == b) send half of the gradient to each operand, as PyTorch does.
Var maximum(const Var& a, const Var& b) {
  return binary_op(
      "maximum", a, b, 1, [](float x, float y) { return x > y ? x : y; },
      [](float x, float y, float) { return x > y ? 1.0f : (x == y ? 0.5f : 0.0f); },
      [](float x, float y, float) { return y > x ? 1.0f : (x == y ? 0.5f : 0.0f); });
}

Var minimum(const Var& a, const Var& b) {
  return binary_op(
      "minimum", a, b, 1, [](float x, float y) { return x < y ? x : y; },
      [](float x, float y, float) { return x < y ? 1.0f : (x == y ? 0.5f : 0.0f); },
      [](float x, float y, float) { return y < x ? 1.0f : (x == y ? 0.5f : 0.0f); });
}

Var where(const Tensor& mask, const Var& a, const Var& b) {
  const Shape& sm = mask.shape();
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  if (sm == sa && sa == sb) {
    Tensor out(sa);
    {
      const float* pm = mask.data();
      const float* pa = a.value().data();
      const float* pb = b.value().data();
      float* po = out.data();
      parallel_range(out.numel(), 1, [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t i = i0; i < i1; ++i) po[i] = pm[i] != 0.0f ? pa[i] : pb[i];
      });
    }
    return make_result(std::move(out), {a, b}, [mask](Node& self) {
      const float* pm = mask.data();
      const float* g = self.grad.data();
      for (std::size_t k = 0; k < 2; ++k) {
        Node& n = parent(self, k);
        if (!n.requires_grad) continue;
        Tensor gn(n.value.shape());
        float* pg = gn.data();
        const bool take = k == 0;
        parallel_range(gn.numel(), 1, [&](std::int64_t i0, std::int64_t i1) {
          for (std::int64_t i = i0; i < i1; ++i) pg[i] = ((pm[i] != 0.0f) == take) ? g[i] : 0.0f;
        });
        accumulate_owned(n, std::move(gn));
      }
    });
  }
  // Operand order in the broadcast: a, b, mask (so errors name a and b first).
  const auto bc = detail::broadcast_n<3>("where", {sa, sb, sm});
  Tensor out(bc.out);
  {
    const float* pm = mask.data();
    const float* pa = a.value().data();
    const float* pb = b.value().data();
    float* po = out.data();
    detail::for_each_broadcast_n(bc, [&](std::int64_t o, const std::array<std::int64_t, 3>& ix) {
      po[o] = pm[ix[2]] != 0.0f ? pa[ix[0]] : pb[ix[1]];
    });
  }
  return make_result(std::move(out), {a, b}, [mask, bc](Node& self) {
    const float* pm = mask.data();
    const float* g = self.grad.data();
    for (std::size_t k = 0; k < 2; ++k) {
      Node& n = parent(self, k);
      if (!n.requires_grad) continue;
      Tensor full(bc.out);
      float* pf = full.data();
      const bool take = k == 0;
      detail::for_each_broadcast_n(bc, [&](std::int64_t o, const std::array<std::int64_t, 3>& ix) {
        pf[o] = ((pm[ix[2]] != 0.0f) == take) ? g[o] : 0.0f;
      });
      accumulate_owned(n, detail::reduce_broadcast(full, n.value.shape(), bc, k));
    }
  });
}

// ---------------------------------------------------------------- unary

Var sqrt(const Var& x) {
  return unary_op(
      x, 4, [](const auto& in, auto& o) { o = in.sqrt(); },
      [](const auto& g, const auto&, const auto& y, auto& o) { o = g * 0.5f / y; });
}

Var sin(const Var& x) {
  return unary_op(
      x, 8, [](const auto& in, auto& o) { o = in.sin(); },
      [](const auto& g, const auto& xv, const auto&, auto& o) { o = g * xv.cos(); });
}

Var abs(const Var& x) {
  return unary_op(
      x, 1, [](const auto& in, auto& o) { o = in.abs(); },
      [](const auto& g, const auto& xv, const auto&, auto& o) {
        o = (xv > 0.0f).select(g, (xv < 0.0f).select(-g, 0.0f));
      });
}

Var pow(const Var& x, float p) {
  if (p == 2.0f) {  // the common square: no transcendental calls
    return unary_op(
        x, 1, [](const auto& in, auto& o) { o = in.square(); },
        [](const auto& g, const auto& xv, const auto&, auto& o) { o = 2.0f * g * xv; });
  }
  return unary_op(
      x, 40, [p](const auto& in, auto& o) { o = in.pow(p); },
      [p](const auto& g, const auto& xv, const auto&, auto& o) {
        if (p == 0.0f)
          o.setZero();
        else
          o = g * p * xv.pow(p - 1.0f);
      });
}

Var clamp(const Var& x, float lo, float hi) {
  if (!(lo <= hi))
    throw std::invalid_argument("clamp: lo (" + std::to_string(lo) + ") must be <= hi (" +
                                std::to_string(hi) + ")");
  return unary_op(
      x, 1, [lo, hi](const auto& in, auto& o) { o = in.max(lo).min(hi); },
      [lo, hi](const auto& g, const auto& xv, const auto&, auto& o) {
        o = (xv >= lo && xv <= hi).select(g, 0.0f);
      });
}

Var softplus(const Var& x, float beta, float threshold) {
  if (!(beta > 0.0f) || !std::isfinite(beta))
    throw std::invalid_argument("softplus: beta must be a finite value > 0, got " +
                                std::to_string(beta));
  // log1p(exp(z)) is computed as max(z, 0) + log1p(exp(-|z|)): exp never overflows, and no
  // precision is lost for large negative z (where the result is tiny).
  return unary_op(
      x, 40,
      [beta, threshold](const auto& in, auto& o) {
        const auto z = (in * beta).eval();
        o = (z > threshold).select(in, (z.max(0.0f) + (-z.abs()).exp().log1p()) / beta);
      },
      [beta, threshold](const auto& g, const auto& xv, const auto&, auto& o) {
        const auto z = (xv * beta).eval();
        o = (z > threshold).select(g, g / (1.0f + (-z).exp()));
      });
}

// ---------------------------------------------------------------- cumsum

namespace {
// out[o, j, i] = sum_{t <= j} in[o, t, i] (reverse: sum over t >= j), over [outer, len, inner].
void prefix_sum(const float* in, float* out, std::int64_t outer, std::int64_t len,
                std::int64_t inner, bool reverse) {
  parallel_range(outer, len * inner, [&](std::int64_t o0, std::int64_t o1) {
    for (std::int64_t o = o0; o < o1; ++o) {
      const float* src = in + o * len * inner;
      float* dst = out + o * len * inner;
      if (inner == 1) {
        float acc = 0.0f;
        if (!reverse)
          for (std::int64_t j = 0; j < len; ++j) dst[j] = acc += src[j];
        else
          for (std::int64_t j = len - 1; j >= 0; --j) dst[j] = acc += src[j];
        continue;
      }
      // Rows of `inner` contiguous values: each step is one vectorised row add.
      for (std::int64_t t = 0; t < len; ++t) {
        const std::int64_t j = reverse ? len - 1 - t : t;
        ArrayOut row(dst + j * inner, inner);
        if (t == 0)
          row = ArrayIn(src + j * inner, inner);
        else
          row = ArrayIn(dst + (reverse ? j + 1 : j - 1) * inner, inner) +
                ArrayIn(src + j * inner, inner);
      }
    }
  });
}
}  // namespace

Var cumsum(const Var& x, int dim) {
  const Shape& s = x.shape();
  const int r = s.rank();
  const int d = dim < 0 ? dim + r : dim;
  if (d < 0 || d >= r)
    shape_error("cumsum", s,
                "dim " + std::to_string(dim) + " out of range for rank " + std::to_string(r));
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= s[i];
  for (int i = d + 1; i < r; ++i) inner *= s[i];
  const std::int64_t len = s[d];
  Tensor out(s);
  prefix_sum(x.value().data(), out.data(), outer, len, inner, false);
  return make_result(std::move(out), {x}, [outer, len, inner](Node& self) {
    Node& nx = parent(self, 0);
    Tensor gx(nx.value.shape());
    prefix_sum(self.grad.data(), gx.data(), outer, len, inner, true);
    accumulate_owned(nx, std::move(gx));
  });
}

}  // namespace hwnas::nn
