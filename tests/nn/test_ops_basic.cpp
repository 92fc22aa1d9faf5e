// Forward values, finite-difference gradients and shape errors for the core ops
// (ops_basic.cpp, ops_shape.cpp, ops_loss_norm.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "nn/ops.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_gradients_match;
using testing::GradCheckOptions;
using testing::random_tensor;

Tensor rnd(const Shape& s, std::uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  return random_tensor(s, rng, lo, hi);
}

// Values whose magnitude lies in [0.1, 1] with random sign: at least 0.1 away from the ReLU kink,
// well beyond the gradcheck step eps = 1e-2.
Tensor away_from_zero(const Shape& s, std::uint64_t seed) {
  Tensor t = rnd(s, seed, 0.1f, 1.0f);
  std::mt19937_64 rng(seed + 7);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (rng() & 1) t.data()[i] = -t.data()[i];
  return t;
}

void expect_values(const Tensor& t, const std::vector<float>& v, float tol = 1e-5f) {
  ASSERT_EQ(t.numel(), static_cast<std::int64_t>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(t.data()[i], v[i], tol) << "element " << i;
}

// Runs f and checks it throws std::invalid_argument whose message names every fragment.
template <class F>
void expect_shape_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments)
      EXPECT_NE(msg.find(frag), std::string::npos) << msg << " lacks " << frag;
  }
}

// ---------------------------------------------------------------- forward values

