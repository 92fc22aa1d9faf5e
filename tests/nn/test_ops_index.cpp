// nn/ops_index.cpp and the existing concat/matmul on every axis and batch form: forward values
// against naive loops, gradients, index range errors, top-k ties, determinism across threads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_close;
using testing::expect_gradients_match;
using testing::expect_invalid;
using V = std::vector<Var>;

Tensor rnd(const Shape& s, std::uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  return testing::random_tensor(s, rng, lo, hi);
}

Tensor iota(const Shape& s) {
  Tensor t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(i);
  return t;
}

std::vector<float> vals(const Var& v) { return v.value().to_vector(); }

// Row-major multi-index helpers for naive references (rank <= 4).
std::vector<int> unravel(std::int64_t flat, const Shape& s) {
  std::vector<int> c(static_cast<std::size_t>(s.rank()));
  for (int i = s.rank() - 1; i >= 0; --i) {
    c[static_cast<std::size_t>(i)] = static_cast<int>(flat % s[i]);
    flat /= s[i];
  }
  return c;
}
std::int64_t ravel(const std::vector<int>& c, const Shape& s) {
  std::int64_t f = 0;
  for (int i = 0; i < s.rank(); ++i) f = f * s[i] + c[static_cast<std::size_t>(i)];
  return f;
}

// ---------------------------------------------------------------- slice

TEST(OpsIndex, SliceForward) {
  Var x = constant(iota({3, 4}));
  EXPECT_EQ(vals(slice(x, 1, 1, 3)), (std::vector<float>{1, 2, 5, 6, 9, 10}));
  EXPECT_EQ(vals(slice(x, 0, 2, 3)), (std::vector<float>{8, 9, 10, 11}));
  EXPECT_EQ(vals(slice(x, -1, 0, 4, 3)), (std::vector<float>{0, 3, 4, 7, 8, 11}));
  EXPECT_EQ(vals(slice(x, 1, -3, -1)), (std::vector<float>{1, 2, 5, 6, 9, 10}));
  EXPECT_EQ(slice(x, 1, 2, 2).shape(), (Shape{3, 0}));
  EXPECT_EQ(slice(constant(iota({2, 3, 4, 5})), 2, 1, 4, 2).shape(), (Shape{2, 3, 2, 5}));
}

TEST(OpsIndex, SliceGradientsEveryAxis) {
  const Tensor x = rnd({2, 3, 4, 5}, 1);
  for (int d = 0; d < 4; ++d)
    for (int step : {1, 2}) {
      SCOPED_TRACE("dim " + std::to_string(d) + " step " + std::to_string(step));
      expect_gradients_match([d, step](const V& v) { return slice(v[0], d, 1, v[0].dim(d), step); },
                             {x});
    }
}

// ---------------------------------------------------------------- concat (existing op, every axis)

TEST(OpsIndex, ConcatEveryAxisAndRankMatchesNaive) {
  for (int rank = 1; rank <= 4; ++rank) {
    std::vector<int> base = {2, 3, 2, 3};
    base.resize(static_cast<std::size_t>(rank));
    for (int d = 0; d < rank; ++d) {
      SCOPED_TRACE("rank " + std::to_string(rank) + " dim " + std::to_string(d));
      std::vector<int> sb = base;
      sb[static_cast<std::size_t>(d)] = 1;
      const Tensor a = rnd(Shape(base), 10 + d), b = rnd(Shape(sb), 20 + d);
      Var y = concat({constant(a), constant(b)}, d);
      std::vector<int> so = base;
      so[static_cast<std::size_t>(d)] += 1;
      ASSERT_EQ(y.shape(), Shape(so));
      for (std::int64_t f = 0; f < y.value().numel(); ++f) {
        std::vector<int> cix = unravel(f, y.shape());
        const int along = cix[static_cast<std::size_t>(d)];
        float expect;
        if (along < base[static_cast<std::size_t>(d)]) {
          expect = a.data()[ravel(cix, a.shape())];
        } else {
          cix[static_cast<std::size_t>(d)] = along - base[static_cast<std::size_t>(d)];
          expect = b.data()[ravel(cix, b.shape())];
        }
        ASSERT_EQ(y.value().data()[f], expect) << "element " << f;
      }
      expect_gradients_match([d](const V& v) { return concat({v[0], v[1]}, d); }, {a, b});
      EXPECT_EQ(concat({constant(a), constant(b)}, d - rank).shape(), Shape(so));  // negative dim
    }
  }
}

