// Shape and indexing ops: reshape, flatten, transpose, concat, split, embedding.
#include <array>
#include <cstring>
#include <numeric>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::accumulate_owned;
using detail::parent;
using detail::shape_error;

Var reshape(const Var& x, const Shape& shape) {
  if (shape.numel() != x.value().numel())
    shape_error("reshape", x.shape(), shape, "element counts differ");
  // Shares storage: values in the graph are never written in place.
  return make_result(x.value().reshaped(shape), {x}, [](Node& self) {
    Node& nx = parent(self, 0);
    detail::accumulate_owned(nx, self.grad.reshaped(nx.value.shape()));
  });
}

Var flatten(const Var& x) {
  const Shape& s = x.shape();
  if (s.rank() < 1) shape_error("flatten", s, "needs rank >= 1");
  const int n = s[0];
  const std::int64_t rest = n ? x.value().numel() / n : 0;
  return reshape(x, Shape{n, static_cast<int>(rest)});
}

namespace {
// Row-major strides of a shape padded on the left to rank 4.
std::array<std::int64_t, 4> strides4(const std::array<int, 4>& d) {
  std::array<std::int64_t, 4> s{};
  std::int64_t acc = 1;
  for (int i = 3; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = acc;
    acc *= d[static_cast<std::size_t>(i)];
  }
  return s;
}

// out = permute(in) where out dim i is in dim perm[i] (all padded to rank 4).
void permute_copy(const float* in, const std::array<int, 4>& in_dims,
                  const std::array<int, 4>& perm, float* out) {
  const auto is = strides4(in_dims);
  std::array<int, 4> od{};
  std::array<std::int64_t, 4> st{};
  for (std::size_t i = 0; i < 4; ++i) {
    od[i] = in_dims[static_cast<std::size_t>(perm[i])];
    st[i] = is[static_cast<std::size_t>(perm[i])];
  }
  std::int64_t o = 0;
  for (int a = 0; a < od[0]; ++a)
    for (int b = 0; b < od[1]; ++b)
      for (int c = 0; c < od[2]; ++c) {
        const float* base = in + a * st[0] + b * st[1] + c * st[2];
        for (int d = 0; d < od[3]; ++d) out[o++] = base[d * st[3]];
      }
}
}  // namespace

Var transpose(const Var& x, int d0, int d1) {
  const Shape& s = x.shape();
  const int r = s.rank();
  if (d0 < 0) d0 += r;
  if (d1 < 0) d1 += r;
  if (d0 < 0 || d0 >= r || d1 < 0 || d1 >= r) shape_error("transpose", s, "dimension out of range");
  const int pad = 4 - r;
  std::array<int, 4> dims{1, 1, 1, 1};
  for (int i = 0; i < r; ++i) dims[static_cast<std::size_t>(pad + i)] = s[i];
  std::array<int, 4> perm{0, 1, 2, 3};
  std::swap(perm[static_cast<std::size_t>(pad + d0)], perm[static_cast<std::size_t>(pad + d1)]);
  std::vector<int> od = s.to_vector();
  std::swap(od[static_cast<std::size_t>(d0)], od[static_cast<std::size_t>(d1)]);
  Tensor out{Shape(od)};
  permute_copy(x.value().data(), dims, perm, out.data());
  std::array<int, 4> out_dims = dims;
  std::swap(out_dims[static_cast<std::size_t>(pad + d0)],
            out_dims[static_cast<std::size_t>(pad + d1)]);
  return make_result(std::move(out), {x}, [out_dims, perm](Node& self) {
    Node& nx = parent(self, 0);
    Tensor g(nx.value.shape());
    permute_copy(self.grad.data(), out_dims, perm, g.data());  // a swap is its own inverse
    accumulate_owned(nx, std::move(g));
  });
}

namespace {
// Sizes for viewing a tensor as [outer, dim, inner] around `dim`.
void outer_inner(const Shape& s, int dim, std::int64_t& outer, std::int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (int i = dim + 1; i < s.rank(); ++i) inner *= s[i];
}
}  // namespace

