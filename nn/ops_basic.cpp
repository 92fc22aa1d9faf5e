// Linear algebra, broadcasting elementwise ops, activations and reductions.
#include <array>
#include <cmath>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::accumulate_owned;
using detail::gemm;
using detail::parallel_range;
using detail::parent;
using detail::shape_error;

// ---------------------------------------------------------------- linear algebra

namespace {
// Number of leading (batch) dims of a rank-r matrix operand, folded into one count.
std::int64_t batch_count(const Shape& s, int matrix_dims) {
  std::int64_t b = 1;
  for (int i = 0; i < s.rank() - matrix_dims; ++i) b *= s[i];
  return b;
}
}  // namespace

Var matmul(const Var& a, const Var& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  if (sa.rank() < 2 || sb.rank() < 2) shape_error("matmul", sa, sb, "both operands need rank >= 2");
  const int k = sa.back(-1);
  if (sb.back(-2) != k) shape_error("matmul", sa, sb, "inner dimensions differ");
  const int m = sa.back(-2), n = sb.back(-1);
  std::vector<int> od = sa.to_vector();
  od.back() = n;
  const Shape out_shape(od);

  if (sb.rank() == 2) {
    // Plain case: all leading dims of a fold into rows, one GEMM.
    Tensor out(out_shape);
    gemm(out.matrix(), a.value().matrix(), b.value().matrix(), false);
    return make_result(std::move(out), {a, b}, [](Node& self) {
      Node& pa = parent(self, 0);
      Node& pb = parent(self, 1);
      auto g = self.grad.matrix();
      if (pa.requires_grad) {
        Tensor ga(pa.value.shape());
        gemm(ga.matrix(), g, pb.value.matrix().transpose(), false);
        accumulate_owned(pa, std::move(ga));
      }
      if (pb.requires_grad) {
        Tensor gb(pb.value.shape());
        gemm(gb.matrix(), pa.value.matrix().transpose(), g, false);
        accumulate_owned(pb, std::move(gb));
      }
    });
  }
  // Batched: leading dims must match exactly.
  if (sa.rank() != sb.rank()) shape_error("matmul", sa, sb, "batched operands need equal rank");
  for (int i = 0; i < sa.rank() - 2; ++i)
    if (sa[i] != sb[i]) shape_error("matmul", sa, sb, "batch dimensions differ");
  const std::int64_t batch = batch_count(sa, 2);
  Tensor out(out_shape);
  {
    const float* pa = a.value().data();
    const float* pb = b.value().data();
    float* po = out.data();
    parallel_range(batch, std::int64_t{m} * n * k, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t i = b0; i < b1; ++i) {
        ConstMatrixMap am(pa + i * m * k, m, k), bm(pb + i * k * n, k, n);
        MatrixMap om(po + i * m * n, m, n);
        om.noalias() = am * bm;
      }
    });
  }
  return make_result(std::move(out), {a, b}, [batch, m, n, k](Node& self) {
    Node& na = parent(self, 0);
    Node& nb = parent(self, 1);
    const float* g = self.grad.data();
    const float* pa = na.value.data();
    const float* pb = nb.value.data();
    Tensor ga, gb;
    if (na.requires_grad) ga = Tensor(na.value.shape());
    if (nb.requires_grad) gb = Tensor(nb.value.shape());
    parallel_range(batch, 2LL * m * n * k, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t i = b0; i < b1; ++i) {
        ConstMatrixMap gm(g + i * m * n, m, n);
        if (!ga.empty()) {
          MatrixMap(ga.data() + i * m * k, m, k).noalias() =
              gm * ConstMatrixMap(pb + i * k * n, k, n).transpose();
        }
        if (!gb.empty()) {
          MatrixMap(gb.data() + i * k * n, k, n).noalias() =
              ConstMatrixMap(pa + i * m * k, m, k).transpose() * gm;
        }
      }
    });
    if (!ga.empty()) accumulate_owned(na, std::move(ga));
    if (!gb.empty()) accumulate_owned(nb, std::move(gb));
  });
}

namespace {
// A WeightView as the GEMMs' B transform: B = W^T for the forward x W^T, B = W for the input
// gradient g W.
struct ViewAsB final : detail::PackTransform {
  const WeightView* view;
  bool transposed;
  ViewAsB(const WeightView* v, bool t) : view(v), transposed(t) {}
  void apply(std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t nc, int nr,
             float* dst) const override {
    view->pack(transposed, p0, kc, j0, nc, nr, dst);
  }
  const detail::PackTransform* get() const { return view ? this : nullptr; }
};
}  // namespace

