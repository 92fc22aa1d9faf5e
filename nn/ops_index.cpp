// Indexing ops: slice, gather, scatter_add, index_select, topk, and the strict bmm entry point.
// Index-driven accumulations (scatter_add forward, index_select/gather backward) run serially in
// index order, so repeated indices always sum in the same order (bit-identical results).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::accumulate_owned;
using detail::parallel_range;
using detail::parent;
using detail::shape_error;

IndexTensor::IndexTensor(const Shape& s, std::vector<int> v) : shape(s), values(std::move(v)) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel())
    throw std::invalid_argument("IndexTensor: " + std::to_string(values.size()) +
                                " values for shape " + shape.str() + " (needs " +
                                std::to_string(shape.numel()) + ")");
}

namespace {

int normalise_dim(const char* op, const Shape& s, int dim) {
  const int r = s.rank();
  const int d = dim < 0 ? dim + r : dim;
  if (d < 0 || d >= r)
    shape_error(op, s,
                "dim " + std::to_string(dim) + " out of range for rank " + std::to_string(r));
  return d;
}

void outer_inner(const Shape& s, int dim, std::int64_t& outer, std::int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (int i = dim + 1; i < s.rank(); ++i) inner *= s[i];
}

[[noreturn]] void index_error(const char* op, std::int64_t index, int bound, int dim,
                              const Shape& s) {
  throw std::invalid_argument(std::string(op) + ": index " + std::to_string(index) +
                              " out of range [0, " + std::to_string(bound) + ") along dim " +
                              std::to_string(dim) + " of " + s.str());
}

// Row-major strides of `s` (rank r) scattered into 4 slots, right-aligned like the shape.
std::array<std::int64_t, 4> strides4(const Shape& s) {
  std::array<std::int64_t, 4> st{0, 0, 0, 0};
  std::int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(4 - s.rank() + i)] = acc;
    acc *= s[i];
  }
  return st;
}

// Walks every position of `index` (a shape of the same rank as x), calling
// f(position_in_index, offset_in_x_with_dim_replaced, offset_in_other) where `other` is a third
// tensor shape of the same rank (src for scatter_add; x itself otherwise).
template <class F>
void walk_index(const IndexTensor& index, const Shape& xs, int dim, const Shape& other,
                const char* op, F&& f) {
  const int r = xs.rank();
  const auto xst = strides4(xs), ost = strides4(other);
  std::array<std::int64_t, 4> d{1, 1, 1, 1};
  for (int i = 0; i < r; ++i) d[static_cast<std::size_t>(4 - r + i)] = index.shape[i];
  const std::size_t pd = static_cast<std::size_t>(4 - r + dim);
  const int bound = xs[dim];
  std::int64_t p = 0;
  std::array<std::int64_t, 4> c{};
  for (c[0] = 0; c[0] < d[0]; ++c[0])
    for (c[1] = 0; c[1] < d[1]; ++c[1])
      for (c[2] = 0; c[2] < d[2]; ++c[2])
        for (c[3] = 0; c[3] < d[3]; ++c[3], ++p) {
          const int v = index.values[static_cast<std::size_t>(p)];
          if (v < 0 || v >= bound) index_error(op, v, bound, dim, xs);
          std::int64_t xo = 0, oo = 0;
          for (std::size_t i = 0; i < 4; ++i) {
            xo += (i == pd ? v : c[i]) * xst[i];
            oo += c[i] * ost[i];
          }
          f(p, xo, oo);
        }
}

// index fits x (rank equal, no larger outside dim) and, when given, `within` everywhere.
void check_index_shape(const char* op, const Shape& xs, int dim, const IndexTensor& index,
                       const Shape* within) {
  const Shape& is = index.shape;
  if (index.numel() != is.numel())
    throw std::invalid_argument(std::string(op) + ": index holds " + std::to_string(index.numel()) +
                                " values for shape " + is.str());
  if (is.rank() != xs.rank()) shape_error(op, xs, is, "index must have the rank of x");
  for (int i = 0; i < xs.rank(); ++i) {
    if (i != dim && is[i] > xs[i])
      shape_error(op, xs, is, "index larger than x along dim " + std::to_string(i));
    if (within && is[i] > (*within)[i])
      shape_error(op, *within, is, "index larger than src along dim " + std::to_string(i));
  }
}

}  // namespace

// ---------------------------------------------------------------- slice

