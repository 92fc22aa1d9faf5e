// The training evaluator's memory guard (issue 13 item 10): a candidate whose estimated
// training memory exceeds the limit fails with the estimate, the limit and the field to change,
// before its model is built.
#include <gtest/gtest.h>

#include "evaluators/train_evaluator.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;
using namespace hwnas::eval;

namespace {

// 1x4x4 image -> flatten (16) -> dense 8 -> head 10.
spaces::Genome tiny_mlp() {
  spaces::Genome g(spaces::TensorType::image(1, 4, 4));
  auto f = g.add_node("flatten", {});
  auto d = g.add_node("dense", {{"units", 8}});
  auto h = g.add_node("head", {{"outputs", 10}});
  g.add_edge(g.input_node(), f);
  g.add_edge(f, d);
  g.add_edge(d, h);
  g.validate();
  return g;
}

}  // namespace

TEST(TrainMemory, EstimateOfAHandCountedNetwork) {
  // Nodes: dense and head (flatten is a view: no node, no memory).  Parameters: dense 16 x 8 + 8
  // = 136, head 8 x 10 + 10 = 90: 226 floats, 904 bytes each for the weights and their
  // gradients; AdamW keeps two moments (1808 bytes), SGD with momentum one (904), plain SGD
  // none.  Activations kept for backward: the input (16 floats) and each eager kernel's output
  // (dense: matmul and relu, 8 each; head 10) = 42 floats = 168 bytes a sample, 672 at batch 4;
  // the evaluation pass at eval_batch_size 4 needs only its widest node (dense: 16 in + 8 out =
  // 96 bytes) x 4 = 384, less.  AdamW: 904 + 904 + 1808 + 672 = 4288 bytes.
  const hw::Workload w = spaces::build_workload(tiny_mlp());
  TrainConfig c;
  c.batch_size = 4;
  c.eval_batch_size = 4;
  const TrainingMemoryEstimate adamw = estimate_training_memory(w, c);
  EXPECT_DOUBLE_EQ(adamw.weights_bytes, 904);
  EXPECT_DOUBLE_EQ(adamw.gradients_bytes, 904);
  EXPECT_DOUBLE_EQ(adamw.optimizer_bytes, 1808);
  EXPECT_DOUBLE_EQ(adamw.activations_bytes, 672);
  EXPECT_DOUBLE_EQ(adamw.total_bytes(), 4288);
  c.optimizer = "sgd";
  EXPECT_DOUBLE_EQ(estimate_training_memory(w, c).optimizer_bytes, 904);
  c.momentum = 0;
  EXPECT_DOUBLE_EQ(estimate_training_memory(w, c).optimizer_bytes, 0);
  // A large evaluation batch makes the evaluation pass the larger: 96 x 256 = 24576 bytes.
  c.eval_batch_size = 256;
  EXPECT_DOUBLE_EQ(estimate_training_memory(w, c).activations_bytes, 24576);
}

TEST(TrainMemory, AConvKeepsEachKernelsOutputAndItsColumns) {
  // 1x4x4 -> conv 2 channels, 3x3, stride 1, same padding, batch norm, relu -> flatten -> head
  // 10.  conv: 2 x 4 x 4 = 32 outputs, 288 MACs (9 per output), three eager kernels (conv, norm,
  // relu) keep 3 x 32 floats; its columns are 288 / 2 = 144 floats (9 per output position x 16
  // positions).  head: 10 outputs.  A sample: 16 input + 96 + 144 + 10 = 266 floats = 1064 bytes.
  spaces::Genome g(spaces::TensorType::image(1, 4, 4));
  auto c = g.add_node("conv", {{"channels", 2}, {"kernel", 3}, {"stride", 1}});
  auto f = g.add_node("flatten", {});
  auto h = g.add_node("head", {{"outputs", 10}});
  g.add_edge(g.input_node(), c);
  g.add_edge(c, f);
  g.add_edge(f, h);
  g.validate();
  TrainConfig cfg;
  cfg.batch_size = 2;
  cfg.eval_batch_size = 1;
  EXPECT_DOUBLE_EQ(estimate_training_memory(spaces::build_workload(g), cfg).activations_bytes,
                   2 * 1064);
}

TEST(TrainMemory, ACandidateOverTheLimitFailsWithTheReason) {
  TrainEvaluatorOptions opt;
  opt.train.batch_size = 4;
  opt.train.eval_batch_size = 4;
  opt.host_latency_reps = 0;
  opt.memory_limit_bytes = 4000;  // under the 4288 bytes counted above
  // No data: a candidate refused for its memory never reaches training.
  TrainEvaluator ev(std::make_shared<const TrainValSplit>(), opt);
  const EvalResult r = ev.evaluate(tiny_mlp(), Fidelity{}, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.rfind("training memory estimate 4.3 kB exceeds the limit 4.0 kB "
                          "(evaluator.memory_limit_mb; 0 = 50% of physical memory / workers)",
                          0),
            0u)
      << r.error;
  EXPECT_NE(r.error.find("optimizer state 1.8 kB"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("at batch 4"), std::string::npos) << r.error;
  EXPECT_EQ(r.workload.total_params(), 226);  // still costed by the hardware models if wanted
}

TEST(TrainMemory, DefaultLimitIsHalfThePhysicalMemoryPerWorker) {
  const double one = default_memory_limit_bytes(1);
  ASSERT_GT(one, 0);
  EXPECT_DOUBLE_EQ(default_memory_limit_bytes(4), one / 4);
}