Var concat(const std::vector<Var>& xs, int dim) {
  if (xs.empty()) throw std::invalid_argument("concat: no inputs");
  const Shape& s0 = xs[0].shape();
  const int r = s0.rank();
  if (dim < 0) dim += r;
  if (dim < 0 || dim >= r) shape_error("concat", s0, "dimension out of range");
  std::vector<int> od = s0.to_vector();
  od[static_cast<std::size_t>(dim)] = 0;
  std::vector<std::int64_t> sizes;
  for (const Var& x : xs) {
    const Shape& s = x.shape();
    if (s.rank() != r) shape_error("concat", s0, s, "ranks differ");
    for (int i = 0; i < r; ++i)
      if (i != dim && s[i] != s0[i])
        shape_error("concat", s0, s, "non-concatenated dimensions differ");
    od[static_cast<std::size_t>(dim)] += s[dim];
    sizes.push_back(s[dim]);
  }
  const Shape out_shape(od);
  std::int64_t outer, inner;
  outer_inner(out_shape, dim, outer, inner);
  const std::int64_t total = out_shape[dim];
  Tensor out(out_shape);
  // Each outer index (a sample, for channel concatenation) is copied whole, in parallel: the
  // cells of DARTS-style spaces concatenate megabytes per step.
  std::vector<const float*> srcs;
  for (const Var& x : xs) srcs.push_back(x.value().data());
  float* dst = out.data();
  detail::parallel_range(outer, total * inner, [&](std::int64_t o0, std::int64_t o1) {
    for (std::int64_t o = o0; o < o1; ++o) {
      std::int64_t off = 0;
      for (std::size_t k = 0; k < srcs.size(); ++k) {
        const std::int64_t chunk = sizes[k] * inner;
        std::memcpy(dst + (o * total + off) * inner, srcs[k] + o * chunk,
                    static_cast<std::size_t>(chunk) * sizeof(float));
        off += sizes[k];
      }
    }
  });
  return make_result(std::move(out), xs, [sizes, outer, inner, total](Node& self) {
    // A part's gradient is its slice of dY: copied into a fresh buffer (no zero fill and add),
    // added to one that other consumers already wrote.
    std::int64_t offset = 0;
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      Node& nk = parent(self, k);
      const std::int64_t chunk = sizes[k] * inner;
      if (nk.requires_grad) {
        bool fresh = false;
        float* g = detail::grad_buffer(nk, fresh);
        const float* dy = self.grad.data();
        detail::parallel_range(outer, chunk, [&](std::int64_t o0, std::int64_t o1) {
          for (std::int64_t o = o0; o < o1; ++o) {
            const float* src = dy + (o * total + offset) * inner;
            if (fresh)
              std::memcpy(g + o * chunk, src, static_cast<std::size_t>(chunk) * sizeof(float));
            else
              Eigen::Map<Eigen::ArrayXf>(g + o * chunk, chunk) +=
                  Eigen::Map<const Eigen::ArrayXf>(src, chunk);
          }
        });
      }
      offset += sizes[k];
    }
  });
}

std::vector<Var> split(const Var& x, const std::vector<int>& sizes, int dim) {
  const Shape& s = x.shape();
  const int r = s.rank();
  if (dim < 0) dim += r;
  if (dim < 0 || dim >= r) shape_error("split", s, "dimension out of range");
  const int total = std::accumulate(sizes.begin(), sizes.end(), 0);
  if (total != s[dim])
    throw std::invalid_argument("split: sizes sum to " + std::to_string(total) + " but dimension " +
                                std::to_string(dim) + " of " + s.str() + " is " +
                                std::to_string(s[dim]));
  std::int64_t outer, inner;
  outer_inner(s, dim, outer, inner);
  std::vector<Var> outs;
  std::int64_t off = 0;
  for (int size : sizes) {
    if (size < 0) shape_error("split", s, "negative split size");
    std::vector<int> od = s.to_vector();
    od[static_cast<std::size_t>(dim)] = size;
    Tensor out{Shape(od)};
    const std::int64_t chunk = size * inner;
    for (std::int64_t o = 0; o < outer; ++o)
      std::memcpy(out.data() + o * chunk, x.value().data() + (o * s[dim] + off) * inner,
                  static_cast<std::size_t>(chunk) * sizeof(float));
    const std::int64_t full = s[dim];
    outs.push_back(make_result(std::move(out), {x}, [off, chunk, outer, inner, full](Node& self) {
      Tensor& g = grad_of(parent(self, 0));
      for (std::int64_t o = 0; o < outer; ++o)
        Eigen::Map<Eigen::ArrayXf>(g.data() + (o * full + off) * inner, chunk) +=
            Eigen::Map<const Eigen::ArrayXf>(self.grad.data() + o * chunk, chunk);
    }));
    off += size;
  }
  return outs;
}

Var embedding(const Var& table, const std::vector<int>& ids, const Shape& ids_shape) {
  const Shape& st = table.shape();
  if (st.rank() != 2) shape_error("embedding", st, ids_shape, "table must be [vocab, dim]");
  if (static_cast<std::int64_t>(ids.size()) != ids_shape.numel())
    shape_error("embedding", st, ids_shape,
                std::to_string(ids.size()) + " ids do not fill the ids shape");
  if (ids_shape.rank() >= Shape::kMaxRank)
    shape_error("embedding", st, ids_shape, "ids shape rank must be < 4");
  const int vocab = st[0], d = st[1];
  for (int id : ids)
    if (id < 0 || id >= vocab)
      throw std::invalid_argument("embedding: id " + std::to_string(id) + " out of range [0, " +
                                  std::to_string(vocab) + ") for table " + st.str());
  std::vector<int> od = ids_shape.to_vector();
  od.push_back(d);
  Tensor out{Shape(od)};
  const float* pt = table.value().data();
  for (std::size_t i = 0; i < ids.size(); ++i)
    std::memcpy(out.data() + static_cast<std::int64_t>(i) * d,
                pt + static_cast<std::int64_t>(ids[i]) * d,
                static_cast<std::size_t>(d) * sizeof(float));
  return make_result(std::move(out), {table}, [ids, d](Node& self) {
    Tensor& g = grad_of(parent(self, 0));
    // Serial scatter-add: repeated ids accumulate in a fixed order (deterministic).
    for (std::size_t i = 0; i < ids.size(); ++i)
      Eigen::Map<Eigen::ArrayXf>(g.data() + static_cast<std::int64_t>(ids[i]) * d, d) +=
          Eigen::Map<const Eigen::ArrayXf>(self.grad.data() + static_cast<std::int64_t>(i) * d, d);
  });
}

}  // namespace hwnas::nn