TEST(OpsForward, MatmulHandComputed) {
  Var a = constant(Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var b = constant(Tensor::from({3, 2}, {7, 8, 9, 10, 11, 12}));
  expect_values(matmul(a, b).value(), {58, 64, 139, 154});
}

TEST(OpsForward, LinearHandComputed) {
  Var x = constant(Tensor::from({2, 2}, {1, 2, 3, 4}));
  Var w = constant(Tensor::from({3, 2}, {1, 0, 0, 1, 1, 1}));
  Var b = constant(Tensor::from({3}, {0.5f, -1, 2}));
  Var y = linear(x, w, b);
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  expect_values(y.value(), {1.5f, 1, 5, 3.5f, 3, 9});
  expect_values(linear(x, w, Var()).value(), {1, 2, 3, 3, 4, 7});
}

TEST(OpsForward, BroadcastAddMul) {
  Var a = constant(Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var row = constant(Tensor::from({3}, {10, 20, 30}));
  Var col = constant(Tensor::from({2, 1}, {2, 3}));
  expect_values(add(a, row).value(), {11, 22, 33, 14, 25, 36});
  expect_values(mul(a, col).value(), {2, 4, 6, 12, 15, 18});
  expect_values(sub(row, a).value(), {9, 18, 27, 6, 15, 24});
  Var outer = mul(col, constant(Tensor::from({1, 3}, {1, 2, 3})));
  EXPECT_EQ(outer.shape(), (Shape{2, 3}));
  expect_values(outer.value(), {2, 4, 6, 3, 6, 9});
}

TEST(OpsForward, Activations) {
  Var x = constant(Tensor::from({4}, {-2, -0.5f, 0.5f, 2}));
  expect_values(relu(x).value(), {0, 0, 0.5f, 2});
  expect_values(sigmoid(x).value(), {0.1192029f, 0.3775407f, 0.6224593f, 0.8807971f});
  expect_values(tanh(x).value(), {-0.9640276f, -0.4621172f, 0.4621172f, 0.9640276f});
  expect_values(silu(x).value(), {-0.2384058f, -0.1887703f, 0.3112297f, 1.7615942f});
  // tanh-approximation GELU reference values (PyTorch gelu(approximate='tanh')).
  expect_values(gelu(x).value(), {-0.0454023f, -0.1542859f, 0.3457141f, 1.9545977f});
  expect_values(exp(x).value(), {0.1353353f, 0.6065307f, 1.6487213f, 7.3890561f}, 1e-5f);
}

TEST(OpsForward, Reductions) {
  Var x = constant(Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  EXPECT_FLOAT_EQ(sum(x).value().item(), 21);
  EXPECT_FLOAT_EQ(mean(x).value().item(), 3.5f);
  expect_values(sum_last(x).value(), {6, 15});
  expect_values(mean_dim(x, 0).value(), {2.5f, 3.5f, 4.5f});
  expect_values(mean_dim(x, -1).value(), {2, 5});
}

TEST(OpsForward, SoftmaxAndCrossEntropy) {
  Var x = constant(Tensor::from({2, 3}, {1, 2, 3, 0, 0, 0}));
  expect_values(softmax(x).value(),
                {0.0900306f, 0.2447285f, 0.6652410f, 1 / 3.f, 1 / 3.f, 1 / 3.f});
  expect_values(log_softmax(x).value(),
                {-2.4076059f, -1.4076059f, -0.4076059f, -1.0986123f, -1.0986123f, -1.0986123f});
  // mean of (2.4076059, 1.0986123)
  EXPECT_NEAR(cross_entropy(x, {0, 2}).value().item(), 1.7531091f, 1e-5f);
  // Large logits must not overflow.
  Var big = constant(Tensor::from({1, 2}, {1000, 0}));
  EXPECT_NEAR(cross_entropy(big, {0}).value().item(), 0.0f, 1e-6f);
  EXPECT_NEAR(cross_entropy(big, {1}).value().item(), 1000.0f, 1e-2f);
}

TEST(OpsForward, MseAndLayerNorm) {
  Var p = constant(Tensor::from({2}, {1, 3}));
  Var t = constant(Tensor::from({2}, {0, 1}));
  EXPECT_FLOAT_EQ(mse(p, t).value().item(), 2.5f);
  Var x = constant(Tensor::from({1, 4}, {1, 2, 3, 4}));
  Var g = constant(Tensor::from({4}, {1, 1, 2, 2}));
  Var b = constant(Tensor::from({4}, {0, 0, 0, 1}));
  // mean 2.5, var 1.25, rstd = 1/sqrt(1.25 + 1e-5)
  const float r = 1.0f / std::sqrt(1.25f + 1e-5f);
  expect_values(layer_norm(x, g, b).value(), {-1.5f * r, -0.5f * r, 1.0f * r, 3.0f * r + 1});
}

TEST(OpsForward, ShapeOps) {
  Var x = constant(Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var t = transpose(x, 0, 1);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  expect_values(t.value(), {1, 4, 2, 5, 3, 6});
  Var c = concat({x, constant(Tensor::from({2, 1}, {7, 8}))}, 1);
  EXPECT_EQ(c.shape(), (Shape{2, 4}));
  expect_values(c.value(), {1, 2, 3, 7, 4, 5, 6, 8});
  auto parts = split(c, {1, 3}, -1);
  ASSERT_EQ(parts.size(), 2u);
  expect_values(parts[0].value(), {1, 4});
  expect_values(parts[1].value(), {2, 3, 7, 5, 6, 8});
  Var img = constant(Tensor::zeros({2, 3, 4, 5}));
  EXPECT_EQ(flatten(img).shape(), (Shape{2, 60}));
  EXPECT_EQ(reshape(img, {6, 20}).shape(), (Shape{6, 20}));
  Var table = constant(Tensor::from({3, 2}, {0, 1, 10, 11, 20, 21}));
  Var e = embedding(table, {2, 0, 2, 1}, Shape{2, 2});
  EXPECT_EQ(e.shape(), (Shape{2, 2, 2}));
  expect_values(e.value(), {20, 21, 0, 1, 20, 21, 10, 11});
}

TEST(OpsForward, BatchNormTrainAndEval) {
  Var x = constant(Tensor::from({4, 1}, {1, 2, 3, 6}));  // mean 3, biased var 3.5, unbiased 14/3
  Var g = constant(Tensor::from({1}, {2}));
  Var b = constant(Tensor::from({1}, {1}));
  BatchNormState st;
  st.running_mean = Tensor::zeros({1});
  st.running_var = Tensor({1}, 1.0f);
  Var y = batch_norm(x, g, b, st, true);
  const float r = 1.0f / std::sqrt(3.5f + 1e-5f);
  expect_values(y.value(), {-4 * r + 1, -2 * r + 1, 1, 6 * r + 1});
  EXPECT_NEAR(st.running_mean.item(), 0.3f, 1e-6f);
  EXPECT_NEAR(st.running_var.item(), 0.9f + 0.1f * 14.0f / 3.0f, 1e-6f);
  Var ye = batch_norm(x, g, b, st, false);
  const float re = 1.0f / std::sqrt(st.running_var.item() + 1e-5f);
  expect_values(ye.value(), {2 * (1 - 0.3f) * re + 1, 2 * (2 - 0.3f) * re + 1,
                             2 * (3 - 0.3f) * re + 1, 2 * (6 - 0.3f) * re + 1});
}

TEST(OpsForward, DropoutScalingAndDeterminism) {
  Var x = constant(Tensor(Shape{10000}, 1.0f));
  std::mt19937_64 r1(5), r2(5);
  Var a = dropout(x, 0.25f, true, r1);
  Var b = dropout(x, 0.25f, true, r2);
  EXPECT_EQ(a.value().to_vector(), b.value().to_vector());
  int kept = 0;
  for (float v : a.value().to_vector()) {
    EXPECT_TRUE(v == 0.0f || std::fabs(v - 1.0f / 0.75f) < 1e-6f);
    kept += v != 0.0f;
  }
  EXPECT_NEAR(kept / 10000.0, 0.75, 0.02);
  Var e = dropout(x, 0.25f, false, r1);
  EXPECT_EQ(e.node(), x.node());  // eval: identity
}

TEST(OpsForward, NoGraphUnderNoGrad) {
  Var w = parameter(Tensor::from({2}, {1, 2}));
  NoGradGuard ng;
  Var y = mul(w, w);
  EXPECT_FALSE(y.requires_grad());
}

// ---------------------------------------------------------------- gradients

TEST(OpsGrad, Matmul) {
  expect_gradients_match([](const std::vector<Var>& v) { return matmul(v[0], v[1]); },
                         {rnd({3, 4}, 1), rnd({4, 5}, 2)});
  expect_gradients_match([](const std::vector<Var>& v) { return matmul(v[0], v[1]); },
                         {rnd({2, 3, 4}, 3), rnd({4, 2}, 4)});
  expect_gradients_match([](const std::vector<Var>& v) { return matmul(v[0], v[1]); },
                         {rnd({2, 3, 4}, 5), rnd({2, 4, 3}, 6)});
}

TEST(OpsGrad, MatmulLargeParallel) {
  // Big enough to take the chunked parallel GEMM path in forward and backward.
  GradCheckOptions opt;
  opt.max_elements_per_input = 16;
  // 128x256x256 = 8.4M multiply-adds: many times detail::kGemmChunkMacs, so chunked.
  expect_gradients_match([](const std::vector<Var>& v) { return matmul(v[0], v[1]); },
                         {rnd({128, 256}, 7, -0.3f, 0.3f), rnd({256, 256}, 8, -0.3f, 0.3f)}, opt);
  expect_gradients_match([](const std::vector<Var>& v) { return matmul(v[0], v[1]); },
                         {rnd({32, 256}, 9, -0.3f, 0.3f), rnd({256, 1024}, 10, -0.3f, 0.3f)},
                         opt);  // splits columns
}

TEST(OpsGrad, Linear) {
  expect_gradients_match([](const std::vector<Var>& v) { return linear(v[0], v[1], v[2]); },
                         {rnd({5, 4}, 1), rnd({3, 4}, 2), rnd({3}, 3)});
  expect_gradients_match([](const std::vector<Var>& v) { return linear(v[0], v[1], Var()); },
                         {rnd({2, 3, 4}, 4), rnd({3, 4}, 5)});
  GradCheckOptions opt;
  opt.max_elements_per_input = 16;
  expect_gradients_match(
      [](const std::vector<Var>& v) { return linear(v[0], v[1], v[2]); },
      {rnd({128, 256}, 6, -0.3f, 0.3f), rnd({256, 256}, 7, -0.3f, 0.3f), rnd({256}, 8)}, opt);
}

TEST(OpsGrad, BroadcastBinary) {
  for (auto [sa, sb] : std::vector<std::pair<Shape, Shape>>{{{3, 4}, {3, 4}},
                                                            {{3, 4}, {4}},
                                                            {{3, 1}, {1, 4}},
                                                            {{2, 3, 4}, {3, 1}},
                                                            {{2, 1, 3, 4}, {5, 1, 1}},
                                                            {{4}, {2, 3, 4}},
                                                            {{}, {2, 3}}}) {
    SCOPED_TRACE(sa.str() + " vs " + sb.str());
    expect_gradients_match([](const std::vector<Var>& v) { return add(v[0], v[1]); },
                           {rnd(sa, 1), rnd(sb, 2)});
    expect_gradients_match([](const std::vector<Var>& v) { return sub(v[0], v[1]); },
                           {rnd(sa, 3), rnd(sb, 4)});
    expect_gradients_match([](const std::vector<Var>& v) { return mul(v[0], v[1]); },
                           {rnd(sa, 5), rnd(sb, 6)});
  }
}

TEST(OpsGrad, SameInputTwice) {
  expect_gradients_match([](const std::vector<Var>& v) { return mul(v[0], v[0]); },
                         {rnd({3, 3}, 1)});
  expect_gradients_match([](const std::vector<Var>& v) { return sub(v[0], v[0]); }, {rnd({3}, 2)});
  expect_gradients_match(
      [](const std::vector<Var>& v) { return add(reshape(v[0], {9}), reshape(v[0], {9})); },
      {rnd({3, 3}, 3)});
}

TEST(OpsGrad, ScaleAndAddScalar) {
  expect_gradients_match([](const std::vector<Var>& v) { return scale(v[0], -2.5f); },
                         {rnd({2, 3}, 1)});
  expect_gradients_match([](const std::vector<Var>& v) { return add_scalar(v[0], 3.0f); },
                         {rnd({2, 3}, 2)});
}

TEST(OpsGrad, Activations) {
  const Shape s{4, 5};
  expect_gradients_match([](const std::vector<Var>& v) { return relu(v[0]); },
                         {away_from_zero(s, 1)});
  expect_gradients_match([](const std::vector<Var>& v) { return gelu(v[0]); }, {rnd(s, 2, -3, 3)});
  expect_gradients_match([](const std::vector<Var>& v) { return silu(v[0]); }, {rnd(s, 3, -3, 3)});
  expect_gradients_match([](const std::vector<Var>& v) { return tanh(v[0]); }, {rnd(s, 4, -2, 2)});
  expect_gradients_match([](const std::vector<Var>& v) { return sigmoid(v[0]); },
                         {rnd(s, 5, -3, 3)});
  expect_gradients_match([](const std::vector<Var>& v) { return exp(v[0]); }, {rnd(s, 6)});
  expect_gradients_match([](const std::vector<Var>& v) { return log(v[0]); },
                         {rnd(s, 7, 0.5f, 3.0f)});
}

TEST(OpsGrad, ActivationsLargeParallel) {
  GradCheckOptions opt;
  opt.max_elements_per_input = 16;
  // The checker's scalar is a float sum over 4096 outputs of order one: its rounding (~1e-4)
  // divided by 2*eps adds ~5e-3 of noise to each numeric derivative, so atol is widened here.
  opt.atol = 1e-2f;
  const Shape s{4, 1024};  // big enough to run chunked; small enough for float sums
  expect_gradients_match([](const std::vector<Var>& v) { return gelu(v[0]); }, {rnd(s, 2, -3, 3)},
                         opt);
  expect_gradients_match([](const std::vector<Var>& v) { return relu(v[0]); },
                         {away_from_zero(s, 3)}, opt);
}

TEST(OpsGrad, Reductions) {
  expect_gradients_match([](const std::vector<Var>& v) { return sum(v[0]); }, {rnd({3, 4}, 1)});
  expect_gradients_match([](const std::vector<Var>& v) { return mean(v[0]); }, {rnd({3, 4}, 2)});
  expect_gradients_match([](const std::vector<Var>& v) { return sum_last(v[0]); },
                         {rnd({2, 3, 4}, 3)});
  for (int d : {0, 1, 2, -1})
    expect_gradients_match([d](const std::vector<Var>& v) { return mean_dim(v[0], d); },
                           {rnd({2, 3, 4}, 4)});
}

TEST(OpsGrad, SoftmaxFamily) {
  expect_gradients_match([](const std::vector<Var>& v) { return softmax(v[0]); },
                         {rnd({3, 5}, 1, -2, 2)});
  expect_gradients_match([](const std::vector<Var>& v) { return log_softmax(v[0]); },
                         {rnd({2, 2, 5}, 2, -2, 2)});
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return cross_entropy(v[0], {1, 0, 4, 2});
      },
      {rnd({4, 5}, 3, -2, 2)});
  expect_gradients_match([](const std::vector<Var>& v) { return mse(v[0], v[1]); },
                         {rnd({3, 4}, 4), rnd({3, 4}, 5)});
}

TEST(OpsGrad, LayerNorm) {
  expect_gradients_match([](const std::vector<Var>& v) { return layer_norm(v[0], v[1], v[2]); },
                         {rnd({2, 3, 6}, 1, -2, 2), rnd({6}, 2, 0.5f, 1.5f), rnd({6}, 3)});
}

TEST(OpsGrad, BatchNorm) {
  for (bool training : {true, false}) {
    for (Shape s : {Shape{6, 3}, Shape{2, 3, 2, 3}}) {
      SCOPED_TRACE(s.str() + (training ? " train" : " eval"));
      expect_gradients_match(
          [training](const std::vector<Var>& v) {
            BatchNormState st;  // fresh each call: finite differences must not see updated stats
            st.running_mean = Tensor::from({3}, {0.1f, -0.2f, 0.3f});
            st.running_var = Tensor::from({3}, {0.5f, 1.5f, 2.0f});
            return batch_norm(v[0], v[1], v[2], st, training);
          },
          {rnd(s, 1, -2, 2), rnd({3}, 2, 0.5f, 1.5f), rnd({3}, 3)});
    }
  }
}

// The fused op against the two ops it replaces: the same values and gradients (bit for bit:
// the ReLU is the same max and its mask the same select), training and eval, with the running
// statistics updated alike.
TEST(OpsGrad, BatchNormReluEqualsReluOfBatchNorm) {
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "train" : "eval");
    const Tensor x0 = rnd({4, 3, 5, 6}, 4, -2, 2), g0 = rnd({3}, 5, 0.5f, 1.5f), b0 = rnd({3}, 6);
    const Tensor dy = rnd({4, 3, 5, 6}, 7, -1, 1);
    std::vector<std::vector<float>> got;
    for (bool fused : {false, true}) {
      BatchNormState st;
      st.running_mean = Tensor::from({3}, {0.1f, -0.2f, 0.3f});
      st.running_var = Tensor::from({3}, {0.5f, 1.5f, 2.0f});
      Var x = parameter(x0.clone()), g = parameter(g0.clone()), b = parameter(b0.clone());
      Var y =
          fused ? batch_norm_relu(x, g, b, st, training) : relu(batch_norm(x, g, b, st, training));
      backward(sum(mul(y, constant(dy))));
      std::vector<float> all = y.value().to_vector();
      for (const Var* v : {&x, &g, &b}) {
        auto gv = v->grad().to_vector();
        all.insert(all.end(), gv.begin(), gv.end());
      }
      for (const Tensor* t : {&st.running_mean, &st.running_var}) {
        auto tv = t->to_vector();
        all.insert(all.end(), tv.begin(), tv.end());
      }
      got.push_back(all);
    }
    ASSERT_EQ(got[0].size(), got[1].size());
    for (std::size_t i = 0; i < got[0].size(); ++i) EXPECT_EQ(got[0][i], got[1][i]) << i;
  }
}