Var slice(const Var& x, int dim, int start, int end, int step) {
  const Shape& s = x.shape();
  const int d = normalise_dim("slice", s, dim);
  const int size = s[d];
  const int b = start < 0 ? start + size : start;
  const int e = end < 0 ? end + size : end;
  if (step < 1)
    throw std::invalid_argument("slice: step must be >= 1, got " + std::to_string(step));
  if (b < 0 || e > size || b > e)
    throw std::invalid_argument("slice: range [" + std::to_string(start) + ", " +
                                std::to_string(end) + ") is not within [0, " +
                                std::to_string(size) + "] along dim " + std::to_string(d) + " of " +
                                s.str() + " (or start > end)");
  const int len = (e - b + step - 1) / step;
  std::vector<int> od = s.to_vector();
  od[static_cast<std::size_t>(d)] = len;
  std::int64_t outer, inner;
  outer_inner(s, d, outer, inner);
  Tensor out{Shape(od)};
  {
    const float* px = x.value().data();
    float* po = out.data();
    const std::size_t row_bytes = static_cast<std::size_t>(inner) * sizeof(float);
    parallel_range(outer, len * inner, [&](std::int64_t o0, std::int64_t o1) {
      for (std::int64_t o = o0; o < o1; ++o)
        for (int j = 0; j < len; ++j)
          std::memcpy(po + (o * len + j) * inner,
                      px + (o * size + b + std::int64_t{j} * step) * inner, row_bytes);
    });
  }
  return make_result(std::move(out), {x}, [outer, inner, size, b, step, len](Node& self) {
    Node& nx = parent(self, 0);
    Tensor& g = grad_of(nx);
    float* pg = g.data();
    const float* go = self.grad.data();
    parallel_range(outer, len * inner, [&](std::int64_t o0, std::int64_t o1) {
      for (std::int64_t o = o0; o < o1; ++o)
        for (int j = 0; j < len; ++j)
          Eigen::Map<Eigen::ArrayXf>(pg + (o * size + b + std::int64_t{j} * step) * inner, inner) +=
              Eigen::Map<const Eigen::ArrayXf>(go + (o * len + j) * inner, inner);
    });
  });
}

// ---------------------------------------------------------------- gather / scatter_add

Var gather(const Var& x, int dim, const IndexTensor& index) {
  const Shape& xs = x.shape();
  const int d = normalise_dim("gather", xs, dim);
  check_index_shape("gather", xs, d, index, nullptr);
  // Source offset of every output element, computed (and range-checked) once for both passes.
  std::vector<std::int64_t> src(static_cast<std::size_t>(index.numel()));
  walk_index(index, xs, d, index.shape, "gather",
             [&](std::int64_t p, std::int64_t xo, std::int64_t) {
               src[static_cast<std::size_t>(p)] = xo;
             });
  Tensor out(index.shape);
  {
    const float* px = x.value().data();
    float* po = out.data();
    for (std::size_t p = 0; p < src.size(); ++p) po[p] = px[src[p]];
  }
  return make_result(std::move(out), {x}, [src = std::move(src)](Node& self) {
    Tensor& g = grad_of(parent(self, 0));
    float* pg = g.data();
    const float* go = self.grad.data();
    for (std::size_t p = 0; p < src.size(); ++p) pg[src[p]] += go[p];
  });
}

Var scatter_add(const Var& x, int dim, const IndexTensor& index, const Var& src) {
  const Shape& xs = x.shape();
  const Shape& ss = src.shape();
  const int d = normalise_dim("scatter_add", xs, dim);
  if (ss.rank() != xs.rank()) shape_error("scatter_add", xs, ss, "src must have the rank of x");
  check_index_shape("scatter_add", xs, d, index, &ss);
  // Pairs (destination in x, source in src) in index order.
  std::vector<std::int64_t> dst(static_cast<std::size_t>(index.numel())), from(dst.size());
  walk_index(index, xs, d, ss, "scatter_add",
             [&](std::int64_t p, std::int64_t xo, std::int64_t so) {
               dst[static_cast<std::size_t>(p)] = xo;
               from[static_cast<std::size_t>(p)] = so;
             });
  Tensor out = x.value().clone();
  {
    float* po = out.data();
    const float* ps = src.value().data();
    for (std::size_t p = 0; p < dst.size(); ++p) po[dst[p]] += ps[from[p]];
  }
  return make_result(std::move(out), {x, src},
                     [dst = std::move(dst), from = std::move(from)](Node& self) {
                       Node& nx = parent(self, 0);
                       Node& ns = parent(self, 1);
                       if (ns.requires_grad) {  // reads self.grad before x may take its buffer
                         Tensor& gs = grad_of(ns);
                         const float* go = self.grad.data();
                         for (std::size_t p = 0; p < dst.size(); ++p)
                           gs.data()[from[p]] += go[dst[p]];
                       }
                       if (nx.requires_grad) accumulate_grad(nx, self.grad);
                     });
}

