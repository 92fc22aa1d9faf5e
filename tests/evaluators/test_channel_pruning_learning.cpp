// Structured channel pruning on Fashion-MNIST (train split only: 6,000 training and 2,000
// validation images, seeded): a small CNN (conv 16 -> max pool -> dense 64 -> head) whose conv
// keeps half its channels ("channel_prune": 0.5, built and trained at 8 channels) has half the
// MACs (+-10%; the layers it feeds, dense included, read half the inputs) and a lower predicted
// latency on one device of every family: GPU, edge CPU, Edge TPU, MCU and neuromorphic
// (rate-coded), in float and in int8.  The float and pruned validation accuracies are reported;
// the pruned net must still learn.  Pruning every hidden layer by half is reported as well: a
// layer whose inputs and outputs are both halved keeps a quarter of its MACs.
#include <gtest/gtest.h>

#include <cstdio>

#include "evaluators/datasets.hpp"
#include "evaluators/train_evaluator.hpp"
#include "hwmodels/device.hpp"
#include "nn/parallel.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;
using namespace hwnas::eval;

namespace {

spaces::Genome classifier(double conv_prune, double dense_prune, int bits) {
  spaces::Genome g(spaces::TensorType::image(1, 28, 28));
  auto c = g.add_node("conv", {{"channels", 16},
                               {"kernel", 3},
                               {"stride", 2},
                               {"channel_prune", conv_prune},
                               {"bits", bits}});
  auto p = g.add_node("pool", {{"op", "max"}, {"kernel", 2}, {"stride", 2}});
  auto f = g.add_node("flatten", {});
  auto d = g.add_node("dense", {{"units", 64}, {"channel_prune", dense_prune}, {"bits", bits}});
  auto h = g.add_node("head", {{"outputs", 10}, {"bits", bits}});
  g.add_edge(g.input_node(), c);
  g.add_edge(c, p);
  g.add_edge(p, f);
  g.add_edge(f, d);
  g.add_edge(d, h);
  g.validate();
  return g;
}

EvalResult train(const std::shared_ptr<const TrainValSplit>& data, const spaces::Genome& g) {
  TrainEvaluatorOptions opt;
  opt.train.lr = 3e-3f;
  opt.host_latency_reps = 0;
  TrainEvaluator ev(data, opt);
  Fidelity fid;
  fid.epochs = 2;
  EvalResult r = ev.evaluate(g, fid, 7);
  EXPECT_TRUE(r.ok()) << r.error;
  return r;
}

}  // namespace

TEST(ChannelPruningLearning, HalfTheChannelsHalvesMacsAndLowersLatencyOnEveryFamily) {
  nn::ThreadBudget budget(2);
  auto data = std::make_shared<const TrainValSplit>(
      load_fashion_mnist_train_val(/*val_size=*/2000, /*seed=*/3, /*subset=*/6000));
  const EvalResult full = train(data, classifier(0, 0, 32));
  const EvalResult half = train(data, classifier(0.5, 0, 32));
  const double macs_full = full.workload.total_macs(), macs_half = half.workload.total_macs();
  // conv 16 x 14 x 14 x 9 = 28224, dense 784 x 64 = 50176, head 640: 79040 MACs; at 8 channels
  // 14112 + 392 x 64 + 640 = 39840 (0.504).
  EXPECT_DOUBLE_EQ(macs_full, 79040);
  EXPECT_DOUBLE_EQ(macs_half, 39840);
  EXPECT_NEAR(macs_half / macs_full, 0.5, 0.05);
  EXPECT_LT(half.workload.total_params(), full.workload.total_params());
  EXPECT_DOUBLE_EQ(half.workload.nodes[0].channels, 8);
  EXPECT_DOUBLE_EQ(half.workload.nodes[0].channels_full, 16);
  const double uniform =
      spaces::build_workload(classifier(0.5, 0.5, 32)).total_macs() / macs_full;  // 0.341
  std::printf(
      "MACs: float %.0f, conv 50%% channel-pruned %.0f (%.3f); every hidden layer 50%% "
      "pruned: %.3f\n",
      macs_full, macs_half, macs_half / macs_full, uniform);

  const double acc_full = full.metrics.at("val_accuracy"),
               acc_half = half.metrics.at("val_accuracy");
  std::printf("validation accuracy: float %.4f, conv 50%% channel-pruned %.4f\n", acc_full,
              acc_half);
  EXPECT_GT(acc_full, 0.75);
  EXPECT_GT(acc_half, 0.70) << "the pruned net still learns";

  // The trained (float, with measured activity) workloads and the same architectures at int8.
  const hw::Workload int8_full = spaces::build_workload(classifier(0, 0, 8));
  const hw::Workload int8_half = spaces::build_workload(classifier(0.5, 0, 8));
  for (const char* name : {"jetson_orin_nano", "rpi4_a72", "edgetpu_usb", "stm32h743", "loihi2"}) {
    auto dev = hw::load_device(name);
    const hw::Cost a = dev->estimate(full.workload), b = dev->estimate(half.workload);
    const hw::Cost a8 = dev->estimate(int8_full), b8 = dev->estimate(int8_half);
    std::printf(
        "%-17s %-13s latency ms float %.6g -> %.6g, int8 %.6g -> %.6g; energy mJ float "
        "%.6g -> %.6g\n",
        name, dev->family().c_str(), a.latency_ms, b.latency_ms, a8.latency_ms, b8.latency_ms,
        a.energy_mj, b.energy_mj);
    EXPECT_TRUE(a.feasible && b.feasible && a8.feasible && b8.feasible) << name;
    EXPECT_LT(b.latency_ms, a.latency_ms) << name;
    EXPECT_LT(b8.latency_ms, a8.latency_ms) << name;
    EXPECT_LT(b.energy_mj, a.energy_mj) << name;
  }
}