Var linear(const Var& x, const Var& w, const Var& b) { return linear(x, w, b, nullptr); }

Var linear(const Var& x, const Var& w, const Var& b, std::shared_ptr<const WeightView> view) {
  const Shape& sx = x.shape();
  const Shape& sw = w.shape();
  if (sw.rank() != 2) shape_error("linear", sx, sw, "weight must be [out, in]");
  if (sx.rank() < 1 || sx.back(-1) != sw[1])
    shape_error("linear", sx, sw, "input features differ from weight's in");
  const int out_f = sw[0];
  if (b.defined() && (b.shape().rank() != 1 || b.shape()[0] != out_f))
    shape_error("linear", b.shape(), sw, "bias must be [out]");
  std::vector<int> od = sx.to_vector();
  od.back() = out_f;
  Tensor out{Shape(od)};
  // Bias first, then accumulate the GEMM into it (per chunk, inside gemm): no temporary.
  gemm(out.matrix(), x.value().matrix(), w.value().matrix().transpose(), false,
       b.defined() ? b.value().data() : nullptr, detail::NoBlockDone{},
       ViewAsB(view.get(), true).get());
  const bool has_bias = b.defined();
  std::vector<Var> parents{x, w};
  if (has_bias) parents.push_back(b);
  return make_result(std::move(out), std::move(parents), [has_bias, view](Node& self) {
    Node& nx = parent(self, 0);
    Node& nw = parent(self, 1);
    auto g = self.grad.matrix();
    if (nw.requires_grad) {  // dW = g^T x, written straight into the gradient buffer
      if (view) {
        // Through f: each block of dW masked as soon as it holds its result.
        Tensor dw(nw.value.shape());
        float* gw = dw.data();
        const std::int64_t ld = nw.value.shape()[1];
        gemm(dw.matrix(), g.transpose(), nx.value.matrix(), false, nullptr,
             [&](std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
               view->mask_gradient(gw, ld, r0, r1, c0, c1);
             });
        accumulate_owned(nw, std::move(dw));
      } else if (nw.grad.empty()) {
        nw.grad = Tensor(nw.value.shape());
        if (nw.grad_mask && nw.backward_fn && nw.consumers == 1) {
          // W's own closure would mask dW in one more parallel pass: masked here, block by block.
          float* gw = nw.grad.data();
          const std::int64_t ld = nw.value.shape()[1];
          gemm(nw.grad.matrix(), g.transpose(), nx.value.matrix(), false, nullptr,
               [&](std::int64_t r0, std::int64_t r1, std::int64_t c0, std::int64_t c1) {
                 nw.grad_mask(gw, ld, r0, r1, c0, c1);
               });
          nw.masked_grad = gw;
        } else {
          gemm(nw.grad.matrix(), g.transpose(), nx.value.matrix(), false);
        }
      } else {
        gemm(grad_of(nw).matrix(), g.transpose(), nx.value.matrix(), true);
      }
    }
    if (has_bias && parent(self, 2).requires_grad) {  // db = column sums of g
      // Row-by-row vector adds (a row-major colwise().sum() is strided), in fixed row chunks
      // whose partials are added in chunk order.
      const std::int64_t rows = g.rows(), cols = g.cols();
      Eigen::ArrayXXf part = Eigen::ArrayXXf::Zero(cols, detail::kMaxChunks);
      const float* pg = g.data();
      const std::int64_t chunks = detail::parallel_chunks(
          rows, cols, [&](std::int64_t c, std::int64_t r0, std::int64_t r1) {
            auto acc = part.col(c);
            for (std::int64_t r = r0; r < r1; ++r)
              acc += Eigen::Map<const Eigen::ArrayXf>(pg + r * cols, cols);
          });
      for (std::int64_t c = 1; c < chunks; ++c) part.col(0) += part.col(c);
      Tensor& gb = grad_of(parent(self, 2));
      Eigen::Map<Eigen::ArrayXf>(gb.data(), gb.numel()) += part.col(0);
    }
    if (nx.requires_grad) {  // dx = g W
      Tensor gx(nx.value.shape());
      gemm(gx.matrix(), g, nw.value.matrix(), false, nullptr, detail::NoBlockDone{},
           ViewAsB(view.get(), false).get());
      accumulate_owned(nx, std::move(gx));
    }
  });
}

