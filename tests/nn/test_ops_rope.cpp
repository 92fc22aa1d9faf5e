// Rotary position embedding (nn::rope): hand values, the relative-position property that is its
// reason to exist, norm preservation, and each bad input's message.  Gradients: test_op_coverage.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "nn/ops.hpp"

namespace hwnas::nn {
namespace {

float dot_rows(const Tensor& t, int a, int b) {
  const int d = t.dim(-1);
  float s = 0;
  for (int j = 0; j < d; ++j) s += t.data()[a * d + j] * t.data()[b * d + j];
  return s;
}

TEST(Rope, RotatesEachPairByPositionTimesItsFrequency) {
  // One head of 4 channels, base 100: theta_0 = 1, theta_1 = 100^(-2/4) = 0.1.
  Tensor x(Shape{3, 4});
  for (int m = 0; m < 3; ++m) {
    x.data()[m * 4 + 0] = 1;  // pair 0 = (1, 0)
    x.data()[m * 4 + 1] = 0;
    x.data()[m * 4 + 2] = 0;  // pair 1 = (0, 2)
    x.data()[m * 4 + 3] = 2;
  }
  const Tensor y = rope(constant(x), 1, 100.0).value();
  for (int m = 0; m < 3; ++m) {
    EXPECT_NEAR(y.data()[m * 4 + 0], std::cos(m * 1.0), 1e-6) << m;
    EXPECT_NEAR(y.data()[m * 4 + 1], std::sin(m * 1.0), 1e-6) << m;
    EXPECT_NEAR(y.data()[m * 4 + 2], -2 * std::sin(m * 0.1), 1e-6) << m;
    EXPECT_NEAR(y.data()[m * 4 + 3], 2 * std::cos(m * 0.1), 1e-6) << m;
  }
}

// q at position m and k at position n score the same as q at m + s and k at n + s: the score
// sees only m - n.  Without rope it would not depend on positions at all; with an absolute
// embedding added it would depend on m and n separately.
TEST(Rope, ScoresDependOnlyOnRelativePosition) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<float> u(-1, 1);
  const int len = 12, d = 8, heads = 2;
  Tensor q(Shape{d}), k(Shape{d});
  for (int j = 0; j < d; ++j) {
    q.data()[j] = u(rng);
    k.data()[j] = u(rng);
  }
  auto score = [&](int m, int n, int head) {
    Tensor x(Shape{len, d}, 0.0f);
    for (int j = 0; j < d; ++j) {
      x.data()[m * d + j] = q.data()[j];
      if (n != m) x.data()[n * d + j] = k.data()[j];
    }
    const Tensor y = rope(constant(x), heads).value();
    float s = 0;
    for (int j = head * d / heads; j < (head + 1) * d / heads; ++j)
      s += y.data()[m * d + j] * y.data()[n * d + j];
    return s;
  };
  for (int head = 0; head < heads; ++head)
    for (int shift : {1, 3, 6}) {
      EXPECT_NEAR(score(5, 2, head), score(5 + shift, 2 + shift, head), 1e-5) << shift;
      EXPECT_NEAR(score(1, 4, head), score(1 + shift, 4 + shift, head), 1e-5) << shift;
    }
  // ... and does depend on the offset.
  EXPECT_GT(std::fabs(score(5, 2, 0) - score(5, 1, 0)), 1e-3);
}

TEST(Rope, PreservesNormsAndLeavesPositionZeroAlone) {
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<float> u(-1, 1);
  Tensor x(Shape{2, 6, 8});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = u(rng);
  const Tensor y = rope(constant(x), 4).value();
  for (int r = 0; r < 12; ++r) {
    Tensor a(Shape{1, 8}), b(Shape{1, 8});
    for (int j = 0; j < 8; ++j) {
      a.data()[j] = x.data()[r * 8 + j];
      b.data()[j] = y.data()[r * 8 + j];
    }
    EXPECT_NEAR(dot_rows(a, 0, 0), dot_rows(b, 0, 0), 1e-5) << r;
  }
  for (int batch = 0; batch < 2; ++batch)
    for (int j = 0; j < 8; ++j)
      EXPECT_EQ(y.data()[batch * 48 + j], x.data()[batch * 48 + j]);  // m = 0: no rotation
}

TEST(Rope, BadShapesNameTheProblem) {
  auto error_of = [](const Shape& s, int heads, double base) {
    try {
      rope(constant(Tensor(s, 0.0f)), heads, base);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of(Shape{4, 6}, 2, 1e4), "rope: heads 2 must divide D 6 into heads of even size");
  EXPECT_EQ(error_of(Shape{4, 8}, 3, 1e4), "rope: heads 3 must divide D 8 into heads of even size");
  EXPECT_EQ(error_of(Shape{8}, 1, 1e4), "rope: input must be [..., L, D], got rank 1");
  EXPECT_EQ(error_of(Shape{4, 8}, 1, 1.0), "rope: base must be > 1, got 1.000000");
}

}  // namespace
}  // namespace hwnas::nn