// ---------------------------------------------------------------- gather / scatter_add /
// index_select

TEST(OpsIndex, GatherMatchesTorchSemantics) {
  Var x = constant(iota({3, 4}));
  // dim 1: out[i][j] = x[i][index[i][j]]
  EXPECT_EQ(vals(gather(x, 1, IndexTensor({3, 2}, {0, 3, 1, 1, 2, 0}))),
            (std::vector<float>{0, 3, 5, 5, 10, 8}));
  // dim 0: out[i][j] = x[index[i][j]][j], index smaller than x in dim 1
  EXPECT_EQ(vals(gather(x, 0, IndexTensor({2, 3}, {2, 0, 1, 0, 2, 2}))),
            (std::vector<float>{8, 1, 6, 0, 9, 10}));
  // rank 3 against a naive loop
  const Tensor t = rnd({2, 3, 4}, 3);
  std::mt19937_64 rng(4);
  for (int d = 0; d < 3; ++d) {
    Shape is{2, 3, 4};
    is[d] = 5;
    std::vector<int> iv(static_cast<std::size_t>(is.numel()));
    for (int& v : iv) v = static_cast<int>(rng() % static_cast<unsigned>(t.shape()[d]));
    const IndexTensor idx(is, iv);
    Tensor y = gather(constant(t), d, idx).value();
    for (std::int64_t f = 0; f < y.numel(); ++f) {
      std::vector<int> cix = unravel(f, is);
      cix[static_cast<std::size_t>(d)] = iv[static_cast<std::size_t>(f)];
      ASSERT_EQ(y.data()[f], t.data()[ravel(cix, t.shape())]);
    }
    expect_gradients_match([d, idx](const V& v) { return gather(v[0], d, idx); }, {t});
  }
}

