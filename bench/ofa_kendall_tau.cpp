// Ranking quality of the weight-sharing supernet under its three training schedules: Kendall
// tau between inherited-weight accuracy (weights sliced from the supernet, batch-norm
// recalibrated) and stand-alone accuracy (the same architecture trained from scratch) over the
// same 20 distinct subnets, for uniform single-path sampling (SPOS), Once-for-All progressive
// shrinking, and progressive shrinking with in-place distillation.  Every schedule gets the
// same number of supernet epochs; the stand-alone trainings are shared.  Fashion-MNIST train
// split only (the validation split is carved from it).
//
//   build/bench/bench_ofa_kendall_tau [train=4000] [val=1000] [supernet_epochs=8]
//                                     [standalone_epochs=2] [subnets=20]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>

#include "evaluators/trainer.hpp"
#include "oneshot/spos_search.hpp"

using namespace hwnas;
using namespace hwnas::oneshot;

namespace {

double kendall_tau(const std::vector<double>& a, const std::vector<double>& b) {
  int conc = 0, disc = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = i + 1; j < a.size(); ++j) {
      const double s = (a[i] - a[j]) * (b[i] - b[j]);
      if (s > 0) ++conc;
      if (s < 0) ++disc;
    }
  return (conc - disc) / static_cast<double>(a.size() * (a.size() - 1) / 2);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  auto arg = [&](int i, int def) { return argc > i ? std::atoi(argv[i]) : def; };
  const int train = arg(1, 4000), val = arg(2, 1000), epochs = arg(3, 8), alone_epochs = arg(4, 2),
            subnets = arg(5, 20);
  // The space of tests/oneshot SposRankingSlow: conv stage (1-2 layers, 8/16 channels, kernel
  // 3/5), conv-or-dwconv stage (0-2 layers, 16/32 channels, kernel 3/5, optional skip), width
  // multipliers 0.5/1.0.
  auto space = spaces::make_space(
      {{"type", "macro"},
       {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
       {"outputs", 10},
       {"width_multipliers", {0.5, 1.0}},
       {"stages",
        {{{"blocks", {"conv"}},
          {"depth", {1, 2}},
          {"params", {{"channels", {8, 16}}, {"kernel", {3, 5}}, {"stride", 2}}}},
         {{"blocks", {"conv", "dwconv"}},
          {"depth", {0, 2}},
          {"skip", "optional"},
          {"params", {{"channels", {16, 32}}, {"kernel", {3, 5}}, {"stride", 2}}}}}}});
  const auto data = eval::load_fashion_mnist_train_val(val, 1, train);

  // The subnets: drawn uniformly (a fixed seed), distinct.
  std::vector<spaces::Genome> picks;
  {
    SposSupernet probe(*space, 0);
    std::mt19937_64 rng(31);
    std::map<std::string, int> seen;
    while (static_cast<int>(picks.size()) < subnets) {
      const auto g = probe.sample(rng);
      if (!seen[g.hash()]++) picks.push_back(g);
    }
  }
  std::vector<double> alone;
  const auto t_alone = std::chrono::steady_clock::now();
  for (const auto& g : picks) {
    auto m = spaces::build_model(g, 77);
    eval::TrainConfig tc;
    tc.optimizer = "sgd";
    tc.lr = 0.05f;
    tc.epochs = alone_epochs;
    tc.batch_size = 64;
    alone.push_back(eval::train(*m, data.train, data.val, tc).val_accuracy);
  }
  const double alone_s = seconds_since(t_alone);

  struct Schedule {
    const char* name;
    std::string schedule;
    bool kd;
  };
  std::printf(
      "Fashion-MNIST %d train / %d val images, %d subnets, stand-alone %d epochs of SGD "
      "0.05 (%.1f s for all)\n",
      train, val, subnets, alone_epochs, alone_s);
  std::printf("%-20s %8s %10s %12s %12s %10s\n", "schedule", "tau", "tau_banked", "mean_inh",
              "mean_alone", "supernet_s");
  for (const Schedule& s :
       {Schedule{"uniform", "uniform", false}, Schedule{"progressive", "progressive", false},
        Schedule{"progressive+kd", "progressive", true}}) {
    SposSupernet net(*space, 8);
    SposOptions o;
    o.schedule = s.schedule;
    o.kd = s.kd;
    o.epochs = epochs;
    // The same epochs in all: a quarter per phase (the rest to the width phase).
    o.full_epochs = o.kernel_epochs = o.depth_epochs = epochs / 4;
    o.width_epochs = epochs - 3 * (epochs / 4);
    o.batch_size = 64;
    o.sgd.lr = 0.2f;
    o.bn_batches = 4;
    o.eval_samples = 0;
    o.seed = 5;
    const auto t0 = std::chrono::steady_clock::now();
    (void)train_supernet_phases(net, data.train, o);
    const double supernet_s = seconds_since(t0);
    InheritedScorer scorer(net, data, o);
    std::vector<double> inherited, banked;
    for (const auto& g : picks) {
      inherited.push_back(scorer.score(g, true).at("accuracy"));
      banked.push_back(scorer.score(g, false).at("accuracy"));
    }
    double mi = 0, ma = 0;
    for (std::size_t i = 0; i < picks.size(); ++i) {
      mi += inherited[i] / static_cast<double>(picks.size());
      ma += alone[i] / static_cast<double>(picks.size());
    }
    std::printf("%-20s %8.3f %10.3f %12.3f %12.3f %10.1f\n", s.name, kendall_tau(inherited, alone),
                kendall_tau(banked, alone), mi, ma, supernet_s);
    std::fflush(stdout);
  }
  return 0;
}
