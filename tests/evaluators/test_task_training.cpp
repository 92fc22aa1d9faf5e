// Metrics by hand, the trainer with regression and per-token heads (an MLP on `symbolic` beats
// predicting the mean), batches carrying targets, head/target mismatches, and the train
// evaluator reporting a task's metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "evaluators/metrics.hpp"
#include "evaluators/task_registry.hpp"
#include "evaluators/train_evaluator.hpp"
#include "evaluators/trainer.hpp"
#include "nn/layers.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;
using namespace hwnas::eval;

namespace {

struct Mlp : nn::Module {
  std::mt19937_64 rng;
  nn::Linear l1, l2;
  Mlp(int in, int hidden, int out, std::uint64_t seed)
      : rng(seed), l1(in, hidden, true, rng), l2(hidden, out, true, rng) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return l2.forward(nn::tanh(l1.forward(in.at(0))));
  }
  void collect_parameters(std::vector<nn::Var>& out) override {
    l1.collect_parameters(out);
    l2.collect_parameters(out);
  }
  std::string name() const override { return "mlp"; }
};

double mean_baseline_rmse(const Dataset& train, const Dataset& val) {
  double mean = 0;
  for (std::int64_t i = 0; i < train.target.numel(); ++i) mean += train.target.data()[i];
  mean /= static_cast<double>(train.target.numel());
  double s = 0;
  for (std::int64_t i = 0; i < val.target.numel(); ++i)
    s += (val.target.data()[i] - mean) * (val.target.data()[i] - mean);
  return std::sqrt(s / static_cast<double>(val.target.numel()));
}

}  // namespace

TEST(Metrics, HandComputedValues) {
  // accuracy: rows' arg-max 1, 0, 2 against labels 1, 1, 2 -> 2/3.
  nn::Tensor logits = nn::Tensor::from({3, 3}, {0, 5, 1, 2, 1, 0, 0, 0, 3});
  EXPECT_DOUBLE_EQ(accuracy(logits, {1, 1, 2}), 2.0 / 3.0);
  // token accuracy over labelled positions only: [N=1, L=3, C=2], labels {1, ignore, 1}.
  nn::Tensor tl = nn::Tensor::from({1, 3, 2}, {0, 1, 1, 0, 1, 0});
  nn::Tensor tt = nn::Tensor::from({1, 3}, {1, kIgnoreTarget, 1});
  EXPECT_DOUBLE_EQ(token_accuracy(tl, tt), 0.5);
  EXPECT_TRUE(std::isnan(token_accuracy(tl, nn::Tensor(nn::Shape{1, 3}, kIgnoreTarget))));
  // rmse: errors 1, -1, 3, 1 -> sqrt(12 / 4).
  nn::Tensor p = nn::Tensor::from({2, 2}, {1, 2, 3, 4}), t = nn::Tensor::from({2, 2}, {0, 3, 0, 3});
  EXPECT_DOUBLE_EQ(rmse(p, t), std::sqrt(3.0));
  EXPECT_THROW(rmse(p, nn::Tensor::zeros({4})), std::invalid_argument);
}

TEST(Metrics, AccumulatorEqualsTheWholeDatasetMetric) {
  Batch a, b;
  a.x = nn::Tensor::zeros({2, 1});
  a.target = nn::Tensor::from({2, 2}, {1, kIgnoreTarget, 0, 1});
  b.x = nn::Tensor::zeros({1, 1});
  b.target = nn::Tensor::from({1, 2}, {1, 1});
  MetricAccumulator acc(HeadKind::TokenClasses);
  // Predictions: sample 0 -> (1, x) right; sample 1 -> (0, 0) one of two; sample 2 -> (1, 1).
  acc.add(nn::Tensor::from({2, 2, 2}, {0, 1, 0, 1, 1, 0, 1, 0}), a);
  acc.add(nn::Tensor::from({1, 2, 2}, {0, 1, 0, 1}), b);
  auto r = acc.result();
  EXPECT_DOUBLE_EQ(r["token_accuracy"], 4.0 / 5.0);
  EXPECT_DOUBLE_EQ(r["sequence_accuracy"], 2.0 / 3.0);

  MetricAccumulator reg(HeadKind::Regression);
  Batch c;
  c.x = nn::Tensor::zeros({1, 1});
  c.target = nn::Tensor::from({1, 1}, {2});
  reg.add(nn::Tensor::from({1, 1}, {0}), c);  // error 2
  c.target = nn::Tensor::from({1, 1}, {0});
  reg.add(nn::Tensor::from({1, 1}, {0}), c);  // error 0
  EXPECT_DOUBLE_EQ(reg.result()["rmse"], std::sqrt(2.0));
}