// ---------------------------------------------------------------- broadcasting

namespace {

// Operand shapes right-aligned into 4 dims, with zero strides along broadcast dims.
struct Broadcast {
  Shape out;
  std::array<std::int64_t, 4> dims{1, 1, 1, 1};
  std::array<std::int64_t, 4> sa{}, sb{};
};

std::array<std::int64_t, 4> padded_dims(const Shape& s) {
  std::array<std::int64_t, 4> d{1, 1, 1, 1};
  for (int i = 0; i < s.rank(); ++i) d[static_cast<std::size_t>(4 - s.rank() + i)] = s[i];
  return d;
}

std::array<std::int64_t, 4> broadcast_strides(const std::array<std::int64_t, 4>& d,
                                              const std::array<std::int64_t, 4>& out) {
  std::array<std::int64_t, 4> st{};
  std::int64_t s = 1;
  for (int i = 3; i >= 0; --i) {
    const auto u = static_cast<std::size_t>(i);
    st[u] = (d[u] == 1 && out[u] != 1) ? 0 : s;
    s *= d[u];
  }
  return st;
}

Broadcast broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  Broadcast bc;
  const auto da = padded_dims(a), db = padded_dims(b);
  for (std::size_t i = 0; i < 4; ++i) {
    if (da[i] != db[i] && da[i] != 1 && db[i] != 1) shape_error(op, a, b, "not broadcastable");
    bc.dims[i] = da[i] == 1 ? db[i] : da[i];
  }
  const int r = std::max(a.rank(), b.rank());
  std::vector<int> od;
  for (int i = 4 - r; i < 4; ++i)
    od.push_back(static_cast<int>(bc.dims[static_cast<std::size_t>(i)]));
  bc.out = Shape(od);
  bc.sa = broadcast_strides(da, bc.dims);
  bc.sb = broadcast_strides(db, bc.dims);
  return bc;
}

