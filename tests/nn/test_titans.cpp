// Titans memory-as-context layer (nn/titans.hpp): finite-difference gradients on the input and
// every parameter through the unrolled memory updates, the memory changing during a forward
// and starting afresh for every sequence, causality, and the config's error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "nn/optim.hpp"
#include "nn/titans.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_invalid;
using testing::random_tensor;

TitansConfig small(int depth, int persistent = 2, int segment = 4, int chunk = 2) {
  TitansConfig c;
  c.d = 4;
  c.heads = 2;
  c.memory_depth = depth;
  c.segment = segment;
  c.persistent = persistent;
  c.chunk = chunk;
  return c;
}

// Every parameter (a few elements each) and the input against central differences of a fixed
// random projection of the output.
void check_layer_gradients(const TitansConfig& c, int length) {
  SCOPED_TRACE("depth " + std::to_string(c.memory_depth) + " memory " + std::to_string(c.memory) +
               " persistent " + std::to_string(c.persistent));
  std::mt19937_64 rng(3);
  TitansMemoryLayer layer(c, rng);
  ForwardContext ctx;
  testing::expect_gradients_match(
      [&](const std::vector<Var>& v) { return layer.forward(v[0], ctx); },
      {random_tensor(Shape{2, length, c.d}, rng)});
  std::vector<NamedParameter> params = layer.named_parameters();
  Var x = constant(random_tensor(Shape{2, length, c.d}, rng));
  const Tensor proj = random_tensor(layer.forward(x, ctx).shape(), rng, 0.5f, 1.5f);
  auto loss = [&] { return sum(mul(layer.forward(x, ctx), constant(proj))); };
  std::vector<Var> vars;
  for (const NamedParameter& p : params) vars.push_back(p.var);
  zero_grad(vars);  // the input check above accumulated into them
  backward(loss());
  for (NamedParameter& p : params) {
    Tensor& t = p.var.value();
    const Tensor g = p.var.grad().clone();
    ASSERT_FALSE(g.empty()) << p.name << " received no gradient";
    for (std::int64_t i = 0; i < std::min<std::int64_t>(t.numel(), 6); ++i) {
      const std::int64_t e = (i * 7919) % t.numel();
      const float orig = t.data()[e], eps = 1e-2f * std::max(1.0f, std::fabs(orig));
      NoGradGuard ng;
      t.data()[e] = orig + eps;
      const double fp = loss().value().item();
      t.data()[e] = orig - eps;
      const double fm = loss().value().item();
      t.data()[e] = orig;
      const double num = (fp - fm) / (2.0 * eps);
      EXPECT_NEAR(g.data()[e], num, 3e-3 + 3e-2 * std::fabs(num)) << p.name << " elem " << e;
    }
  }
}

}  // namespace

TEST(Titans, GradientsThroughUnrolledMemoryUpdates) {
  // Length 7 with segment 4 and chunk 2: two segments, the second short, chunks of 2, 2, 2, 1.
  check_layer_gradients(small(1), 7);
  check_layer_gradients(small(2), 7);
  check_layer_gradients(small(2, 0, 4, 4), 6);
  TitansConfig off = small(2);
  off.memory = false;
  check_layer_gradients(off, 7);
}