Var index_select(const Var& x, int dim, const std::vector<int>& indices) {
  const Shape& s = x.shape();
  const int d = normalise_dim("index_select", s, dim);
  const int size = s[d];
  for (int v : indices)
    if (v < 0 || v >= size) index_error("index_select", v, size, d, s);
  std::int64_t outer, inner;
  outer_inner(s, d, outer, inner);
  const auto len = static_cast<std::int64_t>(indices.size());
  std::vector<int> od = s.to_vector();
  od[static_cast<std::size_t>(d)] = static_cast<int>(len);
  Tensor out{Shape(od)};
  {
    const float* px = x.value().data();
    float* po = out.data();
    const std::size_t row_bytes = static_cast<std::size_t>(inner) * sizeof(float);
    parallel_range(outer, len * inner, [&](std::int64_t o0, std::int64_t o1) {
      for (std::int64_t o = o0; o < o1; ++o)
        for (std::int64_t j = 0; j < len; ++j)
          std::memcpy(po + (o * len + j) * inner,
                      px + (o * size + indices[static_cast<std::size_t>(j)]) * inner, row_bytes);
    });
  }
  return make_result(std::move(out), {x}, [indices, outer, inner, size, len](Node& self) {
    Tensor& g = grad_of(parent(self, 0));
    float* pg = g.data();
    const float* go = self.grad.data();
    // Parallel over `outer` only: within one outer slice repeated indices add in index order.
    parallel_range(outer, len * inner, [&](std::int64_t o0, std::int64_t o1) {
      for (std::int64_t o = o0; o < o1; ++o)
        for (std::int64_t j = 0; j < len; ++j)
          Eigen::Map<Eigen::ArrayXf>(pg + (o * size + indices[static_cast<std::size_t>(j)]) * inner,
                                     inner) +=
              Eigen::Map<const Eigen::ArrayXf>(go + (o * len + j) * inner, inner);
    });
  });
}

// ---------------------------------------------------------------- topk

TopK topk(const Var& x, int k, bool largest) {
  const Shape& s = x.shape();
  if (s.rank() < 1) shape_error("topk", s, "needs rank >= 1");
  const int n = s.back(-1);
  if (k < 0 || k > n)
    throw std::invalid_argument("topk: k = " + std::to_string(k) + " out of range [0, " +
                                std::to_string(n) + "] for last dim of " + s.str());
  const std::int64_t rows = n ? x.value().numel() / n : 0;
  std::vector<int> od = s.to_vector();
  od.back() = k;
  const Shape out_shape(od);
  Tensor values(out_shape);
  IndexTensor indices(out_shape, std::vector<int>(static_cast<std::size_t>(out_shape.numel())));
  {
    const float* px = x.value().data();
    float* pv = values.data();
    int* pi = indices.values.data();
    parallel_range(rows, std::int64_t{n} * 8, [&](std::int64_t r0, std::int64_t r1) {
      std::vector<int> order(static_cast<std::size_t>(n));
      for (std::int64_t r = r0; r < r1; ++r) {
        const float* row = px + r * n;
        std::iota(order.begin(), order.end(), 0);
        // Strict total order: NaN ranks as the largest value (as in PyTorch), equal values by
        // index.
        auto before = [row, largest](int a, int b) {
          const float va = row[a], vb = row[b];
          const bool na = std::isnan(va), nb = std::isnan(vb);
          if (na || nb) {
            if (na && nb) return a < b;
            return largest ? na : nb;
          }
          if (va != vb) return largest ? va > vb : va < vb;
          return a < b;
        };
        std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
        for (int j = 0; j < k; ++j) {
          pi[r * k + j] = order[static_cast<std::size_t>(j)];
          pv[r * k + j] = row[order[static_cast<std::size_t>(j)]];
        }
      }
    });
  }
  Var v = make_result(std::move(values), {x}, [idx = indices.values, n, k, rows](Node& self) {
    Tensor& g = grad_of(parent(self, 0));
    float* pg = g.data();
    const float* go = self.grad.data();
    for (std::int64_t r = 0; r < rows; ++r)
      for (int j = 0; j < k; ++j)
        pg[r * n + idx[static_cast<std::size_t>(r * k + j)]] += go[r * k + j];
  });
  return {std::move(v), std::move(indices)};
}

// ---------------------------------------------------------------- bmm

Var bmm(const Var& a, const Var& b) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  if (sa.rank() != 3 || sb.rank() != 3)
    shape_error("bmm", sa, sb, "both operands must be [B, m, k] and [B, k, n]");
  if (sa[0] != sb[0]) shape_error("bmm", sa, sb, "batch sizes differ");
  if (sa[2] != sb[1]) shape_error("bmm", sa, sb, "inner dimensions differ");
  return matmul(a, b);
}

}  // namespace hwnas::nn
