// Optimizers, gradient clipping and the cosine/warm-up schedule, against hand-computed values.
#include <gtest/gtest.h>

// GCC 12 false positive inside AVX-512 intrinsics inlined from Eigen reductions (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

// f(w) = sum((w - target)^2) with its minimum at target.
float quadratic_step(Optimizer& opt, Var& w, const Tensor& target) {
  opt.zero_grad();
  Var d = sub(w, constant(target));
  Var loss = sum(mul(d, d));
  backward(loss);
  opt.step();
  return loss.value().item();
}

Tensor target3() { return Tensor::from({3}, {1.0f, -2.0f, 0.5f}); }

float max_abs_diff(const Tensor& a, const Tensor& b) {
  return (a.array() - b.array()).abs().maxCoeff();
}

TEST(Optim, SgdMinimisesQuadratic) {
  for (auto [momentum, nesterov] :
       std::vector<std::pair<float, bool>>{{0.f, false}, {0.9f, false}, {0.9f, true}}) {
    Var w = parameter(Tensor::zeros({3}));
    Sgd opt({w}, SgdOptions{0.05f, momentum, nesterov, 0.0f});
    for (int i = 0; i < 300; ++i) quadratic_step(opt, w, target3());
    EXPECT_LT(max_abs_diff(w.value(), target3()), 1e-3f)
        << "momentum " << momentum << " nesterov " << nesterov;
  }
}

TEST(Optim, SgdMomentumHandComputed) {
  // grad of sum(w^2) is 2w.  w0 = 1, lr 0.1, momentum 0.5.
  // step1: g=2, v=2, w=0.8;  step2: g=1.6, v=0.5*2+1.6=2.6, w=0.8-0.26=0.54
  Var w = parameter(Tensor::from({1}, {1.0f}));
  Sgd opt({w}, SgdOptions{0.1f, 0.5f, false, 0.0f});
  for (int i = 0; i < 2; ++i) quadratic_step(opt, w, Tensor::zeros({1}));
  EXPECT_NEAR(w.value().item(), 0.54f, 1e-6f);
  // Nesterov: step1: g=2, v=2, w = 1 - 0.1*(2 + 0.5*2) = 0.7
  Var u = parameter(Tensor::from({1}, {1.0f}));
  Sgd nes({u}, SgdOptions{0.1f, 0.5f, true, 0.0f});
  quadratic_step(nes, u, Tensor::zeros({1}));
  EXPECT_NEAR(u.value().item(), 0.7f, 1e-6f);
}

TEST(Optim, AdamWMinimisesQuadratic) {
  Var w = parameter(Tensor::zeros({3}));
  AdamW opt({w}, AdamWOptions{0.05f, 0.9f, 0.999f, 1e-8f, 0.0f});
  for (int i = 0; i < 1000; ++i) quadratic_step(opt, w, target3());
  EXPECT_LT(max_abs_diff(w.value(), target3()), 1e-2f);
}

TEST(Optim, AdamWFirstStepHandComputed) {
  // First step: m_hat = g, v_hat = g^2, so the update is lr * g/(|g| + eps) ~ lr*sign(g),
  // after decoupled decay w *= (1 - lr*wd).
  Var w = parameter(Tensor::from({2}, {1.0f, -2.0f}));
  const float lr = 0.1f, wd = 0.5f;
  AdamW opt({w}, AdamWOptions{lr, 0.9f, 0.999f, 1e-8f, wd});
  // loss = sum(w * c) with c = (3, -0.5): gradient is c.
  Var loss = sum(mul(w, constant(Tensor::from({2}, {3.0f, -0.5f}))));
  backward(loss);
  opt.step();
  const float w0 = 1.0f * (1 - lr * wd) - lr * 3.0f / (3.0f + 1e-8f);
  const float w1 = -2.0f * (1 - lr * wd) - lr * -0.5f / (0.5f + 1e-8f);
  EXPECT_NEAR(w.value().data()[0], w0, 1e-6f);
  EXPECT_NEAR(w.value().data()[1], w1, 1e-6f);
  EXPECT_EQ(opt.steps(), 1);
  // Second step with the same gradient: m = 0.19*g/0.19 -> m_hat = g, v_hat = g^2 again.
  const float w0b = w0 * (1 - lr * wd) - lr;
  opt.step();  // grad still accumulated from before (not zeroed): g unchanged
  EXPECT_NEAR(w.value().data()[0], w0b, 1e-5f);
}

