// nn/ops_math.cpp: forward values against hand-computed ones, broadcasting, gradients (including
// the parallel same-shape paths), edge conventions (ties, kinks, softplus stability), errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
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

void expect_values(const Tensor& t, const std::vector<float>& v, float tol = 1e-5f) {
  ASSERT_EQ(t.numel(), static_cast<std::int64_t>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(t.data()[i], v[i], tol) << "element " << i;
}

Var c(const Shape& s, const std::vector<float>& v) { return constant(Tensor::from(s, v)); }

// Gradient of sum(f(x) * 1) w.r.t. each input, as plain vectors.
std::vector<std::vector<float>> grads(const std::function<Var(const V&)>& f,
                                      const std::vector<Tensor>& in) {
  V vars;
  for (const auto& t : in) vars.push_back(parameter(t.clone()));
  backward(sum(f(vars)));
  std::vector<std::vector<float>> out;
  for (const auto& v : vars) out.push_back(v.grad().to_vector());
  return out;
}

TEST(OpsMath, BinaryForwardHandComputed) {
  Var a = c({2, 2}, {1, 2, 3, 4});
  Var b = c({2}, {2, 8});
  expect_values(div(a, b).value(), {0.5f, 0.25f, 1.5f, 0.5f});
  expect_values(pow(c({3}, {2, 3, 4}), c({3}, {3, 0.5f, -1})).value(), {8, std::sqrt(3.0f), 0.25f});
  expect_values(maximum(a, c({2, 1}, {1.5f, 3.5f})).value(), {1.5f, 2, 3.5f, 4});
  expect_values(minimum(a, c({2, 1}, {1.5f, 3.5f})).value(), {1, 1.5f, 3, 3.5f});
  const Tensor mask = Tensor::from({2, 2}, {1, 0, 0, 1});
  expect_values(where(mask, a, b).value(), {1, 8, 2, 4});
  expect_values(where(Tensor::from({2}, {0, 1}), a, c({2, 1}, {-1, -2})).value(), {-1, 2, -2, 4});
}

TEST(OpsMath, UnaryForwardHandComputed) {
  Var x = c({5}, {-2, -0.5f, 0, 0.25f, 4});
  expect_values(abs(x).value(), {2, 0.5f, 0, 0.25f, 4});
  expect_values(sqrt(c({3}, {0, 0.25f, 9})).value(), {0, 0.5f, 3});
  expect_values(pow(x, 2.0f).value(), {4, 0.25f, 0, 0.0625f, 16});
  expect_values(pow(x, 3.0f).value(), {-8, -0.125f, 0, 0.015625f, 64});
  expect_values(clamp(x, -1, 1).value(), {-1, -0.5f, 0, 0.25f, 1});
  expect_values(softplus(x).value(),
                {std::log1p(std::exp(-2.0f)), std::log1p(std::exp(-0.5f)), std::log(2.0f),
                 std::log1p(std::exp(0.25f)), std::log1p(std::exp(4.0f))});
  // beta and threshold as PyTorch: linear where beta x > threshold.
  expect_values(softplus(x, 2.0f, 1.0f).value(),
                {std::log1p(std::exp(-4.0f)) / 2, std::log1p(std::exp(-1.0f)) / 2,
                 std::log(2.0f) / 2, std::log1p(std::exp(0.5f)) / 2, 4.0f});
}

TEST(OpsMath, SoftplusIsStableAtExtremes) {
  Tensor y = softplus(c({4}, {-100, -30, 30, 1e4f})).value();
  EXPECT_GE(y.data()[0], 0.0f);  // e^-100 is below float's normal range
  EXPECT_NEAR(y.data()[0], 0.0f, 1e-30f);
  EXPECT_NEAR(y.data()[1], std::exp(-30.0f), 1e-18f);  // no cancellation in log1p
  EXPECT_FLOAT_EQ(y.data()[2], 30.0f);
  EXPECT_FLOAT_EQ(y.data()[3], 1e4f);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isfinite(y.data()[i]));
  // Far above the threshold in a narrow softplus (beta large): still no overflow.
  EXPECT_TRUE(std::isfinite(softplus(c({1}, {50}), 10.0f, 1000.0f).value().item()));
}

