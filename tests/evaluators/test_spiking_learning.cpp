// Learning test for the spiking blocks: a spiking MLP (direct encoding, T = 4, one LIF layer of
// 128 neurons, mean-membrane readout) trained with surrogate gradients on a Fashion-MNIST
// subset of the TRAIN file (3000 train / 1000 validation; the test split is never opened).
// The full-size run (>= 85% with T <= 8) is bench/spiking_fmnist.cpp.
#include <gtest/gtest.h>

#include <filesystem>

#include "evaluators/datasets.hpp"
#include "evaluators/trainer.hpp"
#include "nn/parallel.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;

TEST(SpikingLearning, SpikingMlpLearnsFashionMnistSubset) {
  if (!std::filesystem::exists(eval::fashion_mnist_dir() + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const eval::TrainValSplit data = eval::load_fashion_mnist_train_val(1000, 0, 3000);
  spaces::Genome g(spaces::TensorType::image(1, 28, 28));
  auto e = g.add_node("spike_encoder", {{"timesteps", 4}});
  auto d = g.add_node("spiking_dense", {{"timesteps", 4}, {"units", 128}});
  auto r = g.add_node("spike_readout", {{"timesteps", 4}, {"outputs", 10}});
  g.add_edge(g.input_node(), e);
  g.add_edge(e, d);
  g.add_edge(d, r);
  g.validate();
  auto model = spaces::build_model(g, 1);
  eval::TrainConfig cfg;
  cfg.lr = 2e-3f;
  cfg.batch_size = 64;
  cfg.epochs = 4;
  cfg.seed = 1;
  nn::ThreadBudget budget(2);
  const eval::TrainReport rep =
      nn::run_isolated([&] { return eval::train(*model, data.train, data.val, cfg); });
  std::printf("[spiking] val accuracy %.4f after %d epochs, %.1f s\n", rep.val_accuracy,
              rep.epochs_run, rep.seconds);
  EXPECT_GE(rep.val_accuracy, 0.75);
  // The validation pass measured the hidden layer's spikes per step.
  const nn::ActivitySink* hidden = rep.val_activity.find(d);
  ASSERT_NE(hidden, nullptr);
  EXPECT_EQ(hidden->series_per_sample().at("spikes_per_step").size(), 4u);
  EXPECT_GT(hidden->per_sample().at("spikes"), 0);
}