TEST(Optim, SgdWeightDecayLeavesGradient) {
  // w = 2, g = 1, wd = 0.5: w -= 0.1 * (1 + 0.5*2) = 1.8; the stored gradient stays 1.
  Var w = parameter(Tensor::from({1}, {2.0f}));
  Sgd opt({w}, SgdOptions{0.1f, 0.0f, false, 0.5f});
  w.grad() = Tensor::from({1}, {1.0f});
  opt.step();
  EXPECT_NEAR(w.value().item(), 1.8f, 1e-6f);
  EXPECT_FLOAT_EQ(w.grad().item(), 1.0f);
}

TEST(Optim, DecoupledWeightDecayWithZeroGrad) {
  Var w = parameter(Tensor::from({1}, {2.0f}));
  AdamW opt({w}, AdamWOptions{0.1f, 0.9f, 0.999f, 1e-8f, 0.1f});
  w.grad() = Tensor::zeros({1});
  opt.step();
  EXPECT_NEAR(w.value().item(), 2.0f * (1 - 0.01f), 1e-6f);  // only the decay acts
}

TEST(Optim, SkipsParametersWithoutGradient) {
  Var a = parameter(Tensor::from({1}, {1.0f}));
  Var b = parameter(Tensor::from({1}, {5.0f}));
  AdamW opt({a, b});
  backward(sum(mul(a, a)));
  opt.step();
  EXPECT_NE(a.value().item(), 1.0f);
  EXPECT_EQ(b.value().item(), 5.0f);
}

TEST(Optim, ClipGradNorm) {
  Var a = parameter(Tensor::zeros({2}));
  Var b = parameter(Tensor::zeros({1}));
  a.grad() = Tensor::from({2}, {3.0f, 0.0f});
  b.grad() = Tensor::from({1}, {4.0f});
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0f), 5.0f, 1e-6f);  // below the limit: unchanged
  EXPECT_FLOAT_EQ(a.grad().data()[0], 3.0f);
  EXPECT_NEAR(clip_grad_norm({a, b}, 1.0f), 5.0f, 1e-6f);
  EXPECT_NEAR(a.grad().data()[0], 0.6f, 1e-5f);
  EXPECT_NEAR(b.grad().data()[0], 0.8f, 1e-5f);
  EXPECT_NEAR(clip_grad_norm({a, b}, 1.0f), 1.0f, 1e-5f);
}

TEST(Optim, ZeroGradClears) {
  Var a = parameter(Tensor::from({1}, {1.0f}));
  backward(sum(mul(a, a)));
  EXPECT_FALSE(a.grad().empty());
  zero_grad({a});
  EXPECT_TRUE(a.grad().empty());
  // Gradients accumulate across backward calls until cleared.
  backward(sum(mul(a, a)));
  backward(sum(mul(a, a)));
  EXPECT_FLOAT_EQ(a.grad().item(), 4.0f);
}

TEST(Optim, CosineScheduleHandChecked) {
  CosineSchedule s{1.0f, 10, 110, 0.1f};
  EXPECT_FLOAT_EQ(s.lr_at(0), 0.1f);       // warm-up start: base/warmup
  EXPECT_FLOAT_EQ(s.lr_at(4), 0.5f);       // warm-up middle
  EXPECT_FLOAT_EQ(s.lr_at(9), 1.0f);       // warm-up end
  EXPECT_FLOAT_EQ(s.lr_at(10), 1.0f);      // decay start
  EXPECT_NEAR(s.lr_at(60), 0.55f, 1e-6f);  // halfway: min + (base-min)/2
  EXPECT_NEAR(s.lr_at(35), 0.1f + 0.9f * 0.5f * (1 + std::cos(M_PI * 0.25)), 1e-6f);
  EXPECT_NEAR(s.lr_at(109), 0.1f, 1e-3f);
  EXPECT_FLOAT_EQ(s.lr_at(110), 0.1f);  // end
  EXPECT_FLOAT_EQ(s.lr_at(1000), 0.1f);
  CosineSchedule no_warmup{2.0f, 0, 4, 0.0f};
  EXPECT_FLOAT_EQ(no_warmup.lr_at(0), 2.0f);
  EXPECT_NEAR(no_warmup.lr_at(2), 1.0f, 1e-6f);
}

