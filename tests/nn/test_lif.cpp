// Fused LIF op (nn/lif.hpp): finite differences cannot see through the Heaviside, so the forward
// is checked against a naive step-by-step loop and the backward against the same recurrence
// built from unfused nn ops with nn::step (same surrogate), on the input current, beta and the
// threshold; plus thread-count independence, encoders and the error messages.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "nn/lif.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_invalid;
using testing::random_tensor;

Var scalar_param(float v) { return parameter(Tensor(Shape{1}, v)); }

// Naive loop over b, t, n exactly as the header's equations read.
Tensor naive_lif(const Tensor& cur, float beta, float th, const LifOptions& o) {
  const int B = cur.dim(0), T = cur.dim(1), N = cur.dim(2);
  Tensor out(cur.shape(), 0.0f);
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < N; ++n) {
      float v = 0.0f;
      int wait = 0;
      for (int t = 0; t < T; ++t) {
        const std::int64_t i = (static_cast<std::int64_t>(b) * T + t) * N + n;
        const bool active = wait == 0;
        const float m = active ? beta * v + cur.data()[i] : beta * v;
        const float s = active && m >= th ? 1.0f : 0.0f;
        v = o.reset == LifReset::Subtract ? m - th * s : (s > 0.0f ? 0.0f : m);
        if (s > 0.0f)
          wait = o.refractory_steps;
        else if (!active)
          --wait;
        out.data()[i] = s;
      }
    }
  return out;
}

// The same recurrence from primitive ops; the refractory mask is a constant read off the
// reference's own spikes (it has no gradient in the fused op either).
Var unfused_lif(const Var& cur, const Var& beta, const Var& th, const LifOptions& o) {
  const int B = cur.dim(0), T = cur.dim(1), N = cur.dim(2);
  Var v = constant(Tensor(Shape{B, N}, 0.0f));
  std::vector<int> wait(static_cast<std::size_t>(B) * N, 0);
  std::vector<Var> steps;
  for (int t = 0; t < T; ++t) {
    Tensor mask(Shape{B, N});
    for (std::size_t i = 0; i < wait.size(); ++i) mask.data()[i] = wait[i] == 0 ? 1.0f : 0.0f;
    const Var a = constant(mask);
    const Var i_t = reshape(slice(cur, 1, t, t + 1), Shape{B, N});
    const Var m = add(mul(v, beta), mul(i_t, a));
    const Var s = mul(step(sub(m, th), o.surrogate), a);
    v = o.reset == LifReset::Subtract ? sub(m, mul(s, th))
                                      : mul(m, add_scalar(scale(s, -1.0f), 1.0f));
    for (std::size_t i = 0; i < wait.size(); ++i) {
      const bool active = mask.data()[i] > 0.0f;
      if (s.value().data()[i] > 0.0f)
        wait[i] = o.refractory_steps;
      else if (!active)
        --wait[i];
    }
    steps.push_back(reshape(s, Shape{B, 1, N}));
  }
  return concat(steps, 1);
}

std::vector<LifOptions> option_grid() {
  std::vector<LifOptions> grid;
  for (LifReset r : {LifReset::Subtract, LifReset::Zero})
    for (int refr : {0, 2})
      for (Surrogate s : {Surrogate::fast_sigmoid(5.0f), Surrogate::arctan(2.0f)})
        grid.push_back({r, refr, s});
  return grid;
}

TEST(Lif, ForwardMatchesNaiveLoop) {
  std::mt19937_64 rng(3);
  const Tensor cur = random_tensor(Shape{3, 9, 7}, rng, -0.5f, 1.5f);
  for (const LifOptions& o : option_grid()) {
    const Var s =
        lif(constant(cur), constant(Tensor(Shape{1}, 0.8f)), constant(Tensor(Shape{1}, 1.0f)), o);
    const Tensor ref = naive_lif(cur, 0.8f, 1.0f, o);
    ASSERT_EQ(0, std::memcmp(s.value().data(), ref.data(), sizeof(float) * ref.numel()));
  }
}

TEST(Lif, RefractoryNeuronIgnoresInputForItsSteps) {
  // Constant strong drive: without refractory a spike every step, with 2 steps one in three.
  const Tensor cur(Shape{1, 7, 1}, 5.0f);
  LifOptions o;
  o.refractory_steps = 2;
  const Var s =
      lif(constant(cur), constant(Tensor(Shape{1}, 0.5f)), constant(Tensor(Shape{1}, 1.0f)), o);
  const std::vector<float> expect = {1, 0, 0, 1, 0, 0, 1};
  for (int t = 0; t < 7; ++t) EXPECT_EQ(s.value().data()[t], expect[t]) << "t = " << t;
}

TEST(Lif, BackwardMatchesUnfusedStepOps) {
  std::mt19937_64 rng(11);
  for (const LifOptions& o : option_grid()) {
    SCOPED_TRACE("reset " + std::to_string(static_cast<int>(o.reset)) + " refractory " +
                 std::to_string(o.refractory_steps) + " surrogate " +
                 std::to_string(static_cast<int>(o.surrogate.kind)));
    const Tensor cur = random_tensor(Shape{4, 6, 5}, rng, -0.3f, 1.2f);
    const Tensor proj = random_tensor(cur.shape(), rng, -1.0f, 1.0f);
    Var x1 = parameter(cur), b1 = scalar_param(0.85f), t1 = scalar_param(0.9f);
    Var x2 = parameter(cur), b2 = scalar_param(0.85f), t2 = scalar_param(0.9f);
    const Var s1 = lif(x1, b1, t1, o);
    const Var s2 = unfused_lif(x2, b2, t2, o);
    ASSERT_EQ(0, std::memcmp(s1.value().data(), s2.value().data(), sizeof(float) * cur.numel()));
    backward(sum(mul(s1, constant(proj))));
    backward(sum(mul(s2, constant(proj))));
    testing::expect_close(x1.grad(), x2.grad(), 1e-5f);
    testing::expect_close(b1.grad(), b2.grad(), 1e-4f);
    testing::expect_close(t1.grad(), t2.grad(), 1e-4f);
    EXPECT_NE(b1.grad().data()[0], 0.0f);
    EXPECT_NE(t1.grad().data()[0], 0.0f);
  }
}

