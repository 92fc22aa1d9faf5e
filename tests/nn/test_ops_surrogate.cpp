// step() (nn/ops_surrogate.cpp): exact Heaviside forward, and a backward that applies the
// published surrogate formulas (finite differences cannot test a surrogate: the true derivative
// is zero almost everywhere).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>

#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_invalid;

TEST(SurrogateStep, ForwardIsHeavisideWithStepAtZero) {
  Tensor x = Tensor::from({6}, {-1e-30f, -0.0f, 0.0f, 1e-30f, -3, 3});
  Tensor y = step(constant(x)).value();
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0, 1, 1, 1, 0, 1}));
}

TEST(SurrogateStep, FormulasAtKnownPoints) {
  const float pi = std::numbers::pi_v<float>;
  // fast sigmoid: 1 at 0, 1/(1+slope|x|)^2 elsewhere (snnTorch fast_sigmoid)
  EXPECT_FLOAT_EQ(surrogate_grad(Surrogate::fast_sigmoid(25), 0.0f), 1.0f);
  EXPECT_FLOAT_EQ(surrogate_grad(Surrogate::fast_sigmoid(25), 0.2f), 1.0f / 36.0f);
  EXPECT_FLOAT_EQ(surrogate_grad(Surrogate::fast_sigmoid(25), -0.2f), 1.0f / 36.0f);
  // arctan: slope/2 at 0; with slope 2 it is 1/(1+(pi x)^2) (SpikingJelly ATan, alpha = 2)
  EXPECT_FLOAT_EQ(surrogate_grad(Surrogate::arctan(2), 0.0f), 1.0f);
  EXPECT_FLOAT_EQ(surrogate_grad(Surrogate::arctan(2), 0.5f), 1.0f / (1.0f + pi * pi / 4.0f));
  EXPECT_FLOAT_EQ(surrogate_grad(Surrogate::arctan(4), 0.0f), 2.0f);
  // straight-through: 1, clipped to |x| <= width/2 when width > 0
  EXPECT_EQ(surrogate_grad(Surrogate::straight_through(), 100.0f), 1.0f);
  EXPECT_EQ(surrogate_grad(Surrogate::straight_through(1.0f), 0.5f), 1.0f);
  EXPECT_EQ(surrogate_grad(Surrogate::straight_through(1.0f), -0.51f), 0.0f);
}

TEST(SurrogateStep, ArcTanIntegratesToOneLikeTheStep) {
  // The arctan surrogate is the derivative of atan(pi/2 slope x)/pi + 1/2, a smoothed step.
  for (float slope : {0.5f, 2.0f, 5.0f}) {
    const Surrogate s = Surrogate::arctan(slope);
    double area = 0;
    const double h = 1e-3;
    for (double x = -2000; x < 2000; x += h * (1 + std::fabs(x))) {
      const double w = h * (1 + std::fabs(x));
      area += w * surrogate_grad(s, static_cast<float>(x + w / 2));
    }
    EXPECT_NEAR(area, 1.0, 2e-3) << "slope " << slope;
  }
}

TEST(SurrogateStep, BackwardAppliesFormulaTimesIncomingGradient) {
  std::mt19937_64 rng(3);
  const Tensor xt = testing::random_tensor({300, 400}, rng, -2.0f, 2.0f);  // parallel path
  const Tensor g = testing::random_tensor(xt.shape(), rng, -1.0f, 1.0f);
  for (const Surrogate& s : {Surrogate::fast_sigmoid(10), Surrogate::arctan(3),
                             Surrogate::straight_through(), Surrogate::straight_through(0.8f)}) {
    Var x = parameter(xt);
    backward(sum(mul(step(x, s), constant(g))));
    for (std::int64_t i = 0; i < xt.numel(); i += 101)
      ASSERT_FLOAT_EQ(x.grad().data()[i], g.data()[i] * surrogate_grad(s, xt.data()[i]))
          << "element " << i;
    // A second backward accumulates onto the existing gradient.
    const float first = x.grad().data()[7];
    backward(sum(mul(step(x, s), constant(g))));
    EXPECT_FLOAT_EQ(x.grad().data()[7], 2 * first);
  }
}

TEST(SurrogateStep, BitIdenticalAcrossThreadCounts) {
  std::mt19937_64 rng(4);
  const Tensor xt = testing::random_tensor({512, 512}, rng);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    Var x = parameter(xt);
    Var y = step(x, Surrogate::arctan(2));
    backward(sum(mul(y, constant(xt))));
    std::vector<float> all = y.value().to_vector();
    auto gv = x.grad().to_vector();
    all.insert(all.end(), gv.begin(), gv.end());
    return all;
  };
  EXPECT_TRUE(run(1) == run(4));
}

TEST(SurrogateStep, RejectsBadParameters) {
  Var x = constant(Tensor::zeros({2}));
  expect_invalid([&] { step(x, Surrogate::fast_sigmoid(0)); },
                 "step: surrogate slope must be a finite value > 0, got 0");
  expect_invalid([&] { step(x, Surrogate::arctan(-1)); },
                 "step: surrogate slope must be a finite value > 0, got -1");
  expect_invalid([&] { step(x, Surrogate::straight_through(-0.5f)); },
                 "step: surrogate width must be a finite value >= 0 (0 = no clipping), got -0.5");
  expect_invalid([&] { step(x, Surrogate::arctan(INFINITY)); },
                 "step: surrogate slope must be a finite value > 0");
}

}  // namespace
}  // namespace hwnas::nn
