// Validation accuracy of a small CfC (nn/liquid_cells.hpp) on fashion_mnist_rows: each
// Fashion-MNIST image read as 28 rows of 28 pixels, the last state classified by a linear head.
// Train and validation both come from the 60k TRAIN split (the test split is never opened).
// Prints parameter count, wall time and validation accuracy after each epoch.
//
//   bench_cfc_fmnist_rows [--train 10000] [--val 2000] [--epochs 5] [--hidden 32]
//                         [--backbone_units 32] [--backbone_layers 0] [--mode default]
//                         [--batch 32] [--lr 0.005] [--threads 2] [--seed 1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "evaluators/datasets.hpp"
#include "evaluators/sequence_tasks.hpp"
#include "nn/layers.hpp"
#include "nn/liquid_cells.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;

int main(int argc, char** argv) {
  int train_n = 10000, val_n = 2000, epochs = 5, batch = 32, threads = 2, seed = 1;
  float lr = 5e-3f;
  nn::CfcConfig cfg;
  cfg.hidden = 32;
  cfg.backbone_units = 32;
  cfg.backbone_layers = 0;  // measured better than a 32-unit backbone on this task
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--train")
      train_n = std::stoi(v);
    else if (k == "--val")
      val_n = std::stoi(v);
    else if (k == "--epochs")
      epochs = std::stoi(v);
    else if (k == "--hidden")
      cfg.hidden = std::stoi(v);
    else if (k == "--backbone_units")
      cfg.backbone_units = std::stoi(v);
    else if (k == "--backbone_layers")
      cfg.backbone_layers = std::stoi(v);
    else if (k == "--mode")
      cfg.mode = nn::parse_cfc_mode(v);
    else if (k == "--batch")
      batch = std::stoi(v);
    else if (k == "--lr")
      lr = std::stof(v);
    else if (k == "--threads")
      threads = std::stoi(v);
    else if (k == "--seed")
      seed = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  nn::ThreadBudget budget(threads);
  const eval::TrainValSplit split = eval::load_fashion_mnist_train_val(val_n, 7, train_n);
  const eval::Dataset train = eval::sequential_image_rows(split.train);
  const eval::Dataset val = eval::sequential_image_rows(split.val);
  std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
  nn::Cfc cfc(28, cfg, rng);
  nn::Linear head(cfg.hidden, 10, true, rng);
  std::vector<nn::Var> params;
  cfc.collect_parameters(params);
  head.collect_parameters(params);
  std::int64_t n_params = 0;
  for (const nn::Var& p : params) n_params += p.value().numel();
  nn::AdamOptions o;
  o.lr = lr;
  nn::Adam opt(params, o);
  auto logits = [&](const nn::Tensor& x) {
    const nn::Recurrence r = cfc.forward(nn::constant(x), nn::Var(), nn::Var());
    return head.forward(r.final_state);
  };
  std::printf("cfc mode=%s hidden=%d backbone=%dx%d params=%lld train=%d val=%d threads=%d\n",
              nn::cfc_mode_name(cfg.mode).c_str(), cfg.hidden, cfg.backbone_layers,
              cfg.backbone_units, static_cast<long long>(n_params), train.size(), val.size(),
              threads);
  const auto t0 = std::chrono::steady_clock::now();
  eval::BatchIterator it(train, batch, true, static_cast<std::uint64_t>(seed));
  double acc = 0;
  for (int e = 0; e < epochs; ++e) {
    it.start_epoch(e);
    eval::Batch b;
    while (it.next(b)) {
      nn::zero_grad(params);
      nn::backward(nn::cross_entropy(logits(b.x), b.y));
      nn::clip_grad_norm(params, 1.0f);
      opt.step();
    }
    nn::NoGradGuard ng;
    eval::BatchIterator vit(val, 256, false, 0);
    int correct = 0;
    while (vit.next(b)) {
      const nn::Tensor l = logits(b.x).value();
      for (int i = 0; i < b.size(); ++i) {
        const float* row = l.data() + static_cast<std::int64_t>(i) * 10;
        correct += static_cast<int>(std::max_element(row, row + 10) - row) ==
                   b.y[static_cast<std::size_t>(i)];
      }
    }
    acc = static_cast<double>(correct) / val.size();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("epoch %d val_accuracy=%.4f elapsed_s=%.1f\n", e + 1, acc, secs);
    std::fflush(stdout);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("RESULT bench=cfc_fmnist_rows params=%lld val_accuracy=%.4f train_s=%.1f\n",
              static_cast<long long>(n_params), acc, secs);
  return 0;
}