TEST(OpsIndex, ScatterAddMatchesTorchSemanticsAndAccumulatesRepeats) {
  Var x = constant(Tensor::zeros({3, 2}));
  Var src = constant(iota({2, 2}) /* 0 1 / 2 3 */);
  // dim 0: out[index[i][j]][j] += src[i][j]; repeats add up.
  EXPECT_EQ(vals(scatter_add(x, 0, IndexTensor({2, 2}, {2, 0, 2, 2}), src)),
            (std::vector<float>{0, 1, 0, 0, 2, 3}));
  // index smaller than src: only its positions are used.
  EXPECT_EQ(vals(scatter_add(x, 1, IndexTensor({1, 1}, {1}), src)),
            (std::vector<float>{0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(vals(scatter_add(constant(iota({3, 2})), 1, IndexTensor({2, 1}, {1, 0}), src)),
            (std::vector<float>{0, 1, 4, 3, 4, 5}));
  for (int d = 0; d < 3; ++d) {
    SCOPED_TRACE("dim " + std::to_string(d));
    std::mt19937_64 rng(7 + d);
    const Shape xs{3, 4, 2};
    Shape ss{3, 4, 2};
    ss[d] = 5;
    Shape is = xs;
    is[d] = 4;
    std::vector<int> iv(static_cast<std::size_t>(is.numel()));
    for (int& v : iv) v = static_cast<int>(rng() % static_cast<unsigned>(xs[d]));
    const IndexTensor idx(is, iv);
    expect_gradients_match([d, idx](const V& v) { return scatter_add(v[0], d, idx, v[1]); },
                           {rnd(xs, 1), rnd(ss, 2)});
  }
}

TEST(OpsIndex, IndexSelectForwardAndGradient) {
  Var x = constant(iota({2, 3}));
  EXPECT_EQ(vals(index_select(x, 1, {2, 0, 2})), (std::vector<float>{2, 0, 2, 5, 3, 5}));
  EXPECT_EQ(vals(index_select(x, 0, {1})), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(index_select(x, -1, {}).shape(), (Shape{2, 0}));
  for (int d = 0; d < 3; ++d)
    expect_gradients_match(
        [d](const V& v) {
          return index_select(v[0], d, {1, 0, 1, 1});
        },
        {rnd({2, 3, 4}, 5 + d)});
}

// ---------------------------------------------------------------- topk

TEST(OpsIndex, TopkValuesIndicesAndTies) {
  Var x = constant(Tensor::from({2, 5}, {3, 1, 3, 7, 1, -1, -2, 0, -2, 5}));
  TopK t = topk(x, 3);
  EXPECT_EQ(vals(t.values), (std::vector<float>{7, 3, 3, 5, 0, -1}));
  EXPECT_EQ(t.indices.values, (std::vector<int>{3, 0, 2, 4, 2, 0}));  // tie 3,3: lower index first
  EXPECT_EQ(t.indices.shape, (Shape{2, 3}));
  TopK s = topk(x, 2, false);
  EXPECT_EQ(vals(s.values), (std::vector<float>{1, 1, -2, -2}));
  EXPECT_EQ(s.indices.values, (std::vector<int>{1, 4, 1, 3}));
  // NaN ranks as the largest value.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  TopK n = topk(constant(Tensor::from({4}, {1, nan, 2, 0})), 2);
  EXPECT_EQ(n.indices.values, (std::vector<int>{1, 2}));
  EXPECT_EQ(topk(x, 0).values.shape(), (Shape{2, 0}));
  EXPECT_EQ(topk(x, 5).indices.values, (std::vector<int>{3, 0, 2, 1, 4, 4, 2, 0, 1, 3}));
}

TEST(OpsIndex, TopkGradientGoesToSelectedPositions) {
  Var x = parameter(Tensor::from({1, 4}, {0.5f, 2, -1, 1}));
  TopK t = topk(x, 2);
  backward(sum(mul(t.values, constant(Tensor::from({1, 2}, {10, 20})))));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0, 10, 0, 20}));
  std::mt19937_64 rng(3);
  auto d = testing::spaced_distinct({Shape{3, 2, 6}}, rng);
  expect_gradients_match([](const V& v) { return topk(v[0], 4).values; }, d);
  expect_gradients_match([](const V& v) { return topk(v[0], 1, false).values; }, d);
}

TEST(OpsIndex, TopkBitIdenticalAcrossThreadCounts) {
  const Tensor x = rnd({512, 200}, 8);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    Var p = parameter(x);
    TopK t = topk(p, 17);
    backward(sum(mul(t.values, t.values)));
    std::vector<float> all = t.values.value().to_vector();
    for (int i : t.indices.values) all.push_back(static_cast<float>(i));
    auto g = p.grad().to_vector();
    all.insert(all.end(), g.begin(), g.end());
    return all;
  };
  EXPECT_TRUE(run(1) == run(2));
  EXPECT_TRUE(run(2) == run(4));
}

// ---------------------------------------------------------------- batched matmul

TEST(OpsIndex, BatchedMatmulFormsAndGradients) {
  const Tensor a = rnd({3, 2, 4}, 1), b = rnd({3, 4, 5}, 2), w = rnd({4, 5}, 3);
  Tensor y = bmm(constant(a), constant(b)).value();
  Tensor y2 = matmul(constant(a), constant(w)).value();
  ASSERT_EQ(y.shape(), (Shape{3, 2, 5}));
  ASSERT_EQ(y2.shape(), (Shape{3, 2, 5}));
  for (int bi = 0; bi < 3; ++bi)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 5; ++j) {
        double s = 0, s2 = 0;
        for (int k = 0; k < 4; ++k) {
          s += a.data()[(bi * 2 + i) * 4 + k] * b.data()[(bi * 4 + k) * 5 + j];
          s2 += a.data()[(bi * 2 + i) * 4 + k] * w.data()[k * 5 + j];
        }
        EXPECT_NEAR(y.data()[(bi * 2 + i) * 5 + j], s, 1e-5);
        EXPECT_NEAR(y2.data()[(bi * 2 + i) * 5 + j], s2, 1e-5);
      }
  expect_gradients_match([](const V& v) { return bmm(v[0], v[1]); }, {a, b});
  expect_gradients_match([](const V& v) { return matmul(v[0], v[1]); },
                         {a, w});  // shared 2-D right operand
  expect_gradients_match([](const V& v) { return matmul(v[0], v[1]); },
                         {rnd({2, 3, 2, 4}, 4), rnd({2, 3, 4, 3}, 5)});
}