TEST(OpsGrad, Dropout) {
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        std::mt19937_64 rng(11);  // same mask for every evaluation
        return dropout(v[0], 0.4f, true, rng);
      },
      {rnd({4, 6}, 1)});
}

TEST(OpsGrad, ShapeOps) {
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return reshape(v[0], {4, 3});
      },
      {rnd({2, 6}, 1)});
  expect_gradients_match([](const std::vector<Var>& v) { return flatten(v[0]); },
                         {rnd({2, 3, 2, 2}, 2)});
  expect_gradients_match([](const std::vector<Var>& v) { return transpose(v[0], 1, 3); },
                         {rnd({2, 3, 4, 5}, 3)});
  expect_gradients_match([](const std::vector<Var>& v) { return transpose(v[0], 0, -1); },
                         {rnd({3, 4}, 4)});
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return concat({v[0], v[1], v[0]}, 1);
      },
      {rnd({2, 3, 2}, 5), rnd({2, 1, 2}, 6)});
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        auto p = split(v[0], {1, 2, 2}, 1);
        return add(mul(p[0], p[0]), sum_last(mul(p[1], p[2])));  // [2,1,?]: uses every part
      },
      {rnd({2, 5, 2}, 7)});
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return embedding(v[0], {3, 1, 3, 0, 3}, Shape{5});
      },
      {rnd({4, 3}, 8)});
}

