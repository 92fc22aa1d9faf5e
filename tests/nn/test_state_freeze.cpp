// Freezing parameters (LoRA-style adapters over a frozen base), pure gradients, the grad-mode
// guards and fast weights whose inner steps run under a NoGradGuard.
#include <gtest/gtest.h>

#include "nn/fast_weights.hpp"
#include "nn/layers.hpp"
#include "nn/optim.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/nn/state_test_util.hpp"

namespace hwnas::nn {
namespace {
using testing::bit_equal;
using testing::expect_invalid;

// y = base(x) + up(down(x)): a frozen base with a low-rank adapter.
class Adapted : public Module {
 public:
  explicit Adapted(std::mt19937_64& rng)
      : base(6, 4, true, rng), down(6, 2, false, rng), up(2, 4, false, rng) {}
  Var forward(const Var& x) { return add(base.forward(x), up.forward(down.forward(x))); }
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override {
    base.append_named_parameters(prefix + "base.", out);
    down.append_named_parameters(prefix + "adapter.down.", out);
    up.append_named_parameters(prefix + "adapter.up.", out);
  }
  std::string name() const override { return "adapted"; }
  Linear base, down, up;
};

TEST(Freeze, FrozenBaseNeverChangesWhileTheAdapterTrains) {
  for (int which = 0; which < 3; ++which) {
    std::mt19937_64 rng(3);
    Adapted m(rng);
    EXPECT_EQ(m.freeze("base"), 2);
    EXPECT_FALSE(m.base.weight.requires_grad());
    EXPECT_TRUE(m.down.weight.requires_grad());
    std::vector<Var> ps;
    m.collect_parameters(ps);  // all of them, frozen included: the optimizers must skip those
    std::unique_ptr<Optimizer> opt;
    if (which == 0)
      opt = std::make_unique<AdamW>(ps, AdamWOptions{0.05f, 0.9f, 0.999f, 1e-8f, 0.1f});
    if (which == 1) opt = std::make_unique<Sgd>(ps, SgdOptions{0.05f, 0.9f, false, 0.1f});
    if (which == 2) opt = std::make_unique<Adam>(ps, AdamOptions{0.05f, 0.9f, 0.999f, 1e-8f, 0.1f});
    const Tensor w0 = m.base.weight.value().clone(), b0 = m.base.bias.value().clone();
    const Tensor a0 = m.up.weight.value().clone();
    std::mt19937_64 data(4);
    float first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      Var x = constant(testing::draw(Shape{8, 6}, data));
      opt->zero_grad();
      Var loss = mean(mul(m.forward(x), m.forward(x)));
      backward(loss);
      EXPECT_TRUE(m.base.weight.grad().empty());  // no gradient reaches a frozen parameter
      opt->step();
      (step == 0 ? first : last) = loss.value().item();
    }
    EXPECT_TRUE(bit_equal(m.base.weight.value(), w0)) << "optimizer " << which;
    EXPECT_TRUE(bit_equal(m.base.bias.value(), b0)) << "optimizer " << which;
    EXPECT_FALSE(bit_equal(m.up.weight.value(), a0)) << "optimizer " << which;
    EXPECT_LT(last, first) << "optimizer " << which;
  }
}

TEST(Freeze, GradientsStillFlowThroughAFrozenParameterToItsInputs) {
  std::mt19937_64 rng(5);
  Linear a(3, 3, true, rng), b(3, 2, true, rng);
  b.freeze();
  Var x = constant(testing::draw(Shape{4, 3}, rng));
  Var loss = sum(b.forward(a.forward(x)));
  backward(loss);
  EXPECT_FALSE(a.weight.grad().empty());
  EXPECT_TRUE(b.weight.grad().empty());
  // Unchanged gradient for the earlier layer: compare with the same graph unfrozen.
  const Tensor frozen_grad = a.weight.grad().clone();
  zero_grad({a.weight, a.bias});
  b.unfreeze();
  backward(sum(b.forward(a.forward(x))));
  EXPECT_TRUE(bit_equal(a.weight.grad(), frozen_grad));
  EXPECT_FALSE(b.weight.grad().empty());
}

TEST(Freeze, PrefixesMatchWholeNameComponents) {
  EXPECT_TRUE(name_has_prefix("n3.conv.weight", "n3"));
  EXPECT_TRUE(name_has_prefix("n3.conv.weight", "n3.conv"));
  EXPECT_TRUE(name_has_prefix("n3.conv.weight", "n3.conv.weight"));
  EXPECT_TRUE(name_has_prefix("n3.conv.weight", ""));
  EXPECT_FALSE(name_has_prefix("n30.conv.weight", "n3"));
  EXPECT_FALSE(name_has_prefix("n3.conv.weight", "n3.co"));
  std::mt19937_64 rng(1);
  Adapted m(rng);
  EXPECT_EQ(m.freeze("adapter"), 2);
  EXPECT_EQ(m.unfreeze(), 4);
  expect_invalid([&] { m.freeze("bse"); }, "no parameter of module 'adapted' is named 'bse'");
}

TEST(Freeze, OnlyLeavesCanBeFrozen) {
  Var w = parameter(Tensor(Shape{2}, 1.0f));
  Var y = mul(w, w);
  EXPECT_THROW(y.set_requires_grad(false), std::logic_error);
  EXPECT_THROW(Var().set_requires_grad(false), std::logic_error);
}

TEST(Gradients, MatchBackwardAndTouchNoStoredGradient) {
  std::mt19937_64 rng(7);
  Var w = parameter(testing::draw(Shape{3, 2}, rng));
  Var v = parameter(testing::draw(Shape{2}, rng));
  Var x = constant(testing::draw(Shape{5, 2}, rng));
  auto f = [&] { return add(sum(tanh(scale(linear(x, w, Var()), 0.5f))), sum(mul(v, v))); };
  w.grad() = Tensor(Shape{3, 2}, 42.0f);  // a stale gradient must survive untouched
  std::vector<Tensor> g = gradients(f(), {w, v, w});
  EXPECT_EQ(w.grad().data()[0], 42.0f);
  EXPECT_TRUE(v.grad().empty());
  zero_grad({w, v});
  backward(f());
  EXPECT_TRUE(bit_equal(g[0], w.grad()));
  EXPECT_TRUE(bit_equal(g[1], v.grad()));
  EXPECT_TRUE(bit_equal(g[2], g[0]));
  // A node the loss does not depend on gets zeros; an op result stops the traversal there.
  Var u = parameter(Tensor(Shape{2}, 1.0f));
  Var h = mul(v, v);
  std::vector<Tensor> gh = gradients(sum(mul(h, h)), {h, u});
  EXPECT_TRUE(bit_equal(gh[1], Tensor::zeros(Shape{2})));
  for (int i = 0; i < 2; ++i) EXPECT_FLOAT_EQ(gh[0].data()[i], 2 * h.value().data()[i]);
  expect_invalid([&] { gradients(h, {v}); }, "loss must be a scalar");
  expect_invalid([&] { gradients(sum(h), {Var()}); }, "wrt[0] is undefined");
}

TEST(GradGuards, EnableGradGuardReenablesRecordingInsideNoGrad) {
  Var w = parameter(Tensor(Shape{2}, 1.0f));
  NoGradGuard ng;
  EXPECT_FALSE(grad_enabled());
  EXPECT_FALSE(mul(w, w).requires_grad());
  {
    EnableGradGuard eg;
    EXPECT_TRUE(grad_enabled());
    EXPECT_EQ(no_grad_session(), 0u);
    EXPECT_TRUE(mul(w, w).requires_grad());
  }
  EXPECT_FALSE(grad_enabled());
  EXPECT_NE(no_grad_session(), 0u);
}

Tensor scaled(Tensor t, float s) {
  t.array() *= s;
  return t;
}

// y = x W^T with W a fast weight; inner loss: reconstruct x from a projection of itself.
struct FastLinearCase {
  std::mt19937_64 rng{8};
  Var w0 = parameter(
      scaled(testing::draw(Shape{4, 4}, rng), 0.3f));  // outer: where the inner loop starts
  Var proj =
      parameter(scaled(testing::draw(Shape{4, 4}, rng), 0.5f));  // an outer parameter used inside
  FastWeights fw{w0};
  Tensor x = testing::draw(Shape{6, 4}, rng);
  Var inner_loss(const Var& w) {
    Var k = linear(constant(x), proj, Var());
    Var d = sub(linear(k, w, Var()), constant(x));
    return mean(mul(d, d));
  }
};

TEST(FastWeights, InnerStepsLowerTheLossUnderNoGradAndGiveOuterParametersNoGradient) {
  FastLinearCase c;
  NoGradGuard ng;
  std::vector<float> losses;
  for (int i = 0; i < 25; ++i)
    losses.push_back(c.fw.sgd_step([&](const Var& w) { return c.inner_loss(w); }, 0.3f));
  EXPECT_LT(losses.back(), 0.5f * losses.front());
  for (std::size_t i = 1; i < losses.size(); ++i)
    EXPECT_LT(losses[i], losses[i - 1]) << "step " << i;
  EXPECT_EQ(c.fw.steps_since_reset(), 25);
  EXPECT_FALSE(bit_equal(c.fw.current(), c.w0.value()));
  EXPECT_TRUE(c.w0.grad().empty());
  EXPECT_TRUE(c.proj.grad().empty());
  EXPECT_FALSE(grad_enabled());  // the inner steps leave the no-grad mode as they found it
  EXPECT_FALSE(c.fw.var().requires_grad());
  c.fw.reset();
  EXPECT_TRUE(bit_equal(c.fw.current(), c.w0.value()));
  EXPECT_EQ(c.fw.steps_since_reset(), 0);
}

TEST(FastWeights, InGradModeTheOuterLossTrainsTheInitialValueFirstOrder) {
  FastLinearCase c;
  for (int i = 0; i < 3; ++i) c.fw.sgd_step([&](const Var& w) { return c.inner_loss(w); }, 0.1f);
  EXPECT_TRUE(c.w0.grad().empty());  // inner steps: no gradient to the outer parameters
  EXPECT_TRUE(c.proj.grad().empty());
  Var w = c.fw.var();
  EXPECT_TRUE(bit_equal(w.value(), c.fw.current()));
  Var outer = sum(tanh(linear(constant(c.x), w, Var())));
  const Tensor expected = gradients(outer, {w})[0];
  backward(outer);
  ASSERT_FALSE(c.w0.grad().empty());
  EXPECT_TRUE(bit_equal(c.w0.grad(), expected));
}

TEST(FastWeights, ABufferInitialValueAlsoTakesInnerSteps) {
  FastLinearCase c;
  FastWeights buf(constant(c.w0.value().clone()));
  const float l0 = buf.sgd_step([&](const Var& w) { return c.inner_loss(w); }, 0.1f);
  const float l1 = buf.sgd_step([&](const Var& w) { return c.inner_loss(w); }, 0.1f);
  EXPECT_LT(l1, l0);
}

TEST(FastWeights, RejectsBadArguments) {
  expect_invalid([] { FastWeights fw{Var()}; }, "initial value is undefined");
  FastLinearCase c;
  expect_invalid([&] { c.fw.sgd_step([&](const Var& w) { return c.inner_loss(w); }, -1.0f); },
                 "lr must be >= 0");
  expect_invalid([&] { c.fw.sgd_step([](const Var& w) { return mul(w, w); }, 0.1f); },
                 "loss must be a scalar");
}

}  // namespace
}  // namespace hwnas::nn