TEST(OpsIndex, BatchedMatmulBitIdenticalAcrossThreadCounts) {
  const Tensor a = rnd({48, 32, 40}, 6), b = rnd({48, 40, 24}, 7);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    Var pa = parameter(a), pb = parameter(b);
    Var y = bmm(pa, pb);
    backward(sum(mul(y, y)));
    std::vector<float> all = y.value().to_vector();
    for (const Var* p : {&pa, &pb}) {
      auto g = p->grad().to_vector();
      all.insert(all.end(), g.begin(), g.end());
    }
    return all;
  };
  EXPECT_TRUE(run(1) == run(2));
  EXPECT_TRUE(run(2) == run(4));
}

// ---------------------------------------------------------------- errors

TEST(OpsIndex, ErrorsNameOpIndexAndBound) {
  Var x = constant(Tensor::zeros({3, 4}));
  expect_invalid(
      [&] {
        IndexTensor({2, 2}, {0, 1, 2});
      },
      "IndexTensor: 3 values for shape [2, 2] (needs 4)");
  expect_invalid([&] { slice(x, 1, 1, 5); },
                 "slice: range [1, 5) is not within [0, 4] along dim 1 of [3, 4]");
  expect_invalid([&] { slice(x, 0, 2, 1); }, "slice: range [2, 1)");
  expect_invalid([&] { slice(x, 0, 0, 1, 0); }, "slice: step must be >= 1, got 0");
  expect_invalid([&] { slice(x, 2, 0, 1); },
                 "slice: bad shape [3, 4] (dim 2 out of range for rank 2)");
  expect_invalid(
      [&] {
        gather(x, 1, IndexTensor({3, 1}, {0, 4, 1}));
      },
      "gather: index 4 out of range [0, 4) along dim 1 of [3, 4]");
  expect_invalid(
      [&] {
        gather(x, 0, IndexTensor({1, 1}, {-1}));
      },
      "gather: index -1 out of range [0, 3) along dim 0 of [3, 4]");
  expect_invalid(
      [&] {
        gather(x, 1, IndexTensor({3}, {0, 1, 2}));
      },
      "gather: incompatible shapes [3, 4] and [3] (index must have the rank of x)");
  expect_invalid(
      [&] {
        gather(x, 1, IndexTensor({4, 1}, {0, 1, 2, 3}));
      },
      "gather: incompatible shapes [3, 4] and [4, 1] (index larger than x along dim 0)");
  Var src = constant(Tensor::zeros({2, 4}));
  expect_invalid(
      [&] {
        scatter_add(x, 0, IndexTensor({2, 1}, {0, 3}), src);
      },
      "scatter_add: index 3 out of range [0, 3) along dim 0 of [3, 4]");
  expect_invalid(
      [&] {
        scatter_add(x, 0, IndexTensor({3, 1}, {0, 1, 2}), src);
      },
      "scatter_add: incompatible shapes [2, 4] and [3, 1] (index larger than src along dim 0)");
  expect_invalid(
      [&] {
        scatter_add(x, 0, IndexTensor({1, 1}, {0}), constant(Tensor::zeros({4})));
      },
      "scatter_add: incompatible shapes [3, 4] and [4] (src must have the rank of x)");
  expect_invalid(
      [&] {
        index_select(x, 0, {0, 3});
      },
      "index_select: index 3 out of range [0, 3) along dim 0 of [3, 4]");
  expect_invalid([&] { topk(x, 5); }, "topk: k = 5 out of range [0, 4] for last dim of [3, 4]");
  expect_invalid([&] { topk(constant(Tensor::scalar(1)), 1); },
                 "topk: bad shape [] (needs rank >= 1)");
  expect_invalid([&] { bmm(x, x); },
                 "bmm: incompatible shapes [3, 4] and [3, 4] (both operands must be");
  expect_invalid(
      [&] {
        bmm(constant(Tensor::zeros({2, 3, 4})), constant(Tensor::zeros({3, 4, 5})));
      },
      "bmm: incompatible shapes [2, 3, 4] and [3, 4, 5] (batch sizes differ)");
  expect_invalid(
      [&] {
        bmm(constant(Tensor::zeros({2, 3, 4})), constant(Tensor::zeros({2, 3, 5})));
      },
      "bmm: incompatible shapes [2, 3, 4] and [2, 3, 5] (inner dimensions differ)");
}

}  // namespace
}  // namespace hwnas::nn
