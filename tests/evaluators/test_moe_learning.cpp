// Behaviour test of the mixture-of-experts block (spaces/blocks/block_moe.cpp): the Switch
// load-balancing loss spreads tokens more evenly over the experts.  A two-layer residual stack of
// moe layers (E = 8, k = 1), mean-pooled into a classifier, is trained briefly on marked majority
// (tokens with Gaussian noise features, so no two tokens are alike and a router can spread them)
// with aux_weight 0 and 0.01, from three seeds; the coefficient of variation of the validation
// pass's per-expert token counts (activity tokens_per_expert) must be lower with the loss, on
// average and for every seed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "evaluators/task_registry.hpp"
#include "evaluators/trainer.hpp"
#include "nn/parallel.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;
using nlohmann::json;

namespace {

struct Balance {
  double cv = 0;  // mean over the moe layers of std / mean of tokens per expert
  double accuracy = 0;
  double seconds = 0;
};

double coefficient_of_variation(const std::vector<double>& v) {
  double mean = 0, var = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  for (double x : v) var += (x - mean) * (x - mean);
  return std::sqrt(var / static_cast<double>(v.size())) / mean;
}

// input [L, F] -> dense(32) -> (layer norm -> moe -> + skip) x 2 -> layer norm -> mean pool
// -> head(classes).
spaces::Genome moe_classifier(const spaces::TensorType& in, const json& moe, int classes) {
  spaces::Genome g(in);
  auto h = g.add_node("dense", {{"units", 32}, {"activation", "none"}});
  g.add_edge(g.input_node(), h);
  for (int i = 0; i < 2; ++i) {
    auto n = g.add_node("norm", {{"type", "layer"}});
    g.add_edge(h, n);
    auto m = g.add_node("moe", moe);
    g.add_edge(n, m);
    auto a = g.add_node("add");
    g.add_edge(h, a);
    g.add_edge(m, a);
    h = a;
  }
  auto n = g.add_node("norm", {{"type", "layer"}});
  g.add_edge(h, n);
  auto p = g.add_node("global_pool");
  g.add_edge(n, p);
  auto head = g.add_node("head", {{"outputs", classes}});
  g.add_edge(p, head);
  g.validate();
  return g;
}

Balance train_moe(double aux_weight, std::uint64_t seed) {
  nn::ThreadBudget budget(2);
  const json task = {{"seq_len", 16}, {"features", 8}, {"min_marked", 1}, {"max_marked", 7}};
  const eval::TaskSpec t = eval::resolve_task("marked_majority", task);
  const spaces::TensorType in = t.entry->inputs(t.params).at(0);
  const eval::TrainValSplit s = eval::make_task_data(t, in, 5, {1024, 256});
  const json moe = {{"experts", 8},
                    {"k", 1},
                    {"hidden", 32},
                    {"capacity_factor", 2.0},
                    {"aux_weight", aux_weight}};
  const spaces::Genome g = moe_classifier(in, moe, t.entry->outputs(t.params));
  auto model = spaces::build_model(g, seed);
  eval::TrainConfig c;
  c.epochs = 8;
  c.batch_size = 32;
  c.lr = 5e-3f;
  c.clip_grad_norm = 1.0f;
  c.seed = seed;
  const eval::TrainReport r =
      nn::run_isolated([&] { return eval::train(*model, s.train, s.val, c); });
  Balance b;
  int layers = 0;
  for (auto v : g.topological_order()) {
    if (g.node(v).kind != "moe") continue;
    const nn::ActivitySink* sink = r.val_activity.find(static_cast<std::int64_t>(v));
    EXPECT_NE(sink, nullptr);
    if (!sink) continue;
    const auto per = sink->series_per_sample().at(nn::activity_key::kTokensPerExpert);
    EXPECT_EQ(per.size(), 8u);
    b.cv += coefficient_of_variation(per);
    ++layers;
  }
  b.cv /= std::max(1, layers);
  b.accuracy = r.val_accuracy;
  b.seconds = r.seconds;
  return b;
}

}  // namespace

TEST(MoeLearning, LoadBalancingLossLowersExpertImbalance) {
  double mean_off = 0, mean_on = 0;
  for (std::uint64_t seed : {3, 4, 5}) {
    const Balance off = train_moe(0.0, seed), on = train_moe(0.01, seed);
    std::printf(
        "moe E=8 k=1 marked majority, seed %llu: CV of tokens per expert %.3f without the aux "
        "loss (accuracy %.3f, %.1f s), %.3f with aux_weight 0.01 (%.3f, %.1f s)\n",
        static_cast<unsigned long long>(seed), off.cv, off.accuracy, off.seconds, on.cv,
        on.accuracy, on.seconds);
    EXPECT_LT(on.cv, off.cv) << "seed " << seed;
    mean_off += off.cv / 3;
    mean_on += on.cv / 3;
  }
  std::printf("mean CV: %.3f without, %.3f with the aux loss\n", mean_off, mean_on);
  EXPECT_LT(mean_on, mean_off);
}
