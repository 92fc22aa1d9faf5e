// Compressed training on Fashion-MNIST (train split only: 6,000 training and 2,000 validation
// images): an MLP whose layers are fake-quantised to int8 (per-channel scales, straight-through
// gradients; spaces/compress.hpp) reaches the float model's validation accuracy within one
// point; int4 and 50% magnitude pruning are reported.
#include <gtest/gtest.h>

#include <cstdio>

#include "evaluators/datasets.hpp"
#include "evaluators/train_evaluator.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;
using namespace hwnas::eval;

namespace {

double val_accuracy(const std::shared_ptr<const TrainValSplit>& data, int bits, double prune) {
  spaces::Genome g(spaces::TensorType::image(1, 28, 28));
  auto f = g.add_node("flatten", {});
  g.add_edge(g.input_node(), f);
  auto d = g.add_node("dense", {{"units", 128}, {"bits", bits}, {"prune", prune}});
  g.add_edge(f, d);
  auto h = g.add_node("head", {{"outputs", 10}, {"bits", bits}, {"prune", prune}});
  g.add_edge(d, h);
  g.validate();
  TrainEvaluatorOptions opt;
  opt.train.lr = 2e-3f;
  opt.host_latency_reps = 0;
  TrainEvaluator ev(data, opt);
  Fidelity fid;
  fid.epochs = 3;
  const EvalResult r = ev.evaluate(g, fid, 11);
  EXPECT_TRUE(r.ok()) << r.error;
  return r.metrics.at("val_accuracy");
}

}  // namespace

TEST(CompressionLearning, Int8WithinOnePointOfFloatOnFashionMnist) {
  nn::ThreadBudget budget(2);
  auto data = std::make_shared<const TrainValSplit>(
      load_fashion_mnist_train_val(/*val_size=*/2000, /*seed=*/3, /*subset=*/6000));
  const double fp32 = val_accuracy(data, 32, 0);
  const double int8 = val_accuracy(data, 8, 0);
  const double int4 = val_accuracy(data, 4, 0);
  const double pruned = val_accuracy(data, 32, 0.5);
  std::printf("validation accuracy: float %.4f, int8 %.4f, int4 %.4f, 50%% pruned %.4f\n", fp32,
              int8, int4, pruned);
  EXPECT_GT(fp32, 0.75);
  EXPECT_GE(int8, fp32 - 0.01);
  EXPECT_GT(int4, 0.5) << "int4 still learns";
}