TEST(OpsGrad, SmallMlpChain) {
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        Var h = relu(linear(v[0], v[1], v[2]));
        return cross_entropy(linear(h, v[3], v[4]), {0, 2, 1});
      },
      {rnd({3, 4}, 1), rnd({5, 4}, 2), rnd({5}, 3, 0.2f, 0.5f), rnd({3, 5}, 4), rnd({3}, 5)});
}

// ---------------------------------------------------------------- shape errors

TEST(OpsErrors, MessagesNameOpAndShapes) {
  Var a = constant(Tensor::zeros({2, 3}));
  Var b = constant(Tensor::zeros({4, 5}));
  Var v3 = constant(Tensor::zeros({3}));
  expect_shape_error([&] { matmul(a, b); }, {"matmul", "[2, 3]", "[4, 5]"});
  expect_shape_error(
      [&] {
        matmul(constant(Tensor::zeros({2, 2, 3})), constant(Tensor::zeros({3, 3, 2})));
      },
      {"matmul", "[2, 2, 3]", "[3, 3, 2]"});
  expect_shape_error([&] { linear(a, b, Var()); }, {"linear", "[2, 3]", "[4, 5]"});
  expect_shape_error(
      [&] {
        linear(a, constant(Tensor::zeros({4, 3})), v3);
      },
      {"linear", "[3]", "[4, 3]"});
  expect_shape_error([&] { add(a, b); }, {"add", "[2, 3]", "[4, 5]"});
  expect_shape_error([&] { sub(a, constant(Tensor::zeros({2}))); }, {"sub", "[2, 3]", "[2]"});
  expect_shape_error([&] { mul(b, a); }, {"mul", "[4, 5]", "[2, 3]"});
  expect_shape_error([&] { mse(a, b); }, {"mse", "[2, 3]", "[4, 5]"});
  expect_shape_error([&] { cross_entropy(a, {0}); }, {"cross_entropy", "[2, 3]", "[1]"});
  expect_shape_error([&] { cross_entropy(a, {0, 3}); }, {"cross_entropy", "label 3", "[2, 3]"});
  expect_shape_error([&] { cross_entropy(v3, {0}); }, {"cross_entropy", "[3]"});
  expect_shape_error([&] { layer_norm(a, constant(Tensor::zeros({2})), v3); },
                     {"layer_norm", "[2, 3]", "[2]"});
  BatchNormState st;
  expect_shape_error([&] { batch_norm(a, constant(Tensor::zeros({2})), v3, st, true); },
                     {"batch_norm", "[2, 3]", "[2]"});
  expect_shape_error(
      [&] {
        batch_norm(constant(Tensor::zeros({2, 3, 4})), v3, v3, st, true);
      },
      {"batch_norm", "[2, 3, 4]"});
  expect_shape_error([&] { concat({a, b}, 0); }, {"concat", "[2, 3]", "[4, 5]"});
  expect_shape_error([&] { split(a, {1, 1}, 1); }, {"split", "[2, 3]"});
  expect_shape_error([&] { reshape(a, {4, 2}); }, {"reshape", "[2, 3]", "[4, 2]"});
  expect_shape_error([&] { transpose(a, 0, 2); }, {"transpose", "[2, 3]"});
  expect_shape_error([&] { mean_dim(a, 2); }, {"mean_dim", "[2, 3]"});
  expect_shape_error([&] { embedding(a, {0, 2}, Shape{2}); }, {"embedding", "id 2", "[2, 3]"});
  expect_shape_error([&] { embedding(a, {0, 1}, Shape{3}); }, {"embedding", "[2, 3]", "[3]"});
  expect_shape_error(
      [&] {
        std::mt19937_64 rng(1);
        dropout(a, 1.0f, true, rng);
      },
      {"dropout"});
}

}  // namespace
}  // namespace hwnas::nn