TEST(Lif, BitIdenticalAcrossThreadCounts) {
  std::mt19937_64 rng(5);
  const Tensor cur = random_tensor(Shape{64, 8, 300}, rng, -0.2f, 1.0f);
  const Tensor proj = random_tensor(cur.shape(), rng, -1.0f, 1.0f);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    return run_isolated([&] {
      Var x = parameter(cur), b = scalar_param(0.9f), th = scalar_param(0.7f);
      LifOptions o;
      o.refractory_steps = 1;
      const Var s = lif(x, b, th, o);
      backward(sum(mul(s, constant(proj))));
      return std::vector<Tensor>{s.value().clone(), x.grad().clone(), b.grad().clone(),
                                 th.grad().clone()};
    });
  };
  const auto one = run(1), two = run(2);
  for (std::size_t i = 0; i < one.size(); ++i)
    ASSERT_EQ(0, std::memcmp(one[i].data(), two[i].data(), sizeof(float) * one[i].numel()))
        << "output " << i;
}

TEST(Lif, RejectsBadInputsWithClearMessages) {
  const Var cur = constant(Tensor(Shape{2, 3, 4}, 0.5f));
  const Var beta = constant(Tensor(Shape{1}, 0.9f)), th = constant(Tensor(Shape{1}, 1.0f));
  expect_invalid(
      [&] {
        lif(constant(Tensor(Shape{2, 3}, 0.0f)), beta, th);
      },
      "lif: current must be [B, T, N], got [2, 3]");
  expect_invalid([&] { lif(cur, constant(Tensor(Shape{1}, 1.5f)), th); },
                 "lif: beta (membrane decay) must be in [0, 1], got 1.5");
  expect_invalid([&] { lif(cur, beta, constant(Tensor(Shape{1}, 0.0f))); },
                 "lif: threshold must be a finite value > 0, got 0");
  expect_invalid([&] { lif(cur, constant(Tensor(Shape{2}, 0.5f)), th); },
                 "lif: beta must be a 1-element tensor, got [2]");
  LifOptions o;
  o.refractory_steps = -1;
  expect_invalid([&] { lif(cur, beta, th, o); }, "lif: refractory_steps must be >= 0, got -1");
  o.refractory_steps = 0;
  o.surrogate.slope = 0.0f;
  expect_invalid([&] { lif(cur, beta, th, o); }, "surrogate slope must be a finite value > 0");
  std::mt19937_64 rng(1);
  expect_invalid([&] { encode_direct(cur, 0); }, "encode_direct: steps must be >= 1, got 0");
  expect_invalid([&] { encode_rate(cur, 0, rng); }, "encode_rate: steps must be >= 1, got 0");
}

TEST(SpikeEncoders, DirectRepeatsTheInputAndSumsItsGradient) {
  std::mt19937_64 rng(2);
  Var x = parameter(random_tensor(Shape{2, 1, 2, 3}, rng));
  const Var y = encode_direct(x, 4);
  ASSERT_EQ(y.shape(), (Shape{2, 4, 6}));
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 4; ++t)
      for (int f = 0; f < 6; ++f)
        EXPECT_EQ(y.value().data()[(b * 4 + t) * 6 + f], x.value().data()[b * 6 + f]);
  backward(sum(y));
  for (std::int64_t i = 0; i < x.value().numel(); ++i) EXPECT_EQ(x.grad().data()[i], 4.0f);
}

TEST(SpikeEncoders, RateIsBernoulliWithClampedProbabilityAndSeeded) {
  Tensor xt(Shape{1, 4});
  const float p[4] = {-1.0f, 0.25f, 0.75f, 3.0f};  // clamped to 0, .25, .75, 1
  std::copy(p, p + 4, xt.data());
  const Var x = constant(xt);
  std::mt19937_64 r1(9), r2(9);
  const Var a = encode_rate(x, 4000, r1), b = encode_rate(x, 4000, r2);
  ASSERT_EQ(a.shape(), (Shape{1, 4000, 4}));
  ASSERT_EQ(0, std::memcmp(a.value().data(), b.value().data(), sizeof(float) * a.value().numel()));
  double count[4] = {0, 0, 0, 0};
  for (int t = 0; t < 4000; ++t)
    for (int f = 0; f < 4; ++f) {
      const float s = a.value().data()[t * 4 + f];
      ASSERT_TRUE(s == 0.0f || s == 1.0f);
      count[f] += s;
    }
  EXPECT_EQ(count[0], 0.0);
  EXPECT_NEAR(count[1] / 4000, 0.25, 0.03);
  EXPECT_NEAR(count[2] / 4000, 0.75, 0.03);
  EXPECT_EQ(count[3], 4000.0);
  EXPECT_FALSE(a.requires_grad());
}

}  // namespace
}  // namespace hwnas::nn