TEST(Datasets, BatchesCarryTargets) {
  Dataset d;
  d.x = nn::Tensor::from({3, 1}, {0, 1, 2});
  d.target = nn::Tensor::from({3, 2}, {0, 0, 10, 11, 20, 21});
  EXPECT_EQ(d.size(), 3);
  Batch b = gather_batch(d, {2, 0}, 0, 2);
  EXPECT_EQ(b.size(), 2);
  EXPECT_TRUE(b.y.empty());
  EXPECT_EQ(b.target.shape(), (nn::Shape{2, 2}));
  EXPECT_EQ(b.target.data()[0], 20);
  EXPECT_EQ(b.target.data()[3], 0);
  Dataset t = take(d, {1});
  EXPECT_EQ(t.target.data()[1], 11);
  EXPECT_EQ(t.x.data()[0], 1);
}

TEST(TaskTraining, MlpOnSymbolicBeatsPredictingTheMean) {
  nn::ThreadBudget budget(1);
  TaskSpec t = resolve_task("symbolic");
  TrainValSplit s = make_task_data(t, spaces::TensorType::vector(2), 3, {2000, 500});
  const double baseline = mean_baseline_rmse(s.train, s.val);
  Mlp m(2, 32, 1, 7);
  TrainConfig c;
  c.head = HeadKind::Regression;
  c.epochs = 30;
  c.batch_size = 32;
  c.lr = 1e-2f;
  c.monitor_primary = true;
  c.eval_every_epoch = true;
  TrainReport r = train(m, s.train, s.val, c);
  ASSERT_TRUE(r.val_metrics.count("rmse"));
  const double rmse_v = r.val_metrics.at("rmse");
  std::cout << "symbolic exp_sin: val rmse " << rmse_v << " vs mean baseline " << baseline << "\n";
  EXPECT_LT(rmse_v, 0.5 * baseline);
  EXPECT_NEAR(r.val_accuracy, rmse_v, 1e-12);  // the primary metric
  EXPECT_NEAR(r.val_loss, rmse_v * rmse_v, 1e-3 * std::max(1.0, r.val_loss));
  // best_epoch watched the rmse (lower is better).
  ASSERT_EQ(r.epoch_val_primary.size(), 30u);
  const auto best = std::min_element(r.epoch_val_primary.begin(), r.epoch_val_primary.end());
  EXPECT_EQ(r.best_epoch, static_cast<int>(best - r.epoch_val_primary.begin()) + 1);
}

TEST(TaskTraining, PerTokenHeadLearnsATokenwiseTask) {
  // Each position's label is the arg-max of its 4 features; some positions are unlabelled.
  nn::ThreadBudget budget(1);
  auto make = [](int n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0, 1);
    Dataset d;
    d.num_classes = 4;
    d.x = nn::Tensor(nn::Shape{n, 6, 4});
    d.target = nn::Tensor(nn::Shape{n, 6});
    for (int i = 0; i < n; ++i)
      for (int t = 0; t < 6; ++t) {
        float* f = d.x.data() + (i * 6 + t) * 4;
        int best = 0;
        for (int k = 0; k < 4; ++k) {
          f[k] = g(rng);
          if (f[k] > f[best]) best = k;
        }
        d.target.data()[i * 6 + t] = (t % 3 == 2) ? kIgnoreTarget : static_cast<float>(best);
      }
    return d;
  };
  Dataset tr = make(600, 1), va = make(200, 2);
  Mlp m(4, 16, 4, 3);  // acts on the last dim: one prediction per token
  TrainConfig c;
  c.head = HeadKind::TokenClasses;
  c.epochs = 15;
  c.batch_size = 32;
  c.lr = 1e-2f;
  TrainReport r = train(m, tr, va, c);
  EXPECT_GT(r.val_metrics.at("token_accuracy"), 0.85);
  EXPECT_GT(r.val_metrics.at("sequence_accuracy"), 0.4);
  EXPECT_LT(r.train_loss_last, r.train_loss_first);
}