// Calls f(out_index, a_index, b_index) for every output element, in row-major order.
template <class F>
void for_each_broadcast(const Broadcast& bc, F&& f) {
  std::int64_t o = 0;
  const auto& d = bc.dims;
  for (std::int64_t i0 = 0; i0 < d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < d[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < d[2]; ++i2) {
        std::int64_t ia = i0 * bc.sa[0] + i1 * bc.sa[1] + i2 * bc.sa[2];
        std::int64_t ib = i0 * bc.sb[0] + i1 * bc.sb[1] + i2 * bc.sb[2];
        for (std::int64_t i3 = 0; i3 < d[3]; ++i3, ++o)
          f(o, ia + i3 * bc.sa[3], ib + i3 * bc.sb[3]);
      }
}

// Sums a full-size gradient (the broadcast output shape) down to an operand's shape; serial and
// in a fixed order, so deterministic.
Tensor reduce_to(const Tensor& full, const Shape& target,
                 const std::array<std::int64_t, 4>& strides, const Broadcast& bc) {
  Tensor r = Tensor::zeros(target);
  const float* g = full.data();
  float* p = r.data();
  Broadcast one = bc;
  one.sa = strides;
  for_each_broadcast(one, [&](std::int64_t o, std::int64_t i, std::int64_t) { p[i] += g[o]; });
  return r;
}

enum class BinOp { Add, Sub, Mul };

template <BinOp K>
float apply(float x, float y) {
  if constexpr (K == BinOp::Add)
    return x + y;
  else if constexpr (K == BinOp::Sub)
    return x - y;
  else
    return x * y;
}

template <BinOp K>
Var binary(const char* name, const Var& a, const Var& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  if (sa == sb) {
    // Fast path (residual connections, masks): plain vectorised array ops.
    Tensor out(sa);
    float* po = out.data();
    const float* pa = a.value().data();
    const float* pb = b.value().data();
    parallel_range(out.numel(), 1, [&](std::int64_t i0, std::int64_t i1) {
      const std::int64_t len = i1 - i0;
      Eigen::Map<Eigen::ArrayXf> o(po + i0, len);
      Eigen::Map<const Eigen::ArrayXf> x(pa + i0, len), y(pb + i0, len);
      if constexpr (K == BinOp::Add)
        o = x + y;
      else if constexpr (K == BinOp::Sub)
        o = x - y;
      else
        o = x * y;
    });
    return make_result(std::move(out), {a, b}, [](Node& self) {
      Node& na = parent(self, 0);
      Node& nb = parent(self, 1);
      if constexpr (K == BinOp::Mul) {
        if (na.requires_grad) {
          Tensor ga(na.value.shape());
          ga.array() = self.grad.array() * nb.value.array();
          accumulate_owned(na, std::move(ga));
        }
        if (nb.requires_grad) {
          Tensor gb(nb.value.shape());
          gb.array() = self.grad.array() * na.value.array();
          accumulate_owned(nb, std::move(gb));
        }
      } else {
        // b first (it reads self.grad), then a takes self.grad's buffer: self.grad is not read
        // again once this closure returns.  (If a and b are one node, b's clone is added to.)
        if (nb.requires_grad) {
          if constexpr (K == BinOp::Sub) {
            Tensor gb(nb.value.shape());
            gb.array() = -self.grad.array();
            accumulate_owned(nb, std::move(gb));
          } else {
            accumulate_grad(nb, self.grad);
          }
        }
        if (na.requires_grad) accumulate_owned(na, std::move(self.grad));
      }
    });
  }
  const Broadcast bc = broadcast_shapes(name, sa, sb);
  Tensor out(bc.out);
  {
    float* po = out.data();
    const float* pa = a.value().data();
    const float* pb = b.value().data();
    for_each_broadcast(bc, [&](std::int64_t o, std::int64_t i, std::int64_t j) {
      po[o] = apply<K>(pa[i], pb[j]);
    });
  }
  return make_result(std::move(out), {a, b}, [bc](Node& self) {
    Node& na = parent(self, 0);
    Node& nb = parent(self, 1);
    const float* g = self.grad.data();
    auto grad_for = [&](Node& target, bool first) {
      // d out / d operand, evaluated at every output element, then summed over broadcast dims.
      Tensor full(bc.out);
      float* pf = full.data();
      const float* other = first ? nb.value.data() : na.value.data();
      for_each_broadcast(bc, [&](std::int64_t o, std::int64_t i, std::int64_t j) {
        if constexpr (K == BinOp::Mul)
          pf[o] = g[o] * other[first ? j : i];
        else if constexpr (K == BinOp::Sub)
          pf[o] = first ? g[o] : -g[o];
        else
          pf[o] = g[o];
      });
      Tensor r = target.value.shape() == bc.out
                     ? std::move(full)
                     : reduce_to(full, target.value.shape(), first ? bc.sa : bc.sb, bc);
      accumulate_owned(target, std::move(r));
    };
    if (na.requires_grad) grad_for(na, true);
    if (nb.requires_grad) grad_for(nb, false);
  });
}

}  // namespace

Var add(const Var& a, const Var& b) { return binary<BinOp::Add>("add", a, b); }
Var sub(const Var& a, const Var& b) { return binary<BinOp::Sub>("sub", a, b); }
Var mul(const Var& a, const Var& b) { return binary<BinOp::Mul>("mul", a, b); }

Var scale(const Var& a, float s) {
  Tensor out(a.shape());
  out.array() = a.value().array() * s;
  return make_result(std::move(out), {a}, [s](Node& self) {
    Tensor g(self.grad.shape());
    g.array() = self.grad.array() * s;
    accumulate_owned(parent(self, 0), std::move(g));
  });
}

Var add_scalar(const Var& a, float s) {
  Tensor out(a.shape());
  out.array() = a.value().array() + s;
  return make_result(std::move(out), {a},
                     [](Node& self) { accumulate_grad(parent(self, 0), self.grad); });
}

// ---------------------------------------------------------------- activations