TEST(OpsMath, KinkAndTieConventionsMatchPyTorch) {
  // abs'(0) = 0; clamp passes the gradient on its (inclusive) bounds; maximum/minimum split ties.
  EXPECT_EQ(grads([](const V& v) { return abs(v[0]); }, {Tensor::from({3}, {-1, 0, 2})})[0],
            (std::vector<float>{-1, 0, 1}));
  EXPECT_EQ(
      grads([](const V& v) { return clamp(v[0], -1, 1); }, {Tensor::from({4}, {-1, 1, 2, -3})})[0],
      (std::vector<float>{1, 1, 0, 0}));
  auto g = grads([](const V& v) { return maximum(v[0], v[1]); },
                 {Tensor::from({3}, {1, 2, 3}), Tensor::from({3}, {1, 5, 0})});
  EXPECT_EQ(g[0], (std::vector<float>{0.5f, 0, 1}));
  EXPECT_EQ(g[1], (std::vector<float>{0.5f, 1, 0}));
  g = grads([](const V& v) { return minimum(v[0], v[1]); },
            {Tensor::from({2}, {4, 2}), Tensor::from({2}, {4, 5})});
  EXPECT_EQ(g[0], (std::vector<float>{0.5f, 1}));
  EXPECT_EQ(g[1], (std::vector<float>{0.5f, 0}));
  // pow(0, b >= 0): no gradient to the exponent (log 0 would poison it).
  g = grads([](const V& v) { return pow(v[0], v[1]); },
            {Tensor::from({2}, {0, 2}), Tensor::from({2}, {2, 3})});
  EXPECT_EQ(g[1][0], 0.0f);
  EXPECT_NEAR(g[1][1], 8.0f * std::log(2.0f), 1e-5f);
  EXPECT_EQ(g[0][0], 0.0f);
  EXPECT_NEAR(g[0][1], 12.0f, 1e-5f);
  // The mask gets no gradient; a and b get g where chosen.
  g = grads(
      [](const V& v) {
        return where(Tensor::from({2, 2}, {1, 0, 0, 1}), v[0], v[1]);
      },
      {Tensor::from({2, 2}, {1, 2, 3, 4}), Tensor::from({2}, {5, 6})});
  EXPECT_EQ(g[0], (std::vector<float>{1, 0, 0, 1}));
  EXPECT_EQ(g[1], (std::vector<float>{1, 1}));
}

TEST(OpsMath, GradientsBroadcastEveryWay) {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{2, 3}, {2, 3}},          {{2, 3}, {3}}, {{3}, {2, 3}}, {{2, 1, 3}, {4, 1}},
      {{2, 3, 4, 5}, {1, 1, 5}}, {{1}, {2, 2}}};
  std::uint64_t seed = 1;
  for (const auto& [sa, sb] : pairs) {
    SCOPED_TRACE(sa.str() + " with " + sb.str());
    std::mt19937_64 rng(seed++);
    expect_gradients_match([](const V& v) { return div(v[0], v[1]); },
                           {testing::random_away_from_zero(sa, rng, 0.5f, 1.5f),
                            testing::random_away_from_zero(sb, rng, 0.5f, 1.5f)});
    expect_gradients_match([](const V& v) { return pow(v[0], v[1]); },
                           {rnd(sa, seed++, 0.5f, 2.0f), rnd(sb, seed++, -1.0f, 2.0f)});
    auto d = testing::spaced_distinct({sa, sb}, rng);
    expect_gradients_match([](const V& v) { return maximum(v[0], v[1]); }, d);
    expect_gradients_match([](const V& v) { return minimum(v[0], v[1]); }, d);
  }
  // where broadcasting all three: mask [2,1], a [3], b [2,3].
  const Tensor mask = Tensor::from({2, 1}, {0, 1});
  expect_gradients_match([mask](const V& v) { return where(mask, v[0], v[1]); },
                         {rnd({3}, 40), rnd({2, 3}, 41)});
}

TEST(OpsMath, LargeInputsParallelPathsMatchSerialFormula) {
  // 70k elements: the same-shape loops run in several chunks.
  const Shape s{7, 100, 100};
  std::mt19937_64 rng(3);
  auto d = testing::spaced_distinct({s, s}, rng, 1e-3f);
  Tensor a = rnd(s, 4, 0.5f, 2.0f), b = rnd(s, 5, 0.5f, 2.0f);
  Tensor q = div(constant(a), constant(b)).value();
  Tensor m = maximum(constant(d[0]), constant(d[1])).value();
  Tensor sp = softplus(constant(d[0]), 3.0f, 20.0f).value();
  for (std::int64_t i = 0; i < a.numel(); i += 997) {
    EXPECT_FLOAT_EQ(q.data()[i], a.data()[i] / b.data()[i]);
    EXPECT_EQ(m.data()[i], std::max(d[0].data()[i], d[1].data()[i]));
    const float z = 3.0f * d[0].data()[i];
    EXPECT_NEAR(sp.data()[i], z > 20.0f ? d[0].data()[i] : std::log1p(std::exp(z)) / 3.0f, 1e-5f);
  }
  // Backward of the chunked paths against the closed forms (finite differences are too noisy on a
  // float sum over 70k outputs).
  Var pa = parameter(a), pb = parameter(b), px = parameter(d[0]);
  backward(add(sum(div(pa, pb)), sum(softplus(px, 3.0f, 20.0f))));
  for (std::int64_t i = 0; i < a.numel(); i += 997) {
    const float x = a.data()[i], y = b.data()[i];
    EXPECT_FLOAT_EQ(pa.grad().data()[i], 1.0f / y);
    EXPECT_FLOAT_EQ(pb.grad().data()[i], -(x / y) / y);
    const float z = 3.0f * d[0].data()[i];
    EXPECT_NEAR(px.grad().data()[i], z > 20.0f ? 1.0f : 1.0f / (1.0f + std::exp(-z)), 1e-6f);
  }
  // Finite differences at a size that still runs chunked for the transcendental ops.
  testing::GradCheckOptions opt;
  opt.max_elements_per_input = 16;
  opt.atol = 1e-2f;  // float sum over 4096 outputs: see OpsGrad.ActivationsLargeParallel
  const Shape sm{4, 1024};
  expect_gradients_match([](const V& v) { return softplus(v[0]); }, {rnd(sm, 6, -3, 3)}, opt);
}

