// Fashion-MNIST validation accuracy of a spiking network built from the catalogue's spiking
// blocks (spike_encoder -> spiking layers -> spike_readout), trained with surrogate gradients
// through the fused LIF op (BPTT over T steps).
//   mlp:  direct encoding, spiking_dense(hidden) x layers, mean-membrane readout
//   conv: direct encoding, spiking_conv(c1, stride 2), spiking_conv(c2, stride 2),
//         spiking_dense(hidden), mean-membrane readout
// Protocol: the TRAIN file split into train and validation (--val, seeded); the TEST split is
// never opened.  Prints validation accuracy per epoch, the final one, wall time, and the
// measured spikes per sample and per step of each spiking layer in the final validation pass.
//
//   bench_spiking_fmnist [--arch mlp|conv] [--timesteps T] [--epochs N] [--hidden H]
//                        [--layers L] [--lr LR] [--batch B] [--val N] [--subset N]
//                        [--threads T] [--seed S] [--encoding direct|rate]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "evaluators/datasets.hpp"
#include "evaluators/trainer.hpp"
#include "nn/parallel.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;

int main(int argc, char** argv) {
  std::string arch = "mlp", encoding = "direct";
  int steps = 4, epochs = 10, hidden = 256, layers = 1, batch = 64, val = 5000, subset = 0;
  int threads = 2, c1 = 16, c2 = 32;
  float lr = 2e-3f;
  std::uint64_t seed = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--arch")
      arch = v;
    else if (k == "--encoding")
      encoding = v;
    else if (k == "--timesteps")
      steps = std::atoi(v);
    else if (k == "--epochs")
      epochs = std::atoi(v);
    else if (k == "--hidden")
      hidden = std::atoi(v);
    else if (k == "--layers")
      layers = std::atoi(v);
    else if (k == "--batch")
      batch = std::atoi(v);
    else if (k == "--val")
      val = std::atoi(v);
    else if (k == "--subset")
      subset = std::atoi(v);
    else if (k == "--threads")
      threads = std::atoi(v);
    else if (k == "--c1")
      c1 = std::atoi(v);
    else if (k == "--c2")
      c2 = std::atoi(v);
    else if (k == "--lr")
      lr = static_cast<float>(std::atof(v));
    else if (k == "--seed")
      seed = std::strtoull(v, nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const eval::TrainValSplit data = eval::load_fashion_mnist_train_val(val, seed, subset);

  spaces::Genome g(spaces::TensorType::image(1, 28, 28));
  auto prev = g.add_node("spike_encoder", {{"timesteps", steps}, {"encoding", encoding}});
  g.add_edge(g.input_node(), prev);
  std::vector<spaces::Genome::NodeId> spiking;
  auto chain = [&](const std::string& kind, nlohmann::json p) {
    p["timesteps"] = steps;
    auto n = g.add_node(kind, p);
    g.add_edge(prev, n);
    prev = n;
    spiking.push_back(n);
  };
  if (arch == "conv") {
    chain("spiking_conv", {{"channels", c1}, {"kernel", 3}, {"stride", 2}});
    chain("spiking_conv", {{"channels", c2}, {"kernel", 3}, {"stride", 2}});
  }
  for (int l = 0; l < layers; ++l) chain("spiking_dense", {{"units", hidden}});
  auto out = g.add_node("spike_readout", {{"timesteps", steps}, {"outputs", 10}});
  g.add_edge(prev, out);
  g.validate();
  auto model = spaces::build_model(g, seed + 1);

  eval::TrainConfig cfg;
  cfg.lr = lr;
  cfg.batch_size = batch;
  cfg.epochs = epochs;
  cfg.seed = seed;
  cfg.eval_every_epoch = true;
  cfg.on_epoch_end = [&](int epoch, double train_loss, double, double val_acc) {
    std::printf("[spiking_fmnist] epoch %d train_loss %.4f val_acc %.4f (%.0f s)\n", epoch,
                train_loss, val_acc, std::chrono::duration<double>(Clock::now() - t0).count());
    std::fflush(stdout);
  };
  std::printf(
      "[spiking_fmnist] arch=%s encoding=%s T=%d hidden=%d layers=%d epochs=%d lr=%g "
      "batch=%d train=%d val=%d threads=%d\n",
      arch.c_str(), encoding.c_str(), steps, hidden, layers, epochs, lr, batch, data.train.size(),
      data.val.size(), threads);
  nn::ThreadBudget budget(threads);
  const eval::TrainReport rep =
      nn::run_isolated([&] { return eval::train(*model, data.train, data.val, cfg); });
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto id : spiking) {
    const nn::ActivitySink* s = rep.val_activity.find(id);
    if (!s) continue;
    const auto per = s->per_sample();
    const auto series = s->series_per_sample();
    std::printf(
        "[spiking_fmnist] node %lld %s: spikes/sample %.1f synaptic_ops/sample %.0f "
        "spikes per step:",
        static_cast<long long>(id), g.node(id).kind.c_str(), per.at("spikes"),
        per.at("synaptic_ops"));
    for (double v : series.at("spikes_per_step")) std::printf(" %.1f", v);
    std::printf("\n");
  }
  std::printf(
      "[spiking_fmnist] RESULT arch=%s T=%d val_accuracy=%.4f train_seconds=%.1f "
      "total_seconds=%.1f\n",
      arch.c_str(), steps, rep.val_accuracy, rep.train_seconds, secs);
  return 0;
}