TEST(Optim, BadArguments) {
  Var w = parameter(Tensor::zeros({1}));
  EXPECT_THROW(Sgd({w}, SgdOptions{0.1f, 0.0f, true, 0.0f}), std::invalid_argument);
  EXPECT_THROW(Sgd({w}, SgdOptions{-1.0f, 0.0f, false, 0.0f}), std::invalid_argument);
  EXPECT_THROW(AdamW({w}, AdamWOptions{0.1f, 1.0f, 0.999f, 1e-8f, 0.0f}), std::invalid_argument);
  EXPECT_THROW(AdamW({Var()}), std::invalid_argument);
}

// ---- parameter groups ----

TEST(OptimGroups, EachGroupStepsWithItsOwnRateAndOptions) {
  // grad of sum(w^2) is 2w, w0 = 1: plain SGD gives 1 - 2 lr; momentum only in group "b".
  Var a = parameter(Tensor::from({1}, {1.0f}));
  Var b = parameter(Tensor::from({1}, {1.0f}));
  Sgd opt(std::vector<SgdGroup>{{"a", {a}, SgdOptions{0.1f}}, {"b", {b}, SgdOptions{0.01f, 0.5f}}});
  auto step = [&] {
    opt.zero_grad();
    backward(add(sum(mul(a, a)), sum(mul(b, b))));
    opt.step();
  };
  step();
  EXPECT_NEAR(a.value().item(), 0.8f, 1e-6f);
  EXPECT_NEAR(b.value().item(), 0.98f, 1e-6f);
  // b: g = 1.96, v = 0.5*2 + 1.96 = 2.96, w = 0.98 - 0.0296
  step();
  EXPECT_NEAR(a.value().item(), 0.64f, 1e-6f);
  EXPECT_NEAR(b.value().item(), 0.9504f, 1e-6f);
  EXPECT_EQ(opt.params().size(), 2u);
  EXPECT_EQ(opt.groups().size(), 2u);
  EXPECT_EQ(opt.group("b").params[0].node(), b.node());
}

TEST(OptimGroups, SchedulesSetRatesPerGroup) {
  Var a = parameter(Tensor::zeros({1})), b = parameter(Tensor::zeros({1}));
  AdamW opt(std::vector<AdamWGroup>{{"weights", {a}, AdamWOptions{0.1f}},
                                    {"architecture", {b}, AdamWOptions{3e-4f}}});
  EXPECT_FLOAT_EQ(opt.lr(), 0.1f);  // the first group's
  opt.set_lr_factor(0.5f);
  EXPECT_FLOAT_EQ(opt.group("weights").lr, 0.05f);
  EXPECT_FLOAT_EQ(opt.group("architecture").lr, 1.5e-4f);
  opt.set_lr("architecture", 1e-3f);
  EXPECT_FLOAT_EQ(opt.group("architecture").lr, 1e-3f);
  EXPECT_FLOAT_EQ(opt.group("weights").lr, 0.05f);
  opt.set_lr(0.2f);  // every group, as the single-group callers expect
  EXPECT_FLOAT_EQ(opt.group("architecture").lr, 0.2f);
  CosineSchedule unit{1.0f, 0, 10, 0.0f};
  opt.set_lr_factor(unit.factor_at(5));
  EXPECT_NEAR(opt.group("weights").lr, 0.05f, 1e-7f);
  EXPECT_NEAR(opt.group("architecture").lr, 1.5e-4f, 1e-9f);
}

TEST(OptimGroups, OneGroupEqualsTheSingleListConstructor) {
  Var a = parameter(Tensor::from({3}, {1.0f, -2.0f, 0.5f})), b = parameter(a.value().clone());
  AdamW one({a}, AdamWOptions{0.05f});
  AdamW grouped(std::vector<AdamWGroup>{{"all", {b}, AdamWOptions{0.05f}}});
  for (int i = 0; i < 5; ++i) {
    quadratic_step(one, a, target3());
    quadratic_step(grouped, b, target3());
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a.value().data()[i], b.value().data()[i]);
  EXPECT_EQ(one.steps(), 5);
  EXPECT_EQ(one.groups()[0].name, "default");
}

