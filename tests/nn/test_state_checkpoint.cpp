// Training checkpoints: N+M steps in one go equal N steps, a checkpoint, a fresh model and
// fresh optimizers loaded from it, and M more steps, bit for bit; and the refusals.
#include <gtest/gtest.h>

#include <functional>

#include "nn/checkpoint.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/nn/state_test_util.hpp"

namespace hwnas::nn {
namespace {
using testing::bit_equal;
using testing::expect_invalid;
using testing::TempPath;
using testing::TinyNet;

// A DARTS-like model: network weights plus an architecture parameter that gates the outputs.
class Searchable : public Module {
 public:
  explicit Searchable(std::uint64_t seed) : net(seed), alpha(parameter(Tensor::zeros(Shape{3}))) {}
  Var forward(const Var& x) { return mul(net.forward(x, true), sigmoid(alpha)); }
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override {
    net.append_named_parameters(prefix + "net.", out);
    out.push_back({prefix + "arch.alpha", alpha});
  }
  void append_named_buffers(const std::string& prefix, std::vector<NamedBuffer>& out) override {
    net.append_named_buffers(prefix + "net.", out);
  }
  std::string name() const override { return "searchable"; }
  TinyNet net;
  Var alpha;
};

// Everything one training run holds.  Decay applies to weights only (its own group); the
// architecture parameter has its own optimizer, as in DARTS.
struct TrainingRun {
  explicit TrainingRun(std::uint64_t model_seed, bool sgd)
      : model(model_seed), data(77), dropout(78) {
    std::vector<Var> weights, others;
    for (NamedParameter& p : model.named_parameters()) {
      if (name_has_prefix(p.name, "arch")) continue;
      const bool is_weight =
          p.name.size() > 6 && p.name.compare(p.name.size() - 6, 6, "weight") == 0;
      (is_weight ? weights : others).push_back(p.var);
    }
    if (sgd) {
      opt = std::make_unique<Sgd>(
          std::vector<SgdGroup>{{"weights", weights, SgdOptions{0.05f, 0.9f, true, 1e-3f}},
                                {"others", others, SgdOptions{0.1f, 0.9f}}});
    } else {
      opt = std::make_unique<AdamW>(std::vector<AdamWGroup>{
          {"weights", weights, AdamWOptions{0.02f, 0.9f, 0.999f, 1e-8f, 0.01f}},
          {"others", others, AdamWOptions{0.05f, 0.9f, 0.99f, 1e-8f, 0.0f}}});
    }
    arch_opt = std::make_unique<Adam>(std::vector<Var>{model.alpha},
                                      AdamOptions{3e-3f, 0.5f, 0.999f, 1e-8f, 1e-3f});
    sched.base_lr = 1.0f;
    sched.warmup_steps = 3;
    sched.total_steps = 20;
    sched.min_lr = 0.1f;
  }
  void train(std::int64_t steps) {
    for (std::int64_t end = step + steps; step < end; ++step) {
      opt->set_lr_factor(sched.factor_at(step));
      Tensor x = testing::draw(Shape{4, 1, 6, 6}, data);
      Tensor y = testing::draw(Shape{4, 3}, data);
      // Stands in for dropout-style randomness: the noise stream must continue too.
      std::normal_distribution<float> noise(0.0f, 0.01f);
      for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] += noise(dropout);
      opt->zero_grad();
      arch_opt->zero_grad();
      Var d = sub(model.forward(constant(x)), constant(y));
      backward(mean(mul(d, d)));
      opt->step();
      arch_opt->step();
    }
  }
  TrainingCheckpoint checkpoint() const {
    TrainingCheckpoint ck;
    ck.model = state_dict(const_cast<Searchable&>(model));
    ck.optimizers["main"] = opt->state();
    ck.optimizers["arch"] = arch_opt->state();
    ck.counters["step"] = step;
    ck.rng["data"] = rng_state(data);
    ck.rng["dropout"] = rng_state(dropout);
    return ck;
  }
  void restore(const TrainingCheckpoint& ck) {
    load_state_dict(model, ck.model, "checkpoint");
    opt->load_state(ck.optimizers.at("main"));
    arch_opt->load_state(ck.optimizers.at("arch"));
    step = ck.counters.at("step");
    set_rng_state(data, ck.rng.at("data"));
    set_rng_state(dropout, ck.rng.at("dropout"));
  }