TEST(TaskTraining, HeadAndDataMismatchesAreNamed) {
  Dataset reg;
  reg.x = nn::Tensor::zeros({8, 2});
  reg.target = nn::Tensor::zeros({8, 1});
  Mlp m(2, 4, 3, 1);
  TrainConfig c;
  // Classification head on a dataset without labels.
  try {
    train(m, reg, reg, c);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("training set needs one class label per sample"),
              std::string::npos)
        << e.what();
  }
  // Regression head, but the model outputs 3 values for a 1-value target.
  c.head = HeadKind::Regression;
  try {
    train(m, reg, reg, c);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("returned shape [8, 3]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected values shaped like the target [8, 1]"),
              std::string::npos)
        << e.what();
  }
}

TEST(TaskTraining, TrainEvaluatorReportsTheTasksMetrics) {
  nn::ThreadBudget budget(1);
  TaskSpec t = resolve_task("symbolic");
  auto data = std::make_shared<const TrainValSplit>(
      make_task_data(t, spaces::TensorType::vector(2), 1, {512, 128}));
  spaces::Genome g(spaces::TensorType::vector(2));
  auto d1 = g.add_node("dense", {{"units", 16}});
  g.add_edge(g.input_node(), d1);
  auto h = g.add_node("head", {{"outputs", 1}});
  g.add_edge(d1, h);
  g.validate();
  TrainEvaluatorOptions opt;
  opt.train.head = HeadKind::Regression;
  opt.host_latency_reps = 0;
  TrainEvaluator ev(data, opt);
  Fidelity f;
  f.epochs = 3;
  EvalResult r = ev.evaluate(g, f, 5);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.metrics.count("val_rmse"));
  EXPECT_FALSE(r.metrics.count("val_accuracy"));
  const auto names = TrainEvaluator::metric_names(HeadKind::Regression);
  EXPECT_EQ(names.front(), "val_rmse");
  for (const auto& [k, v] : r.metrics)
    EXPECT_NE(std::find(names.begin(), names.end(), k), names.end()) << k;
  const auto tok = TrainEvaluator::metric_names(HeadKind::TokenClasses);
  EXPECT_EQ(tok[0], "val_token_accuracy");
  EXPECT_EQ(tok[1], "val_sequence_accuracy");
  EXPECT_EQ(TrainEvaluator::metric_names().front(), "val_accuracy");
}

TEST(TaskTraining, TrainEvaluatorTrainsAPerTokenGenomeOnMqar) {
  nn::ThreadBudget budget(1);
  TaskSpec t = resolve_task("mqar", {{"seq_len", 16}, {"num_kv_pairs", 2}, {"vocab_size", 8}});
  auto data =
      std::make_shared<const TrainValSplit>(make_task_data(t, t.inputs().front(), 1, {128, 64}));
  spaces::Genome g(t.inputs().front());
  auto h = g.add_node("head", {{"outputs", 8}});  // one prediction per token
  g.add_edge(g.input_node(), h);
  g.validate();
  TrainEvaluatorOptions opt;
  opt.train.head = HeadKind::TokenClasses;
  opt.host_latency_reps = 0;
  TrainEvaluator ev(data, opt);
  Fidelity f;
  f.epochs = 2;
  EvalResult r = ev.evaluate(g, f, 3);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_GE(r.metrics.at("val_token_accuracy"), 0.0);
  EXPECT_LE(r.metrics.at("val_token_accuracy"), 1.0);
  EXPECT_TRUE(r.metrics.count("val_sequence_accuracy"));
}