// ---------------------------------------------------------------- cumsum

Tensor naive_cumsum(const Tensor& x, int dim, bool reverse = false) {
  const Shape& s = x.shape();
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (int i = dim + 1; i < s.rank(); ++i) inner *= s[i];
  const std::int64_t len = s[dim];
  Tensor out(s);
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i)
      for (std::int64_t j = 0; j < len; ++j) {
        double acc = 0;
        for (std::int64_t t = 0; t < len; ++t)
          if (reverse ? t >= j : t <= j) acc += x.data()[(o * len + t) * inner + i];
        out.data()[(o * len + j) * inner + i] = static_cast<float>(acc);
      }
  return out;
}

TEST(OpsMath, CumsumEveryAxisMatchesNaive) {
  expect_values(cumsum(c({2, 3}, {1, 2, 3, 4, 5, 6}), 1).value(), {1, 3, 6, 4, 9, 15});
  expect_values(cumsum(c({2, 3}, {1, 2, 3, 4, 5, 6}), 0).value(), {1, 2, 3, 5, 7, 9});
  const Tensor x = rnd({2, 3, 4, 5}, 9);
  for (int d = 0; d < 4; ++d) {
    SCOPED_TRACE("dim " + std::to_string(d));
    expect_close(cumsum(constant(x), d).value(), naive_cumsum(x, d), 1e-5f);
    expect_close(cumsum(constant(x), d - 4).value(), naive_cumsum(x, d), 1e-5f);
    expect_gradients_match([d](const V& v) { return cumsum(v[0], d); }, {x});
    // Backward is the reverse cumsum of the incoming gradient.
    Var p = parameter(x);
    const Tensor g = rnd(x.shape(), 10 + d);
    backward(sum(mul(cumsum(p, d), constant(g))));
    expect_close(p.grad(), naive_cumsum(g, d, true), 1e-5f);
  }
  expect_values(cumsum(c({1}, {3}), 0).value(), {3});
}

TEST(OpsMath, CumsumBitIdenticalAcrossThreadCounts) {
  const Tensor x = rnd({64, 300, 8}, 11);
  auto run = [&](int threads, int dim) {
    ThreadBudget budget(threads);
    Var p = parameter(x);
    Var y = cumsum(p, dim);
    backward(sum(mul(y, y)));
    std::vector<float> all = y.value().to_vector();
    auto g = p.grad().to_vector();
    all.insert(all.end(), g.begin(), g.end());
    return all;
  };
  for (int dim : {1, 2}) {
    EXPECT_TRUE(run(1, dim) == run(2, dim));
    EXPECT_TRUE(run(2, dim) == run(4, dim));
  }
}

// ---------------------------------------------------------------- errors

TEST(OpsMath, ErrorsNameOpAndValues) {
  Var a = constant(Tensor::zeros({2, 3}));
  Var b = constant(Tensor::zeros({4, 5}));
  expect_invalid([&] { div(a, b); }, "div: incompatible shapes [2, 3] and [4, 5]");
  expect_invalid([&] { pow(a, b); }, "pow: incompatible shapes [2, 3] and [4, 5]");
  expect_invalid([&] { maximum(a, b); }, "maximum: incompatible shapes [2, 3] and [4, 5]");
  expect_invalid([&] { minimum(b, a); }, "minimum: incompatible shapes [4, 5] and [2, 3]");
  expect_invalid(
      [&] {
        where(Tensor::zeros({2, 3}), a, b);
      },
      "where: incompatible shapes [2, 3] and [4, 5]");
  expect_invalid([&] { where(Tensor::zeros({4}), a, a); },
                 "where: incompatible shapes [2, 3] and [4]");
  expect_invalid([&] { clamp(a, 1.0f, -1.0f); }, "clamp: lo (1.000000) must be <= hi (-1.000000)");
  expect_invalid([&] { softplus(a, 0.0f); }, "softplus: beta must be a finite value > 0, got 0");
  expect_invalid([&] { cumsum(a, 2); }, "cumsum: bad shape [2, 3] (dim 2 out of range for rank 2)");
  expect_invalid([&] { cumsum(a, -3); }, "dim -3 out of range");
}

}  // namespace
}  // namespace hwnas::nn
