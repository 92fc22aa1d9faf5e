// Learning tests of the liquid cells (nn/liquid_cells.hpp): a CfC with under 20K parameters on
// fashion_mnist_rows (Fashion-MNIST TRAIN split only, validation carved from it) and an LTC on
// a small marked-majority sequence task, each trained briefly from a fixed seed and required to
// be clearly above chance.  Thresholds were calibrated with a margin below the measured accuracy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "evaluators/datasets.hpp"
#include "evaluators/sequence_tasks.hpp"
#include "nn/layers.hpp"
#include "nn/liquid_cells.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"

namespace hwnas {
namespace {

using nn::Var;

// Trains encoder (sequence -> final state) + linear head with Adam; returns validation accuracy.
double train_and_score(nn::Module& rnn, int hidden, const eval::Dataset& train,
                       const eval::Dataset& val, int epochs, int batch, float lr,
                       std::uint64_t seed, int* param_count = nullptr) {
  std::mt19937_64 rng(seed);
  nn::Linear head(hidden, val.num_classes, true, rng);
  std::vector<Var> params;
  rnn.collect_parameters(params);
  head.collect_parameters(params);
  if (param_count) {
    *param_count = 0;
    for (const Var& p : params) *param_count += static_cast<int>(p.value().numel());
  }
  nn::AdamOptions o;
  o.lr = lr;
  nn::Adam opt(params, o);
  nn::ForwardContext ctx;
  auto encode = [&](const nn::Tensor& x) {
    std::vector<Var> in{nn::constant(x)};
    Var seq = rnn.forward(in, ctx);  // [B, T, H]
    const int T = seq.dim(1);
    return head.forward(nn::reshape(nn::slice(seq, 1, T - 1, T), nn::Shape{seq.dim(0), hidden}));
  };
  eval::BatchIterator it(train, batch, true, seed);
  for (int e = 0; e < epochs; ++e) {
    it.start_epoch(e);
    eval::Batch b;
    while (it.next(b)) {
      nn::zero_grad(params);
      nn::backward(nn::cross_entropy(encode(b.x), b.y));
      nn::clip_grad_norm(params, 1.0f);
      opt.step();
    }
  }
  nn::NoGradGuard ng;
  eval::BatchIterator vit(val, 256, false, 0);
  eval::Batch b;
  int correct = 0;
  while (vit.next(b)) {
    const nn::Tensor logits = encode(b.x).value();
    const int C = logits.dim(1);
    for (int i = 0; i < b.size(); ++i) {
      const float* row = logits.data() + static_cast<std::int64_t>(i) * C;
      correct += static_cast<int>(std::max_element(row, row + C) - row) ==
                 b.y[static_cast<std::size_t>(i)];
    }
  }
  return static_cast<double>(correct) / val.size();
}

TEST(LiquidLearning, CfcLearnsFashionMnistRowsUnder20kParams) {
  eval::TrainValSplit split;
  try {
    split = eval::load_fashion_mnist_train_val(1000, 7, 4000);
  } catch (const eval::DatasetError& e) {
    GTEST_SKIP() << e.what();
  }
  const eval::Dataset train = eval::sequential_image_rows(split.train);
  const eval::Dataset val = eval::sequential_image_rows(split.val);
  std::mt19937_64 rng(11);
  nn::CfcConfig cfg;
  cfg.hidden = 32;
  cfg.backbone_layers = 0;  // heads read [x, h] directly: 8138 parameters with the head
  nn::Cfc cfc(28, cfg, rng);
  int params = 0;
  const double acc = train_and_score(cfc, 32, train, val, 3, 32, 5e-3f, 3, &params);
  std::printf("cfc fashion_mnist_rows: params %d, val accuracy %.4f\n", params, acc);
  EXPECT_LT(params, 20000);
  EXPECT_GT(acc, 0.58) << "params " << params;  // chance 0.10; measured 0.668
}

TEST(LiquidLearning, LtcLearnsMarkedMajority) {
  eval::MarkedMajorityConfig mc;
  mc.samples = 1200;
  mc.seq_len = 12;
  mc.features = 3;
  mc.min_marked = 1;
  mc.max_marked = 5;
  mc.noise = 0.3f;
  const eval::Dataset all = eval::make_marked_majority(mc, 5);
  std::vector<int> tr(1000), va(200);
  for (int i = 0; i < 1000; ++i) tr[static_cast<std::size_t>(i)] = i;
  for (int i = 0; i < 200; ++i) va[static_cast<std::size_t>(i)] = 1000 + i;
  const eval::Dataset train = eval::take(all, tr), val = eval::take(all, va);
  std::mt19937_64 rng(12);
  nn::Ltc ltc({3, 8, 3, false}, rng);
  const double acc = train_and_score(ltc, 8, train, val, 6, 32, 2e-2f, 4);
  std::printf("ltc marked majority: val accuracy %.4f\n", acc);
  EXPECT_GT(acc, 0.85);  // chance 0.5; measured 0.96
}

}  // namespace
}  // namespace hwnas