  Searchable model;
  std::unique_ptr<Optimizer> opt, arch_opt;
  CosineSchedule sched;
  std::mt19937_64 data, dropout;
  std::int64_t step = 0;
};

void expect_continuation_is_exact(bool sgd) {
  const int n = 6, m = 7;
  TrainingRun straight(1, sgd);
  straight.train(n + m);

  TempPath path(sgd ? "ck_sgd" : "ck_adamw");
  {
    TrainingRun first(1, sgd);
    first.train(n);
    save_checkpoint(first.checkpoint(), path.str());
  }
  TrainingRun resumed(99, sgd);  // fresh model (other initial weights) and fresh optimizers
  resumed.restore(read_checkpoint(path.str()));
  EXPECT_EQ(resumed.step, n);
  resumed.train(m);

  testing::expect_same_state(straight.model, resumed.model);
  EXPECT_EQ(rng_state(straight.data), rng_state(resumed.data));
  for (const auto& [name, t] : straight.opt->state().tensors)
    EXPECT_TRUE(bit_equal(t, resumed.opt->state().tensors.at(name))) << name;
  EXPECT_EQ(straight.opt->state().counters, resumed.opt->state().counters);
  EXPECT_EQ(straight.arch_opt->state().counters.at("default.step"), n + m);
  // And the run did move away from its start: the comparison is not vacuous.
  TrainingRun untrained(1, sgd);
  EXPECT_FALSE(
      bit_equal(untrained.model.net.fc.weight.value(), straight.model.net.fc.weight.value()));
  EXPECT_FALSE(bit_equal(untrained.model.alpha.value(), straight.model.alpha.value()));
}

TEST(Checkpoint, ContinuedAdamWTrainingIsBitIdentical) { expect_continuation_is_exact(false); }
TEST(Checkpoint, ContinuedSgdTrainingIsBitIdentical) { expect_continuation_is_exact(true); }

TEST(Checkpoint, FileRoundTripKeepsEverySection) {
  TrainingRun r(3, false);
  r.train(2);
  TrainingCheckpoint ck = r.checkpoint();
  ck.counters["epoch"] = -5;
  TempPath path("ck_sections");
  save_checkpoint(ck, path.str());
  TrainingCheckpoint back = read_checkpoint(path.str());
  EXPECT_EQ(back.counters, ck.counters);
  EXPECT_EQ(back.rng, ck.rng);
  ASSERT_EQ(back.model.size(), ck.model.size());
  for (const auto& [n, t] : ck.model) EXPECT_TRUE(bit_equal(t, back.model.at(n))) << n;
  ASSERT_EQ(back.optimizers.size(), 2u);
  EXPECT_EQ(back.optimizers.at("main").kind, "adamw");
  EXPECT_EQ(back.optimizers.at("arch").kind, "adam");
  EXPECT_EQ(back.optimizers.at("main").counters, ck.optimizers.at("main").counters);
  for (const auto& [n, t] : ck.optimizers.at("main").tensors)
    EXPECT_TRUE(bit_equal(t, back.optimizers.at("main").tensors.at(n))) << n;
}

TEST(Checkpoint, RefusesMismatchedOptimizerStates) {
  TrainingRun adam(1, false), sgd(1, true);
  adam.train(1);
  const OptimizerState st = adam.opt->state();
  expect_invalid([&] { sgd.opt->load_state(st); },
                 "state is from a 'adamw' optimizer, this is 'sgd'");

  Var w = parameter(Tensor::zeros(Shape{2}));
  AdamW one({w});
  expect_invalid([&] { one.load_state(st); },
                 "parameter group 'default' is missing from the state");

  OptimizerState resized = st;
  resized.counters["weights.params"] = 1;
  expect_invalid([&] { adam.opt->load_state(resized); },
                 "group 'weights' has 1 parameters in the state, 2 here");

  OptimizerState reshaped = st;
  reshaped.tensors["weights.0.m"] = Tensor::zeros(Shape{2});
  expect_invalid([&] { adam.opt->load_state(reshaped); },
                 "weights.0.m: shape [2] in state, [4, 1, 3, 3] in parameter");

  OptimizerState extra = st;
  extra.tensors["weights.9.m"] = Tensor::zeros(Shape{2});
  expect_invalid([&] { adam.opt->load_state(extra); }, "unexpected tensor 'weights.9.m' in state");
}

TEST(Checkpoint, RefusesBadFilesAndNames) {
  TrainingRun r(1, false);
  TempPath path("ck_bad");
  save_state(r.model, path.str());
  expect_invalid([&] { read_checkpoint(path.str()); },
                 "is a model state file, expected a training checkpoint");
  TrainingCheckpoint ck;
  ck.optimizers["a/b"] = r.opt->state();
  expect_invalid([&] { save_checkpoint(ck, path.str()); },
                 "optimizer name 'a/b' must be non-empty and contain no '/'");
  std::mt19937_64 rng(1);
  expect_invalid([&] { set_rng_state(rng, "not a state"); }, "are not an mt19937_64 state");
  // A checkpoint whose model part misses a tensor is refused by name, like a state file.
  TrainingCheckpoint partial = r.checkpoint();
  partial.model.erase("arch.alpha");
  expect_invalid([&] { r.restore(partial); },
                 "tensor 'arch.alpha' of model 'searchable' is missing from the checkpoint");
}

}  // namespace
}  // namespace hwnas::nn
