// Per-token cross-entropy with an ignore index: values against hand-computed ones, agreement
// with plain cross_entropy when nothing is ignored, gradients by finite differences, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "nn/autograd.hpp"
#include "nn/ops.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

Tensor rnd(const Shape& s, std::uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  return random_tensor(s, rng, lo, hi);
}
}  // namespace

TEST(TokenCrossEntropy, IgnoredRowsDoNotCount) {
  // Rows: [1,2,3] label 0 -> 2.4076059; [0,0,0] ignored; [0,0,0] label 2 -> 1.0986123.
  Var x = constant(Tensor::from({1, 3, 3}, {1, 2, 3, 0, 0, 0, 0, 0, 0}));
  EXPECT_NEAR(token_cross_entropy(x, {0, -1, 2}).value().item(), (2.4076059f + 1.0986123f) / 2,
              1e-5f);
  // A different ignore index; -1 is then an error, 7 is skipped.
  EXPECT_NEAR(token_cross_entropy(x, {0, 7, 2}, 7).value().item(), (2.4076059f + 1.0986123f) / 2,
              1e-5f);
  // Nothing labelled: zero loss, zero gradient.
  Var p = parameter(Tensor::from({2, 2}, {1, 2, 3, 4}));
  Var l = token_cross_entropy(p, {-1, -1});
  EXPECT_EQ(l.value().item(), 0.0f);
  backward(l);
  for (std::int64_t i = 0; i < 4; ++i) EXPECT_EQ(p.grad().data()[i], 0.0f);
}

TEST(TokenCrossEntropy, EqualsCrossEntropyWithoutIgnoredRows) {
  Tensor t = rnd({4, 5}, 1, -2, 2);
  EXPECT_NEAR(token_cross_entropy(constant(t), {1, 0, 4, 2}).value().item(),
              cross_entropy(constant(t), {1, 0, 4, 2}).value().item(), 1e-6f);
}

TEST(TokenCrossEntropy, GradientsMatchFiniteDifferences) {
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return token_cross_entropy(v[0], {1, -1, 4, 2, -1, 0});
      },
      {rnd({2, 3, 5}, 3, -2, 2)});
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return token_cross_entropy(v[0], {3, 3, -1});
      },
      {rnd({3, 4}, 4, -2, 2)});
}

TEST(TokenCrossEntropy, BadInputsNameTheOp) {
  Var a = constant(Tensor::zeros({2, 3}));
  expect_invalid([&] { token_cross_entropy(a, {0}); }, "token_cross_entropy");
  expect_invalid([&] { token_cross_entropy(a, {0, 3}); }, "label 3 out of range [0, 3)");
  expect_invalid([&] { token_cross_entropy(a, {0, -2}); }, "label -2");
  expect_invalid(
      [&] {
        token_cross_entropy(constant(Tensor::zeros({3})), {0, 0, 0});
      },
      "rank >= 2");
}

}  // namespace hwnas::nn
