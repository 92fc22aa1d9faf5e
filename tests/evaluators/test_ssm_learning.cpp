// Behaviour tests of the state-space mixers (spaces/blocks/block_s4d.cpp, block_mamba.cpp):
// small two-layer residual stacks (spaces/mixer_stack.hpp) trained briefly through the trainer
// from fixed seeds on the per-token tasks where input-dependent selection matters (Gu & Dao
// 2023, section 3.1 and 4.1): selective copying, and multi-query associative recall (MQAR,
// Arora et al. 2023).  Thresholds were calibrated with a margin below the measured accuracies.
#include <gtest/gtest.h>

#include <cstdio>

#include "evaluators/task_registry.hpp"
#include "evaluators/trainer.hpp"
#include "nn/parallel.hpp"
#include "spaces/mixer_stack.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;
using nlohmann::json;

namespace {

struct Run {
  const char* kind;
  json params;
};

// Token accuracy on the validation split after `epochs` of AdamW.
double token_accuracy_of(const std::string& task, const json& task_params, const Run& run,
                         int width, int epochs, float lr, int train_n) {
  nn::ThreadBudget budget(2);
  const eval::TaskSpec t = eval::resolve_task(task, task_params);
  const spaces::TensorType in = t.entry->inputs(t.params).at(0);
  const int outputs = t.entry->outputs(t.params);
  const eval::TrainValSplit s = eval::make_task_data(t, in, 5, {train_n, 256});
  const spaces::Genome g = spaces::mixer_stack(in, width, 2, run.kind, run.params, outputs);
  auto model = spaces::build_model(g, 3);
  eval::TrainConfig c;
  c.head = eval::HeadKind::TokenClasses;
  c.epochs = epochs;
  c.batch_size = 32;
  c.lr = lr;
  c.warmup_epochs = 1;
  c.clip_grad_norm = 1.0f;
  c.seed = 7;
  const eval::TrainReport r =
      nn::run_isolated([&] { return eval::train(*model, s.train, s.val, c); });
  return r.val_metrics.at("token_accuracy");
}

}  // namespace

TEST(SsmLearning, SelectiveScanSolvesSelectiveCopyingWellAboveS4d) {
  const json task = {{"seq_len", 24}, {"num_tokens", 4}, {"vocab_size", 4}};
  const double mamba =
      token_accuracy_of("selective_copying", task, {"mamba", {{"d_state", 8}}}, 32, 8, 5e-3f, 1024);
  const double s4d =
      token_accuracy_of("selective_copying", task, {"s4d", {{"d_state", 16}}}, 32, 8, 5e-3f, 1024);
  std::printf("selective copying token accuracy: mamba %.3f, s4d %.3f (chance 0.25)\n", mamba, s4d);
  EXPECT_GT(mamba, 0.8);         // measured 0.889
  EXPECT_GT(mamba, s4d + 0.15);  // s4d measured 0.627
}

// Token accuracy on MQAR after a curriculum (Zoology trains on a mix of shorter, easier MQAR
// configurations): each stage trains from the previous stage's weights.  random_non_queries
// false, the recurrent learning rate 3e-2 and a third of it after the first stage, as
// bench/sequence_mixers.cpp's defaults.
double mqar_curriculum_accuracy(const Run& run, float lr) {
  nn::ThreadBudget budget(2);
  struct Stage {
    int seq_len, pairs, train, epochs;
    float lr_scale;
  };
  const Stage stages[] = {{16, 2, 20000, 3, 1.0f}, {64, 4, 20000, 2, 1.0f / 3}};
  std::vector<eval::TaskSpec> tasks;
  std::vector<eval::TrainValSplit> data;
  std::vector<eval::TrainStage> plan;
  data.reserve(2);  // the plan points into it
  for (int i = 0; i < 2; ++i) {
    const json task = {{"seq_len", stages[i].seq_len},
                       {"num_kv_pairs", stages[i].pairs},
                       {"vocab_size", 64},
                       {"random_non_queries", false}};
    tasks.push_back(eval::resolve_task("mqar", task));
    const eval::TaskSpec& t = tasks.back();
    data.push_back(
        eval::make_task_data(t, t.entry->inputs(t.params).at(0), 5 + i, {stages[i].train, 256}));
    eval::TrainConfig c;
    c.head = eval::HeadKind::TokenClasses;
    c.epochs = stages[i].epochs;
    c.batch_size = 32;
    c.lr = lr * stages[i].lr_scale;
    c.weight_decay = 0.1f;
    c.warmup_epochs = 1;
    c.clip_grad_norm = 1.0f;
    c.seed = 7 + i;
    plan.push_back({&data.back().train, &data.back().val, c});
  }
  const eval::TrainReport r = eval::train_stages(plan, [&](std::size_t i) {
    const eval::TaskSpec& t = tasks[i];
    return std::unique_ptr<nn::Module>(
        spaces::build_model(spaces::mixer_stack(t.entry->inputs(t.params).at(0), 64, 2, run.kind,
                                                run.params, t.entry->outputs(t.params)),
                            3));
  });
  return r.val_metrics.at("token_accuracy");
}

// Slow (about a minute on two cores).  Without selection a model can only learn which values the
// context holds (accuracy 1 / pairs); binding each value to its key needs input-dependent B and
// C.  S4D's time-invariant filter cannot bind, so it stays on that plateau.
TEST(SsmLearning, SlowSelectiveScanRecallsMqarAboveChance) {
  const double mamba = mqar_curriculum_accuracy({"mamba", {{"d_state", 16}}}, 3e-2f);
  const double s4d = mqar_curriculum_accuracy({"s4d", {{"d_state", 16}}}, 1e-2f);
  std::printf(
      "mqar (L 64, 4 pairs, after L 16, 2 pairs) token accuracy: mamba %.3f, s4d %.3f "
      "(chance 1/32, values-in-context plateau 1/4)\n",
      mamba, s4d);
  EXPECT_GT(mamba, 0.8);
  EXPECT_LT(s4d, 0.4);
}