namespace {

// Applies `fwd(in, out)` to Eigen array segments in deterministic chunks; `cost` is the rough
// scalar-op count per element (transcendentals cost more, so they go parallel sooner).
template <class F>
Tensor map_unary(const Tensor& x, std::int64_t cost, F&& fwd) {
  Tensor out(x.shape());
  const float* px = x.data();
  float* po = out.data();
  parallel_range(x.numel(), cost, [&](std::int64_t i0, std::int64_t i1) {
    Eigen::Map<const Eigen::ArrayXf> in(px + i0, i1 - i0);
    Eigen::Map<Eigen::ArrayXf> o(po + i0, i1 - i0);
    fwd(in, o);
  });
  return out;
}

// Backward of an elementwise op: dx = g * dfn(x, y), evaluated on chunks.
template <class F>
void unary_backward(Node& self, std::int64_t cost, F&& dfn) {
  Node& nx = parent(self, 0);
  Tensor gx(nx.value.shape());
  const float* pg = self.grad.data();
  const float* px = nx.value.data();
  const float* py = self.value.data();
  float* po = gx.data();
  parallel_range(gx.numel(), cost, [&](std::int64_t i0, std::int64_t i1) {
    const std::int64_t len = i1 - i0;
    Eigen::Map<const Eigen::ArrayXf> g(pg + i0, len), x(px + i0, len), y(py + i0, len);
    Eigen::Map<Eigen::ArrayXf> o(po + i0, len);
    dfn(g, x, y, o);
  });
  accumulate_owned(nx, std::move(gx));
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;

}  // namespace

Var relu(const Var& x) {
  Tensor out = map_unary(x.value(), 1, [](const auto& in, auto& o) { o = in.max(0.0f); });
  return make_result(std::move(out), {x}, [](Node& self) {
    unary_backward(self, 1, [](const auto& g, const auto&, const auto& y, auto& o) {
      o = (y > 0.0f).select(g, 0.0f);
    });
  });
}

Var gelu(const Var& x) {
  // tanh(...) is kept for backward (when a graph is recorded) rather than evaluated again there.
  const bool keep = grad_enabled() && x.requires_grad();
  Tensor t = keep ? Tensor(x.shape()) : Tensor();
  Tensor out(x.shape());
  {
    const float* px = x.value().data();
    float* po = out.data();
    float* pt = keep ? t.data() : nullptr;
    parallel_range(out.numel(), 20, [&](std::int64_t i0, std::int64_t i1) {
      const std::int64_t len = i1 - i0;
      Eigen::Map<const Eigen::ArrayXf> in(px + i0, len);
      Eigen::Map<Eigen::ArrayXf> o(po + i0, len);
      if (pt) {
        Eigen::Map<Eigen::ArrayXf> th(pt + i0, len);
        th = (kSqrt2OverPi * (in + kGeluC * in * in * in)).tanh();
        o = 0.5f * in * (1.0f + th);
      } else {
        o = 0.5f * in * (1.0f + (kSqrt2OverPi * (in + kGeluC * in * in * in)).tanh());
      }
    });
  }
  return make_result(std::move(out), {x}, [t](Node& self) {
    Node& nx = parent(self, 0);
    bool fresh = false;
    float* po = detail::grad_buffer(nx, fresh);
    const float* pg = self.grad.data();
    const float* px = nx.value.data();
    const float* pt = t.data();
    parallel_range(nx.value.numel(), 8, [&](std::int64_t i0, std::int64_t i1) {
      const std::int64_t len = i1 - i0;
      Eigen::Map<const Eigen::ArrayXf> g(pg + i0, len), xv(px + i0, len), th(pt + i0, len);
      Eigen::Map<Eigen::ArrayXf> o(po + i0, len);
      const auto d = g * (0.5f * (1.0f + th) + 0.5f * xv * (1.0f - th * th) * kSqrt2OverPi *
                                                   (1.0f + 3.0f * kGeluC * xv * xv));
      if (fresh)
        o = d;
      else
        o += d;
    });
  });
}

Var silu(const Var& x) {
  Tensor out =
      map_unary(x.value(), 20, [](const auto& in, auto& o) { o = in / (1.0f + (-in).exp()); });
  return make_result(std::move(out), {x}, [](Node& self) {
    unary_backward(self, 20, [](const auto& g, const auto& x, const auto&, auto& o) {
      const auto s = (1.0f / (1.0f + (-x).exp())).eval();
      o = g * s * (1.0f + x * (1.0f - s));
    });
  });
}

Var tanh(const Var& x) {
  Tensor out = map_unary(x.value(), 20, [](const auto& in, auto& o) { o = in.tanh(); });
  return make_result(std::move(out), {x}, [](Node& self) {
    unary_backward(self, 2, [](const auto& g, const auto&, const auto& y, auto& o) {
      o = g * (1.0f - y * y);
    });
  });
}

Var sigmoid(const Var& x) {
  Tensor out =
      map_unary(x.value(), 20, [](const auto& in, auto& o) { o = 1.0f / (1.0f + (-in).exp()); });
  return make_result(std::move(out), {x}, [](Node& self) {
    unary_backward(self, 2, [](const auto& g, const auto&, const auto& y, auto& o) {
      o = g * y * (1.0f - y);
    });
  });
}

Var exp(const Var& x) {
  Tensor out = map_unary(x.value(), 20, [](const auto& in, auto& o) { o = in.exp(); });
  return make_result(std::move(out), {x}, [](Node& self) {
    unary_backward(self, 1, [](const auto& g, const auto&, const auto& y, auto& o) { o = g * y; });
  });
}

Var log(const Var& x) {
  Tensor out = map_unary(x.value(), 20, [](const auto& in, auto& o) { o = in.log(); });
  return make_result(std::move(out), {x}, [](Node& self) {
    unary_backward(self, 1, [](const auto& g, const auto& x, const auto&, auto& o) { o = g / x; });
  });
}

// ---------------------------------------------------------------- reductions

Var sum(const Var& x) {
  // Accumulated in double: one rounding at the end keeps large sums (and gradchecks) accurate.
  Tensor out = Tensor::scalar(static_cast<float>(x.value().array().cast<double>().sum()));
  return make_result(std::move(out), {x}, [](Node& self) {
    Node& nx = parent(self, 0);
    Tensor& g = grad_of(nx);
    g.array() += self.grad.item();
  });
}

Var mean(const Var& x) {
  const std::int64_t n = x.value().numel();
  if (n == 0) shape_error("mean", x.shape(), "empty tensor");
  Tensor out = Tensor::scalar(
      static_cast<float>(x.value().array().cast<double>().sum() / static_cast<double>(n)));
  return make_result(std::move(out), {x}, [n](Node& self) {
    Tensor& g = grad_of(parent(self, 0));
    g.array() += self.grad.item() / static_cast<float>(n);
  });
}

Var sum_last(const Var& x) {
  const Shape& s = x.shape();
  if (s.rank() < 1) shape_error("sum_last", s, "needs rank >= 1");
  std::vector<int> od = s.to_vector();
  od.pop_back();
  Tensor out{Shape(od)};
  out.array() = x.value().matrix().rowwise().sum().array();
  return make_result(std::move(out), {x}, [](Node& self) {
    Node& nx = parent(self, 0);
    Tensor& g = grad_of(nx);
    g.matrix().colwise() += Eigen::Map<const Eigen::VectorXf>(self.grad.data(), self.grad.numel());
  });
}

Var mean_dim(const Var& x, int dim) {
  const Shape& s = x.shape();
  const int r = s.rank();
  if (dim < 0) dim += r;
  if (dim < 0 || dim >= r) shape_error("mean_dim", s, "dimension out of range");
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (int i = dim + 1; i < r; ++i) inner *= s[i];
  const std::int64_t d = s[dim];
  if (d == 0) shape_error("mean_dim", s, "reduced dimension is empty");
  std::vector<int> od = s.to_vector();
  od.erase(od.begin() + dim);
  Tensor out = Tensor::zeros(Shape(od));
  const float inv = 1.0f / static_cast<float>(d);
  {
    const float* px = x.value().data();
    float* po = out.data();
    for (std::int64_t o = 0; o < outer; ++o) {
      Eigen::Map<Eigen::ArrayXf> acc(po + o * inner, inner);
      for (std::int64_t j = 0; j < d; ++j)
        acc += Eigen::Map<const Eigen::ArrayXf>(px + (o * d + j) * inner, inner);
      acc *= inv;
    }
  }
  return make_result(std::move(out), {x}, [outer, inner, d, inv](Node& self) {
    Tensor& g = grad_of(parent(self, 0));
    float* pg = g.data();
    const float* go = self.grad.data();
    for (std::int64_t o = 0; o < outer; ++o) {
      Eigen::Map<const Eigen::ArrayXf> src(go + o * inner, inner);
      for (std::int64_t j = 0; j < d; ++j)
        Eigen::Map<Eigen::ArrayXf>(pg + (o * d + j) * inner, inner) += src * inv;
    }
  });
}

}  // namespace hwnas::nn