TEST(Titans, MemoryChangesDuringAForwardAndResetsBetweenSequences) {
  TitansConfig c = small(2, 2, 4, 2);
  c.d = 8;
  std::mt19937_64 rng(11);
  TitansMemoryLayer layer(c, rng);
  NoGradGuard ng;
  ForwardContext ctx;
  ctx.training = false;
  const Tensor a = random_tensor(Shape{1, 12, 8}, rng), b = random_tensor(Shape{1, 12, 8}, rng);
  const Tensor yb = layer.forward(constant(b), ctx).value().clone();
  // The memory after the sequence differs from where it started.
  ASSERT_EQ(layer.last_memory().size(), 2u);
  const std::vector<Tensor> m0 = layer.initial_memory();
  for (std::size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(layer.last_memory()[i].shape(), (Shape{1, 8, 8}));
    double diff = 0;
    for (std::int64_t j = 0; j < m0[i].numel(); ++j)
      diff += std::fabs(layer.last_memory()[i].data()[j] - m0[i].data()[j]);
    EXPECT_GT(diff, 1e-3) << "memory layer " << i << " did not change";
  }
  // Another sequence in between does not change b's output: every forward starts from M_0.
  (void)layer.forward(constant(a), ctx);
  const Tensor yb2 = layer.forward(constant(b), ctx).value();
  for (std::int64_t i = 0; i < yb.numel(); ++i) ASSERT_EQ(yb.data()[i], yb2.data()[i]);
  // Nor does sharing a batch with it: each sample has its own memory.
  Tensor ab(Shape{2, 12, 8});
  std::copy(a.data(), a.data() + a.numel(), ab.data());
  std::copy(b.data(), b.data() + b.numel(), ab.data() + a.numel());
  const Tensor y_ab = layer.forward(constant(ab), ctx).value();
  for (std::int64_t i = 0; i < yb.numel(); ++i)
    EXPECT_NEAR(y_ab.data()[a.numel() + i], yb.data()[i], 1e-4f);  // GEMM blocking differs
  // Without memory there is no state.
  c.memory = false;
  TitansMemoryLayer off(c, rng);
  (void)off.forward(constant(a), ctx);
  EXPECT_TRUE(off.last_memory().empty());
}

TEST(Titans, IsCausal) {
  for (int depth : {1, 2}) {
    TitansConfig c = small(depth, 4, 4, 2);
    std::mt19937_64 rng(4);
    TitansMemoryLayer layer(c, rng);
    Tensor x = random_tensor(Shape{1, 12, 4}, rng);
    ForwardContext ctx;
    NoGradGuard ng;
    const Tensor y0 = layer.forward(constant(x), ctx).value().clone();
    for (int ch = 0; ch < 4; ++ch) x.data()[6 * 4 + ch] += 1.0f;  // token 6 (segment 1, chunk 2)
    const Tensor y1 = layer.forward(constant(x), ctx).value();
    for (int t = 0; t < 12; ++t) {
      float diff = 0;
      for (int ch = 0; ch < 4; ++ch)
        diff = std::max(diff, std::fabs(y1.data()[t * 4 + ch] - y0.data()[t * 4 + ch]));
      if (t < 6) {
        EXPECT_LT(diff, 1e-6f) << "depth " << depth << " token " << t;
      } else {
        EXPECT_GT(diff, 0.0f) << "depth " << depth << " token " << t;
      }
    }
  }
}

TEST(Titans, ConfigErrorsNameTheFieldAndTheFix) {
  std::mt19937_64 rng(1);
  auto with = [&](auto edit) {
    TitansConfig c = small(2);
    edit(c);
    return c;
  };
  expect_invalid([&] { TitansMemoryLayer(with([](TitansConfig& c) { c.heads = 3; }), rng); },
                 "titans: model dimension 4 not divisible by heads 3");
  expect_invalid([&] { TitansMemoryLayer(with([](TitansConfig& c) { c.chunk = 8; }), rng); },
                 "titans: chunk 8 larger than segment 4; choose chunk <= segment");
  expect_invalid([&] { TitansMemoryLayer(with([](TitansConfig& c) { c.memory_depth = 3; }), rng); },
                 "memory_depth 3 must be 1 or 2");
  TitansMemoryLayer layer(small(1), rng);
  ForwardContext ctx;
  expect_invalid(
      [&] {
        layer.forward(constant(Tensor::zeros(Shape{1, 5, 6})), ctx);
      },
      "titans: expects [batch, length, 4], got [1, 5, 6]");
}

}  // namespace hwnas::nn