TEST(OptimGroups, SeparateOptimizersPerGroupUpdateOnlyTheirOwn) {
  // DARTS: AdamW on the weights, Adam on the architecture parameters, stepped alternately.
  Var w = parameter(Tensor::from({2}, {1.0f, 1.0f}));
  Var alpha = parameter(Tensor::from({2}, {0.5f, -0.5f}));
  AdamW wopt({w}, AdamWOptions{0.01f});
  Adam aopt({alpha}, AdamOptions{3e-4f, 0.5f, 0.999f, 1e-8f, 1e-3f});
  auto loss = [&] { return sum(mul(mul(w, w), sigmoid(alpha))); };
  const Tensor a0 = alpha.value().clone();
  wopt.zero_grad();
  aopt.zero_grad();
  backward(loss());
  wopt.step();
  EXPECT_EQ(alpha.value().data()[0], a0.data()[0]);
  EXPECT_NE(w.value().data()[0], 1.0f);
  const Tensor w1 = w.value().clone();
  aopt.step();
  EXPECT_EQ(w.value().data()[0], w1.data()[0]);
  EXPECT_NE(alpha.value().data()[0], a0.data()[0]);
}

TEST(OptimGroups, AdamWeightDecayIsCoupledL2) {
  // Adam with weight decay wd on f equals plain Adam on f + wd/2 |w|^2; AdamW does not.
  Var a = parameter(Tensor::from({3}, {1.0f, -2.0f, 0.5f})), b = parameter(a.value().clone());
  Var c = parameter(a.value().clone());
  Adam coupled({a}, AdamOptions{0.05f, 0.9f, 0.999f, 1e-8f, 0.2f});
  Adam plain({b}, AdamOptions{0.05f, 0.9f, 0.999f, 1e-8f, 0.0f});
  AdamW decoupled({c}, AdamWOptions{0.05f, 0.9f, 0.999f, 1e-8f, 0.2f});
  for (int i = 0; i < 10; ++i) {
    quadratic_step(coupled, a, target3());
    plain.zero_grad();
    Var d = sub(b, constant(target3()));
    backward(add(sum(mul(d, d)), scale(sum(mul(b, b)), 0.1f)));
    plain.step();
    quadratic_step(decoupled, c, target3());
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a.value().data()[i], b.value().data()[i], 1e-5f) << i;
  EXPECT_GT(max_abs_diff(a.value(), c.value()), 1e-3f);
}

TEST(OptimGroups, BadGroups) {
  Var w = parameter(Tensor::zeros({1})), u = parameter(Tensor::zeros({1}));
  using G = std::vector<SgdGroup>;
  testing::expect_invalid([&] { Sgd(G{}); }, "needs at least one parameter group");
  testing::expect_invalid(
      [&] {
        Sgd(G{{"", {w}, {}}});
      },
      "parameter group names must be non-empty");
  testing::expect_invalid(
      [&] {
        Sgd(G{{"a", {w}, {}}, {"a", {u}, {}}});
      },
      "parameter group 'a' is listed twice");
  testing::expect_invalid(
      [&] {
        Sgd(G{{"a", {w}, {}}, {"b", {u, w}, {}}});
      },
      "parameter 1 of group 'b' is already listed in group 'a'");
  testing::expect_invalid(
      [&] {
        Sgd(G{{"a", {w}, {}}, {"b", {u}, SgdOptions{-0.1f}}});
      },
      "lr must be >= 0, got -0.100000 (group 'b')");
  testing::expect_invalid(
      [&] {
        Sgd(G{{"m", {w}, SgdOptions{0.1f, 0.0f, true}}});
      },
      "nesterov needs momentum > 0 (group 'm')");
  testing::expect_invalid(
      [&] {
        Adam({w}, AdamOptions{0.1f, 0.9f, 1.0f});
      },
      "Adam: beta2 must be in [0, 1)");
  Sgd ok(G{{"weights", {w}, {}}});
  testing::expect_invalid([&] { ok.group("arch"); },
                          "no parameter group named 'arch' (groups: 'weights')");
  testing::expect_invalid([&] { ok.set_lr("arch", 0.1f); }, "no parameter group named 'arch'");
  testing::expect_invalid([&] { ok.set_lr(-1.0f); }, "lr must be >= 0");
  testing::expect_invalid([&] { ok.set_lr_factor(-1.0f); }, "lr factor must be >= 0");
}

}  // namespace
}  // namespace hwnas::nn

