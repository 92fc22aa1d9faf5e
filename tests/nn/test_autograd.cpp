// Autograd tape behaviour, layers, and end-to-end determinism of a tiny MLP.
#include <gtest/gtest.h>

// GCC 12 false positive inside AVX-512 intrinsics inlined from Eigen reductions (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <random>

#include "nn/layers.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

TEST(Autograd, DiamondGraphAccumulates) {
  // y = (x*x) + (x*3): dy/dx = 2x + 3
  Var x = parameter(Tensor::from({2}, {1.0f, -2.0f}));
  Var y = add(mul(x, x), scale(x, 3.0f));
  backward(sum(y));
  EXPECT_FLOAT_EQ(x.grad().data()[0], 5.0f);
  EXPECT_FLOAT_EQ(x.grad().data()[1], -1.0f);
}

TEST(Autograd, ConstantsGetNoGradient) {
  Var x = constant(Tensor::from({2}, {1.0f, 2.0f}));
  Var w = parameter(Tensor::from({2}, {3.0f, 4.0f}));
  backward(sum(mul(x, w)));
  EXPECT_TRUE(x.grad().empty());
  EXPECT_FLOAT_EQ(w.grad().data()[1], 2.0f);
}

TEST(Autograd, NonScalarLossThrows) {
  Var w = parameter(Tensor::zeros({2}));
  EXPECT_THROW(backward(mul(w, w)), std::logic_error);
}

TEST(Layers, ActivationFromName) {
  EXPECT_EQ(activation_from_name("relu"), Activation::Relu);
  EXPECT_EQ(activation_from_name("gelu"), Activation::Gelu);
  EXPECT_EQ(activation_from_name("silu"), Activation::Silu);
  EXPECT_EQ(activation_from_name("tanh"), Activation::Tanh);
  EXPECT_EQ(activation_from_name("sigmoid"), Activation::Sigmoid);
  EXPECT_EQ(activation_from_name("none"), Activation::None);
  try {
    activation_from_name("bogus");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bogus"), std::string::npos);
  }
  Var x = constant(Tensor::from({2}, {-1.0f, 1.0f}));
  EXPECT_EQ(apply_activation(x, Activation::Relu).value().to_vector(),
            (std::vector<float>{0.0f, 1.0f}));
  EXPECT_EQ(apply_activation(x, Activation::None).node(), x.node());
}

TEST(Layers, InitStatistics) {
  std::mt19937_64 rng(3);
  Tensor h = he_normal({256, 512}, 512, rng);
  const double var = h.array().square().mean();
  EXPECT_NEAR(var, 2.0 / 512, 0.1 * 2.0 / 512);
  Tensor x = xavier_uniform({256, 512}, 512, 256, rng);
  const float limit = std::sqrt(6.0f / 768.0f);
  EXPECT_LE(x.array().abs().maxCoeff(), limit);
  EXPECT_NEAR(x.array().square().mean(), limit * limit / 3, 0.1 * limit * limit / 3);
}

TEST(Layers, LinearShapesAndParameters) {
  std::mt19937_64 rng(1);
  Linear l(4, 3, true, rng);
  EXPECT_EQ(l.weight.shape(), (Shape{3, 4}));
  EXPECT_EQ(l.bias.shape(), (Shape{3}));
  std::vector<Var> ps;
  l.collect_parameters(ps);
  EXPECT_EQ(ps.size(), 2u);
  EXPECT_EQ(l.forward(constant(Tensor::zeros({2, 5, 4}))).shape(), (Shape{2, 5, 3}));
  Linear nb(4, 3, false, rng);
  ps.clear();
  nb.collect_parameters(ps);
  EXPECT_EQ(ps.size(), 1u);
  EXPECT_THROW(Linear(0, 3, true, rng), std::invalid_argument);
}

TEST(Layers, NormLayers) {
  BatchNorm bn(3);
  std::mt19937_64 rng(2);
  Var x = constant(testing::random_tensor({8, 3, 2, 2}, rng));
  Var y = bn.forward(x, true);
  EXPECT_EQ(y.shape(), x.shape());
  // Normalised output: per-channel mean ~0.
  EXPECT_NEAR(mean(y).value().item(), 0.0f, 1e-5f);
  std::vector<Var> ps;
  bn.collect_parameters(ps);
  EXPECT_EQ(ps.size(), 2u);
  LayerNorm ln(4);
  EXPECT_EQ(ln.forward(constant(Tensor::zeros({2, 4}))).shape(), (Shape{2, 4}));
  ForwardContext ctx;
  ctx.training = false;
  EXPECT_EQ(bn.forward(std::vector<Var>{x}, ctx).shape(), x.shape());
}

