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

// Slow (minutes on two cores): MQAR needs many more steps than selective copying.  S4D is
// reported, not required: a time-invariant filter cannot bind values to keys.
TEST(SsmLearning, SlowSelectiveScanRecallsMqarAboveChance) {
  const json task = {{"seq_len", 64}, {"num_kv_pairs", 8}, {"vocab_size", 32}};
  const double mamba =
      token_accuracy_of("mqar", task, {"mamba", {{"d_state", 16}}}, 32, 16, 1e-2f, 2000);
  const double s4d =
      token_accuracy_of("mqar", task, {"s4d", {{"d_state", 16}}}, 32, 16, 1e-2f, 2000);
  std::printf("mqar (L 64, 8 pairs) token accuracy: mamba %.3f, s4d %.3f (chance 1/16)\n", mamba,
              s4d);
  EXPECT_GT(mamba, 0.1);  // measured 0.239 (s4d 0.143)
}