namespace hwnas::nn {
namespace {

// Records what an optimizer shows an update hook: each chunk's range and the values the chunk
// has when the hook sees it.
class RecordingHook final : public UpdateHook {
 public:
  explicit RecordingHook(std::int64_t granule) : granule_(granule) {}
  std::int64_t granule(const Node&) const override { return granule_; }
  void before(const Node& node, std::int64_t chunks) override {
    ++befores;
    seen.assign(static_cast<std::size_t>(node.value.numel()), 0);
    chunk_count = chunks;
  }
  void chunk(const Node& node, std::int64_t, std::int64_t b, std::int64_t e) noexcept override {
    std::lock_guard<std::mutex> lock(mutex_);
    ranges.emplace_back(b, e);
    for (std::int64_t i = b; i < e; ++i) seen[static_cast<std::size_t>(i)] = node.value.data()[i];
  }
  void after(const Node&) override { ++afters; }
  int befores = 0, afters = 0;
  std::int64_t chunk_count = 0;
  std::vector<float> seen;
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;

 private:
  std::int64_t granule_;
  std::mutex mutex_;
};

std::vector<std::uint32_t> bits_of(const Tensor& t) {
  std::vector<std::uint32_t> out(static_cast<std::size_t>(t.numel()));
  std::memcpy(out.data(), t.data(), out.size() * sizeof(float));
  return out;
}

}  // namespace

// An update hook sees every entry once, in whole granules, already updated; and its presence
// does not change a single bit of the update (chunks start on 16-float boundaries, so Eigen's
// packet and scalar paths cover the same entries however the tensor is split).
TEST(OptimHooks, HookSeesEachUpdatedChunkOnceAndChangesNoBit) {
  for (int kind = 0; kind < 3; ++kind)
    for (std::int64_t granule : {1, 27, 784, 0})
      for (int n : {37, 5000, 70001}) {
        Tensor init(Shape{n}), grad(Shape{n});
        for (int i = 0; i < n; ++i) {
          init.data()[i] = std::sin(0.37f * static_cast<float>(i)) * 0.1f;
          grad.data()[i] = std::cos(1.3f * static_cast<float>(i)) * (i % 7 == 0 ? 1e-4f : 1.0f);
        }
        Var plain = parameter(init.clone()), hooked = parameter(init.clone());
        auto hook = std::make_shared<RecordingHook>(granule);
        set_update_hook(hooked, hook);
        auto make = [&](Var p) -> std::unique_ptr<Optimizer> {
          if (kind == 0) return std::make_unique<AdamW>(std::vector<Var>{p}, AdamWOptions{0.01f});
          if (kind == 1) return std::make_unique<Adam>(std::vector<Var>{p}, AdamOptions{0.01f});
          return std::make_unique<Sgd>(std::vector<Var>{p}, SgdOptions{0.1f, 0.9f, true, 1e-3f});
        };
        auto opt_plain = make(plain), opt_hooked = make(hooked);
        for (int step = 0; step < 3; ++step) {
          plain.grad() = grad.clone();
          hooked.grad() = grad.clone();
          const std::uint64_t version = hooked.node()->version.load();
          hook->ranges.clear();
          opt_plain->step();
          opt_hooked->step();
          const std::string where = "kind " + std::to_string(kind) + " granule " +
                                    std::to_string(granule) + " n " + std::to_string(n);
          ASSERT_EQ(bits_of(plain.value()), bits_of(hooked.value())) << where;
          EXPECT_GT(hooked.node()->version.load(), version) << "an update counts as a write";
          if (granule == 0) {  // sits out
            EXPECT_EQ(hook->befores, 0) << where;
            EXPECT_TRUE(hook->ranges.empty()) << where;
            continue;
          }
          if (hook->befores == 0) continue;  // too few rows for the parallelism: sat out
          EXPECT_EQ(hook->befores, step + 1) << where;
          EXPECT_EQ(hook->afters, step + 1) << where;
          std::sort(hook->ranges.begin(), hook->ranges.end());
          std::int64_t next = 0;
          for (auto [b, e] : hook->ranges) {
            EXPECT_EQ(b, next) << where;
            EXPECT_EQ(b % granule, 0) << where;
            next = e;
          }
          EXPECT_EQ(next, n) << where;
          ASSERT_EQ(bits_of(Tensor::from(Shape{n}, hook->seen)), bits_of(hooked.value())) << where;
        }
      }
}

}  // namespace hwnas::nn
