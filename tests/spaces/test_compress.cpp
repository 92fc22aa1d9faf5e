// Weight compression: inference sessions reuse the compressed weights; training recomputes them.
#include <gtest/gtest.h>

#include "spaces/compress.hpp"

using namespace hwnas;

TEST(Compress, InferenceSessionReusesCompressedWeightsTrainingDoesNot) {
  nn::Var w =
      nn::parameter(nn::Tensor::from(nn::Shape{2, 3}, {0.1f, -0.9f, 0.5f, 0.02f, -0.3f, 0.7f}));
  {
    nn::NoGradGuard session;
    nn::Var a = spaces::compress_weight(w, 8, 0.5);
    nn::Var b = spaces::compress_weight(w, 8, 0.5);
    EXPECT_EQ(a.node(), b.node()) << "same session, same weights: compressed once";
    // Half the entries (the 3 smallest magnitudes) are pruned.
    int zeros = 0;
    for (float v : a.value().to_vector()) zeros += v == 0.0f;
    EXPECT_EQ(zeros, 3);
    EXPECT_NE(spaces::compress_weight(w, 4, 0.5).node(), a.node()) << "other settings, other entry";
  }
  // An optimizer step between sessions changes the weights: the next session sees the new ones.
  w.value().data()[3] = 2.0f;  // 0.02 -> 2.0: no longer among the smallest
  nn::Var c;
  {
    nn::NoGradGuard session;
    c = spaces::compress_weight(w, 8, 0.5);
  }
  EXPECT_NE(c.value().data()[3], 0.0f);
  // With grad on, every call builds a fresh node that routes gradients to the kept entries.
  nn::Var t1 = spaces::compress_weight(w, 8, 0.5);
  nn::Var t2 = spaces::compress_weight(w, 8, 0.5);
  EXPECT_NE(t1.node(), t2.node());
  EXPECT_TRUE(t1.requires_grad());
}

// Each output channel (dim 0) has its own scale: a channel of small weights keeps its values
// instead of rounding to zero next to a large one (per-tensor int4 would zero row 1 entirely).
TEST(Compress, Int4ScalesPerOutputChannel) {
  nn::Var w =
      nn::parameter(nn::Tensor::from(nn::Shape{2, 3}, {1.0f, 0.6f, -0.25f, 0.01f, 0.02f, -0.03f}));
  const auto q = spaces::compress_weight(w, 4, 0).value().to_vector();
  const float s0 = 1.0f / 7, s1 = 0.03f / 7;  // max |w| of each row over qmax = 7
  // 0.6 * 7 = 4.2 -> 4, -0.25 * 7 = -1.75 -> -2; 0.01 / s1 = 2.33 -> 2, 0.02 / s1 = 4.67 -> 5.
  const std::vector<float> expected = {7 * s0, 4 * s0, -2 * s0, 2 * s1, 5 * s1, -7 * s1};
  ASSERT_EQ(q.size(), expected.size());
  for (std::size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(q[i], expected[i], 1e-7f) << i;
  // A vector (a bias) has a single scale.
  nn::Var b = nn::parameter(nn::Tensor::from(nn::Shape{3}, {1.0f, 0.01f, -0.6f}));
  const auto qb = spaces::compress_weight(b, 4, 0).value().to_vector();
  EXPECT_FLOAT_EQ(qb[1], 0.0f);
  EXPECT_FLOAT_EQ(qb[2], -4.0f / 7);
}
