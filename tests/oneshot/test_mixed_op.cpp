// The mixed op: with one-hot architecture weights it is exactly the single op; the gradients of
// the architecture parameters (softmax and Gumbel-softmax) and of the input pass a
// finite-difference check.
#include <gtest/gtest.h>

#include "nn/ops.hpp"
#include "oneshot/mixed_op.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::oneshot;

namespace {

// The darts_cell candidate set (examples/spaces/darts_cell.json).
std::vector<CandidateOp> darts_ops() {
  return {{"none", "none", {}},
          {"skip_connect", "skip_connect", {}},
          {"nor_conv_1x1", "nor_conv_1x1", {}},
          {"nor_conv_3x3", "nor_conv_3x3", {}},
          {"avg_pool_3x3", "avg_pool_3x3", {}},
          {"dw_conv_5x5", "dwconv", {{"kernel", 5}}},
          {"max_pool_3x3", "pool", {{"op", "max"}, {"kernel", 3}, {"stride", 1}}}};
}

nn::Tensor one_hot(int n, int k) {
  nn::Tensor t(nn::Shape{n}, 0.0f);
  t.data()[k] = 1.0f;
  return t;
}

// Values of magnitude in [0.1, 1] with random signs: away from the kinks of ReLU and max.
nn::Tensor away_from_kinks(const nn::Shape& s, std::mt19937_64& rng) {
  nn::Tensor t = nn::testing::random_tensor(s, rng, 0.1f, 1.0f);
  std::bernoulli_distribution coin(0.5);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (coin(rng)) t.data()[i] = -t.data()[i];
  return t;
}

TEST(MixedOp, OneHotWeightsEqualTheSingleOpExactly) {
  const auto ops = darts_ops();
  const auto type = spaces::TensorType::image(4, 6, 6);
  spaces::Rng rng(3);
  MixedOp m(ops, type, rng);
  ASSERT_EQ(m.size(), ops.size());
  std::mt19937_64 data_rng(5);
  const nn::Var x = nn::constant(nn::testing::random_tensor(nn::Shape{2, 4, 6, 6}, data_rng));
  for (bool training : {false, true}) {
    nn::ForwardContext ctx;
    ctx.training = training;
    for (std::size_t k = 0; k < ops.size(); ++k) {
      nn::Var w = nn::constant(one_hot(static_cast<int>(ops.size()), static_cast<int>(k)));
      const nn::Tensor mixed = m.forward(x, w, ctx).value();
      const nn::Tensor single = m.op(k).forward({x}, ctx).value();
      ASSERT_EQ(mixed.shape(), single.shape()) << ops[k].name;
      for (std::int64_t i = 0; i < mixed.numel(); ++i)
        ASSERT_EQ(mixed.data()[i], single.data()[i]) << ops[k].name << " element " << i;
    }
  }
}

TEST(MixedOp, IsTheWeightedSumOfItsOps) {
  const auto ops = darts_ops();
  spaces::Rng rng(4);
  MixedOp m(ops, spaces::TensorType::image(3, 5, 5), rng);
  std::mt19937_64 data_rng(6);
  const nn::Var x = nn::constant(nn::testing::random_tensor(nn::Shape{2, 3, 5, 5}, data_rng));
  nn::Tensor w = nn::testing::random_tensor(nn::Shape{static_cast<int>(ops.size())}, data_rng);
  nn::ForwardContext ctx;
  ctx.training = false;
  const nn::Tensor got = m.forward(x, nn::constant(w), ctx).value();
  nn::Tensor want = nn::Tensor::zeros(got.shape());
  for (std::size_t k = 0; k < ops.size(); ++k) {
    const nn::Tensor y = m.op(k).forward({x}, ctx).value();
    for (std::int64_t i = 0; i < y.numel(); ++i) want.data()[i] += w.data()[k] * y.data()[i];
  }
  nn::testing::expect_close(got, want, 1e-5f);
}

TEST(MixedOp, RefusesShapeChangingOpsAndWrongWeightCounts) {
  spaces::Rng rng(1);
  nn::testing::expect_invalid(
      [&] {
        MixedOp m({{"wide", "conv", {{"channels", 8}}}}, spaces::TensorType::image(4, 6, 6), rng);
      },
      "every op of an edge must keep the shape");
  MixedOp m(darts_ops(), spaces::TensorType::image(2, 4, 4), rng);
  nn::ForwardContext ctx;
  nn::testing::expect_invalid(
      [&] {
        m.forward(nn::constant(nn::Tensor::zeros(nn::Shape{1, 2, 4, 4})),
                  nn::constant(nn::Tensor::zeros(nn::Shape{3})), ctx);
      },
      "3 weights for 7 ops");
}

// Smooth candidates (no ReLU inside) plus the parameter-free ones, so the check sees no kinks.
std::vector<CandidateOp> smooth_ops() {
  return {{"none", "none", {}},
          {"skip_connect", "skip_connect", {}},
          {"conv3", "conv", {{"channels", 3}, {"kernel", 3}, {"activation", "none"}}},
          {"avg_pool_3x3", "avg_pool_3x3", {}},
          {"dw5", "dwconv", {{"kernel", 5}, {"activation", "none"}}}};
}

TEST(MixedOp, SoftmaxAlphaAndInputGradientsMatchFiniteDifferences) {
  spaces::Rng rng(7);
  const auto ops = smooth_ops();
  MixedOp m(ops, spaces::TensorType::image(3, 5, 5), rng);
  std::mt19937_64 data_rng(8);
  const nn::Tensor alpha =
      nn::testing::random_tensor(nn::Shape{1, static_cast<int>(ops.size())}, data_rng);
  const nn::Tensor x = away_from_kinks(nn::Shape{2, 3, 5, 5}, data_rng);
  nn::testing::expect_gradients_match(
      [&](const std::vector<nn::Var>& in) {
        nn::ForwardContext ctx;
        ctx.training = false;
        return m.forward(in[1], op_weights(in[0], false, 1.0f, nullptr), ctx);
      },
      {alpha, x});
}

TEST(MixedOp, GumbelSoftmaxAlphaGradientsMatchFiniteDifferences) {
  spaces::Rng rng(9);
  const auto ops = smooth_ops();
  MixedOp m(ops, spaces::TensorType::image(3, 5, 5), rng);
  std::mt19937_64 data_rng(10);
  const nn::Tensor alpha =
      nn::testing::random_tensor(nn::Shape{1, static_cast<int>(ops.size())}, data_rng);
  const nn::Tensor x = away_from_kinks(nn::Shape{2, 3, 5, 5}, data_rng);
  nn::testing::expect_gradients_match(
      [&](const std::vector<nn::Var>& in) {
        std::mt19937_64 gumbel_rng(11);  // the same draw in every evaluation
        nn::ForwardContext ctx;
        ctx.training = false;
        return m.forward(in[1], op_weights(in[0], true, 2.0f, &gumbel_rng), ctx);
      },
      {alpha, x});
}

TEST(OpWeights, GumbelSamplesAreSeededDistributionsThatSharpenWithTemperature) {
  const nn::Var alpha = nn::constant(nn::Tensor::from(nn::Shape{2, 3}, {0, 1, 2, 2, 1, 0}));
  std::mt19937_64 a(1), b(1);
  const nn::Tensor pa = op_weights(alpha, true, 1.0f, &a).value();
  const nn::Tensor pb = op_weights(alpha, true, 1.0f, &b).value();
  for (std::int64_t i = 0; i < pa.numel(); ++i) EXPECT_EQ(pa.data()[i], pb.data()[i]);
  for (int r = 0; r < 2; ++r)
    EXPECT_NEAR(pa.data()[r * 3] + pa.data()[r * 3 + 1] + pa.data()[r * 3 + 2], 1.0, 1e-6);
  // At a low temperature every row is nearly one-hot; the argmax follows alpha on average.
  std::mt19937_64 c(2);
  int follows = 0, sharp = 0;
  for (int t = 0; t < 200; ++t) {
    const nn::Tensor p = op_weights(alpha, true, 0.05f, &c).value();
    sharp += std::max({p.data()[0], p.data()[1], p.data()[2]}) > 0.9f;
    follows += p.data()[2] > p.data()[0] && p.data()[2] > p.data()[1];
  }
  // Only draws whose two best perturbed logits lie within ~0.1 stay soft (about 1 in 10).
  EXPECT_GT(sharp, 160);
  // P(argmax = 2) = softmax(alpha)[2] = 0.665 for the first row.
  EXPECT_NEAR(follows / 200.0, 0.665, 0.08);
  EXPECT_THROW(op_weights(alpha, true, 1.0f, nullptr), std::invalid_argument);
}

}  // namespace