TEST(Layers, Conv2dAndAttentionLayers) {
  std::mt19937_64 rng(4);
  Conv2d conv(3, 8, 3, Conv2dOptions{1, 1, 1}, true, rng);
  EXPECT_EQ(conv.weight.shape(), (Shape{8, 3, 3, 3}));
  EXPECT_EQ(conv.forward(constant(Tensor::zeros({2, 3, 5, 5}))).shape(), (Shape{2, 8, 5, 5}));
  EXPECT_THROW(Conv2d(3, 8, 3, Conv2dOptions{1, 1, 2}, true, rng), std::invalid_argument);
  for (int window : {0, 2}) {
    MultiHeadSelfAttention attn(8, 2, true, window, rng);
    std::vector<Var> ps;
    attn.collect_parameters(ps);
    EXPECT_EQ(ps.size(), 4u);
    EXPECT_EQ(attn.qkv.weight.shape(), (Shape{24, 8}));
    Var x = parameter(testing::random_tensor({2, 5, 8}, rng));
    Var y = attn.forward(x);
    EXPECT_EQ(y.shape(), (Shape{2, 5, 8}));
    backward(sum(mul(y, y)));
    EXPECT_FALSE(x.grad().empty());
    EXPECT_FALSE(attn.qkv.weight.grad().empty());
  }
  EXPECT_THROW(MultiHeadSelfAttention(8, 3, false, 0, rng), std::invalid_argument);
}

// A few AdamW steps of a 2-layer MLP with dropout; returns all parameter values.
std::vector<float> train_tiny_mlp(std::uint64_t seed, int threads) {
  ThreadBudget budget(threads);
  std::mt19937_64 rng(seed);
  // Wide enough that the dense layers take the chunked parallel GEMM path.
  Linear l1(256, 256, true, rng), l2(256, 10, true, rng);
  std::vector<Var> params;
  l1.collect_parameters(params);
  l2.collect_parameters(params);
  AdamW opt(params, AdamWOptions{1e-2f});
  for (int step = 0; step < 5; ++step) {
    Var x = constant(testing::random_tensor({256, 256}, rng));
    std::vector<int> labels(256);
    for (int& l : labels) l = static_cast<int>(rng() % 10);
    opt.zero_grad();
    Var h = dropout(gelu(l1.forward(x)), 0.1f, true, rng);
    Var loss = cross_entropy(l2.forward(h), labels);
    backward(loss);
    clip_grad_norm(params, 1.0f);
    opt.step();
  }
  std::vector<float> out;
  for (const Var& p : params) {
    auto v = p.value().to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

TEST(Determinism, SameSeedBitIdenticalParameters) {
  const auto a = train_tiny_mlp(42, 2);
  const auto b = train_tiny_mlp(42, 2);
  const auto c = train_tiny_mlp(42, 1);  // chunking does not depend on the thread count
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_NE(a, train_tiny_mlp(43, 2));
}

TEST(Training, MlpLearnsSeparableProblem) {
  std::mt19937_64 rng(7);
  Linear l1(2, 16, true, rng), l2(16, 2, true, rng);
  std::vector<Var> params;
  l1.collect_parameters(params);
  l2.collect_parameters(params);
  Sgd opt(params, SgdOptions{0.1f, 0.9f, true, 0.0f});
  Tensor xs({64, 2});
  std::vector<int> ys(64);
  for (int i = 0; i < 64; ++i) {
    xs.data()[2 * i] = static_cast<float>(i % 8) / 4.0f - 1.0f;
    xs.data()[2 * i + 1] = static_cast<float>(i / 8) / 4.0f - 1.0f;
    ys[static_cast<std::size_t>(i)] =
        xs.data()[2 * i] * xs.data()[2 * i + 1] > 0 ? 1 : 0;  // XOR-like
  }
  float loss = 0;
  for (int step = 0; step < 400; ++step) {
    opt.zero_grad();
    Var l = cross_entropy(l2.forward(relu(l1.forward(constant(xs)))), ys);
    backward(l);
    opt.step();
    loss = l.value().item();
  }
  EXPECT_LT(loss, 0.2f);
}

}  // namespace
}  // namespace hwnas::nn
